//! A busybox bundle through runc's lifecycle: create, start, state, kill, wait, delete.

use std::sync::{Arc, Barrier};

use harness::{assert_nothing_left, process_alive, stderr, stdout, unique, Bundle, Paddock};

#[test]
fn created_running_stopped_deleted() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "echo started; exec sleep 1000"]);
    let id = unique("life");
    let pid_file = bundle.path().join("pid");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);

    let state = p.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["bundle"], bundle.path_str().as_str());
    let pid = state["initPid"].as_i64().unwrap() as i32;
    assert!(pid > 0 && process_alive(pid));
    // The pid file names the container's monitor (what runc's callers waitpid on), which
    // lives as long as the container, and the state reports the same pid.
    let monitor: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().expect("a pid without a newline");
    assert!(process_alive(monitor));
    assert_eq!(state["pid"].as_i64().unwrap() as i32, monitor, "state and pid file disagree");
    let monitor_fd = harness::pidfd(monitor).unwrap();

    p.ctl_ok(&["start", &id]);
    let state = p.state(&id);
    assert_eq!(state["status"], "running");
    assert_eq!(state["initPid"].as_i64().unwrap() as i32, pid, "the init stays the container's init");
    assert_eq!(state["pid"].as_i64().unwrap() as i32, monitor, "state and pid file disagree");
    // The init now runs the user's program.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).starts_with("sleep"), "{:?}", String::from_utf8_lossy(&cmdline));
    let listed = p.ctl_ok(&["list"]);
    assert!(listed.lines().any(|l| l.starts_with(&id) && l.contains("running")), "{listed}");

    p.ctl_ok(&["kill", &id, "KILL"]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 137);
    assert_eq!(waited["id"], id.as_str());
    assert!(harness::wait_pidfd(&monitor_fd, std::time::Duration::from_secs(10)), "the monitor outlived the container");
    let state = p.state(&id);
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["pid"], 0);
    assert!(!process_alive(pid));

    p.ctl_ok(&["delete", &id]);
    assert!(!p.root().join(&id).exists(), "the state directory outlived delete");
    let out = p.ctl(&["state", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert_nothing_left(&id);
}

#[test]
fn container_output_and_exit_code_through_a_bundle() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "echo from $(hostname) as $(id -u); cat /proc/self/status | grep NoNewPrivs; exit 7",
    ]);
    let id = unique("code");
    let out = p.ctl(&["run", "--keep", "--bundle", &bundle.path_str(), &id]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from bbox as 0\nNoNewPrivs:\t1\n");
    // With --keep the stopped container stays until deleted.
    assert_eq!(p.state(&id)["status"], "stopped");
    p.ctl_ok(&["delete", &id]);
}

#[test]
fn the_read_only_root_stays_read_only() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "touch /bin/x && echo wrote; touch /tmp/ok && echo tmp-ok"]);
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &unique("ro")]);
    assert_eq!(stdout(&out), "tmp-ok\n", "{}", stderr(&out));
    assert!(!bundle.path().join("rootfs/bin/x").exists());
}

#[test]
fn a_second_create_of_the_same_id_fails() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("twice");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(p.ids(), vec![id.clone()]);
    p.ctl_ok(&["delete", &id]);
}

#[test]
fn ten_concurrent_creates_of_one_id_exactly_one_succeeds() {
    let p = Arc::new(Paddock::new());
    // Start the daemon first so the race is between creates, not daemon starts.
    p.ctl_ok(&["list"]);
    let bundle = Arc::new(Bundle::busybox(&["sleep", "1000"]));
    let id = unique("race");
    let barrier = Arc::new(Barrier::new(10));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (p, bundle, id, barrier) = (p.clone(), bundle.clone(), id.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                p.ctl(&["create", "--bundle", &bundle.path_str(), &id])
            })
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "{:?}", outs.iter().map(stderr).collect::<Vec<_>>());
    for o in outs.iter().filter(|o| !o.status.success()) {
        let e = stderr(o);
        assert!(e.contains("already exists") || e.contains("being created"), "{e}");
    }
    assert_eq!(p.ids(), vec![id.clone()]);
    assert_eq!(p.state(&id)["status"], "created");
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn operations_in_the_wrong_status_are_refused() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("status");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    let out = p.ctl(&["start", &id]);
    assert!(stderr(&out).contains("cannot start it in status running"), "{}", stderr(&out));
    let out = p.ctl(&["delete", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(p.state(&id)["status"], "running");
    let pid = p.state(&id)["pid"].as_i64().unwrap() as i32;
    p.ctl_ok(&["delete", "--force", &id]);
    assert!(!process_alive(pid));
    assert_nothing_left(&id);
    // --force on what is gone succeeds, as runc's does; without it, it is an error.
    p.ctl_ok(&["delete", "--force", &id]);
    assert!(!p.ctl(&["delete", &id]).status.success());
}

#[test]
fn a_created_container_can_be_killed_and_deleted() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("created");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let pid = p.state(&id)["pid"].as_i64().unwrap() as i32;
    p.ctl_ok(&["kill", &id, "9"]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 137);
    assert!(!process_alive(pid));
    let out = p.ctl(&["kill", &id, "TERM"]);
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn bad_signals_and_specs_are_clear_errors() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("bad");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let out = p.ctl(&["kill", &id, "SIGNOPE"]);
    assert!(stderr(&out).contains("unknown signal"), "{}", stderr(&out));
    p.ctl_ok(&["delete", &id]);

    let broken = Bundle::busybox(&["true"]);
    std::fs::write(broken.path().join("config.json"), "{\"process\": 5}").unwrap();
    let out = p.ctl(&["create", "--bundle", &broken.path_str(), &unique("broken")]);
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    let empty = tempfile::tempdir().unwrap();
    let out = p.ctl(&["create", "--bundle", empty.path().to_str().unwrap(), &unique("nobundle")]);
    assert!(stderr(&out).contains("config.json"), "{}", stderr(&out));
    let missing_root = Bundle::busybox(&["true"]);
    std::fs::remove_dir_all(missing_root.path().join("rootfs")).unwrap();
    let nid = unique("noroot");
    let out = p.ctl(&["create", "--bundle", &missing_root.path_str(), &nid]);
    assert!(stderr(&out).contains("rootfs"), "{}", stderr(&out));
    assert!(p.ids().is_empty());
    assert_nothing_left(&nid);
}
