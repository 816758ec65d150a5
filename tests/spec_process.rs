//! The runtime-spec 1.2 fields that set what the kernel keeps for a container's process:
//! `process.rlimits`, `process.scheduler`, `process.ioPriority`, `process.execCPUAffinity`,
//! `linux.personality`, `linux.memoryPolicy`, `linux.timeOffsets`, and `linux.intelRdt`, which
//! this host cannot honour. A probe (tests/probes/report.c) in the container prints what its
//! process sees; each test reads it from the container's init and from a process exec'd into
//! the container, as a user would, and checks that what paddock refuses leaves nothing behind.

use std::collections::HashMap;

use harness::{assert_nothing_left, eventually, install_probe, stderr, stdout, unique, Bundle, Paddock};

/// The probe's report: each line's first word, and the rest.
fn parse(report: &str) -> HashMap<String, String> {
    report.lines().filter_map(|l| l.split_once(' ')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

/// A busybox bundle whose process is the probe, with `edit` applied to its config.
fn probe_bundle(edit: impl FnOnce(&mut serde_json::Value)) -> Bundle {
    let bundle = Bundle::busybox(&["/bin/report"]);
    install_probe(&bundle.rootfs(), "report");
    bundle.edit_config(edit);
    bundle
}

/// Runs the bundle's process to its end and returns its report.
fn run_report(p: &Paddock, bundle: &Bundle) -> HashMap<String, String> {
    let id = unique("spec");
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &id]);
    assert!(out.status.success(), "ctl run failed: {}", stderr(&out));
    parse(&stdout(&out))
}

/// Creates and starts a container sleeping (its process's other fields as the bundle says),
/// runs the probe in it with `ctl exec`, and returns that report; the container is deleted.
fn exec_report(p: &Paddock, bundle: &Bundle, process: Option<serde_json::Value>) -> HashMap<String, String> {
    bundle.edit_config(|c| c["process"]["args"] = serde_json::json!(["sleep", "1000"]));
    let id = unique("spec-exec");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    p.ctl_ok(&["start", &id]);
    let out = match process {
        Some(process) => {
            let path = bundle.path().join("process.json");
            std::fs::write(&path, process.to_string()).unwrap();
            p.ctl(&["exec", "--process", path.to_str().unwrap(), &id])
        }
        None => p.ctl(&["exec", &id, "--", "/bin/report"]),
    };
    assert!(out.status.success(), "ctl exec failed: {}", stderr(&out));
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
    parse(&stdout(&out))
}

/// Asserts that creating the bundle's container fails with a message containing every one
/// of `expected`, and leaves nothing of it behind.
fn refused(p: &Paddock, bundle: &Bundle, expected: &[&str]) {
    let id = unique("spec-refused");
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &id]);
    assert!(!out.status.success(), "create succeeded; it should have been refused");
    let err = stderr(&out);
    for e in expected {
        assert!(err.contains(e), "the error does not say {e:?}: {err}");
    }
    assert!(!p.ids().contains(&id), "{id} is listed after a refused create");
    assert_nothing_left(&id);
}

/// A process JSON for `ctl exec --process` running the probe, with `extra` merged in.
fn exec_process(extra: serde_json::Value) -> serde_json::Value {
    let mut process = serde_json::json!({
        "args": ["/bin/report"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]
    });
    for (k, v) in extra.as_object().unwrap() {
        process[k] = v.clone();
    }
    process
}

#[test]
fn rlimits_are_applied_exactly_and_a_refusal_names_the_limit() {
    let p = Paddock::new();
    let limits = serde_json::json!([
        {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400}
    ]);
    let bundle = probe_bundle(|c| c["process"]["rlimits"] = limits.clone());
    let report = run_report(&p, &bundle);
    assert_eq!(report["rlimit_nofile"], "1000 2000", "{report:?}");
    assert_eq!(report["rlimit_nproc"], "300 400", "{report:?}");
    // exec takes the container's process, limits included.
    let report = exec_report(&p, &bundle, None);
    assert_eq!(report["rlimit_nofile"], "1000 2000", "{report:?}");
    // Its own, given whole.
    let bundle = probe_bundle(|_| {});
    let own = serde_json::json!({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 150}]});
    let report = exec_report(&p, &bundle, Some(exec_process(own)));
    assert_eq!(report["rlimit_nofile"], "100 150", "{report:?}");

    // Soft above hard: refused at create.
    let bundle = probe_bundle(|c| {
        c["process"]["rlimits"] = serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 3000, "hard": 2000}])
    });
    refused(&p, &bundle, &["process.rlimits RLIMIT_NOFILE", "soft 3000 is above hard 2000"]);
    // Above what the kernel allows (fs.nr_open): the kernel refuses, and the error names it.
    let bundle = probe_bundle(|c| {
        c["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 18446744073709551615u64}])
    });
    refused(&p, &bundle, &["process.rlimits RLIMIT_NOFILE"]);
}

#[test]
fn the_scheduler_policy_nice_and_flags_are_set() {
    let p = Paddock::new();
    let scheduler = serde_json::json!({"policy": "SCHED_BATCH", "nice": 7, "flags": ["SCHED_RESET_ON_FORK"]});
    let bundle = probe_bundle(|c| c["process"]["scheduler"] = scheduler.clone());
    let report = run_report(&p, &bundle);
    assert_eq!(report["sched_policy"], libc::SCHED_BATCH.to_string(), "{report:?}");
    assert_eq!(report["nice"], "7", "{report:?}");
    assert_eq!(report["sched_reset_on_fork"], "1", "{report:?}");
    let report = exec_report(&p, &bundle, None);
    assert_eq!(report["sched_policy"], libc::SCHED_BATCH.to_string(), "{report:?}");
    assert_eq!(report["nice"], "7", "{report:?}");
    // An exec'd process's own: SCHED_IDLE.
    let bundle = probe_bundle(|_| {});
    let report =
        exec_report(&p, &bundle, Some(exec_process(serde_json::json!({"scheduler": {"policy": "SCHED_IDLE"}}))));
    assert_eq!(report["sched_policy"], libc::SCHED_IDLE.to_string(), "{report:?}");

    let bundle = probe_bundle(|c| c["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_FIFO"}));
    refused(&p, &bundle, &["process.scheduler", "priority 0 is not within 1 to 99"]);
    let bundle =
        probe_bundle(|c| c["process"]["scheduler"] = serde_json::json!({"policy": "SCHED_OTHER", "nice": -21}));
    refused(&p, &bundle, &["process.scheduler", "nice -21"]);
}

#[test]
fn the_io_priority_is_set() {
    let p = Paddock::new();
    let bundle =
        probe_bundle(|c| c["process"]["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 6}));
    let report = run_report(&p, &bundle);
    assert_eq!((report["ioprio_class"].as_str(), report["ioprio_data"].as_str()), ("2", "6"), "{report:?}");
    let report = exec_report(&p, &bundle, None);
    assert_eq!((report["ioprio_class"].as_str(), report["ioprio_data"].as_str()), ("2", "6"), "{report:?}");
    // The realtime class takes privileges the runtime has and the container does not.
    let bundle =
        probe_bundle(|c| c["process"]["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_RT", "priority": 3}));
    let report = run_report(&p, &bundle);
    assert_eq!((report["ioprio_class"].as_str(), report["ioprio_data"].as_str()), ("1", "3"), "{report:?}");
    let bundle = probe_bundle(|_| {});
    let own = serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0}});
    let report = exec_report(&p, &bundle, Some(exec_process(own)));
    assert_eq!(report["ioprio_class"], "3", "{report:?}");

    let bundle =
        probe_bundle(|c| c["process"]["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 8}));
    refused(&p, &bundle, &["process.ioPriority.priority 8"]);
}

#[test]
fn exec_cpu_affinity_applies_to_exec_processes() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(cpus >= 2, "this test needs two CPUs (0 and 1); the machine has {cpus}");
    let p = Paddock::new();
    // The container's process carries it; an exec of that process ends on CPU 0 only.
    let affinity = serde_json::json!({"initial": "1", "final": "0"});
    let bundle = probe_bundle(|c| c["process"]["execCPUAffinity"] = affinity.clone());
    let report = exec_report(&p, &bundle, None);
    assert_eq!(report["affinity"], "0", "{report:?}");
    // A process of its own, on CPU 1 only.
    let bundle = probe_bundle(|_| {});
    let own = serde_json::json!({"execCPUAffinity": {"initial": "0", "final": "1"}});
    let report = exec_report(&p, &bundle, Some(exec_process(own)));
    assert_eq!(report["affinity"], "1", "{report:?}");
    // The runtime-spec: "not applicable to the container's init process" (nor does runc
    // apply it there): the init runs on every CPU it may.
    let bundle = probe_bundle(|c| c["process"]["execCPUAffinity"] = serde_json::json!({"final": "0"}));
    let report = run_report(&p, &bundle);
    assert_eq!(report["affinity"], "0,1", "{report:?}");

    let bundle = probe_bundle(|c| c["process"]["execCPUAffinity"] = serde_json::json!({"final": "5000"}));
    refused(&p, &bundle, &["process.execCPUAffinity.final"]);
}

#[test]
fn the_personality_is_set() {
    let p = Paddock::new();
    let bundle = probe_bundle(|c| c["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"}));
    let report = run_report(&p, &bundle);
    assert_eq!(report["personality"], "0x8", "{report:?}");
    let report = exec_report(&p, &bundle, None);
    assert_eq!(report["personality"], "0x8", "{report:?}");
    // What a user sees: a 32-bit machine.
    bundle.edit_config(|c| c["process"]["args"] = serde_json::json!(["uname", "-m"]));
    let out = p.ctl(&["run", "--rm", "--bundle", &bundle.path_str(), &unique("uname")]);
    assert_eq!(stdout(&out).trim(), "i686", "{}", stderr(&out));

    let bundle = probe_bundle(|c| {
        c["linux"]["personality"] = serde_json::json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]})
    });
    refused(&p, &bundle, &["linux.personality.flags"]);
}

#[test]
fn the_memory_policy_is_set() {
    let p = Paddock::new();
    const MPOL_BIND: i32 = 2;
    const MPOL_F_STATIC_NODES: i32 = 1 << 15;
    let bundle = probe_bundle(|c| {
        c["linux"]["memoryPolicy"] =
            serde_json::json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]})
    });
    let report = run_report(&p, &bundle);
    assert_eq!(report["mempolicy_mode"], (MPOL_BIND | MPOL_F_STATIC_NODES).to_string(), "{report:?}");
    let report = exec_report(&p, &bundle, None);
    assert_eq!(report["mempolicy_mode"], (MPOL_BIND | MPOL_F_STATIC_NODES).to_string(), "{report:?}");

    let bundle = probe_bundle(|c| c["linux"]["memoryPolicy"] = serde_json::json!({"mode": "MPOL_INTERLEAVE"}));
    refused(&p, &bundle, &["linux.memoryPolicy", "needs nodes"]);
    // A node this host does not have: the kernel refuses, and the error names the field.
    let bundle = probe_bundle(|c| c["linux"]["memoryPolicy"] = serde_json::json!({"mode": "MPOL_BIND", "nodes": "63"}));
    refused(&p, &bundle, &["linux.memoryPolicy"]);
}

#[test]
fn intel_rdt_is_refused_on_a_host_without_resctrl() {
    assert!(
        !std::path::Path::new("/sys/fs/resctrl/schemata").exists(),
        "this host has resctrl mounted: the test expects one without"
    );
    let p = Paddock::new();
    let bundle =
        probe_bundle(|c| c["linux"]["intelRdt"] = serde_json::json!({"closID": "gold", "l3CacheSchema": "L3:0=ff"}));
    refused(&p, &bundle, &["linux.intelRdt: this host has no Intel RDT (resctrl is not mounted at /sys/fs/resctrl)"]);
}

#[test]
fn time_offsets_move_the_containers_clocks() {
    assert!(std::path::Path::new("/proc/self/timens_offsets").exists(), "this kernel has no time namespaces");
    let p = Paddock::new();
    const YEAR: i64 = 86400 * 365;
    let host = parse(&String::from_utf8_lossy(
        &std::process::Command::new(std::path::Path::new(env!("PADDOCK_PROBES")).join("report"))
            .output()
            .unwrap()
            .stdout,
    ));
    let host_monotonic: i64 = host["monotonic_secs"].parse().unwrap();
    let bundle = probe_bundle(|c| {
        c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "time"}));
        c["linux"]["timeOffsets"] = serde_json::json!({
            "monotonic": {"secs": YEAR, "nanosecs": 0},
            "boottime": {"secs": 2 * YEAR, "nanosecs": 500}
        });
    });
    let offsets =
        |report: &HashMap<String, String>| report["timens_offsets"].split_whitespace().collect::<Vec<_>>().join(" ");
    let expected = format!("monotonic {YEAR} 0;boottime {} 500", 2 * YEAR);
    for report in [run_report(&p, &bundle), exec_report(&p, &bundle, None)] {
        let monotonic: i64 = report["monotonic_secs"].parse().unwrap();
        let boottime: i64 = report["boottime_secs"].parse().unwrap();
        assert!(monotonic >= host_monotonic + YEAR, "{report:?}");
        assert!(boottime >= host_monotonic + 2 * YEAR, "{report:?}");
        assert_eq!(offsets(&report), expected, "{report:?}");
    }

    // Offsets without a time namespace: refused, as runc does.
    let bundle = probe_bundle(|c| c["linux"]["timeOffsets"] = serde_json::json!({"monotonic": {"secs": 5}}));
    refused(&p, &bundle, &["linux.timeOffsets", "no time namespace"]);
    // A time namespace without offsets: the clocks are the host's.
    let bundle =
        probe_bundle(|c| c["linux"]["namespaces"].as_array_mut().unwrap().push(serde_json::json!({"type": "time"})));
    let report = run_report(&p, &bundle);
    assert_eq!(offsets(&report), "monotonic 0 0;boottime 0 0", "{report:?}");
}

#[test]
fn features_list_the_time_namespace_memory_policies_and_net_devices() {
    let p = Paddock::new();
    let features: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["features"])).unwrap();
    let namespaces = features["linux"]["namespaces"].as_array().unwrap();
    assert!(namespaces.contains(&serde_json::json!("time")), "{namespaces:?}");
    let modes = features["linux"]["memoryPolicy"]["modes"].as_array().unwrap();
    assert!(modes.contains(&serde_json::json!("MPOL_BIND")), "{modes:?}");
    assert_eq!(features["linux"]["intelRdt"]["enabled"], false);
    assert_eq!(features["linux"]["netDevices"]["enabled"], true);
}

/// Runs `ip` with `args` in the calling thread's network namespace; returns whether it
/// succeeded.
fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("running ip (iproute2)")
        .success()
}

#[test]
fn net_devices_move_into_the_containers_network_namespace_renamed() {
    let p = Paddock::new();
    // Never the host's interfaces: this test's thread, and so the ctl and paddockd it starts,
    // live in a network namespace of their own, where the test makes a veth pair (this
    // kernel has no dummy interfaces).
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("a private network namespace for the test");
    assert!(
        ip(&["link", "add", "pdk-veth0", "type", "veth", "peer", "name", "pdk-veth1"]),
        "cannot create a veth pair"
    );
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit_config(|c| c["linux"]["netDevices"] = serde_json::json!({"pdk-veth0": {"name": "ctr0"}}));
    let id = unique("netdev");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    // Gone from the runtime's namespace, there in the container's under its new name.
    assert!(!ip(&["link", "show", "pdk-veth0"]), "the interface is still in the runtime's network namespace");
    assert!(ip(&["link", "show", "pdk-veth1"]), "its peer left the runtime's network namespace");
    let devices = p.ctl_ok(&["exec", &id, "--", "cat", "/proc/net/dev"]);
    assert!(devices.contains("ctr0:"), "{devices}");
    assert!(!devices.contains("pdk-veth"), "{devices}");
    p.ctl_ok(&["start", &id]);
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
    // The kernel destroys a virtual interface with the namespace it is in (a veth pair with
    // either end), as under runc; a physical one would return to the host's initial namespace.
    assert!(!ip(&["link", "show", "ctr0"]) && !ip(&["link", "show", "pdk-veth0"]));
    // The kernel dismantles a network namespace asynchronously, after its last user is gone.
    assert!(
        eventually(std::time::Duration::from_secs(10), || !ip(&["link", "show", "pdk-veth1"])),
        "the container's network namespace outlived its delete"
    );

    // An interface the runtime's namespace does not have: refused, nothing left.
    let bundle = Bundle::busybox(&["true"]);
    bundle.edit_config(|c| c["linux"]["netDevices"] = serde_json::json!({"pdk-missing0": {}}));
    refused(&p, &bundle, &["linux.netDevices \"pdk-missing0\"", "no such network interface"]);
    // A bad name: refused before anything starts.
    let bundle = Bundle::busybox(&["true"]);
    bundle.edit_config(|c| c["linux"]["netDevices"] = serde_json::json!({"pdk-veth9": {"name": "a:b"}}));
    refused(&p, &bundle, &["linux.netDevices \"pdk-veth9\"", "\"a:b\" is not a network interface name"]);
}

#[test]
fn net_devices_keep_their_addresses_come_up_and_stay_through_a_restart() {
    let p = Paddock::new();
    // In a network namespace of the test's own, as above (no dummy interfaces on this kernel:
    // one end of a veth pair stands for the host's interface).
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("a private network namespace for the test");
    assert!(ip(&["link", "add", "pdk-ad0", "type", "veth", "peer", "name", "pdk-ad1"]), "cannot create a veth pair");
    assert!(ip(&["addr", "add", "10.77.1.2/24", "dev", "pdk-ad0"]));
    assert!(ip(&["addr", "add", "fd00:77::2/64", "dev", "pdk-ad0", "nodad"]));
    // Not permanent-and-global: left behind, as the runtime-spec says.
    assert!(ip(&["addr", "add", "169.254.7.7/16", "scope", "link", "dev", "pdk-ad0"]));
    let bundle = Bundle::busybox(&["sh", "-c", "if [ -e /ran ]; then exec sleep 1000; fi; touch /ran; exit 3"]);
    bundle.annotate("dev.paddock.restart", "on-failure");
    bundle.edit_config(|c| {
        c["root"]["readonly"] = false.into();
        c["linux"]["netDevices"] = serde_json::json!({"pdk-ad0": {"name": "ctr1"}});
    });
    let id = unique("netdev-addr");
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &id]);
    assert!(!ip(&["link", "show", "pdk-ad0"]), "the interface is still in the runtime's network namespace");
    let seen_inside = |when: &str| {
        let shown = p.ctl_ok(&["exec", &id, "--", "ip", "addr", "show", "dev", "ctr1"]);
        let flags = shown.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(f, _)| f).unwrap_or("");
        assert!(flags.split(',').any(|f| f == "UP"), "{when}: the interface is not up: {shown}");
        assert!(shown.contains("inet 10.77.1.2/24"), "{when}: its IPv4 address is lost: {shown}");
        assert!(shown.contains("inet6 fd00:77::2/64"), "{when}: its IPv6 address is lost: {shown}");
        assert!(!shown.contains("169.254.7.7"), "{when}: a link-scope address was carried: {shown}");
    };
    seen_inside("after create");
    p.ctl_ok(&["start", &id]);
    // Its first run exits 3; the policy runs it again, in the same sandbox and network namespace.
    assert!(
        eventually(std::time::Duration::from_secs(30), || {
            let state = p.state(&id);
            state["status"] == "running" && state["restart"]["count"] == 1
        }),
        "the container was not restarted: {}",
        p.state(&id)
    );
    seen_inside("after a restart");
    p.ctl_ok(&["delete", "--force", &id]);
    assert_nothing_left(&id);
    // The runtime-spec forbids moving it out before the namespace goes: the kernel destroys a
    // virtual interface with it (a physical one would return to the initial namespace).
    assert!(
        eventually(std::time::Duration::from_secs(10), || !ip(&["link", "show", "pdk-ad1"])),
        "the container's network namespace outlived its delete"
    );
    assert!(!ip(&["link", "show", "pdk-ad0"]) && !ip(&["link", "show", "ctr1"]));
}
