//! The runtime-spec 1.2 lifecycle as runc carries it out, checked on busybox bundles (against
//! runc itself on the same bundle where it helps): where and when each kind of hook runs and
//! what it is given; which ids and statuses kill and delete refuse; exec's runc flags.

use std::path::Path;
use std::process::{Command, Output};

use harness::{assert_nothing_left, capture, install_probe, stderr, stdout, unique, Bundle, Paddock};
use serde_json::{json, Value};

/// runc, with a state root of its own.
struct Runc {
    root: tempfile::TempDir,
}

impl Runc {
    fn new() -> Self {
        Self { root: tempfile::Builder::new().prefix("pdk-runc-").tempdir_in("/tmp").unwrap() }
    }

    fn run(&self, args: &[&str]) -> Output {
        capture(Command::new("runc").arg("--root").arg(self.root.path()).args(args))
    }
}

impl Drop for Runc {
    fn drop(&mut self) {
        let out = self.run(&["list", "-q"]);
        for id in stdout(&out).split_whitespace() {
            let _ = self.run(&["delete", "--force", id]);
        }
    }
}

/// A directory for what hooks write, removed with the test.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("pdk-speclog-").tempdir_in("/tmp").unwrap()
}

/// A hook running `script` with the host's `/bin/sh` and a PATH.
fn sh_hook(script: &str) -> Value {
    json!({ "path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] })
}

/// A bundle whose createContainer hook, run by the host's `/bin/sh` (a dynamically linked
/// program the busybox rootfs has neither at that path nor the loader of), writes into a
/// mount of the container (`./tmp`), mounts a tmpfs on `./mnt` and records what the host's
/// root holds; the container prints what it finds.
fn create_container_bundle(log: &Path) -> Bundle {
    let bundle = Bundle::busybox(&["busybox", "sh", "-c", "cat /tmp/from-hook /mnt/in-hook-mount"]);
    std::fs::remove_file(bundle.rootfs().join("bin/sh")).unwrap();
    std::fs::create_dir(bundle.rootfs().join("mnt")).unwrap();
    let script = format!(
        "echo written-before-pivot > ./tmp/from-hook && mount -t tmpfs hookfs ./mnt && \
         echo mounted-by-hook > ./mnt/in-hook-mount && \
         head -1 /etc/os-release > {log}/os-release && readlink /proc/self/ns/mnt > {log}/mnt-ns && \
         cat > {log}/state",
        log = log.display()
    );
    bundle.edit_config(|c| c["hooks"] = json!({ "createContainer": [sh_hook(&script)] }));
    bundle
}

#[test]
fn create_container_hooks_run_before_the_pivot_with_their_path_resolved_on_the_host() {
    let host_os = std::fs::read_to_string("/etc/os-release").unwrap().lines().next().unwrap().to_string();
    let want = "written-before-pivot\nmounted-by-hook\n";

    let p = Paddock::new();
    let log = scratch();
    let bundle = create_container_bundle(log.path());
    let id = unique("cchook");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let state: Value = serde_json::from_str(&std::fs::read_to_string(log.path().join("state")).unwrap()).unwrap();
    assert_eq!(state["status"], "creating");
    assert_eq!(state["id"], id.as_str());
    let pid = p.state(&id)["pid"].as_i64().unwrap();
    let read = |name: &str| std::fs::read_to_string(log.path().join(name)).unwrap().trim().to_string();
    assert_eq!(read("os-release"), host_os, "the hook's / is the host's");
    assert_eq!(
        read("mnt-ns"),
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap().to_string_lossy(),
        "the hook runs in the container's mount namespace"
    );
    p.ctl_ok(&["start", &id]);
    let waited: Value = serde_json::from_str(&p.ctl_ok(&["wait", &id])).unwrap();
    assert_eq!(waited["exitStatus"], 0);
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);

    // The container sees what the hook wrote and mounted: as under runc, on the same bundle.
    let out = p.ctl(&["run", "--bundle", &bundle.path_str(), &unique("cchookrun")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), want);
    let runc = Runc::new();
    let reference = runc.run(&["run", "--bundle", &bundle.path_str(), &unique("cchookrunc")]);
    assert!(reference.status.success(), "runc: {}", stderr(&reference));
    assert_eq!(stdout(&reference), want, "runc's output");
}

#[test]
fn start_container_hooks_get_exactly_their_env() {
    // The hook is a program, not a shell (which would add PWD, SHLVL and a PATH of its own).
    let bundle = Bundle::busybox(&["cat", "/tmp/hook-env"]);
    install_probe(&bundle.rootfs(), "envdump");
    bundle.edit_config(|c| {
        c["hooks"] = json!({ "startContainer": [{
            "path": "/bin/envdump",
            "args": ["envdump", "/tmp/hook-env"],
            "env": ["ONLY=this", "AND=that"]
        }] })
    });
    let want = "ONLY=this\nAND=that\n";
    let p = Paddock::new();
    let out = p.ctl(&["run", "--bundle", &bundle.path_str(), &unique("schookenv")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), want);
    let runc = Runc::new();
    let reference = runc.run(&["run", "--bundle", &bundle.path_str(), &unique("schookenvrunc")]);
    assert_eq!(stdout(&reference), want, "runc: {}", stderr(&reference));
}

/// Three hooks of `kind`, each appending `kind:i:status` to `log`.
fn ordered_hooks(kind: &str, log: &Path, container_path: bool) -> Value {
    let target = if container_path { "/hooklog/order".to_string() } else { log.join("order").display().to_string() };
    let hooks: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "path": "/bin/sh",
                "args": ["sh", "-c", format!("echo {kind}:{i}:$(grep -o '\"status\": *\"[a-z]*\"' | head -n1 | cut -d'\"' -f4) >> {target}")],
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
            })
        })
        .collect();
    Value::Array(hooks)
}

#[test]
fn the_hooks_of_each_kind_run_in_the_listed_order_with_the_specs_status() {
    let p = Paddock::new();
    let log = scratch();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.add_bind(&log.path().display().to_string(), "/hooklog", &["rw"]);
    let kinds = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];
    let mut hooks = json!({});
    for kind in kinds {
        hooks[kind] = ordered_hooks(kind, log.path(), kind == "startContainer");
    }
    bundle.edit_config(|c| c["hooks"] = hooks);
    let id = unique("order");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    p.ctl_ok(&["delete", &id]);
    let statuses = [
        ("prestart", "creating"),
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ];
    let want: Vec<String> =
        statuses.iter().flat_map(|(kind, status)| (0..3).map(move |i| format!("{kind}:{i}:{status}"))).collect();
    let got: Vec<String> =
        std::fs::read_to_string(log.path().join("order")).unwrap().lines().map(String::from).collect();
    assert_eq!(got, want);
    assert_nothing_left(&id);
}

#[test]
fn a_failing_poststop_hook_on_delete_is_a_warning_as_with_runc() {
    let log = scratch();
    let bundle = Bundle::busybox(&["true"]);
    let after = format!("echo after >> {}/poststop", log.path().display());
    bundle.edit_config(|c| c["hooks"] = json!({ "poststop": [sh_hook("echo failing >&2; exit 3"), sh_hook(&after)] }));

    let p = Paddock::new();
    let id = unique("poststopfail");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    p.ctl_ok(&["wait", &id]);
    let delete = p.ctl(&["delete", &id]);
    assert!(delete.status.success(), "{}", stderr(&delete));
    assert!(!p.ids().contains(&id));
    assert_nothing_left(&id);
    // The spec: the remaining hooks still run (runc 1.1 stops at the failed one).
    assert_eq!(std::fs::read_to_string(log.path().join("poststop")).unwrap(), "after\n");

    let runc = Runc::new();
    let rid = unique("poststopfailrunc");
    assert!(runc.run(&["create", "--bundle", &bundle.path_str(), &rid]).status.success());
    assert!(runc.run(&["start", &rid]).status.success());
    // runc has no wait: --force, in case `true` has not exited yet.
    let reference = runc.run(&["delete", "--force", &rid]);
    assert!(reference.status.success(), "runc's delete fails: {}", stderr(&reference));
    assert!(!stdout(&runc.run(&["list", "-q"])).contains(&rid));
}

/// Whether `out` failed with a message containing `needle`.
fn failed_with(out: &Output, needle: &str) -> bool {
    !out.status.success() && stderr(out).contains(needle)
}

#[test]
fn kill_and_delete_refuse_what_runc_refuses_and_take_whole_ids_only() {
    let p = Paddock::new();
    let runc = Runc::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let b = bundle.path_str();
    let missing = unique("missing");
    // Each case, with paddock and with runc: (arguments, succeeds).
    for (args, ok) in [
        (vec!["kill", missing.as_str(), "KILL"], false),
        (vec!["kill", "", "KILL"], false),
        (vec!["delete", missing.as_str()], false),
        (vec!["delete", ""], false),
        (vec!["delete", "--force", missing.as_str()], true),
    ] {
        assert_eq!(p.ctl(&args).status.success(), ok, "ctl {args:?}");
        assert_eq!(runc.run(&args).status.success(), ok, "runc {args:?}");
    }
    assert!(failed_with(&p.ctl(&["kill", &missing, "KILL"]), "does not exist"));
    assert!(failed_with(&p.ctl(&["delete", &missing]), "does not exist"), "containerd's shim looks for these words");

    // A prefix of another container's id names no container: kill and delete leave it alone.
    let long = unique("prefixed");
    let prefix = &long[..long.len() - 2];
    p.ctl_ok(&["create", "--bundle", &b, &long]);
    assert!(failed_with(&p.ctl(&["kill", prefix, "KILL"]), "does not exist"));
    assert!(failed_with(&p.ctl(&["delete", prefix]), "does not exist"));
    p.ctl_ok(&["delete", "--force", prefix]);
    assert_eq!(p.state(&long)["status"], "created", "a prefix reached the container");

    // A created container is deleted without --force, as runc does (containerd deletes a task
    // whose start failed so).
    p.ctl_ok(&["delete", &long]);
    assert!(!p.ids().contains(&long));
    assert_nothing_left(&long);
    let rid = unique("rcreated");
    assert!(runc.run(&["create", "--bundle", &b, &rid]).status.success());
    assert!(runc.run(&["delete", &rid]).status.success(), "runc deletes a created container");

    // Running or paused: delete without --force refuses and changes nothing.
    let id = unique("alive");
    p.ctl_ok(&["run", "-d", "--bundle", &b, &id]);
    let pid = p.state(&id)["pid"].as_i64().unwrap();
    assert!(failed_with(&p.ctl(&["delete", &id]), "running"));
    p.ctl_ok(&["pause", &id]);
    assert!(failed_with(&p.ctl(&["delete", &id]), "paused"));
    assert_eq!(p.state(&id)["status"], "paused");
    p.ctl_ok(&["resume", &id]);
    assert_eq!(p.state(&id)["status"], "running");
    assert_eq!(p.state(&id)["pid"].as_i64().unwrap(), pid);

    // Stopped: kill refuses, kill --all is a no-op that succeeds, as with runc.
    p.ctl_ok(&["kill", &id, "KILL"]);
    p.ctl_ok(&["wait", &id]);
    assert!(failed_with(&p.ctl(&["kill", &id, "TERM"]), "stopped"));
    p.ctl_ok(&["kill", "--all", &id, "KILL"]);
    let rid = unique("rstopped");
    assert!(runc.run(&["run", "-d", "--bundle", &b, &rid]).status.success());
    assert!(runc.run(&["kill", &rid, "KILL"]).status.success());
    assert!(harness::eventually(std::time::Duration::from_secs(10), || stdout(&runc.run(&["state", &rid]))
        .contains("\"stopped\"")));
    assert!(!runc.run(&["kill", &rid, "TERM"]).status.success(), "runc kills a stopped container");
    assert!(runc.run(&["kill", "--all", &rid, "KILL"]).status.success());
    p.ctl_ok(&["delete", &id]);
    assert_nothing_left(&id);
}

#[test]
fn a_spec_of_another_major_version_or_no_semver_is_refused_at_create() {
    let p = Paddock::new();
    for version in ["2.0.0", "1.0", "garbage"] {
        let bundle = Bundle::busybox(&["true"]);
        bundle.edit_config(|c| c["ociVersion"] = json!(version));
        let id = unique("ociversion");
        let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
        assert!(failed_with(&out, &format!("ociVersion {version:?}")), "{version}: {}", stderr(&out));
        assert!(!p.ids().contains(&id));
        assert_nothing_left(&id);
    }
    // Any 1.x is taken.
    let bundle = Bundle::busybox(&["true"]);
    bundle.edit_config(|c| c["ociVersion"] = json!("1.3.0"));
    let id = unique("ociversion");
    p.ctl_ok(&["run", "--bundle", &bundle.path_str(), &id]);
}

#[test]
fn exec_adds_capabilities_groups_and_no_new_privs_as_runc_does() {
    let p = Paddock::new();
    let runc = Runc::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit_config(|c| c["process"]["noNewPrivileges"] = json!(false));
    let b = bundle.path_str();
    let (id, rid) = (unique("execflags"), unique("rexecflags"));
    p.ctl_ok(&["run", "-d", "--bundle", &b, &id]);
    assert!(runc.run(&["run", "-d", "--bundle", &b, &rid]).status.success());
    let show = "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; id -G";
    let flags = ["--cap", "CAP_SYS_ADMIN", "--cap", "CAP_NET_RAW", "-g", "10", "-g", "20", "--no-new-privs"];
    let mut ours = vec!["exec"];
    ours.extend(flags);
    ours.extend([id.as_str(), "sh", "-c", show]);
    let mut theirs = vec!["exec"];
    theirs.extend(flags);
    theirs.extend([rid.as_str(), "sh", "-c", show]);
    let (out, reference) = (p.ctl(&ours), runc.run(&theirs));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(reference.status.success(), "runc: {}", stderr(&reference));
    assert_eq!(stdout(&out), stdout(&reference));
    assert!(stdout(&out).contains("NoNewPrivs:\t1") && stdout(&out).contains("0 10 20"), "{}", stdout(&out));
    // Without the flags: the container's own sets.
    let plain = p.ctl_ok(&["exec", &id, "sh", "-c", show]);
    assert!(plain.contains("NoNewPrivs:\t0") && plain != stdout(&out), "{plain}");

    // Neither AppArmor nor SELinux is enabled here: a profile or label is refused by name, an
    // empty one means none.
    let out = p.ctl(&["exec", "--apparmor", "my-profile", &id, "true"]);
    assert!(failed_with(&out, "\"my-profile\": AppArmor is not enabled"), "{}", stderr(&out));
    assert!(!runc.run(&["exec", "--apparmor", "my-profile", &rid, "true"]).status.success());
    let out = p.ctl(&["exec", "--process-label", "system_u:system_r:container_t:s0", &id, "true"]);
    assert!(failed_with(&out, "SELinux is not enabled"), "{}", stderr(&out));
    p.ctl_ok(&["exec", "--process-label", "", "--apparmor", "", &id, "true"]);
    p.ctl_ok(&["delete", "--force", &id]);
}

/// `command` with `files` as its descriptors 3, 4, … (as conmon hands sockets on to runc).
fn with_fds(mut command: Command, files: Vec<std::fs::File>) -> Output {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let raw: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    let above = 3 + raw.len() as i32 + 100;
    // SAFETY: between fork and exec only fcntl and dup2 (async-signal-safe) on open descriptors.
    unsafe {
        command.pre_exec(move || {
            // Sources above the targets first, so no dup2 overwrites one still needed.
            let high: Vec<i32> = raw.iter().map(|fd| libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, above)).collect();
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = capture(&mut command);
    drop(files);
    out
}

#[test]
fn preserve_fds_passes_more_descriptors_than_one_message_holds() {
    let p = Paddock::new();
    let dir = scratch();
    let count = 300;
    let files = |name: &str| {
        let first = std::fs::File::create(dir.path().join(name)).unwrap();
        let mut all: Vec<std::fs::File> = (1..count).map(|_| first.try_clone().unwrap()).collect();
        all.push(first);
        all
    };
    let last = 3 + count - 1;
    let show = format!("readlink /proc/self/fd/{last}; ls /proc/self/fd | wc -l");
    let bundle = Bundle::busybox(&["sh", "-c", &show]);
    let id = unique("manyfds");
    let mut run = p.command();
    run.args(["run", "--keep", "--preserve-fds", &count.to_string(), "--bundle", &bundle.path_str(), &id]);
    let out = with_fds(run, files("run"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines[0], dir.path().join("run").display().to_string());
    // 0–2, the preserved ones and ls's own directory: nothing else.
    assert_eq!(lines[1], (3 + count + 1).to_string());
    p.ctl_ok(&["delete", &id]);

    let id = unique("manyfdsexec");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id, "--", "sleep", "1000"]);
    let mut exec = p.command();
    exec.args(["exec", "--preserve-fds", &count.to_string(), &id, "--", "sh", "-c", &show]);
    let out = with_fds(exec, files("exec"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(&dir.path().join("exec").display().to_string()), "{}", stdout(&out));
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

/// The cgroup of `pid` in the v1 hierarchy of `controller`, as a directory.
fn v1_cgroup_dir(pid: i64, controller: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = text
        .lines()
        .find(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == controller)))
        .unwrap_or_else(|| panic!("no {controller} line in {text}"));
    let (controllers, path) = line.splitn(3, ':').skip(1).fold((String::new(), String::new()), |(c, _), part| {
        if c.is_empty() {
            (part.to_string(), String::new())
        } else {
            (c, part.to_string())
        }
    });
    Path::new("/sys/fs/cgroup").join(controllers).join(path.trim_start_matches('/'))
}

#[test]
fn exec_cgroup_runs_the_process_in_an_existing_sub_cgroup() {
    if !Path::new("/sys/fs/cgroup/memory").is_dir() {
        panic!("this test expects v1 memory and pids hierarchies (a hybrid host)");
    }
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique("execcg");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let pid = p.state(&id)["pid"].as_i64().unwrap();
    let (memory, pids) = (v1_cgroup_dir(pid, "memory"), v1_cgroup_dir(pid, "pids"));
    for dir in [&memory, &pids] {
        std::fs::create_dir(dir.join("sub")).unwrap();
    }
    let out = p.ctl(&["exec", "--cgroup", "memory,pids:sub", &id, "cat", "/proc/self/cgroup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout(&out);
    for line in lines.lines() {
        let controllers = line.split(':').nth(1).unwrap_or_default();
        let in_sub = line.ends_with("/sub");
        let listed = controllers.split(',').any(|c| c == "memory" || c == "pids");
        assert_eq!(in_sub, listed, "{line} (all: {lines})");
    }
    // Every hierarchy: sub exists in two only, which is named.
    let out = p.ctl(&["exec", "--cgroup", "sub", &id, "true"]);
    assert!(failed_with(&out, "does not exist"), "{}", stderr(&out));
    let out = p.ctl(&["exec", "--cgroup", "nosuchcontroller:sub", &id, "true"]);
    assert!(failed_with(&out, "\"nosuchcontroller\""), "{}", stderr(&out));
    let out = p.ctl(&["exec", "--cgroup", "../escape", &id, "true"]);
    assert!(failed_with(&out, "beneath"), "{}", stderr(&out));
    for dir in [&memory, &pids] {
        std::fs::remove_dir(dir.join("sub")).unwrap();
    }
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

/// Whether host process `pid` is in a frozen cgroup: its freezer cgroup's `freezer.state`
/// (cgroup v1) or its cgroup's `cgroup.events` (v2) says so.
fn frozen(pid: i32) -> bool {
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { return false };
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        if controllers.split(',').any(|c| c == "freezer") {
            let state = std::fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"));
            return state.is_ok_and(|s| s.trim() == "FROZEN");
        }
    }
    let v2 = cgroups.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string);
    let events = v2.and_then(|path| std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cgroup.events")).ok());
    events.is_some_and(|e| e.lines().any(|l| l == "frozen 1"))
}

#[test]
fn exec_in_a_paused_container_needs_ignore_paused_and_runs_once_resumed() {
    let p = Paddock::new();
    let out_dir = tempfile::tempdir().unwrap();
    let marker = out_dir.path().join("marker");
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.add_bind(&out_dir.path().display().to_string(), "/out", &["rbind", "rw"]);
    let id = unique("pausedexec");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let init = p.state(&id)["initPid"].as_i64().unwrap() as i32;
    p.ctl_ok(&["pause", &id]);
    // Without the flag: refused, as runc does, and nothing runs.
    assert!(failed_with(&p.ctl(&["exec", &id, "true"]), "paused"));
    assert_eq!(p.state(&id)["status"], "paused");

    // With it: the process is made (ps lists it) but frozen with the container.
    p.ctl_detached(&["exec", "--ignore-paused", "-d", &id, "--", "sh", "-c", "echo ran > /out/marker"]);
    let pids: Vec<i32> = serde_json::from_str(&p.ctl_ok(&["ps", "--format", "json", &id])).unwrap();
    let exec_pids: Vec<i32> = pids.iter().copied().filter(|&pid| pid != init).collect();
    assert_eq!(exec_pids.len(), 1, "ps lists {pids:?} (init {init})");
    assert!(frozen(exec_pids[0]), "process {} is not in a frozen cgroup", exec_pids[0]);
    assert!(frozen(init));
    assert!(!marker.exists(), "the process ran in a paused container");
    assert_eq!(p.state(&id)["status"], "paused");

    p.ctl_ok(&["resume", &id]);
    assert!(harness::eventually(harness::command_timeout(), || std::fs::read_to_string(&marker)
        .is_ok_and(|t| t == "ran\n")));
    assert!(!frozen(init));
    // An exec that waits for its process: it comes back with the process's status once resumed.
    assert_eq!(p.ctl_ok(&["exec", "--ignore-paused", &id, "echo", "running"]), "running\n");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}
