//! Pods: a sandbox container and subcontainers joining it through containerd's or CRI-O's
//! annotations, sharing network, IPC and UTS namespaces but not files, and a PID namespace
//! only when a member's spec names the pod's (Kubernetes' shareProcessNamespace): otherwise
//! each container is PID 1 of its own, as under runc.

use harness::{assert_nothing_left, gofer_pid, process_alive, stderr, stdout, unique, Bundle, Paddock};

/// A bundle running `sleep SECONDS` (distinct per container, so its process is recognisable)
/// with a file `/whoami` naming `name` in its root filesystem.
fn member(name: &str, seconds: &str) -> Bundle {
    let bundle = Bundle::busybox(&["sleep", seconds]);
    std::fs::write(bundle.rootfs().join("whoami"), name).unwrap();
    bundle
}

/// Joins `bundle` to sandbox `sandbox` with containerd's CRI annotations.
fn containerd_member(bundle: &Bundle, sandbox: &str) {
    bundle.annotate("io.kubernetes.cri.container-type", "container");
    bundle.annotate("io.kubernetes.cri.sandbox-id", sandbox);
}

/// Joins `bundle` to sandbox `sandbox` with CRI-O's annotations.
fn crio_member(bundle: &Bundle, sandbox: &str) {
    bundle.annotate("io.kubernetes.cri-o.ContainerType", "container");
    bundle.annotate("io.kubernetes.cri-o.SandboxID", sandbox);
}

fn create_and_start(p: &Paddock, bundle: &Bundle, id: &str) {
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), id]);
    p.ctl_ok(&["start", id]);
}

fn exec(p: &Paddock, id: &str, script: &str) -> String {
    p.ctl_ok(&["exec", id, "--", "sh", "-c", script])
}

#[test]
fn a_pod_shares_hostname_and_network_always_and_processes_when_asked() {
    let p = Paddock::new();
    let pod = unique("pod");
    let (a, b) = (unique("pod-a"), unique("pod-b"));
    let root = member("root", "1000");
    root.annotate("io.kubernetes.cri.container-type", "sandbox");
    root.annotate("io.kubernetes.cri.sandbox-id", &pod);
    create_and_start(&p, &root, &pod);
    let pause = p.state(&pod)["pid"].as_i64().unwrap();
    // a shares the pod's PID namespace (its spec names it, as CRI writes it for
    // shareProcessNamespace); b has its own, Kubernetes' default.
    let bundle_a = member("a", "1001");
    containerd_member(&bundle_a, &pod);
    bundle_a.edit_config(|c| {
        c["linux"]["namespaces"][0] = serde_json::json!({"type": "pid", "path": format!("/proc/{pause}/ns/pid")})
    });
    let bundle_b = member("b", "1002");
    crio_member(&bundle_b, &pod);
    create_and_start(&p, &bundle_a, &a);
    create_and_start(&p, &bundle_b, &b);

    let sees = |id: &str| exec(&p, id, "ps -o args");
    for (id, seen, unseen) in [
        (&pod, vec!["sleep 1000", "sleep 1001"], vec!["sleep 1002"]),
        (&a, vec!["sleep 1000", "sleep 1001"], vec!["sleep 1002"]),
        (&b, vec!["sleep 1002"], vec!["sleep 1000", "sleep 1001"]),
    ] {
        let ps = sees(id);
        for program in seen {
            assert!(ps.contains(program), "{id} does not see {program}:\n{ps}");
        }
        for program in unseen {
            assert!(!ps.contains(program), "{id} sees {program}:\n{ps}");
        }
        assert!(!ps.contains("paddock"), "{id} sees paddock's processes:\n{ps}");
        assert_eq!(exec(&p, id, "hostname").trim(), "bbox", "{id} has its own UTS namespace");
    }
    // The pod's first container is PID 1 of the shared namespace; b is PID 1 of its own.
    assert_eq!(exec(&p, &a, "cat /proc/1/cmdline | tr '\\0' ' '").trim(), "sleep 1000");
    assert_eq!(exec(&p, &b, "cat /proc/1/cmdline | tr '\\0' ' '").trim(), "sleep 1002");
    // The same network namespace: one loopback device, seen by all.
    let links = exec(&p, &pod, "readlink /proc/self/ns/net");
    assert_eq!(exec(&p, &a, "readlink /proc/self/ns/net"), links);
    assert_eq!(exec(&p, &b, "readlink /proc/self/ns/ipc"), exec(&p, &pod, "readlink /proc/self/ns/ipc"));
    // Separate files: each has its own root filesystem and mount namespace.
    assert_eq!(exec(&p, &pod, "cat /whoami"), "root");
    assert_eq!(exec(&p, &a, "cat /whoami"), "a");
    assert_eq!(exec(&p, &b, "cat /whoami"), "b");
    assert_ne!(exec(&p, &a, "readlink /proc/self/ns/mnt"), exec(&p, &b, "readlink /proc/self/ns/mnt"));

    // ps lists each container's own processes.
    let ps_a = p.ctl_ok(&["ps", &a]);
    assert!(ps_a.contains("sleep 1001") && !ps_a.contains("sleep 1002") && !ps_a.contains("sleep 1000"), "{ps_a}");
    let pids_b: Vec<i32> = serde_json::from_str(&p.ctl_ok(&["ps", "--format", "json", &b])).unwrap();
    assert_eq!(pids_b, vec![p.state(&b)["pid"].as_i64().unwrap() as i32]);

    // Exec'd exit codes, in the root container and in a subcontainer.
    assert_eq!(p.ctl(&["exec", &a, "--", "sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(p.ctl(&["exec", &pod, "--", "sh", "-c", "exit 4"]).status.code(), Some(4));

    // Killing one subcontainer leaves the others running.
    let pid_a = p.state(&a)["pid"].as_i64().unwrap() as i32;
    p.ctl_ok(&["kill", &a, "KILL"]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &a])).unwrap();
    assert_eq!(waited["exitStatus"], 137);
    assert!(!process_alive(pid_a));
    assert_eq!(p.state(&a)["status"], "stopped");
    assert_eq!(p.state(&b)["status"], "running");
    assert_eq!(p.state(&pod)["status"], "running");
    p.ctl_ok(&["delete", &a]);
    assert!(gofer_pid(&a).is_none(), "the deleted subcontainer's gofer still runs");
    assert_nothing_left(&a);
    assert_eq!(exec(&p, &b, "echo still here"), "still here\n");

    // Deleting the root container takes the whole sandbox down.
    let pid_b = p.state(&b)["pid"].as_i64().unwrap() as i32;
    let gofer_b = gofer_pid(&b).expect("b's gofer runs");
    p.ctl_ok(&["delete", "--force", &pod]);
    assert!(!process_alive(pid_b), "the subcontainer outlived its sandbox");
    assert!(!process_alive(gofer_b), "the subcontainer's gofer outlived its sandbox");
    let state_b = p.state(&b);
    assert_eq!(state_b["status"], "stopped");
    assert_eq!(state_b["pid"], 0);
    let out = p.ctl(&["exec", &b, "--", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    p.ctl_ok(&["delete", &b]);
    assert!(p.ids().is_empty(), "{:?}", p.ids());
    for id in [&pod, &a, &b] {
        assert_nothing_left(id);
    }
}

#[test]
fn joining_a_sandbox_that_is_missing_or_stopped_is_a_clear_error() {
    let p = Paddock::new();
    let sub = unique("orphan");
    let bundle = member("sub", "1000");
    containerd_member(&bundle, "no-such-sandbox");
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &sub]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-sandbox"), "{}", stderr(&out));
    assert!(p.ids().is_empty(), "a failed join left a container: {:?}", p.ids());
    assert!(!p.root().join(&sub).exists());

    // A sandbox whose root container has stopped takes no new members.
    let pod = unique("done");
    let root = Bundle::busybox(&["true"]);
    p.ctl_ok(&["create", "--bundle", &root.path_str(), &pod]);
    p.ctl_ok(&["start", &pod]);
    p.ctl_ok(&["wait", &pod]);
    let bundle = member("sub", "1000");
    containerd_member(&bundle, &pod);
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &sub]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    assert_eq!(p.ids(), vec![pod.clone()]);
    assert_nothing_left(&sub);

    // The annotation without a sandbox id names what is missing.
    let bundle = member("sub", "1000");
    bundle.annotate("io.kubernetes.cri.container-type", "container");
    let out = p.ctl(&["create", "--bundle", &bundle.path_str(), &sub]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("io.kubernetes.cri.sandbox-id"), "{}", stderr(&out));
}

#[test]
fn a_subcontainer_runs_once_started_and_waits_and_execs_like_any_container() {
    let p = Paddock::new();
    let pod = unique("pod");
    let sub = unique("sub");
    let root = member("root", "1000");
    create_and_start(&p, &root, &pod);
    let bundle = Bundle::busybox(&["sh", "-c", "echo $((6 * 7)) > /dev/shm/answer; exit 9"]);
    containerd_member(&bundle, &pod);
    p.ctl_ok(&["create", "--bundle", &bundle.path_str(), &sub]);
    assert_eq!(p.state(&sub)["status"], "created");
    assert!(gofer_pid(&sub).is_none(), "a subcontainer's gofer starts with it, not before");
    p.ctl_ok(&["start", &sub]);
    let waited: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &sub])).unwrap();
    assert_eq!(waited["exitStatus"], 9);
    assert_eq!(p.state(&sub)["status"], "stopped");
    assert_eq!(p.state(&pod)["status"], "running", "a subcontainer's exit stopped the sandbox");
    // Its exit left the sandbox's other members alone, and wait answers again.
    let again: serde_json::Value = serde_json::from_str(&p.ctl_ok(&["wait", &sub])).unwrap();
    assert_eq!(again["exitStatus"], 9);
    p.ctl_ok(&["delete", &sub]);
    assert_nothing_left(&sub);
    let out = p.ctl(&["exec", &pod, "--", "echo", "alive"]);
    assert_eq!(stdout(&out), "alive\n", "{}", stderr(&out));
}

#[test]
fn a_member_whose_spec_names_the_pods_namespaces_by_path_shares_the_sandboxs() {
    // containerd's CRI plugin writes a member's spec with its pod's namespaces as paths
    // (/proc/<pause pid>/ns/…): the member shares the sandbox's namespaces either way.
    let p = Paddock::new();
    let pod = unique("crins");
    let root = member("root", "1010");
    root.annotate("io.kubernetes.cri.container-type", "sandbox");
    create_and_start(&p, &root, &pod);
    let pause = p.state(&pod)["pid"].as_i64().unwrap();
    let member_id = unique("crins-m");
    let bundle = member("m", "1011");
    containerd_member(&bundle, &pod);
    bundle.edit_config(|c| {
        c["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid", "path": format!("/proc/{pause}/ns/pid")},
            {"type": "ipc", "path": format!("/proc/{pause}/ns/ipc")},
            {"type": "uts", "path": format!("/proc/{pause}/ns/uts")},
            {"type": "network", "path": format!("/proc/{pause}/ns/net")},
            {"type": "mount"},
        ])
    });
    create_and_start(&p, &bundle, &member_id);
    let ps = exec(&p, &member_id, "ps -o args");
    assert!(ps.contains("sleep 1010"), "the member does not share the pod's PID namespace:\n{ps}");
    for ns in ["pid", "net", "ipc", "uts"] {
        let inside = exec(&p, &member_id, &format!("readlink /proc/self/ns/{ns}"));
        let host = std::fs::read_link(format!("/proc/{pause}/ns/{ns}")).unwrap();
        assert_eq!(inside.trim(), host.to_string_lossy(), "{ns}");
    }
    // A container outside the pod joins its PID namespace by path too, as runc lets it
    // (docker's --pid container:X).
    let lone = Bundle::busybox(&["ps", "-o", "args"]);
    lone.edit_config(|c| {
        c["linux"]["namespaces"] =
            serde_json::json!([{"type": "pid", "path": format!("/proc/{pause}/ns/pid")}, {"type": "mount"}]);
        c.as_object_mut().unwrap().remove("hostname");
    });
    let lone_id = unique("crins-lone");
    let out = p.ctl(&["run", "--keep", "--bundle", &lone.path_str(), &lone_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("sleep 1010"), "it does not see the pod's processes:\n{}", stdout(&out));
    p.ctl_ok(&["delete", &lone_id]);
    assert_nothing_left(&lone_id);
    p.ctl_ok(&["delete", "--force", &pod]);
    p.ctl_ok(&["delete", "--force", &member_id]);
    assert_nothing_left(&member_id);
}
