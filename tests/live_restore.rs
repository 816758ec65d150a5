//! Live restore: paddockd killed with SIGKILL at any moment and started again loses nothing
//! and invents nothing. Containers run on while it is down; exits that happened meanwhile are
//! collected afterwards; a sandbox killed meanwhile is found stopped and lost; no zombie and
//! no stray helper is left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{gofer_pid, pidfd, process_alive, unique, wait_pidfd, zombie_children, Bundle, Paddock};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn sigkill_daemon(p: &Paddock) {
    let Some(pid) = p.daemon_pid() else { return };
    let Ok(fd) = pidfd(pid) else { return };
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    assert!(wait_pidfd(&fd, Duration::from_secs(10)), "paddockd survived SIGKILL");
}

fn meta(p: &Paddock, id: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(p.root().join(id).join("meta.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn exit_code(p: &Paddock, id: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", id])).unwrap();
    v["exitStatus"].as_i64().unwrap()
}

#[test]
fn twenty_containers_survive_a_killed_daemon_and_what_happened_meanwhile_is_known() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let ids: Vec<String> = (0..20).map(|_| unique("live")).collect();
    for (i, id) in ids.iter().enumerate() {
        // USR1 makes container i exit with 10+i.
        let script = format!("trap 'exit {}' USR1; while :; do sleep 1 & wait; done", 10 + i);
        p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), id, "--", "sh", "-c", &script]);
    }
    let inits: Vec<i32> = ids.iter().map(|id| p.state(id)["pid"].as_i64().unwrap() as i32).collect();
    let lost = &ids[5];
    let lost_sandbox = meta(&p, lost)["sandbox"]["pid"].as_i64().unwrap() as i32;
    let lost_gofer = gofer_pid(lost).expect("the gofer of the container whose sandbox dies");

    sigkill_daemon(&p);
    // While paddockd is down: five containers exit with their own codes, one sandbox dies.
    let mut gone = Vec::new();
    for init in &inits[..5] {
        gone.push(pidfd(*init).unwrap());
        kill(Pid::from_raw(*init), Signal::SIGUSR1).unwrap();
    }
    gone.push(pidfd(lost_sandbox).unwrap());
    kill(Pid::from_raw(lost_sandbox), Signal::SIGKILL).unwrap();
    for fd in &gone {
        assert!(wait_pidfd(fd, Duration::from_secs(10)));
    }
    for init in &inits[6..] {
        assert!(process_alive(*init), "a container died with paddockd");
    }

    // The next ctl starts a new paddockd, which takes everything over.
    let list: Vec<serde_json::Value> = serde_json::from_str(&p.ctl_ok(&["list", "--format", "json"])).unwrap();
    let status_of = |id: &str| list.iter().find(|s| s["id"] == id).map(|s| s["status"].as_str().unwrap().to_string());
    let running = ids.iter().filter(|id| status_of(id).as_deref() == Some("running")).count();
    let stopped = ids.iter().filter(|id| status_of(id).as_deref() == Some("stopped")).count();
    assert_eq!((running, stopped), (14, 6), "{list:?}");
    for (i, id) in ids[..5].iter().enumerate() {
        assert_eq!(exit_code(&p, id), 10 + i as i64, "container {i}");
    }
    assert_eq!(exit_code(&p, lost), 137);
    let events = p.ctl_ok(&["events", lost]);
    assert!(events.contains("\"sandbox-lost\""), "{events}");
    for (id, init) in ids[6..].iter().zip(&inits[6..]) {
        assert_eq!(p.state(id)["pid"].as_i64().unwrap() as i32, *init);
    }
    // Nothing unsupervised: no zombie of paddockd, and no gofer without its sandbox.
    let daemon = p.daemon_pid().unwrap();
    assert!(zombie_children(daemon).is_empty());
    assert!(!process_alive(lost_gofer), "the gofer of the lost sandbox was left running");
    for id in &ids[6..] {
        assert!(gofer_pid(id).is_some(), "the gofer of running container {id} is gone");
    }
    for id in &ids {
        p.ctl_ok(&["delete", "--force", id]);
    }
    for id in &ids {
        harness::assert_nothing_left(id);
    }
}

/// A small deterministic generator, seeded from the clock (the seed is printed, so a failing
/// run can be repeated).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

#[test]
fn killing_the_daemon_at_random_points_of_creates_and_deletes_leaves_no_half_container() {
    let p = Arc::new(Paddock::new());
    let bundle = Arc::new(Bundle::busybox(&["sleep", "1000"]));
    let seed = std::env::var("PADDOCK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("PADDOCK_SEED={seed}");
    let mut rng = Lcg(seed);
    p.ctl_ok(&["list"]);
    let stop = Arc::new(AtomicBool::new(false));
    let attempted = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let (p, bundle, stop, attempted) = (p.clone(), bundle.clone(), stop.clone(), attempted.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = unique("churn");
                attempted.lock().unwrap().push(id.clone());
                let _ = harness::status_of(
                    p.command()
                        .args(["run", "-d", "--bundle", &bundle.path_str(), &id])
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null()),
                );
                // Keep every third one; delete the rest.
                if n % 3 != 0 {
                    let _ = p.ctl(&["delete", "--force", &id]);
                }
                n += 1;
            }
        })
    };
    for _ in 0..8 {
        // The kill lands at a random point of the worker's creates and deletes.
        std::thread::sleep(Duration::from_millis(10 + rng.next(250)));
        sigkill_daemon(&p);
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();

    // Every container directory on disk holds a metadata file that parses (paddockd's reserved
    // names hold a create or delete cut short, emptied when paddockd starts: checked below).
    for entry in std::fs::read_dir(p.root()).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() && !entry.file_name().to_string_lossy().starts_with("paddockd.") {
            let text = std::fs::read_to_string(entry.path().join("meta.json"))
                .unwrap_or_else(|e| panic!("{}: no readable meta.json ({e})", entry.path().display()));
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{}: torn meta.json ({e})", entry.path().display()));
        }
    }
    // A paddockd that starts now finds each container whole: listed, with a live process if
    // it is said to run, and a directory; nothing else has a directory.
    let list: Vec<serde_json::Value> = serde_json::from_str(&p.ctl_ok(&["list", "--format", "json"])).unwrap();
    let listed: Vec<String> = list.iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
    for state in &list {
        let status = state["status"].as_str().unwrap();
        assert!(["created", "running", "stopped"].contains(&status), "{state}");
        if status != "stopped" {
            assert!(process_alive(state["pid"].as_i64().unwrap() as i32), "{state}");
        }
    }
    // The helper pool's directory is paddockd's own, and no container's.
    let dirs: Vec<String> = std::fs::read_dir(p.root())
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir() && e.file_name() != "paddockd.pool")
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for dir in &dirs {
        assert!(listed.contains(dir), "directory {dir} belongs to no container");
    }
    for id in &listed {
        p.ctl_ok(&["delete", "--force", id]);
    }
    // Whatever was attempted is now either deleted or never was: nothing of it remains.
    for id in attempted.lock().unwrap().iter() {
        harness::assert_nothing_left(id);
    }
    let daemon = p.daemon_pid().unwrap();
    assert!(zombie_children(daemon).is_empty());
}

#[test]
fn helpers_started_but_never_recorded_are_killed_and_their_cgroups_removed() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("stray");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let sandbox = meta(&p, &id)["sandbox"]["pid"].as_i64().unwrap() as i32;
    let gofer = gofer_pid(&id).expect("the gofer");
    let gone = [pidfd(sandbox).unwrap(), pidfd(gofer).unwrap()];
    sigkill_daemon(&p);
    // As if paddockd had died after starting the helpers and before recording them.
    let path = p.root().join(&id).join("meta.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m["status"] = "Creating".into();
    for field in ["sandbox", "gofer", "init"] {
        m[field] = serde_json::Value::Null;
    }
    std::fs::write(&path, m.to_string()).unwrap();

    let list = p.ctl_ok(&["list", "--format", "json"]);
    assert!(!list.contains(&id), "a half-created container is listed: {list}");
    for fd in &gone {
        assert!(
            wait_pidfd(fd, Duration::from_secs(10)),
            "a stray helper survived; paddockd.log:\n{}",
            std::fs::read_to_string(p.root().join("paddockd.log")).unwrap_or_default()
        );
    }
    assert!(!p.root().join(&id).exists());
    harness::assert_nothing_left(&id);
    assert!(
        harness::cgroups_mentioning(&id).is_empty() && !sandbox_cgroup_exists(&id),
        "the sandbox's cgroup of {id} remains"
    );
}

/// Whether the cgroup of a sandbox's own processes is still there in some hierarchy (its name
/// does not carry the id, so `cgroups_mentioning` finds only its parent).
fn sandbox_cgroup_exists(id: &str) -> bool {
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .any(|h| h.path().join("paddock").join(id).join("paddockd.sandbox").exists())
}
