//! The helper pool (`pool_size`): a create takes a gofer and a sandbox started ahead of need,
//! the pool refills, a crash right after the handover loses nothing and leaves no unrecorded
//! pool member behind the next paddockd, an orderly stop leaves nothing of the pool, and a
//! spec whose sandbox cannot be made ahead of time gets a new one (a user namespace is not
//! such a reason: the sandbox is never in it).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use harness::gate::Gate;
use harness::{
    assert_nothing_left, eventually, gofer_pid, pidfd, process_alive, stdout, unique, wait_pidfd, Bundle, Paddock,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Pool members waiting under `root`: (pid, program name), from their state directory (in
/// their environment) and their placeholder id (on their command line).
fn waiting_members(root: &Path) -> Vec<(i32, String)> {
    let marker = format!("PADDOCK_STATE_DIR={}/paddockd.pool/", root.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|v| v.starts_with(marker.as_bytes())) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.get(1).map(String::as_str) == Some("--id") && args.get(2).is_some_and(|id| id.starts_with("pool-")) {
            let program = args[0].rsplit('/').next().unwrap_or_default().to_string();
            if process_alive(pid) {
                found.push((pid, program));
            }
        }
    }
    // A sandbox's spawner is its child, with the command line and environment it started with.
    found.retain(|(pid, _)| {
        !harness::parent_pid(*pid).is_some_and(|parent| cmdline(parent).contains("paddock-sandbox"))
    });
    found.sort();
    found
}

/// Waits until the pool of `root` holds one gofer and one sandbox; returns their pids.
fn full_pool(root: &Path) -> (i32, i32) {
    let mut pair = None;
    let full = eventually(Duration::from_secs(20), || {
        let members = waiting_members(root);
        let of = |name: &str| members.iter().find(|(_, p)| p == name).map(|(pid, _)| *pid);
        pair = of("paddock-gofer").zip(of("paddock-sandbox"));
        members.len() == 2 && pair.is_some()
    });
    assert!(full, "the pool did not fill: {:?}", waiting_members(root));
    pair.unwrap_or_default()
}

fn meta(p: &Paddock, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(p.root().join(id).join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json is JSON")
}

fn recorded_pid(meta: &serde_json::Value, helper: &str) -> i32 {
    meta[helper]["pid"].as_i64().unwrap_or_else(|| panic!("no {helper} pid in {meta}")) as i32
}

fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ")
}

#[test]
fn a_create_takes_the_pooled_pair_names_it_after_the_container_and_the_pool_refills() {
    let p = Paddock::new();
    p.start_daemon_with_config("pool_size = 1\n");
    let (gofer, sandbox) = full_pool(p.root());
    let bundle = Bundle::busybox(&["sh", "-c", "echo hello from the pool; exit 3"]);
    let id = unique("taker");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let m = meta(&p, &id);
    assert_eq!(recorded_pid(&m, "sandbox"), sandbox, "the container's sandbox is the pooled one");
    assert_eq!(recorded_pid(&m, "gofer"), gofer, "the container's gofer is the pooled one");
    // Its helpers now say whose they are, as helpers started for it would.
    assert!(cmdline(sandbox).contains(&format!("paddock-sandbox --id {id} --control-fd 3")), "{}", cmdline(sandbox));
    assert_eq!(gofer_pid(&id), Some(gofer), "{}", cmdline(gofer));
    // The sandbox's spawner (its child) too, once the container is configured in it (and
    // the container's init, its fork, until that executes).
    let named = harness::processes_mentioning(&format!("paddock-sandbox --id {id} --control-fd 3"));
    let spawner = named.iter().find(|pid| harness::parent_pid(**pid) == Some(sandbox));
    assert!(named.contains(&sandbox) && spawner.is_some(), "the sandbox and its spawner: {named:?}");
    assert!(p.root().join(&id).join("sandbox.sock").exists() && p.root().join(&id).join("gofer.sock").exists());
    p.ctl_ok(&["start", &id]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).expect("wait is JSON");
    assert_eq!(waited["exitStatus"], 3);
    // A new pair waits for the next create.
    let (new_gofer, new_sandbox) = full_pool(p.root());
    assert!(new_gofer != gofer && new_sandbox != sandbox);
    // And the next create takes it.
    let second = unique("taker");
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &second]);
    assert_eq!((stdout(&out).as_str(), out.status.code()), ("hello from the pool\n", Some(3)));
    assert!(!process_alive(new_sandbox) && !process_alive(new_gofer), "the second create took the refilled pair");
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
    assert_nothing_left(&second);
}

#[test]
fn the_pool_refills_only_once_no_container_operation_is_in_progress() {
    let p = Paddock::new();
    p.start_daemon_with_config("pool_size = 1\n");
    full_pool(p.root());
    // X's start is held in its poststart hook (on the host), so a container operation is in
    // progress for as long as the test wants.
    let gates = tempfile::Builder::new().prefix("pdk-gates-").tempdir_in("/tmp").expect("gate dir");
    let mut gate = Gate::new(gates.path(), "poststart");
    let x = unique("held");
    let x_bundle = Bundle::busybox(&["sleep", "1000"]);
    x_bundle.edit_config(|c| {
        c["hooks"] = serde_json::json!({
            "poststart": [{
                "path": "/bin/sh",
                "args": ["sh", "-c", format!("read line < {}", gate.path().display())],
                "timeout": 600
            }]
        })
    });
    p.ctl_ok(&["create", "--bundle", &x_bundle.path_str(), &x]);
    // X took the pooled pair; the pool refills while nothing else is going on.
    let (gofer, sandbox) = full_pool(p.root());
    let mut start_x = p
        .command()
        .args(["start", &x])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running ctl start");
    gate.wait_for_hook();
    // Y takes the refilled pair while X's start is in progress.
    let y = unique("taker");
    let y_bundle = Bundle::busybox(&["sleep", "1000"]);
    p.ctl_ok(&["create", "--bundle", &y_bundle.path_str(), &y]);
    let m = meta(&p, &y);
    assert_eq!((recorded_pid(&m, "sandbox"), recorded_pid(&m, "gofer")), (sandbox, gofer), "Y took the pooled pair");
    // No member starts while X's start is held: a refill starts within milliseconds of its
    // cause, and this watches for far longer.
    let early = eventually(Duration::from_millis(500), || !waiting_members(p.root()).is_empty());
    assert!(!early, "the pool refilled during a start: {:?}", waiting_members(p.root()));
    gate.open();
    assert!(start_x.wait().expect("ctl start").success(), "X's start failed");
    // Once it is over, the pool refills.
    full_pool(p.root());
    for id in [&x, &y] {
        p.ctl_ok(&["delete", "--force", id]);
        assert_nothing_left(id);
    }
}

/// The nice value of every thread of process `pid` (`/proc/PID/task/TID/stat`, field 19).
fn thread_nice_values(pid: i32) -> Vec<i32> {
    let mut values = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The fields after the command name, which is in parentheses: state is field 3.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        if let Some(nice) = after.split_whitespace().nth(16).and_then(|n| n.parse().ok()) {
            values.push(nice);
        }
    }
    values
}

#[test]
fn members_wait_at_the_lowest_priority_and_a_container_runs_at_paddockds() {
    let p = Paddock::new();
    p.start_daemon_with_config("pool_size = 1\n");
    let daemon = p.daemon_pid().expect("paddockd's pid");
    let own = thread_nice_values(daemon)[0];
    let (gofer, sandbox) = full_pool(p.root());
    let spawner: Vec<i32> = std::fs::read_to_string(format!("/proc/{sandbox}/task/{sandbox}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect();
    assert_eq!(spawner.len(), 1, "a pooled sandbox has its spawner: {spawner:?}");
    for pid in [gofer, sandbox, spawner[0]] {
        let values = thread_nice_values(pid);
        assert!(!values.is_empty() && values.iter().all(|n| *n == 19), "pool member {pid}: {values:?}");
    }
    let bundle = Bundle::busybox(&["sh", "-c", "cut -d' ' -f19 /proc/self/stat"]);
    let id = unique("nice");
    let out = p.ctl(&["run", "--keep", "--bundle", &bundle.path_str(), &id]);
    // The container's process inherits from the spawner: it runs at paddockd's priority.
    assert_eq!((stdout(&out).trim(), out.status.code()), (own.to_string().as_str(), Some(0)));
    let m = meta(&p, &id);
    assert_eq!((recorded_pid(&m, "sandbox"), recorded_pid(&m, "gofer")), (sandbox, gofer), "the pooled pair was taken");
    for pid in [gofer, sandbox, spawner[0]] {
        let values = thread_nice_values(pid);
        assert!(!values.is_empty() && values.iter().all(|n| *n == own), "helper {pid} after the handover: {values:?}");
    }
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn paddockd_killed_after_a_handover_keeps_the_container_and_its_successor_kills_the_unrecorded_members() {
    let p = Paddock::new();
    let config = "pool_size = 1\n";
    p.start_daemon_with_config(config);
    let (gofer, sandbox) = full_pool(p.root());
    let bundle = Bundle::busybox(&["sh", "-c", "echo restored; exit 7"]);
    let id = unique("crashed");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let m = meta(&p, &id);
    assert_eq!((recorded_pid(&m, "sandbox"), recorded_pid(&m, "gofer")), (sandbox, gofer));
    let (left_gofer, left_sandbox) = full_pool(p.root());

    let daemon = p.daemon_pid().expect("paddockd runs");
    let fd = pidfd(daemon).expect("pidfd");
    kill(Pid::from_raw(daemon), Signal::SIGKILL).expect("SIGKILL");
    assert!(wait_pidfd(&fd, Duration::from_secs(10)), "paddockd survived SIGKILL");
    assert!(process_alive(left_gofer) && process_alive(left_sandbox), "the pool outlives a killed paddockd");

    p.start_daemon_with_config(config);
    // Ready means the take-over is over: the members no container records are gone.
    assert!(!process_alive(left_gofer) && !process_alive(left_sandbox), "unrecorded pool members were kept");
    assert!(process_alive(sandbox) && process_alive(gofer), "the handed-over helpers were killed");
    assert_eq!(p.state(&id)["status"], "created");
    p.ctl_ok(&["start", &id]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).expect("wait is JSON");
    assert_eq!(waited["exitStatus"], 7);
    // The new paddockd has a pool of its own.
    let (new_gofer, new_sandbox) = full_pool(p.root());
    assert!(![left_gofer, left_sandbox, gofer, sandbox].contains(&new_gofer));
    assert!(![left_gofer, left_sandbox, gofer, sandbox].contains(&new_sandbox));
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn an_orderly_stop_leaves_nothing_of_the_pool() {
    let p = Paddock::new();
    p.start_daemon_with_config("pool_size = 2\n");
    let mut members = Vec::new();
    let full = eventually(Duration::from_secs(20), || {
        members = waiting_members(p.root());
        members.len() == 4
    });
    assert!(full, "the pool of 2 did not fill: {members:?}");
    p.stop_daemon();
    for (pid, program) in &members {
        assert!(!process_alive(*pid), "pooled {program} {pid} outlived paddockd");
    }
    assert!(waiting_members(p.root()).is_empty());
    assert!(!p.root().join("paddockd.pool").exists(), "the pool's directory is left");
}

#[test]
fn a_spec_that_joins_a_namespace_by_path_gets_a_new_sandbox_and_leaves_the_pooled_one() {
    let p = Paddock::new();
    p.start_daemon_with_config("pool_size = 1\n");
    let (_, sandbox) = full_pool(p.root());
    // The network namespace of a process of this test's (the host's).
    let mut holder = std::process::Command::new("sleep").arg("1000").spawn().expect("sleep");
    let path = format!("/proc/{}/ns/net", holder.id());
    let bundle = Bundle::busybox(&["sh", "-c", "echo joined"]);
    bundle.edit_config(|c| {
        let namespaces = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
        namespaces.retain(|n| n["type"] != "network");
        namespaces.push(serde_json::json!({"type": "network", "path": path}));
    });
    let id = unique("joiner");
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
    let m = meta(&p, &id);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(out.status.success(), "{out:?}");
    assert_ne!(recorded_pid(&m, "sandbox"), sandbox, "a sandbox that joins a namespace was taken from the pool");
    assert!(
        waiting_members(p.root()).iter().any(|(pid, _)| *pid == sandbox),
        "the pooled sandbox no longer waits: {:?}",
        waiting_members(p.root())
    );
    p.ctl_ok(&["start", &id]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).expect("wait is JSON");
    assert_eq!(waited["exitStatus"], 0);
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn with_no_pool_nothing_waits() {
    let p = Paddock::new();
    p.start_daemon_with_config("pool_size = 0\n");
    let bundle = Bundle::busybox(&["true"]);
    let id = unique("nopool");
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &id]);
    assert!(out.status.success(), "{out:?}");
    assert!(waiting_members(p.root()).is_empty());
    assert!(!p.root().join("paddockd.pool").exists());
}

#[test]
fn a_user_namespaced_spec_takes_the_pooled_sandbox_which_its_namespace_does_not_change() {
    // The sandbox is never in the container's user namespace (the spawner makes that with
    // the container's init): a pooled one is what a new one would be.
    let p = Paddock::new();
    p.start_daemon_with_config("pool_size = 1\n");
    let (_, sandbox) = full_pool(p.root());
    let bundle = Bundle::busybox(&["cat", "/proc/self/uid_map"]);
    let chown = std::process::Command::new("chown")
        .args(["-R", "-h", "100000:100000"])
        .arg(bundle.rootfs())
        .status()
        .expect("chown");
    assert!(chown.success());
    bundle.edit_config(|c| {
        c["linux"]["namespaces"].as_array_mut().expect("namespaces").push(serde_json::json!({"type": "user"}));
        let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    let id = unique("userns");
    let created = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
    assert!(created.status.success(), "{created:?}");
    assert_eq!(
        recorded_pid(&meta(&p, &id), "sandbox"),
        sandbox,
        "the user-namespaced container took no pooled sandbox"
    );
    p.ctl_ok(&["delete", "--force", &id]);
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &unique("userns")]);
    let map: Vec<String> = stdout(&out).split_whitespace().map(str::to_string).collect();
    assert_eq!(map, ["0", "100000", "65536"], "{out:?}");
    assert_nothing_left(&id);
}
