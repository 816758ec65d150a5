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
