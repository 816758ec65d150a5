//! The process a pid file names stands where the container does: clients read the container's
//! cgroups (containerd's metrics and OOM watch, conmon's OOM watch) and namespaces (Docker's
//! and podman's `container:` modes, CRI's pod members) through it.

use std::collections::BTreeMap;

use harness::{assert_nothing_left, capture, stderr, stdout, unique, Bundle, Paddock};

fn read_pid(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// `/proc/<pid>/cgroup` as hierarchy → path.
fn cgroups_of(pid: i32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_string(), path.to_string()))
        })
        .collect()
}

fn namespace(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap().display().to_string()
}

fn status_field(pid: i32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
        .unwrap()
}

#[test]
fn the_pid_files_process_is_in_the_containers_cgroups_and_namespaces_but_never_the_hosts_pid_namespace() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "trap 'exit 3' TERM; sleep 1000 & wait"]);
    let id = unique("pidfile");
    let pid_file = bundle.path().join("pid");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), "--pid-file", pid_file.to_str().unwrap(), &id]);
    let monitor = read_pid(&pid_file);
    let state = p.state(&id);
    let init = state["initPid"].as_i64().unwrap() as i32;
    assert_ne!(monitor, init, "detached, the pid file names a monitor");
    assert_eq!(state["pid"].as_i64().unwrap() as i32, monitor, "the state reports the pid file's pid");

    // Every cgroup of the container's, but the v1 freezer (pause and CRIU freeze exactly the
    // container's processes).
    let (ours, theirs) = (cgroups_of(monitor), cgroups_of(init));
    for (hierarchy, path) in &theirs {
        if hierarchy == "freezer" {
            assert_ne!(ours[hierarchy], *path, "the monitor stays out of the container's freezer");
        } else {
            assert_eq!(ours.get(hierarchy), Some(path), "hierarchy {hierarchy}: {ours:?} vs {theirs:?}");
        }
    }
    assert!(theirs.values().any(|path| path.contains(&id)), "{theirs:?}");
    // One task: it counts once in the container's pids cgroup.
    assert_eq!(status_field(monitor, "Threads"), "1");

    // The container's network, IPC and UTS namespaces; a PID namespace of its own, in which it
    // is alone, and which is neither the host's nor the container's.
    for kind in ["net", "ipc", "uts"] {
        assert_eq!(namespace(monitor, kind), namespace(init, kind), "{kind}");
        assert_ne!(namespace(monitor, kind), namespace(std::process::id() as i32, kind), "{kind}");
    }
    assert_ne!(namespace(monitor, "pid"), namespace(std::process::id() as i32, "pid"));
    assert_ne!(namespace(monitor, "pid"), namespace(init, "pid"));
    assert_eq!(status_field(monitor, "NSpid"), format!("{monitor}\t1"));

    // It is not one of the container's processes.
    let ps = p.ctl_ok(&["ps", &id]);
    assert!(ps.contains("sleep 1000") && !ps.contains("monitor-process"), "{ps}");

    // A paddock container that names the monitor's namespaces joins the container's: it sees
    // the container's processes and its network.
    let joiner = Bundle::busybox(&["sh", "-c", "ps -o pid,args; readlink /proc/self/ns/net"]);
    joiner.edit_config(|c| {
        // No UTS namespace of its own: no hostname to set.
        c.as_object_mut().unwrap().remove("hostname");
        c["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid", "path": format!("/proc/{monitor}/ns/pid")},
            {"type": "network", "path": format!("/proc/{monitor}/ns/net")},
            {"type": "ipc", "path": format!("/proc/{monitor}/ns/ipc")},
            {"type": "mount"}
        ]);
    });
    let joined = unique("joiner");
    let out = p.ctl(&["run", "--keep", "--bundle", &joiner.path_str(), &joined]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = stdout(&out);
    assert!(seen.contains("sleep 1000"), "the joiner does not see the container's processes: {seen}");
    assert!(seen.contains(&namespace(init, "net")), "the joiner is not in the container's network: {seen}");
    p.ctl_ok(&["delete", &joined]);

    // Another runtime that joins them gets the container's network, and for PID an empty
    // namespace: never the host's.
    let runc_root = tempfile::tempdir().unwrap();
    let runc_id = unique("runc-joiner");
    joiner.edit_config(|c| {
        c["process"]["args"] =
            serde_json::json!(["sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/pid"]);
    });
    let out = capture(std::process::Command::new("runc").arg("--root").arg(runc_root.path()).args([
        "run",
        "--bundle",
        &joiner.path_str(),
        &runc_id,
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = stdout(&out);
    assert!(seen.contains(&namespace(init, "net")), "runc's joiner is not in the container's network: {seen}");
    assert!(!seen.contains(&namespace(std::process::id() as i32, "pid")), "runc's joiner got the host's PIDs: {seen}");
    let _ = capture(
        std::process::Command::new("runc").arg("--root").arg(runc_root.path()).args(["delete", "-f", &runc_id]),
    );

    // The monitor ends as the container does, and leaves nothing behind.
    p.ctl_ok(&["kill", &id, "TERM"]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 3);
    p.ctl_ok(&["delete", &id]);
    assert!(harness::eventually(std::time::Duration::from_secs(10), || !harness::process_alive(monitor)));
    assert_nothing_left(&id);
}
