//! `linux.seccomp` with `SCMP_ACT_NOTIFY` and `listenerPath`: a seccomp user notification
//! agent gets each container process's notification descriptor with the container's state
//! (runc's "container process state"), and what it answers is what the container sees.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use harness::{assert_nothing_left, stderr, stdout, unique, Bundle, Paddock};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};

/// How the agent answers a notified system call.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Fail it with this errno, without running it.
    Error(i32),
    /// Report success (0) without running it.
    FakeSuccess,
}

/// What the agent learned from one connection.
#[derive(Debug)]
struct Received {
    /// Which connection it was (0: the first).
    index: usize,
    /// The container process state, as sent.
    state: Value,
    /// The last pid of `NSpid` of the process the message names, read when it arrived (the
    /// process then waits for the agent): 1 for a container's init in its own PID namespace.
    innermost_pid: Option<i32>,
    /// The system calls it answered (numbers).
    answered: Vec<i64>,
}

/// A seccomp agent listening at `<dir>/agent.sock`: for each of `answers`, in order, it
/// accepts one connection, receives the descriptor and state, and (on a thread of its own, as
/// the filters of several processes may notify at once) answers every notification on that
/// descriptor until the filter has no process left.
struct Agent {
    path: PathBuf,
    _dir: tempfile::TempDir,
    states: mpsc::Receiver<Received>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    fn start(answers: Vec<Answer>) -> Self {
        let dir = tempfile::Builder::new().prefix("pdk-agent-").tempdir_in("/tmp").expect("agent dir");
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).expect("bind the agent's socket");
        let (tx, states) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for (index, answer) in answers.into_iter().enumerate() {
                let Ok((stream, _)) = listener.accept() else { return };
                let Some((notify, state)) = receive(stream.as_raw_fd()) else { return };
                drop(stream);
                let pid = state["pid"].as_i64().unwrap_or(0);
                let innermost_pid = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| {
                    s.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?.parse().ok()
                });
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let answered = serve(&notify, answer);
                    let _ = tx.send(Received { index, state, innermost_pid, answered });
                });
            }
        });
        Self { path, _dir: dir, states, thread: Some(thread) }
    }

    fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    /// What the agent received on its next connection (once it served it to the end).
    fn next(&self) -> Received {
        self.states.recv_timeout(Duration::from_secs(60)).expect("the agent got the seccomp descriptor")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Unblocks an accept still waiting: the thread then ends.
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One message: the descriptor (`SCM_RIGHTS`) and the JSON, which the runtime ends by closing.
/// `None` for a connection without a descriptor (the agent's own, from [`Agent::drop`]).
fn receive(fd: RawFd) -> Option<(OwnedFd, Value)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, notify) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).expect("recvmsg");
        let mut notify = None;
        for c in msg.cmsgs().expect("control messages") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just gave us these descriptors.
                notify = fds.first().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        (msg.bytes, notify?)
    };
    buf.truncate(n);
    // SAFETY: borrowed only for reading the rest; the caller's stream still owns it.
    let mut rest = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    rest.read_to_end(&mut buf).expect("reading the rest of the state");
    Some((notify, serde_json::from_slice(&buf).expect("the state is JSON")))
}

/// Answers every notification on `notify` with `answer` until no process uses the filter.
fn serve(notify: &OwnedFd, answer: Answer) -> Vec<i64> {
    let mut answered = Vec::new();
    loop {
        let mut pfd = libc::pollfd { fd: notify.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll reads and writes the one pollfd we own.
        let n = unsafe { libc::poll(&mut pfd, 1, 60_000) };
        if n <= 0 || pfd.revents & libc::POLLIN == 0 {
            // POLLHUP: every process of the filter is gone (or a minute passed: give up).
            return answered;
        }
        // SAFETY: seccomp_notif is plain data; the kernel wants it zeroed.
        let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: the ioctl writes one seccomp_notif into `req`.
        if unsafe { libc::ioctl(notify.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) } != 0 {
            // The process was killed meanwhile (ENOENT), or it is over.
            continue;
        }
        answered.push(i64::from(req.data.nr));
        let mut resp = libc::seccomp_notif_resp { id: req.id, val: 0, error: 0, flags: 0 };
        if let Answer::Error(errno) = answer {
            resp.error = -errno;
        }
        // SAFETY: the ioctl reads one seccomp_notif_resp from `resp`.
        unsafe { libc::ioctl(notify.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    }
}

/// A profile that notifies the agent at `listener` of `mkdir`/`mkdirat`.
fn notify_mkdir(listener: &str, metadata: &str) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": listener,
        "listenerMetadata": metadata,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    })
}

fn bundle_with(script: &str, profile: Value) -> Bundle {
    let bundle = Bundle::busybox(&["sh", "-c", script]);
    bundle.edit_config(|c| c["linux"]["seccomp"] = profile);
    bundle
}

const MKDIR_SCRIPT: &str = "mkdir /tmp/x; echo mkdir=$?; if [ -d /tmp/x ]; then echo exists; else echo absent; fi";

fn check_init_state(got: &Received, id: &str, bundle: &Path, metadata: &str) {
    let s = &got.state;
    assert_eq!(s["ociVersion"], "1.2.0", "{s}");
    assert_eq!(s["fds"], json!(["seccompFd"]), "{s}");
    assert_eq!(s["metadata"], metadata, "{s}");
    assert_eq!(s["state"]["id"], id, "{s}");
    assert_eq!(s["state"]["status"], "creating", "{s}");
    assert_eq!(s["state"]["bundle"], bundle.display().to_string(), "{s}");
    assert_eq!(s["state"]["annotations"]["org.example.agent"], "yes", "{s}");
    // The init's host pid, which is PID 1 of the container's namespace.
    assert!(s["pid"].as_i64().unwrap_or(0) > 1, "{s}");
    assert_eq!(s["state"]["pid"], s["pid"], "{s}");
    assert_eq!(got.innermost_pid, Some(1), "{s}");
}

#[test]
fn the_agent_gets_the_inits_descriptor_and_its_answers_are_what_the_container_sees() {
    let p = Paddock::new();
    // With noNewPrivileges (the filter is loaded right before execve) and without (before the
    // capabilities go): the agent answers EXDEV, and the directory is never made.
    for no_new_privs in [true, false] {
        let agent = Agent::start(vec![Answer::Error(libc::EXDEV)]);
        let bundle = bundle_with(MKDIR_SCRIPT, notify_mkdir(&agent.path_str(), "init-meta"));
        bundle.edit_config(|c| c["process"]["noNewPrivileges"] = json!(no_new_privs));
        bundle.annotate("org.example.agent", "yes");
        let id = unique("notify");
        let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &id]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(stdout(&out), "mkdir=1\nabsent\n", "{}", stderr(&out));
        assert!(
            stderr(&out).contains("can't create directory '/tmp/x': Invalid cross-device link"),
            "{}",
            stderr(&out)
        );
        let got = agent.next();
        check_init_state(&got, &id, bundle.path(), "init-meta");
        assert!(got.answered.contains(&libc::SYS_mkdir), "{got:?}");
        assert_nothing_left(&id);
    }

    // An agent that reports success without doing anything: mkdir says 0, nothing exists.
    let agent = Agent::start(vec![Answer::FakeSuccess]);
    let bundle = bundle_with(MKDIR_SCRIPT, notify_mkdir(&agent.path_str(), "fake"));
    let id = unique("notify");
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "mkdir=0\nabsent\n", "{}", stderr(&out));
    assert_eq!(agent.next().state["metadata"], "fake");
    assert_nothing_left(&id);
}

#[test]
fn an_exec_d_process_has_its_own_descriptor_sent_with_the_running_state() {
    let p = Paddock::new();
    // The init's filter goes to the agent first (answering EPERM), each exec'd process's
    // next: the second one gets fake successes.
    let agent = Agent::start(vec![Answer::Error(libc::EPERM), Answer::FakeSuccess]);
    let bundle = bundle_with("exec sleep 1000", notify_mkdir(&agent.path_str(), "exec-meta"));
    let id = unique("notify-exec");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    let init_pid = p.state(&id)["pid"].as_i64().expect("the init's pid");

    let out = p.ctl(&["exec", &id, "--", "sh", "-c", MKDIR_SCRIPT]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "mkdir=0\nabsent\n", "{}", stderr(&out));

    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    // The init's connection ends (it is served to the end) once the init is gone.
    let (first, second) = (agent.next(), agent.next());
    let (init, exec) = if first.index == 0 { (first, second) } else { (second, first) };
    assert_eq!(init.state["pid"], init_pid, "{}", init.state);
    assert_eq!(init.state["state"]["status"], "creating");
    assert!(init.answered.is_empty(), "the init made no mkdir: {init:?}");
    let s = &exec.state;
    assert_eq!(s["state"]["status"], "running", "{s}");
    assert_eq!(s["state"]["id"], id.as_str(), "{s}");
    assert_eq!(s["state"]["pid"], init_pid, "{s}");
    assert_eq!(s["metadata"], "exec-meta", "{s}");
    assert!(s["pid"].as_i64().is_some_and(|pid| pid != init_pid && pid > 1), "{s}");
    assert!(exec.answered.contains(&libc::SYS_mkdir), "{exec:?}");
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn an_exec_fails_when_the_agent_is_gone_and_the_container_runs_on() {
    let p = Paddock::new();
    let agent = Agent::start(vec![Answer::Error(libc::EPERM)]);
    let listener = agent.path_str();
    let bundle = bundle_with("exec sleep 1000", notify_mkdir(&listener, "m"));
    let id = unique("notify-gone");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    // The agent stops listening (its socket is removed); it still serves the init's filter.
    drop(agent);
    let out = p.ctl(&["exec", &id, "--", "sh", "-c", "echo should not run"]);
    assert!(!out.status.success(), "exec succeeded without an agent");
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains(&format!("linux.seccomp.listenerPath {listener}: sending the seccomp descriptor")),
        "{}",
        stderr(&out)
    );
    assert_eq!(p.state(&id)["status"], "running");
    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn profiles_the_runtime_cannot_serve_are_refused_and_leave_nothing() {
    let p = Paddock::new();
    let refused = |profile: Value, expected: &str| {
        let bundle = bundle_with("true", profile);
        let id = unique("notify-bad");
        let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
        assert!(!out.status.success(), "create succeeded");
        assert!(stderr(&out).contains(expected), "{expected:?} not in {}", stderr(&out));
        assert!(!p.ids().contains(&id), "{:?}", p.ids());
        assert_nothing_left(&id);
    };
    refused(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        "linux.seccomp.listenerPath: the profile uses SCMP_ACT_NOTIFY",
    );
    refused(
        json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}),
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action",
    );
    refused(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}),
        "linux.seccomp.listenerMetadata: must not be set without listenerPath",
    );
    refused(
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]
        }),
        "linux.seccomp.syscalls[0].names[0]: SCMP_ACT_NOTIFY cannot be used for \"sendmsg\"",
    );
    // No agent listens there: create fails (the runtime-spec wants an error when sending fails).
    let dir = tempfile::Builder::new().prefix("pdk-agent-").tempdir_in("/tmp").unwrap();
    let missing = dir.path().join("nobody.sock");
    refused(
        notify_mkdir(&missing.display().to_string(), "m"),
        &format!("linux.seccomp.listenerPath {}: sending the seccomp descriptor to the agent", missing.display()),
    );

    // listenerPath without a notifying rule is ignored, as the runtime-spec says.
    let bundle = bundle_with("echo ran", json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent"}));
    let id = unique("notify-quiet");
    assert_eq!(p.ctl_ok(&["run", "--rm", "--bundle", &bundle.path_str(), &id]), "ran\n");
    assert_nothing_left(&id);
}

#[test]
fn features_list_the_notify_action() {
    let p = Paddock::new();
    let features: Value = serde_json::from_str(&p.ctl_ok(&["features"])).unwrap();
    let seccomp = &features["linux"]["seccomp"];
    assert_eq!(seccomp["enabled"], true);
    assert!(seccomp["actions"].as_array().unwrap().contains(&json!("SCMP_ACT_NOTIFY")), "{seccomp}");
    assert!(
        seccomp["supportedFlags"].as_array().unwrap().contains(&json!("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")),
        "{seccomp}"
    );
}

#[test]
fn checkpoint_and_restore_of_a_container_whose_filter_notifies_an_agent_are_refused() {
    // CRIU carries a filter's program over but not its listener: the restored processes'
    // notified calls would fail with ENOSYS, and the agent would never hear of them.
    let p = Paddock::new();
    let agent = Agent::start(vec![Answer::Error(libc::EPERM)]);
    let listener = agent.path_str();
    let bundle = bundle_with("exec sleep 1000", notify_mkdir(&listener, "m"));
    let id = unique("notify-ckpt");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let out = p.ctl(&["checkpoint", "--image-path", &image.display().to_string(), &id]);
    assert!(!out.status.success(), "checkpoint succeeded");
    let expected = format!("its seccomp filter notifies the agent at linux.seccomp.listenerPath {listener}");
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(stderr(&out).contains("CRIU cannot carry over"), "{}", stderr(&out));
    assert_eq!(p.state(&id)["status"], "running");
    assert!(!image.join("paddock-checkpoint.json").exists());

    let restored = unique("notify-restore");
    let out = p.ctl(&[
        "restore",
        "-d",
        "--bundle",
        &bundle.path_str(),
        "--image-path",
        &dir.path().display().to_string(),
        &restored,
    ]);
    assert!(!out.status.success(), "restore succeeded");
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    assert!(!p.ids().contains(&restored));
    assert_nothing_left(&restored);

    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}
