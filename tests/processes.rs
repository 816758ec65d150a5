//! exec, wait, signals, ps and the sandbox's duties as init, on real processes.

use std::process::Stdio;
use std::time::Duration;

use harness::{
    cgroups_mentioning, eventually, namespace_pid, namespace_pids, parent_pid, process_alive, stderr, stdout, unique,
    zombie_children, Bundle, Paddock,
};

/// A started container running `sleep 1000`.
fn sleeping(p: &Paddock) -> (Bundle, String) {
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("proc");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    (bundle, id)
}

fn init_pid(p: &Paddock, id: &str) -> i32 {
    p.state(id)["pid"].as_i64().unwrap() as i32
}

fn wait_json(p: &Paddock, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&p.ctl_ok(args)).expect("wait prints JSON")
}

#[test]
fn exec_runs_in_created_and_running_containers_with_the_processs_exit_code() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("exec");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    // Created: the container's namespaces exist, so exec works before start.
    let out = p.ctl(&["exec", &id, "--", "sh", "-c", "echo created; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), "created\n");
    p.ctl_ok(&["start", &id]);

    let out = p.ctl_ok(&[
        "exec",
        "--env",
        "GREETING=hello",
        "--cwd",
        "/tmp",
        "--user",
        "65534:65534",
        &id,
        "--",
        "sh",
        "-c",
        "echo $GREETING $(pwd) $(id -u):$(id -g) $PATH",
    ]);
    assert_eq!(out, "hello /tmp 65534:65534 /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");

    // runc's form: the whole process as JSON.
    let process = bundle.path().join("process.json");
    std::fs::write(
        &process,
        serde_json::json!({
            "args": ["sh", "-c", "echo $MODE in $(pwd); exit 5"],
            "env": ["MODE=process-file", "PATH=/bin"],
            "cwd": "/etc",
            "user": {"uid": 0, "gid": 0}
        })
        .to_string(),
    )
    .unwrap();
    let out = p.ctl(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out), "process-file in /etc\n");

    // A program killed by a signal: 128 + N, as a shell reports it.
    let out = p.ctl(&["exec", &id, "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137));

    // A missing program is a clear error naming it.
    let out = p.ctl(&["exec", &id, "--", "/no/such/program"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/no/such/program"), "{}", stderr(&out));

    // Exec needs a live container.
    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    let out = p.ctl(&["exec", &id, "--", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
}

#[test]
fn detached_exec_writes_its_pid_and_wait_pid_collects_its_status_once() {
    let p = Paddock::new();
    let (_bundle, id) = sleeping(&p);
    // (Without --pid-file: a pid file names a monitor that collects the status itself.)
    p.ctl_ok(&["exec", "--detach", &id, "--", "sh", "-c", "echo $$ > /tmp/sleeper.pid; exec sleep 2000"]);
    let mut ns_text = String::new();
    assert!(eventually(Duration::from_secs(10), || {
        ns_text = p.ctl(&["exec", &id, "--", "cat", "/tmp/sleeper.pid"]).stdout.iter().map(|b| *b as char).collect();
        !ns_text.trim().is_empty()
    }));
    let procs: Vec<i32> = serde_json::from_str(&p.ctl_ok(&["ps", "--format", "json", &id])).unwrap();
    let host_pid = *procs
        .iter()
        .find(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x002000\x00"))
        .expect("the exec'd sleep");
    assert!(process_alive(host_pid));
    assert_eq!(namespace_pid(host_pid).unwrap().to_string(), ns_text.trim());
    let ns_pid = namespace_pid(host_pid).unwrap();
    assert_ne!(ns_pid, host_pid, "the exec'd process is not in the container's PID namespace");

    // kill --pid signals that one process, not the init.
    p.ctl_ok(&["kill", "--pid", &ns_pid.to_string(), &id, "TERM"]);
    let waited = wait_json(&p, &["wait", "--pid", &ns_pid.to_string(), &id]);
    assert_eq!(waited["exitStatus"], 143);
    assert!(!process_alive(host_pid));
    assert_eq!(p.state(&id)["status"], "running", "kill --pid reached the init");

    // The status was collected: a second wait is a clear error.
    let out = p.ctl(&["wait", "--pid", &ns_pid.to_string(), &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&ns_pid.to_string()), "{}", stderr(&out));

    // A status is kept until collected, however long after the exit, under the pid the
    // container knew the process by.
    p.ctl_ok(&["exec", "--detach", &id, "--", "sh", "-c", "echo $$ > /tmp/exec.pid; exit 6"]);
    // The sandbox reaps it; its status waits for us.
    assert!(eventually(Duration::from_secs(10), || p
        .ctl(&["exec", &id, "--", "test", "-s", "/tmp/exec.pid"])
        .status
        .success()));
    let sandbox = parent_pid(init_pid(&p, &id)).unwrap();
    assert!(eventually(Duration::from_secs(10), || zombie_children(sandbox).is_empty()));
    let ns_pid = p.ctl_ok(&["exec", &id, "--", "cat", "/tmp/exec.pid"]).trim().to_string();
    assert_eq!(wait_json(&p, &["wait", "--pid", &ns_pid, &id])["exitStatus"], 6);
    assert!(!p.ctl(&["wait", "--pid", &ns_pid, &id]).status.success());

    // --rootpid names a process in the sandbox's PID namespace (the container's nests in it).
    p.ctl_ok(&["exec", "--detach", &id, "--", "sleep", "3000"]);
    let procs: Vec<i32> = serde_json::from_str(&p.ctl_ok(&["ps", "--format", "json", &id])).unwrap();
    let host_pid = *procs
        .iter()
        .find(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x003000\x00"))
        .expect("the exec'd sleep");
    let levels = namespace_pids(host_pid);
    assert!(levels.len() >= 3, "host, sandbox and container: {levels:?}");
    let root_pid = levels[levels.len() - 2].to_string();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(host_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(wait_json(&p, &["wait", "--rootpid", &root_pid, &id])["exitStatus"], 137);
    assert!(!p.ctl(&["wait", "--rootpid", &root_pid, &id]).status.success());

    // A pid that never existed is an error too.
    let out = p.ctl(&["wait", "--pid", "99999", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("99999"), "{}", stderr(&out));
}

#[test]
fn concurrent_waiters_and_late_waiters_get_the_same_status() {
    let p = Paddock::new();
    let (_bundle, id) = sleeping(&p);
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            p.command()
                .args(["wait", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    p.ctl_ok(&["kill", &id, "9"]);
    for waiter in waiters {
        let out = harness::finish(waiter);
        assert!(out.status.success(), "{}", stderr(&out));
        let waited: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(waited, serde_json::json!({"id": id, "exitStatus": 137}));
    }
    // After the stop, as often as asked.
    for _ in 0..3 {
        assert_eq!(wait_json(&p, &["wait", &id])["exitStatus"], 137);
    }
    // Signalling a stopped container: only --all is allowed (to clean up what is left).
    let out = p.ctl(&["kill", &id, "TERM"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    p.ctl_ok(&["kill", "--all", &id, "KILL"]);
    // Bad signals name what was wrong.
    let (_bundle, live) = sleeping(&p);
    for bad in ["SIGNOPE", "0x9", "65", "-1"] {
        let out = p.ctl(&["kill", &live, bad]);
        assert!(!out.status.success(), "kill {bad} succeeded");
        assert!(stderr(&out).contains(bad.trim_start_matches('-')), "kill {bad}: {}", stderr(&out));
    }
    assert_eq!(p.state(&live)["status"], "running");
}

#[test]
fn kill_all_with_sigkill_returns_when_every_daemonized_process_is_gone() {
    let p = Paddock::new();
    let (_bundle, id) = sleeping(&p);
    // Twenty daemons: double-forked, in their own sessions, their parents gone.
    p.ctl_ok(&["exec", &id, "--", "sh", "-c", "for i in $(seq 20); do (setsid sleep 3000 &); done"]);
    let pids: Vec<i32> = serde_json::from_str(&p.ctl_ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids.len(), 21, "init and 20 daemons expected: {pids:?}");
    let daemons: Vec<i32> = pids.iter().copied().filter(|&pid| pid != init_pid(&p, &id)).collect();
    // Orphans go to the container's init, PID 1 of its namespace, as with runc.
    for pid in &daemons {
        assert_eq!(parent_pid(*pid), Some(init_pid(&p, &id)), "daemon {pid} was not re-parented to the init");
    }
    // The container's cgroup holds them all.
    let procs: Vec<i32> = cgroups_mentioning(&id)
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|text| text.lines().filter_map(|l| l.parse().ok()).collect::<Vec<i32>>())
        .collect();
    for pid in &pids {
        assert!(procs.contains(pid), "{pid} is not in the container's cgroup");
    }

    p.ctl_ok(&["kill", "--all", &id, "KILL"]);
    let left: Vec<i32> = pids.iter().copied().filter(|&pid| process_alive(pid)).collect();
    assert!(left.is_empty(), "kill --all KILL returned while {left:?} still ran");
    assert_eq!(wait_json(&p, &["wait", &id])["exitStatus"], 137);
}

#[test]
fn a_foreground_run_forwards_sigterm_and_exits_143() {
    let p = Paddock::new();
    let mut run = p
        .command()
        // PID 1 of its container: it ends on TERM only with a handler for it (as under runc).
        .args(["run", "--rm", "--", "sh", "-c", "trap 'exit 143' TERM; echo ready; sleep 100 & wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The container has printed: it runs, and ctl waits for it.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(run.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let id = p.ids().pop().expect("the run's container is listed");
    let pid = init_pid(&p, &id);
    assert!(process_alive(pid));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(143), "the signal was not forwarded to the container");
    assert!(!process_alive(pid));
    assert!(p.ids().is_empty(), "run --rm left {:?}", p.ids());

    // The same for an exec in the foreground, with USR1 (a signal sleep dies of, too).
    let (_bundle, id) = sleeping(&p);
    let mut exec = p
        .command()
        .args(["exec", &id, "--", "sh", "-c", "echo ready; exec sleep 100"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(exec.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(exec.id() as i32), nix::sys::signal::Signal::SIGUSR1).unwrap();
    assert_eq!(exec.wait().unwrap().code(), Some(128 + libc::SIGUSR1));
    assert_eq!(p.state(&id)["status"], "running", "the exec's signal reached the init");
}

#[test]
fn a_hundred_orphaned_zombies_are_reaped() {
    let p = Paddock::new();
    let (_bundle, id) = sleeping(&p);
    let sandbox = parent_pid(init_pid(&p, &id)).unwrap();
    // Each child outlives its parent and is handed to the sandbox, which must reap it.
    let out = p.ctl(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "for i in $(seq 100); do (sh -c 'echo $$ >> /tmp/orphans' &); done; echo spawned",
    ]);
    assert_eq!(stdout(&out), "spawned\n", "{}", stderr(&out));
    assert!(
        eventually(Duration::from_secs(20), || {
            p.ctl_ok(&["exec", &id, "--", "wc", "-l", "/tmp/orphans"]).trim().starts_with("100")
        }),
        "the orphans did not all run"
    );
    assert!(
        eventually(Duration::from_secs(20), || zombie_children(sandbox).is_empty()),
        "zombies left under the sandbox: {:?}",
        zombie_children(sandbox)
    );
    // ps agrees: only the init is left.
    let pids: Vec<i32> = serde_json::from_str(&p.ctl_ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, vec![init_pid(&p, &id)]);
}

#[test]
fn ps_lists_pid_ppid_uid_start_and_command() {
    let p = Paddock::new();
    let (_bundle, id) = sleeping(&p);
    p.ctl_ok(&["exec", "--detach", "--user", "65534", &id, "--", "sleep", "1234"]);
    let table = p.ctl_ok(&["ps", &id]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["PID", "PPID", "UID", "STARTED", "COMMAND"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{table}");
    let init = init_pid(&p, &id).to_string();
    assert!(rows.iter().any(|r| r[0] == init && r[2] == "0" && r[4..] == ["sleep", "1000"]), "{table}");
    assert!(rows.iter().any(|r| r[2] == "65534" && r[4..] == ["sleep", "1234"]), "{table}");
    // Not for a container that has stopped, nor one that does not exist.
    p.ctl_ok(&["kill", "--all", &id, "KILL"]);
    let out = p.ctl(&["ps", &id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    let out = p.ctl(&["ps", "nope"]);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}
