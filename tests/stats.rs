//! runc's `events --stats` and `events --interval`: a container's usage from its own cgroups,
//! and the kernel's OOM kills as they happen (in runc's lines and in paddock's events).

use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;

use harness::{assert_nothing_left, unique, Bundle, Paddock};

/// The container's cgroup directory for `controller` (v1), from its init's `/proc/<pid>/cgroup`.
fn cgroup_file(init: i32, controller: &str, file: &str) -> String {
    let lines = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    let path = lines
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers.split(',').any(|c| c == controller).then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in {lines}"));
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{path}/{file}")).unwrap().trim().to_string()
}

#[test]
fn events_stats_reports_the_containers_own_cgroup() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    bundle.edit_config(|c| {
        c["linux"]["resources"] = serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 50}});
    });
    let id = unique("stats");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let init = p.state(&id)["pid"].as_i64().unwrap() as i32;
    assert!(harness::eventually(Duration::from_secs(10), || cgroup_file(init, "pids", "pids.current") == "3"));

    let line: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(line["type"], "stats");
    assert_eq!(line["id"], id.as_str());
    let data = &line["data"];
    assert_eq!(data["memory"]["usage"]["limit"], 67108864);
    assert_eq!(data["pids"]["limit"], 50);
    assert_eq!(data["pids"]["current"], 3, "{data}");
    assert!(data["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{data}");
    assert!(data["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{data}");
    assert_eq!(data["memory"]["raw"]["hierarchical_memory_limit"], 67108864, "{data}");
    assert_eq!(
        data["cpu"]["usage"]["percpu"].as_array().unwrap().len(),
        cgroup_file(init, "cpuacct", "cpuacct.usage_percpu").split_whitespace().count()
    );

    // A stopped container has no usage to report.
    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    let out = p.ctl(&["events", "--stats", &id]);
    assert!(!out.status.success());
    assert!(harness::stderr(&out).contains("is not running"), "{}", harness::stderr(&out));
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn an_oom_kill_is_reported_as_it_happens() {
    let p = Paddock::new();
    // tail of /dev/zero grows one endless line until the kernel kills it; the shell lives on.
    let bundle = Bundle::busybox(&["sh", "-c", "tail /dev/zero; echo survived; sleep 1000"]);
    bundle.edit_config(|c| {
        c["linux"]["resources"] = serde_json::json!({"memory": {"limit": 16777216, "swap": 16777216}});
    });
    let id = unique("oom");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);

    // runc's `events --interval`, following the created container.
    let mut events = p
        .command()
        .args(["events", "--interval", "1s", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Its first line says it is watching.
    let first: serde_json::Value =
        serde_json::from_str(&lines.recv_timeout(harness::command_timeout()).unwrap()).unwrap();
    assert_eq!(first["type"], "stats");

    p.ctl_ok(&["start", &id]);
    let deadline = std::time::Instant::now() + harness::command_timeout();
    let oom = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left).expect("no oom line from events --interval");
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["type"] == "oom" {
            break event;
        }
    };
    assert_eq!(oom, serde_json::json!({"type": "oom", "id": id}));
    // The container lives on (only tail was killed), and paddock's own events have it too.
    assert_eq!(p.state(&id)["status"], "running");
    let history = p.ctl_ok(&["events", &id]);
    assert!(history.lines().any(|l| l.contains(r#""type":"oom""#)), "{history}");

    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    // The stream ends by itself once the container has stopped.
    assert!(harness::wait_child(&mut events, harness::command_timeout()).is_some_and(|s| s.success()));
    // Reported once: the exit did not report it again.
    let history = p.ctl_ok(&["events", &id]);
    assert_eq!(history.lines().filter(|l| l.contains(r#""type":"oom""#)).count(), 1, "{history}");
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}
