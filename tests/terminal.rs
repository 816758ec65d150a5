//! Terminals: `process.terminal` and `--tty`, the pty master sent over `--console-socket` as
//! runc sends it, and a foreground ctl serving the terminal itself.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::{Child, Stdio};
use std::time::Duration;

use harness::{assert_nothing_left, stderr, unique, Bundle, Paddock};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A console socket as conmon or containerd's shim opens one: a listener that takes the first
/// descriptor sent to it.
struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    receiver: std::thread::JoinHandle<(OwnedFd, Vec<u8>)>,
}

impl ConsoleSocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let receiver = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
            let mut fd = None;
            for cmsg in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    // SAFETY: received just now; ours to own.
                    fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
                }
            }
            let n = msg.bytes;
            (fd.expect("no descriptor on the console socket"), buf[..n].to_vec())
        });
        Self { _dir: dir, path, receiver }
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The master, and the message it came with.
    fn master(self) -> (std::fs::File, String) {
        let (fd, name) = self.receiver.join().unwrap();
        (std::fs::File::from(fd), String::from_utf8_lossy(&name).into_owned())
    }
}

/// Reads from `master` until `needle` shows up (or the terminal closes); returns all read.
fn read_until(master: &mut std::fs::File, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Runs ctl with a pty of `rows` x `cols` as its stdio, as a terminal emulator would; returns
/// the child and the pty's master.
fn ctl_on_a_terminal(p: &Paddock, args: &[&str], rows: u16, cols: u16) -> (Child, std::fs::File) {
    let size = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let child = p
        .command()
        .args(args)
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .unwrap();
    (child, std::fs::File::from(pty.master))
}

#[test]
fn a_foreground_run_with_tty_serves_a_terminal_of_ctls_size() {
    let p = Paddock::new();
    let (mut ctl, mut master) = ctl_on_a_terminal(
        &p,
        &["run", "--rm", "-t", "--", "sh", "-c", "tty; stty size; read line; echo got $line; exit 4"],
        33,
        101,
    );
    let seen = read_until(&mut master, "33 101");
    assert!(seen.contains("/dev/pts/0"), "the process has no terminal of its own: {seen:?}");
    assert!(seen.contains("33 101"), "the terminal's size is not ctl's: {seen:?}");
    // Input typed at ctl's terminal reaches the process through its terminal.
    master.write_all(b"hello\r").unwrap();
    let seen = read_until(&mut master, "got hello");
    assert!(seen.contains("got hello"), "{seen:?}");
    assert_eq!(ctl.wait().unwrap().code(), Some(4));
    assert!(p.ids().is_empty());
}

#[test]
fn the_terminal_is_the_containers_console() {
    let p = Paddock::new();
    let script = "echo console=$(stat -L -c %t:%T /dev/console). tty=$(stat -L -c %t:%T /proc/self/fd/0). $(tty); \
                  echo through-the-console > /dev/console; read line; exit 3";
    let (mut ctl, mut master) = ctl_on_a_terminal(&p, &["run", "--rm", "-t", "--", "sh", "-c", script], 24, 80);
    let seen = read_until(&mut master, "through-the-console");
    let field =
        |name: &str| seen.split(&format!("{name}=")).nth(1).and_then(|rest| rest.split('.').next()).map(str::to_string);
    let (console, tty) = (field("console"), field("tty"));
    assert!(console.is_some() && console == tty, "/dev/console is not the process's terminal: {seen:?}");
    assert!(seen.contains("/dev/pts/0"), "{seen:?}");
    // What is written to /dev/console comes out of the container's terminal.
    assert!(seen.contains("through-the-console"), "{seen:?}");
    master.write_all(b"\r").unwrap();
    assert_eq!(ctl.wait().unwrap().code(), Some(3));
    assert!(p.ids().is_empty());
}

/// The bind is made inside the container's user namespace, and the pty belongs to the
/// container's root there (as runc's does), so paths to it open: `/dev/console` and the
/// slave's own `/dev/pts/N`.
#[test]
fn in_a_user_namespace_too_the_terminal_is_the_console() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "echo console=$(stat -L -c %t:%T /dev/console). tty=$(stat -L -c %t:%T /proc/self/fd/0). uid=$(id -u).; \
         echo owner=$(stat -L -c %u /proc/self/fd/0).; echo through-console > /dev/console; \
         echo through-pts > $(readlink /proc/self/fd/0); echo userns-done",
    ]);
    bundle.edit_config(|c| {
        c["process"]["terminal"] = true.into();
        c["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}, {"type": "user"}
        ]);
        c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
        c["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
    });
    let id = unique("tty-userns");
    let console = ConsoleSocket::new();
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), "--console-socket", console.path(), &id]);
    let (mut master, _) = console.master();
    p.ctl_ok(&["start", &id]);
    let seen = read_until(&mut master, "userns-done");
    let field =
        |name: &str| seen.split(&format!("{name}=")).nth(1).and_then(|rest| rest.split('.').next()).map(str::to_string);
    assert_eq!(field("uid").as_deref(), Some("0"), "{seen:?}");
    assert!(field("console").is_some() && field("console") == field("tty"), "{seen:?}");
    assert_eq!(field("owner").as_deref(), Some("0"), "{seen:?}");
    assert!(seen.contains("through-console") && seen.contains("through-pts"), "{seen:?}");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

#[test]
fn create_sends_the_terminal_over_the_console_socket() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh"]);
    bundle.edit_config(|c| c["process"]["terminal"] = true.into());
    let id = unique("tty");

    // Without a socket to send it to, create is refused and leaves nothing.
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--console-socket"), "{}", stderr(&out));
    assert!(p.ids().is_empty());
    assert_nothing_left(&id);

    let console = ConsoleSocket::new();
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), "--console-socket", console.path(), &id]);
    let (mut master, name) = console.master();
    assert_eq!(name, "/dev/pts/0", "runc sends the slave's path with the master");
    p.ctl_ok(&["start", &id]);
    master.write_all(b"tty; echo $((6 * 7)); exit 5\n").unwrap();
    let seen = read_until(&mut master, "42");
    assert!(seen.contains("/dev/pts/0") && seen.contains("42"), "{seen:?}");
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 5);
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);

    // A console socket for a process without a terminal is a mistake worth naming.
    let plain = Bundle::busybox(&["true"]);
    let console = ConsoleSocket::new();
    let out = p.ctl(&["create", "--bundle", &plain.path_str(), "--console-socket", console.path(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no terminal"), "{}", stderr(&out));
    assert!(p.ids().is_empty());
}

#[test]
fn exec_with_tty_in_the_foreground_and_through_a_console_socket() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("exectty");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);

    let (mut ctl, mut master) =
        ctl_on_a_terminal(&p, &["exec", "-t", &id, "--", "sh", "-c", "tty; stty size; exit 6"], 20, 70);
    let seen = read_until(&mut master, "20 70");
    assert!(seen.contains("/dev/pts/") && seen.contains("20 70"), "{seen:?}");
    assert_eq!(ctl.wait().unwrap().code(), Some(6));

    // runc's detached form, as containerd's shim calls it.
    let console = ConsoleSocket::new();
    let pid_file = bundle.path().join("exec.pid");
    p.ctl_ok(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        console.path(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "--",
        "sh",
    ]);
    let (mut master, _) = console.master();
    master.write_all(b"echo in $(tty)\n").unwrap();
    let seen = read_until(&mut master, "in /dev/pts/");
    assert!(seen.contains("in /dev/pts/"), "{seen:?}");
    master.write_all(b"exit 8\n").unwrap();
    let host_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    if let Ok(fd) = harness::pidfd(host_pid) {
        assert!(harness::wait_pidfd(&fd, Duration::from_secs(20)), "the exec'd shell did not exit");
    }

    // Detached without a console socket: nothing would serve the terminal.
    let out = p.ctl(&["exec", "-t", "-d", &id, "--", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--console-socket"), "{}", stderr(&out));
}

#[test]
fn with_a_tty_signals_go_to_the_foreground_process_group() {
    let p = Paddock::new();
    // The shell runs sleep in the foreground; only a signal to the whole group ends sleep
    // before the shell's trap can run.
    let (mut ctl, mut master) = ctl_on_a_terminal(
        &p,
        &["run", "--rm", "-t", "--", "sh", "-c", "trap 'echo trapped' TERM; echo ready; sleep 100; echo survived $?"],
        24,
        80,
    );
    let seen = read_until(&mut master, "ready");
    assert!(seen.contains("ready"), "{seen:?}");
    let id = p.ids().pop().unwrap();
    let init = p.state(&id)["pid"].as_i64().unwrap() as i32;
    assert!(harness::eventually(Duration::from_secs(10), || {
        std::fs::read_to_string("/proc/".to_string() + &init.to_string() + "/task/" + &init.to_string() + "/children")
            .is_ok_and(|c| !c.trim().is_empty())
    }));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(ctl.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let seen = read_until(&mut master, "survived");
    assert!(seen.contains("trapped") && seen.contains("survived 143"), "{seen:?}");
    assert_eq!(ctl.wait().unwrap().code(), Some(0));
}

#[test]
fn a_container_with_a_terminal_is_checkpointed_and_restored_onto_a_new_one() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "i=0; while :; do i=$((i+1)); echo n$i.; usleep 100000; done"]);
    bundle.edit_config(|c| c["process"]["terminal"] = true.into());
    let image = tempfile::tempdir().unwrap();
    let image_path = image.path().join("image").display().to_string();
    let id = unique("tty-ckpt");
    let console = ConsoleSocket::new();
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), "--console-socket", console.path(), &id]);
    let (mut master, _) = console.master();
    p.ctl_ok(&["start", &id]);
    let mut before = read_until(&mut master, "n5.");
    // Its terminal is bound on /dev/console (what the runtime-spec asks), which the checkpoint
    // takes along.
    p.ctl_ok(&["exec", &id, "--", "sh", "-c", "echo before-through-console > /dev/console"]);
    before += &read_until(&mut master, "before-through-console");
    assert!(before.contains("before-through-console"), "{before:?}");
    p.ctl_ok(&["checkpoint", "--image-path", &image_path, &id]);
    // All it printed until the checkpoint ended it (the terminal hangs up).
    before += &read_until(&mut master, "never printed");
    let last: u64 = before.rsplit("n").find_map(|n| n.split('.').next()?.parse().ok()).unwrap();
    p.ctl_ok(&["delete", &id]);

    // A bundle without a terminal cannot take the checkpoint's terminal back, nor the other
    // way round: named, and nothing is left.
    let plain = Bundle::busybox(&["true"]);
    let out = p.ctl(&["restore", "-d", "--bundle", &plain.path_str(), "--image-path", &image_path, &id]);
    assert!(!out.status.success() && stderr(&out).contains("had a terminal"), "{}", stderr(&out));
    assert_nothing_left(&id);

    // Detached without a console socket, there is nothing to give the terminal to.
    let out = p.ctl(&["restore", "-d", "--bundle", &bundle.path_str(), "--image-path", &image_path, &id]);
    assert!(!out.status.success() && stderr(&out).contains("--console-socket"), "{}", stderr(&out));
    assert_nothing_left(&id);

    let console = ConsoleSocket::new();
    p.ctl_ok(&[
        "restore",
        "-d",
        "--bundle",
        &bundle.path_str(),
        "--image-path",
        &image_path,
        "--console-socket",
        console.path(),
        &id,
    ]);
    let (mut master, _) = console.master();
    let mut after = read_until(&mut master, &format!("n{}.", last + 3));
    let first: u64 = after.split('n').find_map(|n| n.split('.').next()?.parse().ok()).unwrap();
    assert_eq!(first, last + 1, "the restored process did not go on counting on its new terminal: {after:?}");
    // The restored container's /dev/console is its new terminal.
    p.ctl_ok(&["exec", &id, "--", "sh", "-c", "echo after-through-console > /dev/console"]);
    after += &read_until(&mut master, "after-through-console");
    assert!(after.contains("after-through-console"), "{after:?}");

    // A restored container, its console now bound from the host's devpts, is checkpointed
    // and restored again.
    let again_path = image.path().join("again").display().to_string();
    p.ctl_ok(&["checkpoint", "--image-path", &again_path, &id]);
    after += &read_until(&mut master, "never printed");
    let last: u64 = after.rsplit("n").find_map(|n| n.split('.').next()?.parse().ok()).unwrap();
    p.ctl_ok(&["delete", &id]);
    let console = ConsoleSocket::new();
    p.ctl_ok(&[
        "restore",
        "-d",
        "--bundle",
        &bundle.path_str(),
        "--image-path",
        &again_path,
        "--console-socket",
        console.path(),
        &id,
    ]);
    let (mut master, _) = console.master();
    let again = read_until(&mut master, &format!("n{}.", last + 2));
    let first: u64 = again.split('n').find_map(|n| n.split('.').next()?.parse().ok()).unwrap();
    assert_eq!(first, last + 1, "the second restore did not go on counting: {again:?}");
    p.ctl_ok(&["exec", &id, "--", "sh", "-c", "echo again-through-console > /dev/console"]);
    let again = read_until(&mut master, "again-through-console");
    assert!(again.contains("again-through-console"), "{again:?}");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);

    // A checkpoint without a terminal, restored from a bundle that asks for one: refused
    // before anyone waits for a terminal that would never come.
    let plain = Bundle::busybox(&["sleep", "1000"]);
    let plain_image = image.path().join("plain").display().to_string();
    p.ctl_ok(&["run", "-d", "--bundle", &plain.path_str(), &id]);
    p.ctl_ok(&["checkpoint", "--image-path", &plain_image, &id]);
    p.ctl_ok(&["delete", &id]);
    let console = ConsoleSocket::new();
    let out = p.ctl(&[
        "restore",
        "-d",
        "--bundle",
        &bundle.path_str(),
        "--image-path",
        &plain_image,
        "--console-socket",
        console.path(),
        &id,
    ]);
    assert!(!out.status.success() && stderr(&out).contains("had none"), "{}", stderr(&out));
    assert_nothing_left(&id);
}
