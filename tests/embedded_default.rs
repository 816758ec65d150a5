//! The embedded default: `ctl run --rm -- CMD` runs CMD on the host's root filesystem under
//! a private overlay, with no bundle and no image.

use std::io::Write;
use std::process::Stdio;

use harness::{assert_nothing_left, stderr, stdout, unique, Paddock};

#[test]
fn prints_output_and_exits_with_the_commands_code() {
    let p = Paddock::new();
    let out = p.ctl(&["run", "--rm", "--", "/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    assert_eq!(stdout(&out), "hello\n");
    assert_eq!(stderr(&out), "oops\n");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_command_killed_by_a_signal_exits_128_plus_n() {
    let p = Paddock::new();
    // The command is PID 1 of its container, which no signal from inside can kill (as with
    // runc): it is killed from outside while the foreground run waits for it.
    let id = unique("killed");
    let mut run = p
        .command()
        .args(["run", "--rm", "--name", &id, "--", "/bin/sh", "-c", "kill -9 $$; echo survived; exec sleep 100"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(run.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "survived\n", "kill -9 of PID 1 from inside must not end it");
    p.ctl_ok(&["kill", &id, "KILL"]);
    let out = harness::finish(run);
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn writes_to_etc_and_tmp_do_not_reach_the_host() {
    let p = Paddock::new();
    let name = unique("paddock-write");
    let script = format!("echo inside > /etc/{name} && echo inside > /tmp/{name} && cat /etc/{name} /tmp/{name}");
    let out = p.ctl(&["run", "--rm", "--", "/bin/sh", "-c", &script]);
    assert_eq!(stdout(&out), "inside\ninside\n", "{}", stderr(&out));
    assert!(out.status.success());
    assert!(!std::path::Path::new(&format!("/etc/{name}")).exists(), "the write to /etc reached the host");
    assert!(!std::path::Path::new(&format!("/tmp/{name}")).exists(), "the write to /tmp reached the host");
}

#[test]
fn has_its_own_hostname_and_pid_namespace() {
    let p = Paddock::new();
    let id = unique("host");
    let out = p.ctl(&["run", "--rm", "--name", &id, "--", "/bin/sh", "-c", "hostname; ls /proc | grep -c '^[0-9]'"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(id.as_str()));
    let visible: usize = lines.next().unwrap().trim().parse().unwrap();
    // The sandbox, the shell and ls: a handful, not the host's hundreds.
    assert!(visible <= 5, "the container sees {visible} processes");
}

#[test]
fn stdin_reaches_the_command() {
    let p = Paddock::new();
    let mut child = p
        .command()
        .args(["run", "--rm", "--", "/bin/sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped through\n").unwrap();
    let out = harness::finish(child);
    assert_eq!(stdout(&out), "PIPED THROUGH\n");
    assert!(out.status.success());
}

#[test]
fn run_rm_leaves_nothing_behind() {
    let p = Paddock::new();
    let id = unique("gone");
    let out = p.ctl(&["run", "--rm", "--name", &id, "--", "/bin/true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(p.ids().is_empty());
    assert!(!p.root().join(&id).exists());
    assert_nothing_left(&id);
}

#[test]
fn a_missing_command_is_a_clear_error_and_leaves_nothing() {
    let p = Paddock::new();
    let id = unique("nocmd");
    let out = p.ctl(&["run", "--rm", "--name", &id, "--", "no-such-command-here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no-such-command-here"), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    assert!(p.ids().is_empty());
    assert_nothing_left(&id);
}

#[test]
fn the_command_cannot_touch_the_hosts_sysrq_or_devices() {
    let p = Paddock::new();
    // /proc/sysrq-trigger is read-only, and no block device can be created.
    let out = p.ctl(&[
        "run",
        "--rm",
        "--",
        "/bin/sh",
        "-c",
        "echo h > /proc/sysrq-trigger && echo sysrq-writable; mknod /tmp/d b 8 0 && echo mknod-allowed; true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "{}", stderr(&out));
}
