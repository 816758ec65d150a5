//! The gofer: every mount through file descriptors, read-only that holds, overlays, confined
//! file access, and restarts.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::{
    assert_nothing_left, gofer_pid, pidfd, process_alive, shmem_kib, stderr, stdout, unique, wait_pidfd, Bundle,
    Paddock,
};

const ADMIN_CAPS: [&str; 8] = [
    "CAP_SYS_ADMIN",
    "CAP_DAC_OVERRIDE",
    "CAP_CHOWN",
    "CAP_FOWNER",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn host_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").unwrap()
}

#[test]
fn bind_mounts_are_seen_and_read_only_holds_against_cap_sys_admin() {
    let p = Paddock::new();
    let ro = host_dir("pdk-ro-");
    let rw = host_dir("pdk-rw-");
    std::fs::write(ro.path().join("f"), "ro-content").unwrap();
    std::fs::write(rw.path().join("f"), "rw-content").unwrap();
    let file = host_dir("pdk-file-");
    let single = file.path().join("single");
    std::fs::write(&single, "one-file").unwrap();
    let script = "cat /ro/f /rw/f /etc/single; echo; \
        mount -o remount,rw / && echo ROOT-REMOUNTED; touch /newfile && echo ROOT-WRITTEN; \
        mount -o remount,bind,rw /ro && echo RO-REMOUNTED; touch /ro/x && echo RO-WRITTEN; \
        echo changed > /rw/f && echo rw-written; echo also > /etc/single && echo file-written";
    let bundle = Bundle::busybox(&["sh", "-c", script]);
    bundle.add_bind(ro.path().to_str().unwrap(), "/ro", &["rbind", "ro"]);
    bundle.add_bind(rw.path().to_str().unwrap(), "/rw", &["bind", "rw"]);
    bundle.add_bind(single.to_str().unwrap(), "/etc/single", &["bind"]);
    bundle.edit_config(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set] = serde_json::json!(ADMIN_CAPS);
        }
    });
    let id = unique("binds");
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ro-contentrw-contentone-file\nrw-written\nfile-written\n", "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(rw.path().join("f")).unwrap(), "changed\n");
    assert_eq!(std::fs::read_to_string(&single).unwrap(), "also\n");
    assert!(!ro.path().join("x").exists());
    assert!(!bundle.rootfs().join("newfile").exists());
    assert_nothing_left(&id);
}

#[test]
fn a_bind_source_that_is_missing_or_escapes_the_bundle_fails_create() {
    let p = Paddock::new();
    let missing = Bundle::busybox(&["true"]);
    missing.add_bind("/nonexistent/paddock-source", "/data", &["bind"]);
    let id = unique("missing");
    let out = p.ctl(&["create", "--bundle", &missing.path_str(), &id]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/paddock-source") && err.contains("does not exist"), "{err}");
    assert_nothing_left(&id);

    let escaping = Bundle::busybox(&["true"]);
    std::os::unix::fs::symlink("/etc", escaping.path().join("data")).unwrap();
    for source in ["data", "../../etc"] {
        escaping.edit_config(|c| c["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "bind"));
        escaping.add_bind(source, "/data", &["bind"]);
        let id = unique("escape");
        let out = p.ctl(&["create", "--bundle", &escaping.path_str(), &id]);
        assert!(!out.status.success(), "{source} was accepted");
        assert!(stderr(&out).contains("escapes the bundle"), "{source}: {}", stderr(&out));
        assert_nothing_left(&id);
    }
    // A relative source inside the bundle is fine.
    std::fs::create_dir(escaping.path().join("inside")).unwrap();
    std::fs::write(escaping.path().join("inside/f"), "in-bundle").unwrap();
    escaping.edit_config(|c| {
        c["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "bind");
        c["process"]["args"] = serde_json::json!(["cat", "/data/f"]);
    });
    escaping.add_bind("inside", "/data", &["bind", "ro"]);
    let out = p.ctl(&["run", "--rm", "--bundle", &escaping.path_str(), &unique("inside")]);
    assert_eq!(stdout(&out), "in-bundle", "{}", stderr(&out));
    assert!(p.ids().is_empty());
}

#[test]
fn root_memory_overlay_keeps_writes_off_the_host() {
    let p = Paddock::new();
    // The embedded default is root:memory over the host's own root.
    let name = unique("paddock-usr");
    let out = p.ctl(&["run", "--rm", "--", "/bin/sh", "-c", &format!("echo x > /usr/{name} && cat /usr/{name}")]);
    assert_eq!(stdout(&out), "x\n", "{}", stderr(&out));
    assert!(!Path::new(&format!("/usr/{name}")).exists());

    // A bundle asks for it with the annotation; its writable root stays untouched.
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "echo new > /bin/added && cat /bin/added && rm /bin/busybox.x 2>/dev/null; ls /bin/added",
    ]);
    bundle.edit_config(|c| {
        c["root"]["readonly"] = serde_json::json!(false);
        c["annotations"] = serde_json::json!({"dev.paddock.overlay": "root:memory"});
    });
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &unique("ovl")]);
    assert_eq!(stdout(&out), "new\n/bin/added\n", "{}", stderr(&out));
    assert!(!bundle.rootfs().join("bin/added").exists());
}

#[test]
fn all_memory_overlay_keeps_bind_mount_writes_off_the_host() {
    let p = Paddock::new();
    let data = host_dir("pdk-all-");
    std::fs::write(data.path().join("f"), "original").unwrap();
    let single = data.path().join("single");
    std::fs::write(&single, "one").unwrap();
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "echo changed > /data/f; echo new > /data/g; echo two > /single; cat /data/f /data/g /single",
    ]);
    bundle.add_bind(data.path().to_str().unwrap(), "/data", &["rbind"]);
    bundle.add_bind(single.to_str().unwrap(), "/single", &["bind"]);
    bundle.edit_config(|c| c["annotations"] = serde_json::json!({"dev.paddock.overlay": "all:memory:size=16m"}));
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &unique("allmem")]);
    assert_eq!(stdout(&out), "changed\nnew\ntwo\n", "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(data.path().join("f")).unwrap(), "original");
    assert!(!data.path().join("g").exists());
    assert_eq!(std::fs::read_to_string(&single).unwrap(), "one");
}

/// A running busybox container whose root is a plain host directory (so copies into it can
/// be checked on the host as well).
fn sleeping(p: &Paddock) -> (Bundle, String) {
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit_config(|c| c["root"]["readonly"] = serde_json::json!(false));
    let id = unique("cp");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    (bundle, id)
}

#[test]
fn cp_copies_files_and_directories_both_ways_keeping_modes_and_owners() {
    let p = Paddock::new();
    let (bundle, id) = sleeping(&p);
    let local = host_dir("pdk-cp-");
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha").unwrap();
    std::fs::write(tree.join("sub/b.sh"), "#!/bin/sh\necho beta\n").unwrap();
    std::fs::set_permissions(tree.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(tree.join("sub/b.sh"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::chown(tree.join("a.txt"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::symlink("a.txt", tree.join("link")).unwrap();

    // Into a path that does not exist: the directory becomes it.
    p.ctl_ok(&["cp", tree.to_str().unwrap(), &format!("{id}:/srv")]);
    let inside = bundle.rootfs().join("srv");
    assert_eq!(std::fs::read_to_string(inside.join("a.txt")).unwrap(), "alpha");
    let meta = std::fs::metadata(inside.join("a.txt")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, 1234, 5678));
    assert_eq!(std::fs::metadata(inside.join("sub/b.sh")).unwrap().mode() & 0o7777, 0o751);
    assert_eq!(std::fs::read_link(inside.join("link")).unwrap(), Path::new("a.txt"));
    // Into an existing directory: it lands inside, under its own name.
    p.ctl_ok(&["cp", tree.join("a.txt").to_str().unwrap(), &format!("{id}:/srv/sub")]);
    assert_eq!(std::fs::read_to_string(inside.join("sub/a.txt")).unwrap(), "alpha");

    // And back out: a directory, a file to a new name, a directory's contents.
    let back = local.path().join("back");
    p.ctl_ok(&["cp", &format!("{id}:/srv"), back.to_str().unwrap()]);
    let meta = std::fs::metadata(back.join("a.txt")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, 1234, 5678));
    assert_eq!(std::fs::read_to_string(back.join("sub/b.sh")).unwrap(), "#!/bin/sh\necho beta\n");
    assert_eq!(std::fs::read_link(back.join("link")).unwrap(), Path::new("a.txt"));
    p.ctl_ok(&["cp", &format!("{id}:/srv/a.txt"), local.path().join("renamed").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(local.path().join("renamed")).unwrap(), "alpha");
    let contents = local.path().join("contents");
    p.ctl_ok(&["cp", &format!("{id}:/srv/sub/."), contents.to_str().unwrap()]);
    assert!(contents.join("b.sh").is_file() && contents.join("a.txt").is_file());

    let out = p.ctl(&["cp", &format!("{id}:/no/such"), local.path().to_str().unwrap()]);
    assert!(stderr(&out).contains("no such file or directory in the container"), "{}", stderr(&out));
    p.ctl_ok(&["delete", "--force", &id]);
}

#[test]
fn cp_speaks_tar_streams_on_stdin_and_stdout() {
    let p = Paddock::new();
    let (bundle, id) = sleeping(&p);
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o600);
    header.set_uid(42);
    header.set_gid(43);
    archive.append_data(&mut header, "streamed/file", &b"tar!\n"[..]).unwrap();
    let bytes = archive.into_inner().unwrap();
    let mut child = p
        .command()
        .args(["cp", "-", &format!("{id}:/incoming")])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
    let out = harness::finish(child);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = bundle.rootfs().join("incoming/streamed/file");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "tar!\n");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o600, 42, 43));

    let out = p.ctl(&["cp", &format!("{id}:/incoming/streamed"), "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names = Vec::new();
    for entry in tar::Archive::new(&out.stdout[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut data = String::new();
        entry.read_to_string(&mut data).unwrap();
        names.push((name, data, entry.header().uid().unwrap()));
    }
    assert_eq!(names, vec![("streamed".into(), String::new(), 0), ("streamed/file".into(), "tar!\n".into(), 42)]);
    p.ctl_ok(&["delete", "--force", &id]);
}

#[test]
fn cp_stays_inside_the_container_whatever_its_symlinks_do() {
    let p = Paddock::new();
    // A secret on the host, at a path the container can name (not under /tmp, which the
    // container mounts for itself).
    let host = tempfile::Builder::new().prefix("pdk-secret-").tempdir_in("/var/tmp").unwrap();
    std::fs::write(host.path().join("secret"), "HOST-SECRET").unwrap();
    let hostdir = host.path().display().to_string();
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        &format!(
            "mkdir -p {hostdir}; echo container-copy > {hostdir}/secret; echo inside-etc > /etc/marker; \
             ln -s /etc /link; ln -s ../../../../ /up; ln -s {hostdir} /abs; \
             while true; do ln -sfn / /race; ln -sfn {hostdir} /race; rm -f /race; mkdir -p /race; rmdir /race; done"
        ),
    ]);
    bundle.edit_config(|c| c["root"]["readonly"] = serde_json::json!(false));
    let id = unique("evil");
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let local = host_dir("pdk-evil-out-");
    let read = |path: &str| -> Option<String> {
        let out = p.ctl(&["cp", &format!("{id}:{path}"), "-"]);
        if !out.status.success() {
            return None;
        }
        let mut archive = tar::Archive::new(&out.stdout[..]);
        let mut entry = archive.entries().unwrap().next()?.unwrap();
        let mut s = String::new();
        entry.read_to_string(&mut s).ok()?;
        Some(s)
    };
    // Wait for the container to plant its links: cp of the marker succeeds once it exists.
    let deadline = Instant::now() + Duration::from_secs(10);
    while read("/etc/marker").is_none() {
        assert!(Instant::now() < deadline, "the container never wrote its marker");
    }
    assert_eq!(read("/link/marker").as_deref(), Some("inside-etc\n"));
    assert_eq!(read("/up/up/etc/marker").as_deref(), Some("inside-etc\n"));
    assert_eq!(read("/abs/secret").as_deref(), Some("container-copy\n"));
    assert_eq!(read(&format!("/up{hostdir}/secret")).as_deref(), Some("container-copy\n"));
    // Writes through the same links land inside.
    std::fs::write(local.path().join("planted"), "planted").unwrap();
    for target in ["/abs", "/up/up/abs", "/link/../abs"] {
        let out = p.ctl(&["cp", local.path().join("planted").to_str().unwrap(), &format!("{id}:{target}/planted")]);
        assert!(out.status.success(), "{target}: {}", stderr(&out));
    }
    // Race the swapping symlink.
    for _ in 0..30 {
        if let Some(text) = read("/race/secret") {
            assert_ne!(text, "HOST-SECRET");
        }
        let _ = p.ctl(&["cp", local.path().join("planted").to_str().unwrap(), &format!("{id}:/race/raced")]);
    }
    assert_eq!(std::fs::read_to_string(host.path().join("secret")).unwrap(), "HOST-SECRET");
    let host_entries: Vec<_> = std::fs::read_dir(host.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(host_entries, vec![std::ffi::OsString::from("secret")], "something was written on the host");
    assert!(!Path::new("/raced").exists() && !Path::new("/planted").exists());
    assert!(bundle.rootfs().join(&hostdir[1..]).join("planted").exists());
    p.ctl_ok(&["delete", "--force", &id]);
}

#[test]
fn cp_refuses_the_containers_own_tmpfs_and_works_until_delete() {
    let p = Paddock::new();
    let id = unique("tmpfs");
    p.ctl_ok(&["run", "-d", "--name", &id, "--", "/bin/sh", "-c", "echo hi > /etc/greeting"]);
    // A stopped container (before delete) still answers copies.
    let waited = p.ctl_ok(&["wait", &id]);
    assert!(waited.contains("\"exitStatus\":0"), "{waited}");
    let out = p.ctl(&["cp", &format!("{id}:/etc/greeting"), "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = p.ctl(&["cp", "/etc/hostname", &format!("{id}:/tmp/x")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/tmp") && stderr(&out).contains("mounts itself"), "{}", stderr(&out));
    p.ctl_ok(&["delete", &id]);
    let out = p.ctl(&["cp", &format!("{id}:/etc/greeting"), "-"]);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn a_killed_gofer_comes_back_and_the_container_does_not_notice() {
    let p = Paddock::new();
    let (bundle, id) = sleeping(&p);
    let init = p.state(&id)["pid"].as_i64().unwrap() as i32;
    let gofer = gofer_pid(&id).expect("a gofer");
    let fd = pidfd(gofer).unwrap();
    let killed = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(gofer), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_pidfd(&fd, Duration::from_secs(5)));
    // A copy issued now waits for the new gofer and works.
    std::fs::write(bundle.path().join("payload"), "after-restart").unwrap();
    p.ctl_ok(&["cp", bundle.path().join("payload").to_str().unwrap(), &format!("{id}:/payload")]);
    assert!(killed.elapsed() < Duration::from_secs(1), "the gofer took {:?} to come back", killed.elapsed());
    assert_eq!(std::fs::read_to_string(bundle.rootfs().join("payload")).unwrap(), "after-restart");
    let state = p.state(&id);
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"].as_i64().unwrap() as i32, init);
    assert!(process_alive(init));
    assert_eq!(state["gofer"]["restarts"], 1);
    assert_eq!(state["gofer"]["status"], "running");
    let new_gofer = gofer_pid(&id).expect("a new gofer");
    assert_ne!(new_gofer, gofer);
    p.ctl_ok(&["delete", "--force", &id]);
    assert!(!process_alive(new_gofer));
    assert_nothing_left(&id);
}

#[test]
fn an_overlay_survives_a_gofer_restart() {
    let p = Paddock::new();
    let id = unique("ovlgofer");
    p.ctl_ok(&["run", "-d", "--name", &id, "--", "/bin/sh", "-c", "echo kept > /etc/written-before; sleep 1000"]);
    let gofer = gofer_pid(&id).unwrap();
    let fd = pidfd(gofer).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(gofer), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_pidfd(&fd, Duration::from_secs(5)));
    let deadline = Instant::now() + Duration::from_secs(10);
    // The container's write is in the overlay's upper layer, which the new gofer must see.
    loop {
        let out = p.ctl(&["cp", &format!("{id}:/etc/written-before"), "-"]);
        if out.status.success() {
            let mut s = String::new();
            tar::Archive::new(&out.stdout[..])
                .entries()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "kept\n");
            break;
        }
        assert!(Instant::now() < deadline, "{}", stderr(&out));
    }
    p.ctl_ok(&["delete", "--force", &id]);
}

#[test]
fn a_gofer_that_keeps_dying_is_given_up_on() {
    let p = Paddock::new();
    let (_bundle, id) = sleeping(&p);
    for round in 0..6 {
        let gofer = gofer_pid(&id).unwrap_or_else(|| panic!("no gofer in round {round}"));
        let fd = pidfd(gofer).unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(gofer), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(wait_pidfd(&fd, Duration::from_secs(5)));
        // Waits for the restart (or fails once the budget is spent).
        let out = p.ctl(&["cp", &format!("{id}:/bin/sh"), "-"]);
        if round < 5 {
            assert!(out.status.success(), "round {round}: {}", stderr(&out));
        } else {
            assert!(!out.status.success());
            assert!(stderr(&out).contains("no more restarts"), "{}", stderr(&out));
        }
    }
    let state = p.state(&id);
    assert!(state["gofer"]["status"].as_str().unwrap().starts_with("failed"), "{state}");
    assert_eq!(state["gofer"]["restarts"], 5);
    // The container itself runs on.
    assert_eq!(state["status"], "running");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
}

#[test]
fn delete_releases_every_mount_process_and_tmpfs_page() {
    let p = Paddock::new();
    let id = unique("memory");
    let before = shmem_kib();
    p.ctl_ok(&[
        "run",
        "-d",
        "--name",
        &id,
        "--",
        "/bin/sh",
        "-c",
        "head -c 134217728 /dev/zero > /var/big; sleep 1000",
    ]);
    // The write goes to the overlay's tmpfs: wait until the file is complete (cp sees it).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = p.ctl(&["cp", &format!("{id}:/var/big"), "-"]);
        if out.status.success() && out.stdout.len() > 134217728 {
            break;
        }
        assert!(Instant::now() < deadline, "the container never finished its write");
    }
    let during = shmem_kib();
    assert!(during >= before + 100 * 1024, "the overlay holds {} KiB more, not 128 MiB", during.saturating_sub(before));
    let gofer = gofer_pid(&id).unwrap();
    p.ctl_ok(&["delete", "--force", &id]);
    assert!(!process_alive(gofer));
    assert_nothing_left(&id);
    let after = shmem_kib();
    assert!(
        after < during.saturating_sub(100 * 1024),
        "tmpfs memory was not released: {before} -> {during} -> {after} KiB"
    );
}

/// Runs `ctl cp - ID:DEST` with `archive` on stdin.
fn cp_tar_in(p: &Paddock, id: &str, dest: &str, archive: Vec<u8>) -> std::process::Output {
    let mut child = p
        .command()
        .args(["cp", "-", &format!("{id}:{dest}")])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &archive).unwrap();
    harness::finish(child)
}

/// A tar stream may carry symlinks, but nothing of it is ever written through one: not one it
/// made itself a moment before, not one the container planted (docker refuses both too).
#[test]
fn a_tar_stream_never_writes_through_a_symlink() {
    let p = Paddock::new();
    let (bundle, id) = sleeping(&p);
    // The archive's own link to /etc, then a file "inside" it.
    let mut archive = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    archive.append_link(&mut link, "escape", "/etc").unwrap();
    let mut file = tar::Header::new_gnu();
    file.set_size(4);
    file.set_mode(0o644);
    archive.append_data(&mut file, "escape/pwned", &b"pwn\n"[..]).unwrap();
    let out = cp_tar_in(&p, &id, "/incoming", archive.into_inner().unwrap());
    assert!(!out.status.success(), "the archive wrote through its own symlink");
    assert!(stderr(&out).contains("symlink"), "{}", stderr(&out));
    assert!(!bundle.rootfs().join("etc/pwned").exists());
    // The link itself was made: links are files like any other.
    assert!(std::fs::symlink_metadata(bundle.rootfs().join("incoming/escape")).unwrap().file_type().is_symlink());

    // A symlink the container made beneath the destination.
    std::os::unix::fs::symlink("/etc", bundle.rootfs().join("incoming/planted")).unwrap();
    let mut archive = tar::Builder::new(Vec::new());
    let mut file = tar::Header::new_gnu();
    file.set_size(4);
    file.set_mode(0o644);
    archive.append_data(&mut file, "planted/pwned2", &b"pwn\n"[..]).unwrap();
    let out = cp_tar_in(&p, &id, "/incoming", archive.into_inner().unwrap());
    assert!(!out.status.success(), "the archive wrote through the container's symlink");
    assert!(!bundle.rootfs().join("etc/pwned2").exists());

    // A hard link may not reach through a symlink either.
    let mut archive = tar::Builder::new(Vec::new());
    let mut hard = tar::Header::new_gnu();
    hard.set_entry_type(tar::EntryType::Link);
    hard.set_size(0);
    archive.append_link(&mut hard, "stolen", "planted/passwd").unwrap();
    let out = cp_tar_in(&p, &id, "/incoming", archive.into_inner().unwrap());
    assert!(!out.status.success(), "a hard link reached through a symlink");
    assert!(!bundle.rootfs().join("incoming/stolen").exists());
    p.ctl_ok(&["delete", "--force", &id]);
}
