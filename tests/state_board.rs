//! `state` and `list` are answered while another container's create is under way: here a
//! create held in its createRuntime hook (on a FIFO the test holds) until the test lets it
//! go. Meanwhile the other container's state is right through its life: running, stopped by
//! a signal, gone once deleted.

use std::process::{Child, Stdio};
use std::time::Duration;

use harness::gate::Gate;
use harness::{command_timeout, unique, wait_child, Bundle, Paddock};
use serde_json::{json, Value};

fn list(p: &Paddock) -> Vec<Value> {
    let out = p.ctl_ok(&["list", "--format", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("list prints JSON ({e}): {out}"))
}

#[test]
fn state_and_list_answer_while_another_create_is_held() {
    let p = Paddock::new();
    let x = unique("board-x");
    let x_bundle = Bundle::busybox(&["sleep", "1000"]);
    p.ctl_ok(&["create", "--bundle", &x_bundle.path_str(), &x]);
    p.ctl_ok(&["start", &x]);
    let x_pid = p.state(&x)["pid"].as_i64().expect("a running container has a pid");

    let gates = tempfile::Builder::new().prefix("pdk-gates-").tempdir_in("/tmp").expect("gate dir");
    let mut gate = Gate::new(gates.path(), "gate");
    let y = unique("board-y");
    let y_bundle = Bundle::busybox(&["sleep", "1001"]);
    y_bundle.edit_config(|c| {
        c["hooks"] = json!({
            "createRuntime": [{
                "path": "/bin/sh",
                "args": ["sh", "-c", format!("read line < {}", gate.path().display())],
                "timeout": 600
            }]
        })
    });
    let mut create_y: Child = p
        .command()
        .args(["create", "--bundle", &y_bundle.path_str(), &y])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running ctl create");
    gate.wait_for_hook();

    // Y's create is held in its hook: X's state and the list are answered, and right.
    let state = p.state(&x);
    assert_eq!((state["status"].as_str(), state["pid"].as_i64()), (Some("running"), Some(x_pid)), "{state}");
    let listed = list(&p);
    let x_listed: Vec<&Value> = listed.iter().filter(|c| c["id"] == x.as_str()).collect();
    assert_eq!(x_listed.len(), 1, "{listed:?}");
    assert_eq!(x_listed[0]["status"], "running");
    assert!(listed.iter().all(|c| c["id"] != y.as_str()), "a container still being created is listed: {listed:?}");
    let y_state = p.ctl(&["state", &y]);
    assert!(!y_state.status.success(), "state of a container still being created succeeded");

    // X stops: once its wait has the exit, its state says so.
    p.ctl_ok(&["kill", &x, "KILL"]);
    let waited: Value = serde_json::from_str(&p.ctl_ok(&["wait", &x])).expect("wait prints JSON");
    assert_eq!(waited["exitStatus"], 137);
    let state = p.state(&x);
    assert_eq!(state["status"], "stopped", "{state}");
    // (The OCI state says 0 for "no process".)
    assert_eq!(state["pid"].as_i64().unwrap_or(0), 0, "a stopped container has no pid: {state}");

    // X is deleted: once the delete replied, it is gone from state and list.
    p.ctl_ok(&["delete", &x]);
    let gone = p.ctl(&["state", &x]);
    assert!(!gone.status.success(), "state of a deleted container succeeded");
    assert!(list(&p).iter().all(|c| c["id"] != x.as_str()));
    assert!(wait_child(&mut create_y, Duration::ZERO).is_none(), "Y's create did not wait for its hook");

    // Y's create finishes once its hook does, and Y is there.
    gate.open();
    let status = wait_child(&mut create_y, command_timeout()).expect("Y's create finishes once its hook does");
    assert!(status.success(), "create of Y failed");
    assert_eq!(p.state(&y)["status"], "created");
    assert!(list(&p).iter().any(|c| c["id"] == y.as_str() && c["status"] == "created"));
    p.ctl_ok(&["delete", "--force", &y]);
}
