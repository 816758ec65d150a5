//! Idmapped bind mounts (runtime-spec 1.2, as runc 1.2 reads them): a mount's own
//! `uidMappings`/`gidMappings`, and the `idmap`/`ridmap` options that take the container's
//! user namespace maps. Through such a mount a file whose owner on the host's filesystem is
//! `containerID + n` shows as `hostID + n` (ids of the host's user namespace, which the
//! container's user namespace, if any, then maps as it maps every id), and what the container
//! creates lands on the host with the owner mapped back.
//!
//! The host directories are on /tmp (ext4 here, which supports idmapped mounts); the
//! submounts are tmpfs (idmappable from Linux 6.3).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use harness::{assert_nothing_left, stderr, stdout, unique, Bundle, Paddock};

/// Host ids the container's user namespace maps its own onto.
const CONTAINER_ROOT: u32 = 100_000;

/// An unprivileged host user who owns the shared files.
const HOST_USER: u32 = 1000;

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "paddock failed ({}): {}\n{}", out.status, stderr(out), stdout(out));
    stdout(out)
}

/// A bundle whose container has a user namespace mapping its ids 0..65536 onto
/// `CONTAINER_ROOT`.., its rootfs owned by the mapped root.
fn user_ns_bundle(args: &[&str]) -> Bundle {
    let bundle = Bundle::busybox(args);
    let owner = format!("{CONTAINER_ROOT}:{CONTAINER_ROOT}");
    let chown = Command::new("chown").args(["-R", "-h", &owner]).arg(bundle.rootfs()).status().unwrap();
    assert!(chown.success());
    bundle.edit_config(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "user"}));
        let map = serde_json::json!([{"containerID": 0, "hostID": CONTAINER_ROOT, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    bundle
}

/// A host directory (mode 755, so that anyone may look in) and a file `f` in it, both owned
/// by `owner`.
fn shared_dir(owner: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("pdk-idmap-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("f"), "shared\n").unwrap();
    for path in [dir.path().to_path_buf(), dir.path().join("f")] {
        std::os::unix::fs::chown(&path, Some(owner), Some(owner)).unwrap();
    }
    dir
}

/// Adds a bind mount of `source` at `destination` with `options` and, if given, the mount's
/// own maps (one range each for uids and gids).
fn add_idmapped(bundle: &Bundle, source: &Path, destination: &str, options: &[&str], map: Option<(u32, u32, u32)>) {
    bundle.edit_config(|c| {
        let mut mount = serde_json::json!({
            "destination": destination, "type": "bind", "source": source, "options": options
        });
        if let Some((container, host, size)) = map {
            let ranges = serde_json::json!([{"containerID": container, "hostID": host, "size": size}]);
            mount["uidMappings"] = ranges.clone();
            mount["gidMappings"] = ranges;
        }
        c["mounts"].as_array_mut().unwrap().push(mount);
    });
}

fn owner_of(path: &Path) -> (u32, u32) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

#[test]
fn a_mounts_own_maps_show_a_host_users_files_as_the_containers_root() {
    let shared = shared_dir(HOST_USER);
    let bundle = user_ns_bundle(&[
        "sh",
        "-c",
        "stat -c %u:%g /data/f && echo made > /data/new && stat -c %u:%g /data/new && stat -c %u:%g /plain/f",
    ]);
    // Host uid 1000 on the filesystem shows as the host id of the container's root.
    add_idmapped(&bundle, shared.path(), "/data", &["bind"], Some((HOST_USER, CONTAINER_ROOT, 1)));
    // The same directory without an idmap: unmapped in the container, it shows as nobody.
    add_idmapped(&bundle, shared.path(), "/plain", &["bind"], None);
    let p = Paddock::new();
    assert_eq!(ok(&harness::run_leaving_nothing(&p, &bundle, &[], "idmap")), "0:0\n0:0\n65534:65534\n");
    assert_eq!(owner_of(&shared.path().join("new")), (HOST_USER, HOST_USER), "created as the host user");
    assert_eq!(std::fs::read_to_string(shared.path().join("new")).unwrap(), "made\n");
}

#[test]
fn a_bare_idmap_takes_the_containers_user_namespace_maps() {
    // A directory of the host's root, shared with a user-namespaced container as its own root
    // (the common use: no chown of the host's files).
    let shared = shared_dir(0);
    let bundle = user_ns_bundle(&["sh", "-c", "stat -c %u:%g /data/f && touch /data/new && stat -c %u:%g /data/new"]);
    add_idmapped(&bundle, shared.path(), "/data", &["bind", "idmap"], None);
    let p = Paddock::new();
    assert_eq!(ok(&harness::run_leaving_nothing(&p, &bundle, &[], "idmap")), "0:0\n0:0\n");
    assert_eq!(owner_of(&shared.path().join("new")), (0, 0));
}

#[test]
fn without_a_user_namespace_root_sees_and_writes_the_mapped_owners() {
    let shared = shared_dir(HOST_USER);
    let bundle = Bundle::busybox(&["sh", "-c", "stat -c %u:%g /data/f && touch /data/new && stat -c %u:%g /data/new"]);
    add_idmapped(&bundle, shared.path(), "/data", &["bind"], Some((HOST_USER, 0, 1)));
    let p = Paddock::new();
    assert_eq!(ok(&harness::run_leaving_nothing(&p, &bundle, &[], "idmap")), "0:0\n0:0\n");
    assert_eq!(owner_of(&shared.path().join("new")), (HOST_USER, HOST_USER));
}

#[test]
fn ridmap_idmaps_an_rbinds_submounts_where_idmap_leaves_them() {
    // The source has a tmpfs mounted inside it, its root and a file in it the host user's (the
    // kernel lets nobody write to a directory whose owner the idmap does not map), in a
    // private mount namespace of the test's own (nothing reaches the host), in which ctl starts
    // its daemon, and so its gofers.
    let shared = shared_dir(HOST_USER);
    std::fs::create_dir(shared.path().join("sub")).unwrap();
    let src = shared.path().display().to_string();
    let mount = format!(
        "mount -t tmpfs pdk-idmap-sub {src}/sub && echo sub > {src}/sub/g && chown {HOST_USER}:{HOST_USER} \
         {src}/sub {src}/sub/g && exec \"$@\""
    );
    let wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", mount.as_str(), "sh"];
    let bundle = user_ns_bundle(&[
        "sh",
        "-c",
        "stat -c %u /rec/f /rec/sub/g /top/f /top/sub/g && touch /rec/sub/new && stat -c %u /rec/sub/new",
    ]);
    let map = Some((HOST_USER, CONTAINER_ROOT, 1));
    add_idmapped(&bundle, shared.path(), "/rec", &["rbind", "ridmap"], map);
    add_idmapped(&bundle, shared.path(), "/top", &["rbind", "idmap"], map);
    let p = Paddock::new();
    assert_eq!(ok(&harness::run_leaving_nothing(&p, &bundle, &wrap, "idmap")), "0\n0\n0\n65534\n0\n");
    p.stop_daemon();
}

#[test]
fn an_idmap_that_cannot_be_is_refused_clearly_and_leaves_nothing() {
    let p = Paddock::new();
    // On a mount that is not a bind mount: refused before anything starts.
    let bundle = user_ns_bundle(&["true"]);
    bundle.edit_config(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "idmap"]
        }))
    });
    let out = harness::run_leaving_nothing(&p, &bundle, &[], "idmap");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("mounts[7] (/data): an idmapped mount (idmap) must be a bind mount"),
        "{}",
        stderr(&out)
    );
    // A bare idmap in a container without a user namespace has no maps to take.
    let shared = shared_dir(HOST_USER);
    let bundle = Bundle::busybox(&["true"]);
    add_idmapped(&bundle, shared.path(), "/data", &["rbind", "ridmap"], None);
    let out = harness::run_leaving_nothing(&p, &bundle, &[], "idmap");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("mounts[7] (/data): ridmap without uidMappings/gidMappings on the mount takes the"),
        "{}",
        stderr(&out)
    );
    // A filesystem that cannot be idmapped (sysfs): the gofer's error names the mount, after
    // the gofer and the sandbox were started (and are gone again: `run` checks).
    let bundle = Bundle::busybox(&["true"]);
    add_idmapped(&bundle, Path::new("/sys/kernel"), "/data", &["bind"], Some((0, CONTAINER_ROOT, 65536)));
    let out = harness::run_leaving_nothing(&p, &bundle, &[], "idmap");
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("mount /data: the filesystem of /sys/kernel does not support idmapped mounts on this kernel"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_all_memory_overlay_shows_the_mapped_owners_and_leaves_the_host_alone() {
    let shared = shared_dir(HOST_USER);
    let bundle = user_ns_bundle(&[
        "sh",
        "-c",
        "stat -c %u /data/f /file && echo changed > /data/f && touch /data/new && stat -c %u /data/f /data/new",
    ]);
    bundle.annotate("dev.paddock.overlay", "all:memory");
    let map = Some((HOST_USER, CONTAINER_ROOT, 1));
    add_idmapped(&bundle, shared.path(), "/data", &["bind"], map);
    add_idmapped(&bundle, &shared.path().join("f"), "/file", &["bind"], map);
    let p = Paddock::new();
    assert_eq!(ok(&harness::run_leaving_nothing(&p, &bundle, &[], "idmap")), "0\n0\n0\n0\n");
    // The writes went to memory.
    assert_eq!(std::fs::read_to_string(shared.path().join("f")).unwrap(), "shared\n");
    assert!(!shared.path().join("new").exists());
}

#[test]
fn the_user_namespaces_made_for_the_maps_leave_no_process_behind() {
    // Two maps (two helper children), one of them used twice (shared), in a created
    // container: its gofer has set everything up and has no child left.
    let shared = shared_dir(HOST_USER);
    let bundle = user_ns_bundle(&["true"]);
    add_idmapped(&bundle, shared.path(), "/a", &["bind"], Some((HOST_USER, CONTAINER_ROOT, 1)));
    add_idmapped(&bundle, shared.path(), "/b", &["bind"], Some((HOST_USER, CONTAINER_ROOT, 1)));
    add_idmapped(&bundle, shared.path(), "/c", &["bind", "idmap"], None);
    let p = Paddock::new();
    let id = unique("idmap");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    let gofer = harness::gofer_pid(&id).expect("the container's gofer runs");
    let children = std::fs::read_to_string(format!("/proc/{gofer}/task/{gofer}/children")).unwrap();
    assert_eq!(children.trim(), "", "the gofer's children");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

#[test]
fn cp_writes_through_the_idmap_and_so_does_a_restarted_gofer() {
    // Without a user namespace, host uid 1000 shows as root: the gofer (root) may write
    // through the mount, and what it writes lands as the host user's. A restarted gofer takes
    // the container's (idmapped) mounts back from the sandbox and does the same.
    let shared = shared_dir(HOST_USER);
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    add_idmapped(&bundle, shared.path(), "/data", &["bind"], Some((HOST_USER, 0, 1)));
    let p = Paddock::new();
    let id = unique("idmap");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let payload = bundle.path().join("payload");
    std::fs::write(&payload, "copied\n").unwrap();
    for round in ["before", "after"] {
        let target = format!("{id}:/data/{round}");
        p.ctl_ok(&["cp", payload.to_str().unwrap(), &target]);
        assert_eq!(owner_of(&shared.path().join(round)), (HOST_USER, HOST_USER), "copied {round} the restart");
        if round == "before" {
            let gofer = harness::gofer_pid(&id).expect("a gofer");
            let fd = harness::pidfd(gofer).unwrap();
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(gofer), nix::sys::signal::Signal::SIGKILL).unwrap();
            assert!(harness::wait_pidfd(&fd, std::time::Duration::from_secs(5)));
        }
    }
    assert_eq!(p.state(&id)["gofer"]["restarts"], 1);
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}
