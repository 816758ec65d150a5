//! Namespaces as the runtime-spec has them: a type the spec does not list is the host's (for
//! the mount namespace too: the container is chrooted into its root there), and a type it
//! lists with a `path` is joined (mount, cgroup and user as well as network, IPC, UTS and PID).

use harness::{assert_nothing_left, stderr, stdout, unique, Bundle, Paddock};

fn namespace(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap().to_string_lossy().into_owned()
}

/// How many mounts are on `path` (stacked ones count each).
fn mounts_on(path: &std::path::Path) -> usize {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_str().unwrap();
    text.lines().filter(|l| l.split(' ').nth(4) == Some(path)).count()
}

/// A running container whose init sleeps; returns its id and its init's host pid.
fn sleeper(p: &Paddock, bundle: &Bundle, prefix: &str) -> (String, String) {
    let id = unique(prefix);
    p.ctl_ok(&["run", "-d", "--bundle", &bundle.path_str(), &id]);
    let init = p.state(&id)["initPid"].as_i64().expect("an init pid").to_string();
    (id, init)
}

#[test]
fn without_a_mount_namespace_the_container_is_chrooted_in_the_hosts_and_leaves_no_mount() {
    let p = Paddock::new();
    let bundle = Bundle::busybox(&["sh", "-c", "readlink /proc/self/ns/mnt; cat /marker; sleep 1000"]);
    std::fs::write(bundle.rootfs().join("marker"), "the container's root\n").unwrap();
    bundle.edit_config(|c| {
        c["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}]);
        let linux = c["linux"].as_object_mut().unwrap();
        linux.remove("maskedPaths");
        linux.remove("readonlyPaths");
    });
    let before = mounts_on(&bundle.rootfs());
    let id = unique("hostmnt");
    let log = bundle.path().join("out");
    let out = std::fs::File::create(&log).unwrap();
    let child = p.command().args(["run", "--keep", "--bundle", &bundle.path_str(), &id]).stdout(out).spawn().unwrap();
    assert!(
        harness::eventually(harness::command_timeout(), || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.lines().count() >= 2)),
        "no output: {:?}",
        std::fs::read_to_string(&log)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(namespace("self", "mnt").as_str()), "not the host's mount namespace");
    assert_eq!(lines.next(), Some("the container's root"), "not chrooted into its root: {text}");

    // A process exec'd into it lands in its root too, not at the namespace's.
    let seen = p.ctl_ok(&["exec", &id, "sh", "-c", "cat /marker; readlink /proc/self/ns/mnt"]);
    assert_eq!(seen.lines().collect::<Vec<_>>(), ["the container's root", namespace("self", "mnt").as_str()]);

    p.ctl_ok(&["kill", &id, "KILL"]);
    let _ = harness::finish(child);
    p.ctl_ok(&["delete", &id]);
    assert_eq!(mounts_on(&bundle.rootfs()), before, "the container's tree is still on its root filesystem");
    assert_nothing_left(&id);

    // Masking paths needs a mount namespace of the container's own.
    bundle.edit_config(|c| c["linux"]["maskedPaths"] = serde_json::json!(["/proc/kcore"]));
    let id = unique("hostmask");
    let out = p.ctl(&["run", "--bundle", &bundle.path_str(), &id]);
    assert!(!out.status.success() && stderr(&out).contains("maskedPaths needs a mount namespace"), "{}", stderr(&out));
    assert_nothing_left(&id);
    assert_eq!(mounts_on(&bundle.rootfs()), before);
}

#[test]
fn mount_and_cgroup_namespaces_named_by_path_are_joined() {
    let p = Paddock::new();
    let first = Bundle::busybox(&["sleep", "1000"]);
    first.edit_config(|c| {
        c["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
        ]);
    });
    std::fs::write(first.rootfs().join("marker"), "first\n").unwrap();
    let (first_id, init) = sleeper(&p, &first, "joined");

    let second =
        Bundle::busybox(&["sh", "-c", "readlink /proc/self/ns/mnt; readlink /proc/self/ns/cgroup; cat /marker"]);
    std::fs::write(second.rootfs().join("marker"), "second\n").unwrap();
    second.edit_config(|c| {
        c.as_object_mut().unwrap().remove("hostname");
        c["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"},
            {"type": "mount", "path": format!("/proc/{init}/ns/mnt")},
            {"type": "cgroup", "path": format!("/proc/{init}/ns/cgroup")}
        ]);
    });
    let second_id = unique("joiner");
    let out = p.ctl(&["run", "--keep", "--bundle", &second.path_str(), &second_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [namespace(&init, "mnt").as_str(), namespace(&init, "cgroup").as_str(), "second"],
        "{text}"
    );
    // The first container still has its own root.
    assert_eq!(p.ctl_ok(&["exec", &first_id, "cat", "/marker"]), "first\n");
    p.ctl_ok(&["delete", &second_id]);

    // A path that names another type of namespace, or no namespace, is refused at create.
    for (path, words) in [
        (format!("/proc/{init}/ns/net"), "not a Mount namespace"),
        (first.path().join("config.json").to_string_lossy().into_owned(), "not a Mount namespace"),
    ] {
        second.edit_config(|c| c["linux"]["namespaces"] = serde_json::json!([{"type": "mount", "path": path}]));
        let id = unique("badjoin");
        let out = p.ctl(&["run", "--bundle", &second.path_str(), &id]);
        assert!(!out.status.success() && stderr(&out).contains(words), "{}", stderr(&out));
        assert_nothing_left(&id);
    }
    p.ctl_ok(&["delete", "--force", &first_id]);
    assert_nothing_left(&first_id);
}

#[test]
fn a_user_namespace_named_by_path_is_joined_with_its_maps() {
    let p = Paddock::new();
    let first = Bundle::busybox(&["sleep", "1000"]);
    first.edit_config(|c| {
        c["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}
        ]);
        c["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        c["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    let (first_id, init) = sleeper(&p, &first, "userns");

    // No maps in the joiner's spec: they are the namespace's.
    let second = Bundle::busybox(&["sh", "-c", "readlink /proc/self/ns/user; cat /proc/self/uid_map; id -u"]);
    second.edit_config(|c| {
        c.as_object_mut().unwrap().remove("hostname");
        c["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "user", "path": format!("/proc/{init}/ns/user")}
        ]);
    });
    let second_id = unique("userjoin");
    let out = p.ctl(&["run", "--keep", "--bundle", &second.path_str(), &second_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines, [vec![namespace(&init, "user").as_str()], vec!["0", "200000", "65536"], vec!["0"]], "{text}");
    p.ctl_ok(&["delete", &second_id]);
    p.ctl_ok(&["delete", "--force", &first_id]);
    assert_nothing_left(&first_id);
    assert_nothing_left(&second_id);
}

#[test]
fn a_time_namespace_named_by_path_is_joined_with_its_offsets() {
    assert!(std::path::Path::new("/proc/self/timens_offsets").exists(), "this kernel has no time namespaces");
    let p = Paddock::new();
    const DAY: i64 = 86400;
    let first = Bundle::busybox(&["sleep", "1000"]);
    first.edit_config(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "time"}));
        c["linux"]["timeOffsets"] = serde_json::json!({"monotonic": {"secs": DAY, "nanosecs": 0}});
    });
    let (first_id, init) = sleeper(&p, &first, "timens");
    let offsets_of = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("monotonic") || l.starts_with("boottime"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    let expected = [format!("monotonic {DAY} 0"), "boottime 0 0".to_string()];
    assert_eq!(offsets_of(&std::fs::read_to_string(format!("/proc/{init}/timens_offsets")).unwrap()), expected);

    let script = "cat /proc/self/timens_offsets; readlink /proc/self/ns/time; cut -d. -f1 /proc/uptime; sleep 1000";
    let second = Bundle::busybox(&["sh", "-c", script]);
    let path = format!("/proc/{init}/ns/time");
    second.edit_config(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "time", "path": path}));
    });
    let second_id = unique("timens-joiner");
    let log = second.path().join("out");
    let out = std::fs::File::create(&log).unwrap();
    let status = harness::status_of(
        p.command()
            .args(["run", "-d", "--bundle", &second.path_str(), &second_id])
            .stdin(std::process::Stdio::null())
            .stdout(out),
    );
    assert!(status.success());
    assert!(
        harness::eventually(harness::command_timeout(), || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.lines().count() >= 4)),
        "no output: {:?}",
        std::fs::read_to_string(&log)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(offsets_of(&text), expected, "{text}");
    assert!(text.contains(&namespace(&init, "time")), "not the first container's time namespace: {text}");
    // Its boot-time clock (uptime) is the host's: only the monotonic clock moved.
    let host_uptime: u64 = std::fs::read_to_string("/proc/uptime").unwrap().split('.').next().unwrap().parse().unwrap();
    let uptime: u64 = text.lines().nth(3).unwrap().trim().parse().unwrap();
    assert!(uptime <= host_uptime, "{text}");
    let second_init = p.state(&second_id)["initPid"].as_i64().unwrap().to_string();
    assert_eq!(namespace(&second_init, "time"), namespace(&init, "time"));
    // A process exec'd into it is there too, with the monotonic clock a day ahead.
    let seen =
        p.ctl_ok(&["exec", &second_id, "sh", "-c", "cat /proc/self/timens_offsets; readlink /proc/self/ns/time"]);
    assert_eq!(offsets_of(&seen), expected, "{seen}");
    assert!(seen.contains(&namespace(&init, "time")), "{seen}");
    p.ctl_ok(&["delete", "--force", &second_id]);
    assert_nothing_left(&second_id);

    // Offsets for an existing namespace, and a path to another type's namespace: refused at
    // create, with nothing left.
    for (edit, words) in [
        (
            serde_json::json!({"timeOffsets": {"monotonic": {"secs": 5}}, "path": path}),
            "linux.timeOffsets cannot be set for the existing time namespace",
        ),
        (serde_json::json!({"path": format!("/proc/{init}/ns/net")}), "not a Time namespace"),
    ] {
        let bundle = Bundle::busybox(&["true"]);
        bundle.edit_config(|c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"type": "time", "path": edit["path"].clone()}));
            if let Some(offsets) = edit.get("timeOffsets") {
                c["linux"]["timeOffsets"] = offsets.clone();
            }
        });
        let id = unique("timens-bad");
        let out = p.ctl(&["run", "--bundle", &bundle.path_str(), &id]);
        assert!(!out.status.success() && stderr(&out).contains(words), "{}", stderr(&out));
        assert!(!p.ids().contains(&id));
        assert_nothing_left(&id);
    }
    p.ctl_ok(&["delete", "--force", &first_id]);
    assert_nothing_left(&first_id);
}
