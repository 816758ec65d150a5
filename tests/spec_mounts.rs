//! The runtime-spec's devices and mounts as a container sees them: `linux.devices` (FIFOs
//! too) and the default devices, the recursive mount attributes (`rro`, `rnoatime`, …), the
//! propagation of bind mounts, and destinations that are symlinks in the root filesystem.
//! Where runc is installed, the same bundle runs under runc too and must show the same.

use std::path::Path;
use std::process::{Command, Output};

use harness::{assert_nothing_left, capture, stderr, stdout, unique, Bundle, Paddock};

/// Runs `bundle` under runc (in a state root of its own) when runc is installed; under CI a
/// missing runc is a failure.
fn runc_run(bundle: &Bundle, wrap: &[&str]) -> Option<Output> {
    if Command::new("runc").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "runc is missing (CI installs it)");
        eprintln!("runc is not installed: the comparison with runc is SKIPPED");
        return None;
    }
    let root = tempfile::Builder::new().prefix("pdk-runc-").tempdir_in("/tmp").expect("runc root");
    let id = unique("runc");
    let mut cmd = Command::new(wrap.first().copied().unwrap_or("runc"));
    if !wrap.is_empty() {
        cmd.args(&wrap[1..]).arg("runc");
    }
    cmd.arg("--root").arg(root.path()).args(["run", "--bundle", &bundle.path_str(), &id]);
    let out = capture(&mut cmd);
    let _ = capture(Command::new("runc").arg("--root").arg(root.path()).args(["delete", "--force", &id]));
    Some(out)
}

fn ok(out: &Output, who: &str) -> String {
    assert!(out.status.success(), "{who} failed ({}): {}\n{}", out.status, stderr(out), stdout(out));
    stdout(out)
}

#[test]
fn linux_devices_fifos_included_are_created_as_given_and_the_default_set_exists() {
    let script = "stat -c '%n %F %t,%T %a %u:%g' /dev/fifo /dev/mynull /dev/disk/loop7 /dev/null /dev/zero \
                  /dev/full /dev/random /dev/urandom /dev/tty; readlink /dev/ptmx; \
                  (echo through-the-fifo > /dev/fifo &); cat /dev/fifo; \
                  echo x > /dev/mynull && echo wrote-mynull";
    let bundle = Bundle::busybox(&["sh", "-c", script]);
    bundle.edit_config(|c| {
        c["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/fifo", "type": "p", "fileMode": 0o640, "uid": 0, "gid": 1001},
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 0, "gid": 0},
            {"path": "/dev/disk/loop7", "type": "b", "major": 7, "minor": 7, "fileMode": 0o660, "uid": 1000, "gid": 6}
        ]);
        // runc's default rules: every device denied but those listed (and the default set).
        c["linux"]["resources"] = serde_json::json!({"devices": [{"allow": false, "access": "rwm"}]});
    });
    let p = Paddock::new();
    let out = ok(&harness::run_leaving_nothing(&p, &bundle, &[], "mounts"), "paddock");
    let expected = "/dev/fifo fifo 0,0 640 0:1001\n\
                    /dev/mynull character special file 1,3 600 0:0\n\
                    /dev/disk/loop7 block special file 7,7 660 1000:6\n\
                    /dev/null character special file 1,3 666 0:0\n\
                    /dev/zero character special file 1,5 666 0:0\n\
                    /dev/full character special file 1,7 666 0:0\n\
                    /dev/random character special file 1,8 666 0:0\n\
                    /dev/urandom character special file 1,9 666 0:0\n\
                    /dev/tty character special file 5,0 666 0:0\n\
                    pts/ptmx\n\
                    through-the-fifo\n\
                    wrote-mynull\n";
    assert_eq!(out, expected);
    if let Some(runc) = runc_run(&bundle, &[]) {
        assert_eq!(ok(&runc, "runc"), out, "runc shows other devices");
    }
}

#[test]
fn a_fifo_among_the_devices_needs_no_cgroup_rule_even_without_device_rules() {
    let bundle = Bundle::busybox(&["sh", "-c", "stat -c '%F %a' /dev/pipe"]);
    bundle.edit_config(|c| {
        c["linux"]["devices"] = serde_json::json!([{"path": "/dev/pipe", "type": "p"}]);
    });
    let p = Paddock::new();
    assert_eq!(ok(&harness::run_leaving_nothing(&p, &bundle, &[], "mounts"), "paddock"), "fifo 666\n");
}

#[test]
fn devices_of_type_a_or_with_a_relative_path_are_refused() {
    let p = Paddock::new();
    for (device, message) in [
        (serde_json::json!({"path": "/dev/all", "type": "a"}), "linux.devices[0].type \"a\" is not a node type"),
        (
            serde_json::json!({"path": "dev/x", "type": "c", "major": 1, "minor": 3}),
            "linux.devices[0].path \"dev/x\" is not an absolute path",
        ),
    ] {
        let bundle = Bundle::busybox(&["true"]);
        bundle.edit_config(|c| c["linux"]["devices"] = serde_json::json!([device]));
        let out = harness::run_leaving_nothing(&p, &bundle, &[], "mounts");
        assert!(!out.status.success());
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }
}

/// The per-mount options of the mount at `dest` in a `/proc/self/mountinfo` text.
fn options_at<'a>(mountinfo: &'a str, dest: &str) -> Vec<&'a str> {
    mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(dest))
        .and_then(|l| l.split(' ').nth(5))
        .map(|o| o.split(',').collect())
        .unwrap_or_else(|| panic!("no mount at {dest} in\n{mountinfo}"))
}

/// The optional fields (`shared:N`, `master:N`, …) of the mount at `dest`.
fn optional_fields<'a>(mountinfo: &'a str, dest: &str) -> Vec<&'a str> {
    let line = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(dest))
        .unwrap_or_else(|| panic!("no mount at {dest} in\n{mountinfo}"));
    line.split(' ').skip(6).take_while(|f| *f != "-").collect()
}

#[test]
fn recursive_mount_attributes_apply_as_the_spec_says() {
    let source = tempfile::Builder::new().prefix("pdk-src-").tempdir_in("/tmp").unwrap();
    // Each option, and what the mount's options in mountinfo must then include (+) or lack (-).
    let cases: [(&str, &[&str]); 18] = [
        ("rro", &["+ro"]),
        ("rrw", &["+rw"]),
        ("rnosuid", &["+nosuid"]),
        ("rsuid", &["-nosuid"]),
        ("rnodev", &["+nodev"]),
        ("rdev", &["-nodev"]),
        ("rnoexec", &["+noexec"]),
        ("rexec", &["-noexec"]),
        ("rnodiratime", &["+nodiratime"]),
        ("rdiratime", &["-nodiratime"]),
        ("rrelatime", &["+relatime"]),
        ("rnorelatime", &["-relatime", "-noatime"]),
        ("rnoatime", &["+noatime"]),
        ("ratime", &["-noatime"]),
        ("rstrictatime", &["-relatime", "-noatime"]),
        ("rnostrictatime", &["+relatime"]),
        ("rnosymfollow", &["+nosymfollow"]),
        ("rsymfollow", &["-nosymfollow"]),
    ];
    // runc (1.1) clears an atime mode without naming the others, which the kernel refuses:
    // those three are compared with paddock alone.
    let runc_refuses = ["ratime", "rnorelatime", "rnostrictatime"];
    let bundle_of = |with_all: bool| {
        let bundle = Bundle::busybox(&["cat", "/proc/self/mountinfo"]);
        for (option, _) in cases.iter().filter(|(o, _)| with_all || !runc_refuses.contains(o)) {
            // The opposite first, so that each option has something to change.
            let opposite = match *option {
                "rsuid" => "nosuid",
                "rdev" => "nodev",
                "rexec" => "noexec",
                "rdiratime" => "nodiratime",
                "rsymfollow" => "nosymfollow",
                "rrw" => "ro",
                "ratime" | "rnorelatime" | "rstrictatime" | "rnostrictatime" => "noatime",
                _ => "rw",
            };
            bundle.add_bind(
                &source.path().display().to_string(),
                &format!("/m/{option}"),
                &["rbind", opposite, option],
            );
        }
        bundle
    };
    let p = Paddock::new();
    let check = |out: &str, who: &str, with_all: bool| {
        for (option, expected) in cases.iter().filter(|(o, _)| with_all || !runc_refuses.contains(o)) {
            let options = options_at(out, &format!("/m/{option}"));
            for e in expected.iter() {
                let (want, name) = e.split_at(1);
                assert_eq!(want == "+", options.contains(&name), "{who}, {option}: {name} in {options:?}");
            }
        }
    };
    check(&ok(&harness::run_leaving_nothing(&p, &bundle_of(true), &[], "mounts"), "paddock"), "paddock", true);
    let bundle = bundle_of(false);
    let paddock = ok(&harness::run_leaving_nothing(&p, &bundle, &[], "mounts"), "paddock");
    check(&paddock, "paddock", false);
    if let Some(runc) = runc_run(&bundle, &[]) {
        check(&ok(&runc, "runc"), "runc", false);
    }
}

#[test]
fn rro_makes_every_submount_read_only_where_ro_leaves_them() {
    // The source has a tmpfs mounted inside it, in a private mount namespace of the test's own
    // (nothing propagates anywhere), in which ctl starts its daemon, and so its gofers.
    let source = tempfile::Builder::new().prefix("pdk-src-").tempdir_in("/tmp").unwrap();
    std::fs::create_dir(source.path().join("sub")).unwrap();
    let src = source.path().display().to_string();
    let script = "touch /ro/sub/a && echo ro-sub-writable; touch /ro/top 2>/dev/null || echo ro-top-read-only; \
                  touch /rro/sub/b 2>/dev/null || echo rro-sub-read-only; \
                  touch /rro/top 2>/dev/null || echo rro-top-read-only";
    let bundle = Bundle::busybox(&["sh", "-c", script]);
    bundle.add_bind(&src, "/ro", &["rbind", "ro"]);
    bundle.add_bind(&src, "/rro", &["rbind", "rro"]);
    let mount = format!("mount -t tmpfs pdk-sub {src}/sub && exec \"$@\"");
    let wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount.as_str(), "sh"];
    let expected = "ro-sub-writable\nro-top-read-only\nrro-sub-read-only\nrro-top-read-only\n";
    let p = Paddock::new();
    assert_eq!(ok(&harness::run_leaving_nothing(&p, &bundle, &wrap, "mounts"), "paddock"), expected);
    p.stop_daemon();
    // Nothing was written through: the tmpfs lived in the namespace only.
    assert!(!source.path().join("sub/a").exists());
    if let Some(runc) = runc_run(&bundle, &wrap) {
        assert_eq!(ok(&runc, "runc"), expected);
    }
}

#[test]
fn a_bare_idmap_without_a_user_namespace_is_refused_clearly() {
    // Idmapped mounts themselves are tested in idmap.rs.
    let bundle = Bundle::busybox(&["true"]);
    bundle.add_bind("/tmp", "/data", &["rbind", "idmap"]);
    let p = Paddock::new();
    let out = harness::run_leaving_nothing(&p, &bundle, &[], "mounts");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("(/data): idmap without uidMappings/gidMappings on the mount takes the container's"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bind_mount_propagation_options_apply() {
    let source = tempfile::Builder::new().prefix("pdk-src-").tempdir_in("/tmp").unwrap();
    let src = source.path().display().to_string();
    let options = ["shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable"];
    let p = Paddock::new();
    // As given, and with CAP_SYS_ADMIN, whose read-only mounts paddock locks by entering a user
    // namespace (a copy of the mount namespace that once lost every shared mount).
    for admin in [false, true] {
        let bundle = Bundle::busybox(&["cat", "/proc/self/mountinfo"]);
        for option in options {
            bundle.add_bind(&src, &format!("/mnt/{option}"), &["rbind", option]);
        }
        bundle.add_bind("/etc", "/mnt/etc-shared", &["rbind", "rshared", "ro"]);
        if admin {
            bundle.edit_config(|c| {
                for set in ["bounding", "effective", "permitted"] {
                    c["process"]["capabilities"][set].as_array_mut().unwrap().push("CAP_SYS_ADMIN".into());
                }
            });
        }
        let out = ok(&harness::run_leaving_nothing(&p, &bundle, &[], "mounts"), "paddock");
        for option in options {
            let fields = optional_fields(&out, &format!("/mnt/{option}"));
            let expected = match option.trim_start_matches('r') {
                "shared" => fields.iter().any(|f| f.starts_with("shared:")),
                "unbindable" => fields == ["unbindable"],
                // A slave of the source's mount (as under runc), when that one is shared (the
                // suite runs with / shared); a slave of nothing is private.
                "slave" if harness::root_is_shared() => fields.len() == 1 && fields[0].starts_with("master:"),
                _ => fields.is_empty(),
            };
            assert!(expected, "{option} (CAP_SYS_ADMIN: {admin}): {fields:?}");
        }
        let fields = optional_fields(&out, "/mnt/etc-shared");
        assert!(fields.iter().any(|f| f.starts_with("shared:")), "CAP_SYS_ADMIN {admin}: {fields:?}");
    }
}

#[test]
fn an_rslave_bind_mount_receives_what_is_mounted_beneath_its_source_later() {
    // The source is a shared mount in a private mount namespace of the test's own (nothing
    // reaches the host), in which ctl starts its daemon; a tmpfs is mounted beneath it after
    // the container was created. The container reports through a FIFO the test reads.
    let source = tempfile::Builder::new().prefix("pdk-src-").tempdir_in("/tmp").unwrap();
    std::fs::create_dir(source.path().join("later")).unwrap();
    nix::unistd::mkfifo(&source.path().join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let src = source.path().display().to_string();
    let script = "{ grep -c ' /data/later ' /proc/self/mountinfo; grep ' /data ' /proc/self/mountinfo | \
                  grep -o master: ; } > /data/fifo";
    let bundle = Bundle::busybox(&["sh", "-c", script]);
    bundle.add_bind(&src, "/data", &["rbind", "rslave"]);
    let p = Paddock::new();
    let id = unique("slave");
    let steps = format!(
        "mount --bind {src} {src} && mount --make-shared {src} && \
         \"$0\" --root {root} create --bundle {bundle} {id} </dev/null >/dev/null && \
         mount -t tmpfs pdk-later {src}/later && \"$0\" --root {root} start {id} && cat {src}/fifo",
        root = p.root().display(),
        bundle = bundle.path_str(),
    );
    let out = capture(
        Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &steps]).arg(harness::ctl_path()),
    );
    assert_eq!(ok(&out, "paddock"), "1\nmaster:\n");
    let _ = p.ctl(&["delete", "--force", &id]);
    p.stop_daemon();
    assert_nothing_left(&id);
}

#[test]
fn a_proc_or_sys_destination_that_is_a_symlink_is_refused_as_with_runc() {
    for dest in ["proc", "sys"] {
        let bundle = Bundle::busybox(&["true"]);
        let rootfs = bundle.rootfs();
        std::fs::remove_dir(rootfs.join(dest)).unwrap();
        std::os::unix::fs::symlink("x", rootfs.join(dest)).unwrap();
        let p = Paddock::new();
        let out = harness::run_leaving_nothing(&p, &bundle, &[], "mounts");
        assert!(!out.status.success(), "{dest} as a symlink ran");
        let index = if dest == "proc" { 0 } else { 5 };
        let message =
            format!("mounts[{index}]: destination /{dest} is a symlink in the root filesystem (to \"x\"): refused");
        assert!(stderr(&out).contains(&message), "{}", stderr(&out));
        if let Some(runc) = runc_run(&bundle, &[]) {
            assert!(!runc.status.success(), "runc ran with /{dest} a symlink");
        }
    }
}

#[test]
fn other_destinations_resolve_symlinks_inside_the_root_filesystem_dangling_ones_too() {
    let source = tempfile::Builder::new().prefix("pdk-src-").tempdir_in("/tmp").unwrap();
    std::fs::write(source.path().join("file"), "inside\n").unwrap();
    std::fs::write(source.path().join("resolv"), "nameserver 192.0.2.1\n").unwrap();
    let bundle_with_links = || {
        let bundle = Bundle::busybox(&["cat", "/outside/data/file", "/run/resolv.conf"]);
        let rootfs = bundle.rootfs();
        // An absolute symlink climbing above the root and a relative one, both dangling:
        // followed in the root, they name /outside and /run/resolv.conf, which are made there.
        std::os::unix::fs::symlink("/../../../../outside", rootfs.join("link")).unwrap();
        std::os::unix::fs::symlink("../run/resolv.conf", rootfs.join("etc/resolv.conf")).unwrap();
        bundle.add_bind(&source.path().display().to_string(), "/link/data", &["bind", "ro"]);
        bundle.add_bind(&source.path().join("resolv").display().to_string(), "/etc/resolv.conf", &["bind", "ro"]);
        bundle
    };
    let expected = "inside\nnameserver 192.0.2.1\n";
    let bundle = bundle_with_links();
    let p = Paddock::new();
    assert_eq!(ok(&harness::run_leaving_nothing(&p, &bundle, &[], "mounts"), "paddock"), expected);
    assert!(bundle.rootfs().join("outside/data").is_dir());
    assert!(bundle.rootfs().join("run/resolv.conf").is_file());
    assert!(!Path::new("/outside").exists());
    if let Some(runc) = runc_run(&bundle_with_links(), &[]) {
        assert_eq!(ok(&runc, "runc"), expected);
    }
}

#[test]
fn features_list_exactly_the_mount_options_known() {
    let p = Paddock::new();
    let features: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["features"])).unwrap();
    let options: Vec<&str> = features["mountOptions"].as_array().unwrap().iter().map(|o| o.as_str().unwrap()).collect();
    for known in ["rro", "rrw", "rnoatime", "rstrictatime", "rnosymfollow", "ro", "rbind", "rslave", "runbindable"] {
        assert!(options.contains(&known), "{known} missing from {options:?}");
    }
    for known in ["idmap", "ridmap"] {
        assert!(options.contains(&known), "{known} missing from {options:?}");
    }
    assert!(!options.contains(&"remount"), "remount listed in {options:?}");
    assert_eq!(features["linux"]["mountExtensions"]["idmap"]["enabled"], true);
}
