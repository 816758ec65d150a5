//! A pod's sandbox never waits on one container's long work, and a stuck sandbox holds only
//! its own pod: a hook that hangs (here until the test opens its gate) leaves every other
//! container of the pod, and every other pod, served; a stopped sandbox fails its pod's
//! operations with a timeout that names it, and serves them again once it runs.

use std::process::{Child, Stdio};
use std::time::Duration;

use harness::gate::Gate;
use harness::{capture_within, command_timeout, parent_pid, stderr, unique, wait_child, Bundle, Paddock};
use serde_json::{json, Value};

/// A hook (a host path: createContainer's resolves in the host's tree, startContainer's in
/// the container's) that waits at `gate` (as the hook sees it).
fn gated_hook(sh: &str, gate: &str) -> Value {
    json!({ "path": sh, "args": ["sh", "-c", format!("read line < {gate}")], "timeout": 600 })
}

/// Joins `bundle` to pod `pod` with containerd's CRI annotations.
fn member_of(bundle: &Bundle, pod: &str) {
    bundle.annotate("io.kubernetes.cri.container-type", "container");
    bundle.annotate("io.kubernetes.cri.sandbox-id", pod);
}

/// A pod's first container (sleeping), started; returns its id and its bundle (which must
/// outlive it).
fn start_pod(p: &Paddock, prefix: &str) -> (String, Bundle) {
    let pod = unique(prefix);
    let root = Bundle::busybox(&["sleep", "1000"]);
    root.annotate("io.kubernetes.cri.container-type", "sandbox");
    root.annotate("io.kubernetes.cri.sandbox-id", &pod);
    p.ctl_ok(&["create", "--bundle", &root.path_str(), &pod]);
    p.ctl_ok(&["start", &pod]);
    (pod, root)
}

/// A member of `pod` sleeping, started; returns its id and its bundle.
fn start_member(p: &Paddock, pod: &str, prefix: &str) -> (String, Bundle) {
    let id = unique(prefix);
    let bundle = Bundle::busybox(&["sleep", "1001"]);
    member_of(&bundle, pod);
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    (id, bundle)
}

/// What `echo WORD` exec'd into container `id` prints.
fn echo(p: &Paddock, id: &str, word: &str) -> String {
    p.ctl_ok(&["exec", id, "--", "sh", "-c", &format!("echo {word}")]).trim().to_string()
}

/// What a user does with a running container: exec into it, signal it, wait for it, see its
/// state. Each completes, with what it should say.
fn exec_kill_wait(p: &Paddock, id: &str) {
    assert_eq!(echo(p, id, "served"), "served");
    // SIGKILL: the init is PID 1 of its own PID namespace, which ignores what it has no
    // handler for.
    p.ctl_ok(&["kill", id, "KILL"]);
    let waited: Value = serde_json::from_str(&p.ctl_ok(&["wait", id])).expect("wait prints JSON");
    assert_eq!(waited["exitStatus"], 137, "{id} ended by SIGKILL");
    assert_eq!(p.state(id)["status"], "stopped");
}

/// A container of a new pod runs from create to its exit.
fn another_pod_runs(p: &Paddock) {
    let id = unique("iso-other");
    let bundle = Bundle::busybox(&["sh", "-c", "exit 7"]);
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    let waited: Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).expect("wait prints JSON");
    assert_eq!(waited["exitStatus"], 7);
    p.ctl_ok(&["delete", &id]);
}

fn spawn_start(p: &Paddock, id: &str) -> Child {
    let mut cmd = p.command();
    cmd.args(["start", id]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().expect("running ctl start")
}

#[test]
fn a_hung_hook_holds_neither_the_rest_of_its_pod_nor_another_pod() {
    let p = Paddock::new();
    let (pod, _pod_bundle) = start_pod(&p, "iso-pod");
    let (b1, _b1_bundle) = start_member(&p, &pod, "iso-b1");
    let (b2, _b2_bundle) = start_member(&p, &pod, "iso-b2");

    let gates_dir = tempfile::Builder::new().prefix("pdk-gates-").tempdir_in("/tmp").unwrap();
    let mut create_gate = Gate::new(gates_dir.path(), "create");
    let mut start_gate = Gate::new(gates_dir.path(), "start");
    let a = unique("iso-a");
    let bundle = Bundle::busybox(&["sleep", "1002"]);
    member_of(&bundle, &pod);
    bundle.add_bind(&gates_dir.path().to_string_lossy(), "/gates", &["rw"]);
    bundle.edit_config(|c| {
        c["hooks"] = json!({
            // Run by paddockd, in A's namespaces, resolving paths on the host.
            "createContainer": [gated_hook("/bin/sh", &create_gate.path().to_string_lossy())],
            // Run by the pod's sandbox, in A's mount tree.
            "startContainer": [gated_hook("/bin/sh", "/gates/start")],
        })
    });
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &a]);
    // A pod member's init (and its create hooks) come at its start.
    let mut start_a = spawn_start(&p, &a);

    create_gate.wait_for_hook();
    exec_kill_wait(&p, &b1);
    create_gate.open();

    // Now the sandbox itself runs A's startContainer hook: the pod goes on meanwhile.
    start_gate.wait_for_hook();
    exec_kill_wait(&p, &b2);
    another_pod_runs(&p);
    assert_eq!(echo(&p, &pod, "pod"), "pod");
    assert!(wait_child(&mut start_a, Duration::ZERO).is_none(), "A's start did not wait for its hook");
    start_gate.open();

    let status = wait_child(&mut start_a, command_timeout()).expect("A's start finishes once its hook does");
    let mut err = String::new();
    if let Some(mut e) = start_a.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(status.success(), "start of A failed: {err}");
    assert_eq!(p.state(&a)["status"], "running");
    assert_eq!(p.ctl_ok(&["exec", &a, "--", "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]).trim(), "sleep 1002");
}

/// Sends SIGCONT to a stopped sandbox when dropped, so that a failing test leaves nothing
/// stopped behind.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Self {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGCONT);
    }
}

/// A stopped sandbox answers nothing: its pod's operations fail with a timeout that names
/// the sandbox, the container and the operation, while other pods are served as usual. Once
/// it runs again it answers what it had received (the timed-out signal is delivered late, as
/// any request that reached it: the caller only stopped waiting) and serves its pod again.
#[test]
fn a_stopped_sandbox_times_out_its_own_pod_only_and_serves_it_again_once_continued() {
    let p = Paddock::new();
    let (stuck, _stuck_bundle) = start_pod(&p, "iso-stuck");
    let (healthy, _healthy_bundle) = start_pod(&p, "iso-healthy");
    let init = p.state(&stuck)["pid"].as_i64().expect("pid") as i32;
    let sandbox = parent_pid(init).expect("the container's init has a parent: its sandbox");
    assert_ne!(sandbox, 1, "the sandbox of {stuck} is its init's parent");

    let stopped = Stopped::new(sandbox);
    // SIGWINCH: harmless to `sleep`, so the container still runs when the signal arrives late.
    let out = capture_within(p.command().args(["kill", &stuck, "WINCH"]), Duration::from_secs(60));
    assert!(!out.status.success(), "a signal through a stopped sandbox succeeded");
    let err = stderr(&out);
    assert!(err.contains("timed out"), "{err}");
    assert!(err.contains(&format!("container {stuck:?}")) && err.contains("signal 28"), "{err}");
    // The other pod does not wait on it.
    assert_eq!(echo(&p, &healthy, "healthy"), "healthy");
    another_pod_runs(&p);
    assert_eq!(p.state(&stuck)["status"], "running", "state comes from paddockd, not the stopped sandbox");
    drop(stopped);

    assert_eq!(echo(&p, &stuck, "back"), "back");
    let out = p.ctl(&["kill", &stuck, "KILL"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let waited: Value = serde_json::from_str(&p.ctl_ok(&["wait", &stuck])).expect("wait prints JSON");
    assert_eq!(waited["exitStatus"], 137);
}
