//! ctl as runc's command line: the global flags, the log file callers parse, the pid file's
//! process that a subreaper waits for, and the informational commands.

use harness::{assert_nothing_left, capture, parent_pid, stderr, stdout, unique, Bundle, Paddock};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Makes this test process a child subreaper, as conmon and containerd's shim are.
fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
}

fn read_pid(path: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(!text.ends_with('\n'), "containerd's shim refuses a pid file with a newline");
    text.parse().unwrap()
}

#[test]
fn a_subreaper_reaps_the_pid_files_process_with_the_containers_exit_status() {
    become_subreaper();
    let p = Paddock::new();
    // PID 1 of its container: TERM ends it only through its handler, as under runc.
    let bundle = Bundle::busybox(&["sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"]);
    let id = unique("reap");
    let pid_file = bundle.path().join("init.pid");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);
    let pid = read_pid(&pid_file);
    assert_eq!(parent_pid(pid), Some(std::process::id() as i32), "the pid file's process is not ours to reap");
    p.ctl_ok(&["start", &id]);
    // An exec'd process, detached, as the shim runs `exec --process … --detach --pid-file`.
    let exec_pid_file = bundle.path().join("exec.pid");
    let process = bundle.path().join("process.json");
    std::fs::write(
        &process,
        r#"{"args": ["sh", "-c", "exit 3"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]}"#,
    )
    .unwrap();
    p.ctl_ok(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--detach",
        "--pid-file",
        exec_pid_file.to_str().unwrap(),
        &id,
    ]);
    let exec_pid = read_pid(&exec_pid_file);
    assert_eq!(waitpid(Pid::from_raw(exec_pid), None).unwrap(), WaitStatus::Exited(Pid::from_raw(exec_pid), 3));
    // A signal sent to the pid file's process goes on to the container, and the pid file's
    // process ends as the container did.
    nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(waitpid(Pid::from_raw(pid), None).unwrap(), WaitStatus::Exited(Pid::from_raw(pid), 143));
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 143);
    p.ctl_ok(&["delete", &id]);

    // An exit code comes through as the code.
    let id = unique("reap");
    bundle.edit_config(|c| c["process"]["args"] = serde_json::json!(["sh", "-c", "exit 7"]));
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);
    let pid = read_pid(&pid_file);
    assert_eq!(waitpid(Pid::from_raw(pid), None).unwrap(), WaitStatus::Exited(Pid::from_raw(pid), 7));
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn errors_go_to_the_log_file_as_json_lines_and_delete_force_of_a_missing_container_succeeds() {
    let p = Paddock::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.json");
    let log_str = log.to_str().unwrap();
    let out = p.ctl(&["--log", log_str, "--log-format", "json", "delete", "no-such-container"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["level"], "error");
    assert!(lines[0]["msg"].as_str().unwrap().contains("container \"no-such-container\" does not exist"));
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));

    // The flags may follow the command, as podman and the shim place them.
    let ok = p.ctl(&["delete", "--force", "--log", log_str, "--log-format=json", "no-such-container"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), text, "a success logged an error");
    // A log file is there after any call (the shim reads it).
    let fresh = dir.path().join("fresh.json");
    p.ctl_ok(&[
        "--log",
        fresh.to_str().unwrap(),
        "--log-format",
        "json",
        "--systemd-cgroup",
        "--criu",
        "/usr/sbin/criu",
        "list",
    ]);
    assert!(fresh.exists());
    // The text form is logfmt.
    let text_log = dir.path().join("log.txt");
    let _ = p.ctl(&["--log", text_log.to_str().unwrap(), "kill", "nothing-here", "KILL"]);
    let line = std::fs::read_to_string(&text_log).unwrap();
    assert!(line.starts_with("time=\"") && line.contains(" level=error msg=\""), "{line}");
}

#[test]
fn version_features_spec_and_checkpoint_answer_as_runc_does() {
    let p = Paddock::new();
    let version = p.ctl_ok(&["--version"]);
    assert!(version.starts_with("ctl version ") && version.contains("\nspec: 1.2.0"), "{version}");
    let features: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["features"])).unwrap();
    assert_eq!(features["ociVersionMax"], "1.2.0");
    assert!(features["linux"]["namespaces"].as_array().unwrap().contains(&"network".into()));
    assert_eq!(features["linux"]["apparmor"]["enabled"], false);

    // `spec` writes runc's default, which runs once given a root filesystem.
    let bundle = Bundle::busybox(&["true"]);
    std::fs::remove_file(bundle.path().join("config.json")).unwrap();
    let out = harness::capture(p.command().args(["spec", "--bundle", &bundle.path_str()]));
    assert!(out.status.success(), "{}", stderr(&out));
    let again = p.ctl(&["spec", "--bundle", &bundle.path_str()]);
    assert!(!again.status.success() && stderr(&again).contains("already exists"));
    bundle.edit_config(|c| {
        c["process"]["terminal"] = false.into();
        c["process"]["args"] = serde_json::json!(["echo", "from the default spec"]);
    });
    let run = p.ctl(&["run", "--bundle", &bundle.path_str(), &unique("spec")]);
    assert_eq!(stdout(&run).trim(), "from the default spec", "{}", stderr(&run));

    // podman asks for checkpoint's help to learn its flags.
    let help = p.ctl(&["checkpoint", "--help"]);
    assert!(help.status.success() && stdout(&help).contains("--leave-running"));
    let id = unique("ckpt");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &id, "--", "sleep", "100"]);
    // runc's default image directory: ./checkpoint.
    let cwd = tempfile::tempdir().unwrap();
    let ckpt = capture(p.command().current_dir(cwd.path()).args(["checkpoint", "--leave-running", &id]));
    assert!(ckpt.status.success(), "{}", stderr(&ckpt));
    assert!(cwd.path().join("checkpoint/paddock-checkpoint.json").is_file());
    assert_eq!(p.state(&id)["status"], "running");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

/// `command` with `files` as its descriptors 3, 4, … (as conmon hands socket-activation
/// sockets to runc).
fn with_fds(mut command: std::process::Command, files: Vec<std::fs::File>) -> std::process::Output {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: between fork and exec only dup2 (async-signal-safe) on descriptors that are open.
    unsafe {
        command.pre_exec(move || {
            // Sources above the targets first, so no dup2 overwrites one still needed.
            let high: Vec<i32> = raw.iter().map(|fd| libc::fcntl(*fd, libc::F_DUPFD, 100)).collect();
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = harness::capture(&mut command);
    drop(files);
    out
}

#[test]
fn preserve_fds_hands_the_callers_descriptors_3_and_up_to_the_container() {
    let p = Paddock::new();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let bundle = Bundle::busybox(&["sh", "-c", "echo three >&3; echo four >&4; ls /proc/self/fd"]);
    let id = unique("fds");
    let mut run = p.command();
    run.args(["run", "--keep", "--preserve-fds", "2", "--bundle", &bundle.path_str(), &id]);
    let out = with_fds(run, vec![file("a"), file("b")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((read("a"), read("b")), ("three\n".to_string(), "four\n".to_string()));
    // Exactly 0–4 (and ls's own directory descriptor): nothing of ctl's or the sandbox's.
    let fds: Vec<String> = stdout(&out).split_whitespace().map(String::from).collect();
    assert_eq!(fds[..5], ["0", "1", "2", "3", "4"], "{fds:?}");
    assert!(fds.len() <= 6, "descriptors leaked into the container: {fds:?}");
    p.ctl_ok(&["delete", &id]);

    // exec passes them too.
    let id = unique("fdsexec");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id, "--", "sleep", "1000"]);
    let mut exec = p.command();
    exec.args(["exec", "--preserve-fds", "1", &id, "--", "sh", "-c", "echo from exec >&3"]);
    let out = with_fds(exec, vec![file("c")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read("c"), "from exec\n");
    p.ctl_ok(&["delete", "--force", &id]);

    // A descriptor that is not open is named, and nothing is made.
    let id = unique("fdsbad");
    let mut bad = p.command();
    bad.args(["run", "--preserve-fds", "3", "--bundle", &bundle.path_str(), &id]);
    let out = with_fds(bad, vec![file("d")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("descriptor 4 is not open"), "{}", stderr(&out));
    assert!(!p.ids().contains(&id));
    assert_nothing_left(&id);
}

#[test]
fn sigkill_sent_to_a_pid_files_monitor_kills_the_process_it_stands_for() {
    become_subreaper();
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("killmon");
    let pid_file = bundle.path().join("init.pid");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);
    // containerd's shim kills an exec'd process by sending the signal to its pid file's pid.
    let marker = format!("sleep {}", 5000 + std::process::id() % 1000);
    let exec_pid_file = bundle.path().join("exec.pid");
    let exec_pid_file = exec_pid_file.to_str().unwrap();
    let mut exec = vec!["exec", "--detach", "--pid-file", exec_pid_file, &id, "--"];
    exec.extend(marker.split(' '));
    p.ctl_ok(&exec);
    assert_eq!(harness::processes_mentioning(&marker).len(), 1);
    let exec_monitor = Pid::from_raw(read_pid(std::path::Path::new(exec_pid_file)));
    nix::sys::signal::kill(exec_monitor, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(
        waitpid(exec_monitor, None).unwrap(),
        WaitStatus::Signaled(exec_monitor, nix::sys::signal::Signal::SIGKILL, false)
    );
    assert!(
        harness::eventually(std::time::Duration::from_secs(10), || harness::processes_mentioning(&marker).is_empty()),
        "the exec'd process outlived its monitor's SIGKILL"
    );
    assert_eq!(p.state(&id)["status"], "running", "only the exec'd process was meant");
    // The same for the container's own monitor.
    let monitor = Pid::from_raw(read_pid(&pid_file));
    nix::sys::signal::kill(monitor, nix::sys::signal::Signal::SIGKILL).unwrap();
    waitpid(monitor, None).unwrap();
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 137);
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn a_foreground_run_in_runcs_form_deletes_the_container_at_exit_unless_kept() {
    // runc's `run ID` destroys the container once its process exits; `--keep` keeps it.
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "exit 3"]);
    let gone = unique("rungone");
    let out = p.ctl(&["run", "--bundle", &bundle.path_str(), &gone]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let state = p.ctl(&["state", &gone]);
    assert!(!state.status.success(), "the container outlived its run: {}", stdout(&state));
    assert!(stderr(&state).contains("does not exist"), "{}", stderr(&state));

    let kept = unique("runkept");
    let out = p.ctl(&["run", "--keep", "--bundle", &bundle.path_str(), &kept]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(p.state(&kept)["status"], "stopped");
    p.ctl_ok(&["delete", &kept]);

    // paddock's own form keeps it unless --rm.
    let named = unique("runnamed");
    let out = p.ctl(&["run", "--name", &named, "--bundle", &bundle.path_str()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(p.state(&named)["status"], "stopped");
    p.ctl_ok(&["delete", &named]);
}
