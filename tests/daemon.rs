//! paddockd itself: started on demand by ctl, one per root, robust against bad input, and
//! restartable without losing running containers.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};

use harness::{bin_dir, process_alive, processes_mentioning, stderr, stdout, unique, Bundle, Paddock};

#[test]
fn ctl_starts_a_daemon_when_none_answers() {
    let p = Paddock::new();
    assert!(p.daemon_pid().is_none());
    assert_eq!(p.ctl_ok(&["list", "-q"]), "");
    let pid = p.daemon_pid().expect("a pid file");
    assert!(process_alive(pid));
    let mode = std::fs::metadata(p.root().join("paddockd.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The next call talks to the same daemon.
    p.ctl_ok(&["list"]);
    assert_eq!(p.daemon_pid(), Some(pid));
}

#[test]
fn concurrent_calls_on_a_fresh_root_start_one_daemon() {
    let p = Arc::new(Paddock::new());
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (p, barrier) = (p.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                p.ctl(&["list", "-q"])
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let root = p.root().display().to_string();
    let daemons: Vec<i32> = processes_mentioning(&format!("--root {root}"))
        .into_iter()
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "paddockd"))
        .collect();
    assert_eq!(daemons.len(), 1, "daemons for {root}: {daemons:?}");
}

#[test]
fn a_second_daemon_on_the_same_root_refuses_to_start() {
    let p = Paddock::new();
    p.ctl_ok(&["list"]);
    let out = harness::capture(std::process::Command::new(bin_dir().join("paddockd")).arg("--root").arg(p.root()));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("another paddockd"), "{}", stderr(&out));
    // The first one still serves.
    p.ctl_ok(&["list"]);
}

#[test]
fn garbage_on_the_socket_does_not_hurt_the_daemon() {
    let p = Paddock::new();
    p.ctl_ok(&["list"]);
    let pid = p.daemon_pid().unwrap();
    let sock = p.root().join("paddockd.sock");
    let attacks: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        u32::MAX.to_le_bytes().to_vec(),
        vec![0xff; 4096],
        vec![12, 0, 0, 0, b'P', b'A', b'D', b'D', b'O', b'C', b'K', 0, 99, 0, 0, 0],
        vec![3, 0, 0],
    ];
    for bytes in attacks {
        let mut s = UnixStream::connect(&sock).unwrap();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    // A valid hello followed by a garbage request gets a clear answer, then the hang-up.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&[
        10,
        0,
        0,
        0,
        b'P',
        b'A',
        b'D',
        b'D',
        b'O',
        b'C',
        b'K',
        0,
        wire::handshake::PROTOCOL_VERSION as u8,
        0,
    ])
    .unwrap();
    s.write_all(&[4, 0, 0, 0, 0xfe, 0xfe, 0xfe, 0xfe]).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(String::from_utf8_lossy(&reply).contains("malformed frame"), "{:?}", String::from_utf8_lossy(&reply));
    assert!(process_alive(pid));
    assert_eq!(p.daemon_pid(), Some(pid));
    p.ctl_ok(&["list"]);
}

#[test]
fn a_restarted_daemon_finds_its_containers_again() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("survivor");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let pid = p.state(&id)["pid"].as_i64().unwrap() as i32;
    let daemon = p.daemon_pid().unwrap();
    p.stop_daemon();
    assert!(!process_alive(daemon));
    assert!(process_alive(pid), "the container died with the daemon");
    // The next call starts a new daemon, which reconnects to the sandbox.
    let state = p.state(&id);
    assert_ne!(p.daemon_pid(), Some(daemon));
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"].as_i64().unwrap() as i32, pid);
    // Its gofer was taken over too: copies still work.
    let out = p.ctl(&["cp", &format!("{id}:/bin/sleep"), "-"]);
    assert!(out.status.success() && !out.stdout.is_empty(), "{}", stderr(&out));
    assert_eq!(state["gofer"]["status"], "running");
    p.ctl_ok(&["kill", &id, "KILL"]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 137);
    p.ctl_ok(&["delete", &id]);
    harness::assert_nothing_left(&id);
}

#[test]
fn a_rust_program_embeds_paddock_without_a_socket() {
    harness::require_root();
    let example = bin_dir().join("examples").join("embedded");
    assert!(example.is_file(), "{} is missing: cargo build --release --workspace --all-targets", example.display());
    let root = tempfile::Builder::new().prefix("pdk-embed-").tempdir_in("/tmp").unwrap();
    let out = harness::capture(std::process::Command::new(&example).arg(root.path()));
    assert_eq!(stdout(&out), "hello from a sandbox inside an embedding program\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    // No daemon and no socket were involved.
    assert!(!root.path().join("paddockd.sock").exists());
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "the example left state behind");
}

/// The nice value in a `/proc/.../stat` line.
fn nice_in_stat(stat: &str) -> i64 {
    // After the parenthesised name: state is field 3, nice field 19.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    fields[16].parse().expect("a nice value")
}

/// The nice values of paddockd's threads named `name`.
fn thread_nice_values(pid: i32, name: &str) -> Vec<i64> {
    let mut values = vec![];
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("paddockd's threads") {
        let dir = task.expect("a thread").path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else { continue };
        if comm.trim_end() == name {
            values.push(nice_in_stat(&std::fs::read_to_string(dir.join("stat")).expect("the thread's stat")));
        }
    }
    values
}

#[test]
fn the_wire_server_thread_runs_ahead_of_the_container_work() {
    let p = Paddock::new();
    p.ctl_ok(&["list"]);
    let pid = p.daemon_pid().expect("a pid file");
    assert_eq!(thread_nice_values(pid, "paddockd-server"), vec![-10]);
    // The actors' thread (the main one) keeps paddockd's own priority. (The threads that start
    // pool members, unnamed, run at nice 19 while they do.)
    let main = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).expect("the main thread's stat");
    assert_eq!(nice_in_stat(&main), 0);
}

#[test]
fn a_daemon_started_on_demand_waits_for_a_dying_predecessors_lock() {
    use std::os::fd::AsRawFd;
    let p = Paddock::new();
    p.ctl_ok(&["list"]);
    let first = p.daemon_pid().expect("a pid file");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(harness::eventually(std::time::Duration::from_secs(10), || !process_alive(first)));
    // What a dying daemon leaves for a moment: its socket closed, its lock still held (here by
    // the test, as by a helper it was starting until that helper executes; such a helper may
    // still hold it now, so the test waits for its turn).
    let lock = std::fs::File::open(p.root().join(wire::stateroot::LOCK_FILE)).unwrap();
    // SAFETY: flock on a descriptor of ours.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let list = p.command().arg("list").stdout(std::process::Stdio::piped()).spawn().unwrap();
    let log = p.root().join("paddockd.log");
    let waiting = harness::eventually(std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("waiting for the previous paddockd")
    });
    drop(lock);
    let out = harness::finish(list);
    assert!(waiting, "the new daemon did not wait: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert!(out.status.success(), "{}", stderr(&out));
    let second = p.daemon_pid().expect("a pid file");
    assert!(second != first && process_alive(second));
}
