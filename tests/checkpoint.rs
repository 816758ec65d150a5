//! checkpoint and restore with CRIU (runc's command line): a container's processes carried
//! over with their memory, tmpfs contents and descriptors; refusals that leave nothing made.
//!
//! CRIU 4.1 or later must be installed (`.ci/install-criu`); these tests fail without it.

use std::process::Stdio;
use std::time::Duration;

use harness::{
    assert_nothing_left, capture, eventually, install_probe, namespace_pid, parent_pid, process_alive, status_of,
    stderr, stdout, unique, Bundle, Paddock,
};

/// A process whose count lives in its shell's memory: printed and written to the tmpfs
/// `/tmp/count` ten times a second. A process started afresh would count from 1 again.
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i; echo $i > /tmp/count; usleep 100000; done";

fn counter_bundle() -> Bundle {
    Bundle::busybox(&["sh", "-c", COUNTER])
}

/// Runs `ctl` with `args` detached, its stdout appended to `out` (stdin on /dev/null), and
/// requires success.
fn detached_with_stdout(p: &Paddock, args: &[&str], out: &std::path::Path) {
    // Opened for appending, as a log is: CRIU checks that a file it hands back has the size it
    // had at the checkpoint unless it is written that way.
    let file = std::fs::OpenOptions::new().create(true).append(true).open(out).unwrap();
    let errors = tempfile::tempfile().unwrap();
    let status =
        status_of(p.command().args(args).stdin(Stdio::null()).stdout(file).stderr(errors.try_clone().unwrap()));
    let mut message = String::new();
    let mut errors = errors;
    std::io::Seek::rewind(&mut errors).unwrap();
    std::io::Read::read_to_string(&mut errors, &mut message).unwrap();
    assert!(status.success(), "ctl {args:?} failed: {status}: {message}");
}

/// The numbers a counter printed to `file`.
fn counts(file: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(file).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The count the container wrote to its `/tmp/count` (read by an exec that has ended when
/// this returns).
fn count_inside(p: &Paddock, id: &str) -> u64 {
    p.ctl_ok(&["exec", id, "--", "cat", "/tmp/count"]).trim().parse().unwrap_or(0)
}

fn init_pid(p: &Paddock, id: &str) -> i32 {
    p.state(id)["initPid"].as_i64().unwrap() as i32
}

#[test]
fn a_checkpointed_container_stops_and_its_restore_carries_on_counting_into_the_new_stdout() {
    let p = Paddock::new();
    let bundle = counter_bundle();
    let dir = tempfile::tempdir().unwrap();
    let (image, work) = (dir.path().join("image"), dir.path().join("work"));
    let (before, after) = (dir.path().join("before.out"), dir.path().join("after.out"));
    let id = unique("ckpt");
    detached_with_stdout(&p, &["run", "-d", "--bundle", &bundle.path_str(), &id], &before);
    assert!(eventually(Duration::from_secs(10), || counts(&before).len() >= 5), "the counter does not count");
    let old_pid = init_pid(&p, &id);
    let links: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{old_pid}/fd/{fd}")).map(|l| l.display().to_string()).unwrap_or_default()
        })
        .collect();

    let out = p.ctl(&[
        "checkpoint",
        "--image-path",
        &image.display().to_string(),
        "--work-path",
        &work.display().to_string(),
        &id,
    ]);
    assert!(out.status.success(), "checkpoint failed: {}", stderr(&out));
    // As with runc: once checkpoint returns, the container is stopped and its process gone.
    assert_eq!(p.state(&id)["status"], "stopped");
    assert!(!process_alive(old_pid));
    assert!(image.join("paddock-checkpoint.json").is_file() && work.join("dump.log").is_file());
    // runc's record of the standard descriptors, which clients read: what each linked to.
    let descriptors: Vec<String> = serde_json::from_slice(&std::fs::read(image.join("descriptors.json")).unwrap())
        .expect("a JSON array of strings");
    assert_eq!(descriptors, links);
    assert!(descriptors[1].ends_with("before.out"), "{descriptors:?}");
    let last = *counts(&before).last().unwrap();
    p.ctl_ok(&["delete", &id]);

    detached_with_stdout(
        &p,
        &[
            "restore",
            "-d",
            "--bundle",
            &bundle.path_str(),
            "--image-path",
            &image.display().to_string(),
            "--work-path",
            &work.display().to_string(),
            &id,
        ],
        &after,
    );
    assert_eq!(p.state(&id)["status"], "running");
    let pid = init_pid(&p, &id);
    // The restored init is PID 1 of its own (restored) PID namespace again, and the new
    // sandbox's child.
    assert_eq!(namespace_pid(pid), Some(1));
    let sandbox = parent_pid(pid).unwrap();
    assert!(std::fs::read(format!("/proc/{sandbox}/cmdline")).unwrap().starts_with(b"/"), "a sandbox");
    assert!(String::from_utf8_lossy(&std::fs::read(format!("/proc/{sandbox}/cmdline")).unwrap())
        .contains("paddock-sandbox"));
    // It goes on from its own memory, and writes to the restoring caller's stdout.
    assert!(eventually(Duration::from_secs(10), || counts(&after).len() >= 3), "no output after the restore");
    let resumed = counts(&after);
    assert!(resumed[0] > last, "restarted instead of restored: {} after {last}", resumed[0]);
    assert!(resumed.windows(2).all(|w| w[1] == w[0] + 1), "{resumed:?}");
    // Its tmpfs came back with it, and exec, kill and wait work as for any container; a new
    // process gets a small pid again (CRIU ran with the namespace's pids moved out of its way).
    assert!(count_inside(&p, &id) >= resumed[0]);
    let exec_pid: u32 = p.ctl_ok(&["exec", &id, "--", "sh", "-c", "echo $$"]).trim().parse().unwrap();
    assert!(exec_pid < 1000, "pid {exec_pid}");
    p.ctl_ok(&["kill", &id, "KILL"]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 137, "{waited}");
    assert!(!process_alive(pid));
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn leave_running_keeps_the_container_and_its_image_restores_beside_it_under_another_id() {
    let p = Paddock::new();
    let bundle = counter_bundle();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let (original, copy) = (unique("ckpt-orig"), unique("ckpt-copy"));
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &original]);
    // Far enough that a counter started afresh could not have caught up by the checks below.
    assert!(eventually(Duration::from_secs(20), || count_inside(&p, &original) >= 30));
    let pid = init_pid(&p, &original);
    let before = count_inside(&p, &original);

    // podman passes --leave-running twice.
    p.ctl_ok(&[
        "checkpoint",
        "--leave-running",
        "--leave-running",
        "--image-path",
        &image.display().to_string(),
        &original,
    ]);
    assert_eq!(p.state(&original)["status"], "running");
    assert_eq!(init_pid(&p, &original), pid);
    assert!(process_alive(pid));

    p.ctl_detached(&[
        "restore",
        "-d",
        "--bundle",
        &bundle.path_str(),
        "--image-path",
        &image.display().to_string(),
        &copy,
    ]);
    let copy_pid = init_pid(&p, &copy);
    assert_ne!(copy_pid, pid);
    // Its own cgroup, not the original's.
    let cgroups = std::fs::read_to_string(format!("/proc/{copy_pid}/cgroup")).unwrap();
    assert!(cgroups.contains(&format!("/{copy}/{copy}")), "{cgroups}");
    let resumed = count_inside(&p, &copy);
    assert!(resumed >= before, "the copy restarted instead of going on: {resumed} after {before}");
    // Both go on.
    let (a, b) = (count_inside(&p, &original), count_inside(&p, &copy));
    assert!(eventually(Duration::from_secs(10), || count_inside(&p, &original) > a && count_inside(&p, &copy) > b));
    for id in [&original, &copy] {
        p.ctl_ok(&["delete", "--force", id]);
        assert_nothing_left(id);
    }
}

#[test]
fn checkpoint_and_restore_refuse_what_they_cannot_do_and_leave_nothing() {
    let p = Paddock::new();
    let bundle = counter_bundle();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image").display().to_string();

    // A created container has no process of the user's yet.
    let created = unique("ckpt-created");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &created]);
    let out = p.ctl(&["checkpoint", "--image-path", &image, &created]);
    assert!(!out.status.success() && stderr(&out).contains("in status created"), "{}", stderr(&out));
    assert_eq!(p.state(&created)["status"], "created");
    p.ctl_ok(&["delete", &created]);

    // An exec'd process is a second process tree: refused, and the container keeps running.
    let busy = unique("ckpt-busy");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &busy]);
    p.ctl_detached(&["exec", "-d", &busy, "--", "sleep", "1000"]);
    let out = p.ctl(&["checkpoint", "--image-path", &image, &busy]);
    assert!(!out.status.success() && stderr(&out).contains("exec'd process"), "{}", stderr(&out));
    assert_eq!(p.state(&busy)["status"], "running");
    assert!(!std::path::Path::new(&image).join("paddock-checkpoint.json").exists());

    // An image directory that already holds a checkpoint is not overwritten.
    let single = unique("ckpt-single");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &single]);
    let first = dir.path().join("first").display().to_string();
    p.ctl_ok(&["checkpoint", "--leave-running", "--image-path", &first, &single]);
    let out = p.ctl(&["checkpoint", "--image-path", &first, &single]);
    assert!(!out.status.success() && stderr(&out).contains("already holds a checkpoint"), "{}", stderr(&out));
    assert_eq!(p.state(&single)["status"], "running");

    // A restore from a directory without a checkpoint: a clear error, no container.
    let ghost = unique("ckpt-ghost");
    let empty = tempfile::tempdir().unwrap();
    let out = p.ctl(&[
        "restore",
        "-d",
        "--bundle",
        &bundle.path_str(),
        "--image-path",
        &empty.path().display().to_string(),
        &ghost,
    ]);
    assert!(!out.status.success() && stderr(&out).contains("paddock-checkpoint.json"), "{}", stderr(&out));
    assert!(!p.ids().contains(&ghost));
    assert_nothing_left(&ghost);

    // CRIU itself fails (the output file it should hand back changed size, and was not
    // opened for appending): the error says why, and the new container is gone entirely.
    let truncating = unique("ckpt-trunc");
    let output = dir.path().join("plain.out");
    let file = std::fs::File::create(&output).unwrap();
    let status = status_of(
        p.command()
            .args(["run", "-d", "--bundle", &bundle.path_str(), &truncating])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null()),
    );
    assert!(status.success());
    assert!(eventually(Duration::from_secs(10), || counts(&output).len() >= 3));
    let plain_image = dir.path().join("plain-image").display().to_string();
    p.ctl_ok(&["checkpoint", "--image-path", &plain_image, &truncating]);
    p.ctl_ok(&["delete", &truncating]);
    let out = capture(p.command().args([
        "restore",
        "-d",
        "--bundle",
        &bundle.path_str(),
        "--image-path",
        &plain_image,
        &truncating,
    ]));
    assert!(!out.status.success() && stderr(&out).contains("opened for appending"), "{}", stderr(&out));
    assert!(!p.ids().contains(&truncating));
    assert_nothing_left(&truncating);

    // Flags paddock cannot honour are named.
    let out = p.ctl(&["checkpoint", "--pre-dump", "--image-path", &image, &single]);
    assert!(!out.status.success() && stderr(&out).contains("--pre-dump"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());

    for id in [&busy, &single] {
        p.ctl_ok(&["delete", "--force", id]);
        assert_nothing_left(id);
    }
}

/// A host directory for bind mounts, with a directory `data` and a file `greeting` in it
/// (and room for a checkpoint's image): (the directory, data, greeting).
fn host_sources() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let host = tempfile::tempdir().unwrap();
    let data = host.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let greeting = host.path().join("greeting");
    std::fs::write(&greeting, "hello from the host\n").unwrap();
    (host, data, greeting)
}

#[test]
fn bind_mounts_are_bound_again_from_the_host_on_restore() {
    let p = Paddock::new();
    let (host, data, greeting) = host_sources();
    let bundle =
        Bundle::busybox(&["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /data/count; usleep 100000; done"]);
    bundle.add_bind(&data.display().to_string(), "/data", &["rbind", "rw"]);
    bundle.add_bind(&greeting.display().to_string(), "/etc/greeting", &["bind", "ro"]);
    let host_count = || std::fs::read_to_string(data.join("count")).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let image = host.path().join("image").display().to_string();
    let id = unique("ckpt-bind");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    assert!(eventually(Duration::from_secs(10), || host_count().is_some_and(|n| n >= 5)));

    p.ctl_ok(&["checkpoint", "--image-path", &image, &id]);
    let at_checkpoint = host_count().unwrap();
    p.ctl_ok(&["delete", &id]);
    p.ctl_detached(&["restore", "-d", "--bundle", &bundle.path_str(), "--image-path", &image, &id]);

    // The restored process writes on into the host's directory, from where it was.
    assert!(eventually(Duration::from_secs(10), || host_count().is_some_and(|n| n > at_checkpoint + 2)));
    assert_eq!(p.ctl_ok(&["exec", &id, "--", "cat", "/etc/greeting"]), "hello from the host\n");
    let out = p.ctl(&["exec", &id, "--", "sh", "-c", "echo changed > /etc/greeting"]);
    assert!(!out.status.success(), "the read-only bind came back writable");
    assert_eq!(std::fs::read_to_string(&greeting).unwrap(), "hello from the host\n");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

/// As containerd's `ctr containers restore` without `--rw` does: the restore's bundle has a
/// fresh copy of the image's root filesystem, without the mount points the container's
/// create made in the old one. The restore makes them (directories, and a file for a bind
/// mount of a file) before CRIU mounts there, as runc's does.
#[test]
fn a_restore_onto_a_fresh_root_filesystem_makes_the_mount_points_it_lacks() {
    let p = Paddock::new();
    let (host, data, greeting) = host_sources();
    let old = counter_bundle();
    old.edit_config(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/run/deep/state", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]
        }))
    });
    old.add_bind(&data.display().to_string(), "/srv/data", &["rbind", "rw"]);
    old.add_bind(&greeting.display().to_string(), "/etc/app/greeting", &["bind", "ro"]);
    let image = host.path().join("image").display().to_string();
    let id = unique("ckpt-fresh");
    p.ctl_detached(&["run", "-d", "--bundle", &old.path_str(), &id]);
    assert!(eventually(Duration::from_secs(20), || count_inside(&p, &id) >= 10), "the counter does not count");
    let before = count_inside(&p, &id);
    p.ctl_ok(&["checkpoint", "--image-path", &image, &id]);
    p.ctl_ok(&["delete", &id]);

    // The same container, on a root filesystem as the image has it: none of the mount points.
    let fresh = counter_bundle();
    std::fs::copy(old.path().join("config.json"), fresh.path().join("config.json")).unwrap();
    for dir in ["proc", "sys", "dev", "tmp"] {
        std::fs::remove_dir(fresh.rootfs().join(dir)).unwrap();
    }
    let lacking = ["proc", "sys", "dev", "tmp", "run", "srv", "etc/app"];
    assert!(lacking.iter().all(|p| !fresh.rootfs().join(p).exists()));
    p.ctl_detached(&["restore", "-d", "--bundle", &fresh.path_str(), "--image-path", &image, &id]);

    // It goes on from its own memory, with every mount in its place.
    let resumed = count_inside(&p, &id);
    assert!(resumed >= before, "restarted instead of restored: {resumed} after {before}");
    assert!(
        eventually(Duration::from_secs(10), || count_inside(&p, &id) > resumed + 2),
        "the restored counter stopped"
    );
    assert_eq!(p.ctl_ok(&["exec", &id, "--", "cat", "/etc/app/greeting"]), "hello from the host\n");
    p.ctl_ok(&["exec", &id, "--", "touch", "/srv/data/from-the-container", "/run/deep/state/here"]);
    assert!(data.join("from-the-container").is_file());
    for dir in ["proc", "sys", "dev", "tmp", "srv/data", "run/deep/state"] {
        assert!(fresh.rootfs().join(dir).is_dir(), "{dir}");
    }
    assert!(fresh.rootfs().join("etc/app/greeting").is_file());
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

#[test]
fn a_failed_checkpoint_changes_nothing() {
    let p = Paddock::new();
    let bundle = counter_bundle();
    let dir = tempfile::tempdir().unwrap();
    let id = unique("ckpt-fail");
    p.ctl_detached(&["run", "-d", "--restart", "always", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["pause", &id]);
    // A CRIU that fails at once.
    let image = dir.path().join("image").display().to_string();
    let out = p.ctl(&["--criu", "/bin/false", "checkpoint", "--image-path", &image, &id]);
    assert!(!out.status.success() && stderr(&out).contains("checkpoint failed"), "{}", stderr(&out));
    // Still paused (not thawed behind its status's back), and its restart policy still on.
    assert_eq!(p.state(&id)["status"], "paused");
    let freezer = std::fs::read_to_string(format!("/sys/fs/cgroup/freezer/paddock/{id}/{id}/freezer.state"));
    if let Ok(state) = freezer {
        assert_eq!(state.trim(), "FROZEN");
    }
    p.ctl_ok(&["resume", &id]);
    let pid = init_pid(&p, &id);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || {
            let state = p.state(&id);
            state["restart"]["count"] == 1 && state["status"] == "running"
        }),
        "the restart policy did not bring it back: {}",
        p.state(&id)
    );
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

#[test]
fn restore_runs_the_runtime_hooks_of_create_and_fails_with_them() {
    use std::os::unix::fs::PermissionsExt;
    let p = Paddock::new();
    let bundle = counter_bundle();
    let dir = tempfile::tempdir().unwrap();
    let (script, log) = (dir.path().join("hook.sh"), dir.path().join("hooks.log"));
    std::fs::write(&script, "#!/bin/sh\necho \"$1\" >> \"$2\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hook = |stage: &str| serde_json::json!([{ "path": script.display().to_string(), "args": ["hook", stage, log.display().to_string()] }]);
    bundle.edit_config(|c| {
        c["hooks"] = serde_json::json!({ "prestart": hook("prestart"), "createRuntime": hook("createRuntime") })
    });
    let image = dir.path().join("image").display().to_string();
    let id = unique("ckpt-hooks");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["checkpoint", "--image-path", &image, &id]);
    p.ctl_ok(&["delete", &id]);
    p.ctl_detached(&["restore", "-d", "--bundle", &bundle.path_str(), "--image-path", &image, &id]);
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran, "prestart\ncreateRuntime\nprestart\ncreateRuntime\n");
    p.ctl_ok(&["delete", "--force", &id]);

    // A hook that fails fails the restore, and the restored processes go with it.
    bundle.edit_config(|c| c["hooks"]["createRuntime"] = serde_json::json!([{ "path": "/bin/false" }]));
    let out = p.ctl(&["restore", "-d", "--bundle", &bundle.path_str(), "--image-path", &image, &id]);
    assert!(!out.status.success() && stderr(&out).contains("createRuntime"), "{}", stderr(&out));
    assert!(!p.ids().contains(&id));
    assert_nothing_left(&id);
}

#[test]
fn processes_exec_d_into_a_restored_container_take_on_its_personality_memory_policy_and_filter() {
    const MPOL_BIND: i32 = 2;
    const MPOL_F_STATIC_NODES: i32 = 1 << 15;
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    install_probe(&bundle.rootfs(), "report");
    bundle.edit_config(|c| {
        c["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"});
        c["linux"]["memoryPolicy"] =
            serde_json::json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]});
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image").display().to_string();
    let id = unique("ckpt-attrs");
    p.ctl_detached(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["checkpoint", "--image-path", &image, &id]);
    p.ctl_ok(&["delete", &id]);
    p.ctl_detached(&["restore", "-d", "--bundle", &bundle.path_str(), "--image-path", &image, &id]);
    assert_eq!(p.state(&id)["status"], "running");

    let report: std::collections::HashMap<String, String> = p
        .ctl_ok(&["exec", &id, "--", "/bin/report"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    assert_eq!(report["personality"], "0x8", "{report:?}");
    assert_eq!(report["mempolicy_mode"], (MPOL_BIND | MPOL_F_STATIC_NODES).to_string(), "{report:?}");
    // What a user sees: a 32-bit machine, and the filter's refusal.
    assert_eq!(p.ctl_ok(&["exec", &id, "--", "uname", "-m"]).trim(), "i686");
    let out = p.ctl(&["exec", &id, "--", "mkdir", "/tmp/filtered"]);
    assert!(!out.status.success(), "mkdir ran unfiltered in an exec'd process: {}", stdout(&out));
    assert!(stderr(&out).contains("Operation not permitted"), "{}", stderr(&out));
    let status = p.ctl_ok(&["exec", &id, "--", "grep", "Seccomp:", "/proc/self/status"]);
    assert!(status.contains('2'), "{status}");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}
