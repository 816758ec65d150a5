//! paddock on hosts as they are: a private `/` as well as a shared one, state roots nested by
//! other tools, state roots made by someone else, and a daemon that ctl starts for whoever
//! called it and that belongs to none of them.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use harness::{capture, ctl_path, pidfd, process_alive, stderr, stdout, unique, wait_pidfd, Bundle, Paddock};

/// The suite itself runs with `/` shared (see `.ci/run`); this one bundle runs with `/`
/// private, as on a machine without systemd.
#[test]
fn a_bundle_runs_where_root_is_private_too() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "echo private root; hostname"]);
    let id = unique("private");
    let out = capture(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(ctl_path())
            .arg("--root")
            .arg(p.root())
            .args(["run", "--bundle", &bundle.path_str(), &id]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "private root\nbbox\n");
    // runc's form of run deletes the container at exit.
    harness::assert_nothing_left(&id);
}

/// How many people first try paddock: `chroot` into a fresh system on a systemd host, where
/// the mount above the chroot's `/` is shared and out of reach. `pivot_root` refuses a root
/// whose parent mount is shared, so every helper's pivot must work without touching it.
#[test]
fn a_chrooted_caller_on_a_shared_host_runs_containers() {
    let p = Paddock::new();
    // Never removed recursively: `/` is bound beneath it (in another mount namespace, but a
    // recursive removal that reached it would delete the host's files). Removed with rmdir
    // once the daemon that lives in the chroot is gone (rmdir detaches mounts on it in every
    // namespace, the daemon's root included).
    let host = tempfile::Builder::new().prefix("pdk-chroot-").tempdir_in("/tmp").expect("chroot dir").keep();
    let bundle = Bundle::busybox(&["sh", "-c", "echo bundle in a chroot"]);
    let id = unique("chroot");
    let fresh = host.join("fresh");
    let ctl = |args: &str| {
        format!("chroot {} {} --root {} {args}", fresh.display(), ctl_path().display(), p.root().display())
    };
    // In a mount namespace of its own, fully private, so that nothing mounted here reaches the
    // suite's: a shared tmpfs stands for a systemd host's `/`, and the chroot is a recursive
    // bind of `/` beneath it, whose parent mount is therefore shared.
    let script = format!(
        "mount -t tmpfs pdk-host {host} && mount --make-shared {host} && mkdir {fresh} && \
         mount --rbind / {fresh} && {embedded} && {bundled}",
        host = host.display(),
        fresh = fresh.display(),
        embedded = ctl("run --rm -- /bin/sh -c 'echo default in a chroot'"),
        bundled = ctl(&format!("run --bundle {} {id}", bundle.path_str())),
    );
    let out = capture(Command::new("unshare").args(["--mount", "--propagation", "private", "--", "sh", "-c", &script]));
    let output = (out.status.success(), stdout(&out), stderr(&out));
    // The bundle's run (runc's form) deleted its container at exit.
    p.stop_daemon();
    let removed = std::fs::remove_dir(&host);
    assert!(output.0, "{}", output.2);
    assert_eq!(output.1, "default in a chroot\nbundle in a chroot\n");
    removed.expect("the chroot's directory is empty outside its mount namespace");
    harness::assert_nothing_left(&id);
}

/// containerd's runc shim keeps each namespace's root beneath its own (`<root>/k8s.io`). A
/// paddockd asked to serve the parent must not take the live child for leftovers.
#[test]
fn nested_state_roots_are_refused_and_a_live_child_root_is_left_alone() {
    let parent = Paddock::new();
    let child_root = parent.root().join("k8s.io");
    let ctl_in =
        |root: &std::path::Path, args: &[&str]| capture(Command::new(ctl_path()).arg("--root").arg(root).args(args));
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("nested");
    let out = ctl_in(&child_root, &["run", "-d", "--bundle", &bundle.path_str(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let child_daemon: i32 = std::fs::read_to_string(child_root.join("paddockd.pid")).unwrap().trim().parse().unwrap();

    // The parent is refused while its child is served, and nothing of the child is touched.
    let before = listing(&child_root);
    let out = ctl_in(parent.root(), &["list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("holds the live state root"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&child_daemon.to_string()), "names the daemon: {}", stderr(&out));
    assert_eq!(listing(&child_root), before);
    let state: serde_json::Value =
        serde_json::from_slice(&ctl_in(&child_root, &["state", &id]).stdout).expect("state of the child's container");
    assert_eq!(state["status"], "running");
    assert!(parent.daemon_pid().is_none(), "no daemon serves the parent");

    // A root inside the live child root is refused too.
    let inner = child_root.join("inner");
    let out = ctl_in(&inner, &["list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is inside the state root"), "{}", stderr(&out));

    // Once the child's daemon is gone, a daemon on the parent starts and still leaves the
    // child's directories (not containers of its own) exactly as they were.
    let fd = pidfd(child_daemon).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child_daemon), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(wait_pidfd(&fd, Duration::from_secs(20)));
    let before = listing(&child_root);
    assert_eq!(parent.ctl_ok(&["list", "-q"]), "");
    assert_eq!(listing(&child_root), before);
    parent.stop_daemon();
    // The child's container is still there for its own daemon.
    let state: serde_json::Value =
        serde_json::from_slice(&ctl_in(&child_root, &["state", &id]).stdout).expect("state after its daemon restarted");
    assert_eq!(state["status"], "running");
    let out = ctl_in(&child_root, &["delete", "--force", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    if let Ok(pid) = std::fs::read_to_string(child_root.join("paddockd.pid")) {
        let pid: i32 = pid.trim().parse().unwrap();
        let fd = pidfd(pid).unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        assert!(wait_pidfd(&fd, Duration::from_secs(20)));
    }
    harness::assert_nothing_left(&id);
}

/// Every name beneath `dir`, recursively, with its kind: what a daemon must not change.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.push(entry);
    }
    out.sort();
    out
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let kind = entry.file_type().map(|t| if t.is_dir() { "d" } else { "f" }).unwrap_or("?");
        out.push(format!("{kind} {}", path.display()));
        if kind == "d" {
            out.extend(walk(&path));
        }
    }
    out
}

/// A state root someone else made (an unprivileged user, mode 0777) is refused before
/// anything is opened in it: a symlinked log would have been appended to, a swapped socket
/// sent the caller's spec and descriptors.
#[test]
fn a_state_root_made_by_someone_else_is_refused() {
    let base = tempfile::Builder::new().prefix("pdk-untrusted-").tempdir_in("/tmp").unwrap();
    let root = base.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The owner points the log at a file only root may write.
    let victim = base.path().join("victim");
    std::fs::write(&victim, b"untouched\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, root.join("paddockd.log")).unwrap();

    let out = capture(Command::new(ctl_path()).arg("--root").arg(&root).arg("list"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("owned by uid 65534 with mode 0777"), "{}", stderr(&out));
    let out = capture(Command::new(harness::bin_dir().join("paddockd")).arg("--root").arg(&root));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("owned by uid 65534 with mode 0777"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    let names: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["paddockd.log"], "nothing was made in it");

    // Owned by root but writable by others: refused as well.
    std::os::unix::fs::chown(&root, Some(0), Some(0)).unwrap();
    let out = capture(Command::new(ctl_path()).arg("--root").arg(&root).arg("list"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("mode 0777"), "{}", stderr(&out));

    // A private root whose log someone made a symlink is not followed either.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = capture(Command::new(ctl_path()).arg("--root").arg(&root).arg("list"));
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
}

/// A fresh root is made private.
#[test]
fn a_new_state_root_is_private() {
    let base = tempfile::Builder::new().prefix("pdk-fresh-").tempdir_in("/tmp").unwrap();
    let root = base.path().join("a/b");
    let out = capture(Command::new(ctl_path()).arg("--root").arg(&root).args(["list", "-q"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&root).unwrap().permissions().mode() & 0o777, 0o700);
    stop_daemon_of(&root);
}

fn stop_daemon_of(root: &std::path::Path) {
    if let Ok(pid) = std::fs::read_to_string(root.join("paddockd.pid")) {
        let pid: i32 = pid.trim().parse().unwrap();
        if let Ok(fd) = pidfd(pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
            assert!(wait_pidfd(&fd, Duration::from_secs(20)));
        }
    }
}

/// ctl starts paddockd for whoever called it — conmon, a shim, a shell — and paddockd must
/// belong to none of them: not their cgroup (it would be charged to it and killed with it),
/// not their environment (a NOTIFY_SOCKET meant for them), not their session.
#[test]
fn an_autostarted_daemon_belongs_to_no_caller() {
    let p = Paddock::new();
    let caller_cgroup = format!("pdk-caller-{}", std::process::id());
    let hierarchy = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .into_iter()
        .find(|h| std::path::Path::new(h).join("cgroup.procs").exists())
        .expect("a cgroup hierarchy");
    let dir = std::path::Path::new(hierarchy).join(&caller_cgroup);
    std::fs::create_dir_all(&dir).unwrap();
    let out = capture(
        Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > {}/cgroup.procs && exec \"$0\" --root \"$1\" list", dir.display()))
            .arg(ctl_path())
            .arg(p.root())
            .env("NOTIFY_SOCKET", "/run/caller/notify")
            .env("CALLERS_SECRET", "x"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let _ = std::fs::remove_dir(&dir);
    let pid = p.daemon_pid().expect("a daemon");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(!cgroups.contains(&caller_cgroup), "paddockd stayed in its caller's cgroup:\n{cgroups}");
    assert!(cgroups.contains("/paddock/paddockd"), "paddockd is not in a cgroup of its own:\n{cgroups}");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(!environ.contains("NOTIFY_SOCKET") && !environ.contains("CALLERS_SECRET"), "{environ:?}");
    let sid = |pid: i32| -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat.rsplit(')').next().unwrap().split_whitespace().nth(3).unwrap().parse().unwrap()
    };
    assert_eq!(sid(pid), pid, "paddockd leads a session of its own");
}

/// An autostarted paddockd that has nothing to supervise and no client leaves; the next ctl
/// starts another, which finds the stopped containers with their exit statuses.
#[test]
fn an_idle_autostarted_daemon_exits_and_the_next_one_finds_its_containers() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "exit 3"]);
    let id = unique("idle");
    let idle_ctl = |args: &[&str]| capture(p.command().env("PADDOCKD_IDLE_EXIT", "1").args(args));
    let out = idle_ctl(&["run", "--keep", "--bundle", &bundle.path_str(), &id]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let first = p.daemon_pid().expect("a daemon");
    let fd = pidfd(first).unwrap();
    assert!(wait_pidfd(&fd, Duration::from_secs(30)), "the idle daemon stayed");
    assert!(!p.root().join("paddockd.sock").exists(), "its socket is gone with it");
    let state = p.state(&id);
    assert_eq!(state["status"], "stopped");
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 3);
    let second = p.daemon_pid().expect("a new daemon");
    assert_ne!(second, first);
    assert!(process_alive(second));
    p.ctl_ok(&["delete", &id]);
    p.stop_daemon();

    // A daemon with running containers stays; with none left it goes, leaving no process.
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("idle-running");
    let out = idle_ctl(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let daemon = p.daemon_pid().expect("a daemon");
    let fd = pidfd(daemon).unwrap();
    assert!(!wait_pidfd(&fd, Duration::from_secs(3)), "a daemon with a running container left");
    p.ctl_ok(&["delete", "--force", &id]);
    assert!(wait_pidfd(&fd, Duration::from_secs(30)), "the daemon stayed once idle");
    let root = p.root().display().to_string();
    assert!(harness::processes_mentioning(&root).is_empty(), "{:?}", harness::processes_mentioning(&root));
    harness::assert_nothing_left(&id);
}
