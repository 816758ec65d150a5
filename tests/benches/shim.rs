//! containerd's cost of a container through each shim, two ways, each alternating in one run
//! between paddock's shim (`io.containerd.paddock.v1`), runc's shim (`io.containerd.runc.v2`)
//! with ctl as its runtime binary, and runc's shim with runc (the reference):
//!
//! - ctr: `ctr run --rm` of `/bin/true` on one busybox rootfs (a containerd without CRI,
//!   [`Containerd`]);
//! - CRI (issue 18): one pod through containerd's CRI plugin, as the kubelet drives it
//!   (a containerd with CRI and a CNI bridge of its own, [`Node`], the one `tests/cri.rs`
//!   uses): RunPodSandbox, CreateContainer and StartContainer of a busybox `sleep`,
//!   StopPodSandbox, each timed; RemovePodSandbox timed too, but left out of the pod's total.
//!   The images are built here and imported (no pull); the pod network has no route out.
//!
//! Run: `cargo bench -p paddock-tests --bench shim` (as root, with containerd, runc,
//! busybox-static and containernetworking-plugins installed; the workspace's release binaries
//! built). `ONLY=ctr` or `ONLY=cri` runs one of the two; `ROUNDS` (ctr, default 20),
//! `CRI_ROUNDS` (default 10) and `WARMUP` (default 2, per way) size them. Prints each one's
//! figures; the CRI table ends in `cri ratio paddock-shim/runc-shim = X`, the ratio of the
//! medians of the pod's total (Run + Create + Start + StopPodSandbox).
//!
//! Clean-up, even when a step fails (a panic): [`Containerd`]'s and [`Node`]'s drops stop
//! containerd and remove its pods, shims, the containers the runtimes still hold, the
//! paddockds, cgroups, mounts and directories; the ctr part stops the paddockd ctl started.

use std::process::Command;
use std::time::{Duration, Instant};

use harness::bench::{alternate, median, ms, rotation, runc, time, Summary};
use harness::containerd::{Containerd, RUNTIME};
use harness::cri::{ContainerSpec, Node, MIB};
use k8s_cri::v1::{
    ContainerState, ContainerStatusRequest, CreateContainerRequest, ListContainersRequest, ListPodSandboxRequest,
    NamespaceMode, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest,
};

/// A count from the environment variable `name`, else `default`.
fn count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a count")),
        Err(_) => default,
    }
}

fn main() {
    let only = std::env::var("ONLY").unwrap_or_default();
    let warmup = count("WARMUP", 2);
    match only.as_str() {
        "" => {
            ctr_bench(count("ROUNDS", 20).max(1), warmup);
            cri_bench(count("CRI_ROUNDS", 10).max(1), warmup);
        }
        "ctr" => ctr_bench(count("ROUNDS", 20).max(1), warmup),
        "cri" => cri_bench(count("CRI_ROUNDS", 10).max(1), warmup),
        other => panic!("ONLY={other}: ctr or cri"),
    }
}

/// `ctr run --rm ... /bin/true` through each shim.
fn ctr_bench(rounds: usize, warmup: usize) {
    let runc = runc();
    let ctd = Containerd::start();
    let rootfs = ctd.rootfs().display().to_string();
    let socket = ctd.socket();
    // ctl under runc's shim keeps its state in a root of the benchmark's own.
    let ctl_root = ctd.dir().join("ctl-root");
    let wrapper = ctd.dir().join("ctl");
    let script = format!("#!/bin/sh\nexec {} --root {} \"$@\"\n", harness::ctl_path().display(), ctl_root.display());
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let runc_root = ctd.dir().join("runc-root");
    let (wrapper, runc_root_arg) = (wrapper.display().to_string(), runc_root.display().to_string());
    let run = |id: &str, runtime: &[&str]| -> Duration {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&socket).args(["run", "--rm", "--env", "PATH=/bin"]).args(runtime);
        cmd.args(["--rootfs", &rootfs, id, "/bin/true"]);
        time(&mut cmd)
    };
    let ctl_root_arg = ctl_root.display().to_string();
    let shim_flags: [&str; 2] = ["--runtime", RUNTIME];
    let ctl_flags: [&str; 4] = ["--runc-binary", &wrapper, "--runc-root", &ctl_root_arg];
    let runc_flags: [&str; 4] = ["--runc-binary", runc, "--runc-root", &runc_root_arg];
    // ctl's containers and paddockd (started by ctl under runc's shim) go with the benchmark,
    // even when a run fails (before containerd does: this drops first).
    let _ctl_root = CtlRoot(ctl_root.join("default"));
    // Warm up: paddockd started (by the shim, and by ctl), the page cache filled.
    for i in 0..warmup.max(1) {
        run(&format!("warm-shim{i}"), &shim_flags);
        run(&format!("warm-ctl{i}"), &ctl_flags);
        run(&format!("warm-runc{i}"), &runc_flags);
    }

    let (mut shim, mut ctl, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        alternate(
            i,
            &mut [
                &mut || shim.push(run(&format!("bs{i}"), &shim_flags)),
                &mut || ctl.push(run(&format!("bc{i}"), &ctl_flags)),
                &mut || reference.push(run(&format!("br{i}"), &runc_flags)),
            ],
        );
    }
    let (s, c, r) = (median(shim), median(ctl), median(reference));
    println!("rounds: {rounds}, medians of `ctr run --rm ... /bin/true`:");
    println!("  paddock's shim (io.containerd.paddock.v1)   {:8.2} ms", ms(s));
    println!("  runc's shim, ctl as its runtime binary      {:8.2} ms", ms(c));
    println!("  runc's shim, runc                           {:8.2} ms", ms(r));
    println!("  ctl under runc's shim / paddock's shim      {:7.2}", ms(c) / ms(s));
    println!("paddock's shim vs runc's shim with runc: {:.2}x ({:.2} ms vs {:.2} ms)", ms(s) / ms(r), ms(s), ms(r));
}

/// On drop, deletes every container of a ctl state root and stops its paddockd.
struct CtlRoot(std::path::PathBuf);

impl Drop for CtlRoot {
    fn drop(&mut self) {
        harness::cri::delete_every_container(&harness::ctl_path(), &self.0);
        harness::cri::stop_paddockd(&self.0);
    }
}

/// The CRI steps of one pod, in order; the first four make the pod's total.
const STEPS: [&str; 5] = ["RunPodSandbox", "CreateContainer", "StartContainer", "StopPodSandbox", "RemovePodSandbox"];
/// How many of [`STEPS`] the pod's total counts.
const TOTAL_STEPS: usize = 4;

/// The node's runtime handlers as the table names them, the reference first.
const WAYS: [(&str, &str); 3] = [
    ("runc", "runc-shim (io.containerd.runc.v2 + runc)"),
    ("paddock-shim", "paddock-shim (io.containerd.paddock.v1)"),
    ("paddock", "ctl under runc-shim (io.containerd.runc.v2 + ctl)"),
];

/// One pod of runtime handler `handler` with one busybox `sleep` container, from
/// RunPodSandbox to RemovePodSandbox; the time of each of [`STEPS`]. Panics (the node's drop
/// cleans up) if a step fails or the container does not run.
fn pod_once(node: &Node, handler: &str) -> [Duration; 5] {
    let name = harness::unique(&format!("bench-{handler}"));
    let log_dir = node.dir().join("logs").join(&name);
    std::fs::create_dir_all(&log_dir).unwrap();
    let config = node.pod_config(&name, handler, "bench", &log_dir);
    let container = ContainerSpec {
        name: "sleeper",
        command: vec!["sleep".into(), "3600".into()],
        pid: NamespaceMode::Container,
        memory_limit: 128 * MIB,
    }
    .config();
    let must = Must { node, handler };
    let mut times = [Duration::ZERO; 5];
    let request = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.into() };
    let pod = timed(&mut times[0], || harness::cri!(node, run_pod_sandbox, request));
    let pod = must.hold(STEPS[0], pod).pod_sandbox_id;

    let request =
        CreateContainerRequest { pod_sandbox_id: pod.clone(), config: Some(container), sandbox_config: Some(config) };
    let id = must.hold(STEPS[1], timed(&mut times[1], || harness::cri!(node, create_container, request))).container_id;

    let request = StartContainerRequest { container_id: id.clone() };
    must.hold(STEPS[2], timed(&mut times[2], || harness::cri!(node, start_container, request)));

    // Untimed: the container runs (a benchmark of starts that fail would measure nothing).
    let request = ContainerStatusRequest { container_id: id, verbose: false };
    let status = must.hold("ContainerStatus", harness::cri!(node, container_status, request)).status;
    let state = status.map(|s| s.state);
    assert_eq!(state, Some(ContainerState::ContainerRunning as i32), "[{handler}] the container does not run");

    let request = StopPodSandboxRequest { pod_sandbox_id: pod.clone() };
    must.hold(STEPS[3], timed(&mut times[3], || harness::cri!(node, stop_pod_sandbox, request)));

    let request = RemovePodSandboxRequest { pod_sandbox_id: pod };
    must.hold(STEPS[4], timed(&mut times[4], || harness::cri!(node, remove_pod_sandbox, request)));
    times
}

/// A failed CRI call panics (the node's drop cleans up), with the end of containerd's log.
struct Must<'a> {
    node: &'a Node,
    handler: &'a str,
}

impl Must<'_> {
    /// The response of CRI call `what`, which must have succeeded.
    fn hold<T>(&self, what: &str, result: Result<T, String>) -> T {
        result
            .unwrap_or_else(|e| panic!("[{}] {what}: {e}\n{}", self.handler, self.node.log_tail("containerd.log", 40)))
    }
}

/// Runs `call`, putting how long it took in `slot`.
fn timed<T>(slot: &mut Duration, call: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = call();
    *slot = started.elapsed();
    result
}

/// Formats a duration in milliseconds for the table.
fn cell(d: Duration) -> String {
    format!("{:.1} ms", ms(d))
}

/// A CRI pod through each shim.
fn cri_bench(rounds: usize, warmup: usize) {
    let node = Node::start();
    // Warm up: each handler's first pod starts what starts lazily (paddockd, by the shim and
    // by ctl) and fills the page cache.
    for _ in 0..warmup.max(1) {
        for (handler, _) in WAYS {
            pod_once(&node, handler);
        }
    }
    // times[way][step]: one timing per round.
    let mut times: [[Vec<Duration>; 5]; 3] = Default::default();
    let mut totals: [Vec<Duration>; 3] = Default::default();
    for round in 0..rounds {
        for way in rotation(round, WAYS.len()) {
            let t = pod_once(&node, WAYS[way].0);
            for (step, d) in t.iter().enumerate() {
                times[way][step].push(*d);
            }
            totals[way].push(t[..TOTAL_STEPS].iter().sum());
        }
    }
    // Nothing may be left: every pod and container was removed.
    let pods = harness::cri!(node, list_pod_sandbox, ListPodSandboxRequest { filter: None }).map(|l| l.items.len());
    let containers =
        harness::cri!(node, list_containers, ListContainersRequest { filter: None }).map(|l| l.containers.len());
    assert_eq!((pods, containers), (Ok(0), Ok(0)), "pods and containers left after the benchmark");

    println!(
        "\nCRI pod (RunPodSandbox, Create+StartContainer of a busybox `sleep`, StopPodSandbox; \
         RemovePodSandbox apart): {rounds} rounds after {} warm-up pods per handler, alternating",
        warmup.max(1)
    );
    println!("| CRI step | handler | n | median | min | max | /runc-shim |");
    println!("|---|---|---|---|---|---|---|");
    let row = |measure: &str, way: usize, timings: &[Duration], reference: &[Duration]| {
        let Some(s) = Summary::of(timings.to_vec()) else { return };
        let r = Summary::of(reference.to_vec()).map_or(f64::NAN, |r| r.median.as_secs_f64());
        let ratio = s.median.as_secs_f64() / r;
        let (median, min, max) = (cell(s.median), cell(s.min), cell(s.max));
        println!("| {measure} | {} | {} | {median} | {min} | {max} | {ratio:.2} |", WAYS[way].1, s.n);
    };
    for (step, name) in STEPS.iter().enumerate() {
        for way in 0..WAYS.len() {
            row(name, way, &times[way][step], &times[0][step]);
        }
    }
    for way in 0..WAYS.len() {
        row("pod total (Run+Create+Start+StopPodSandbox)", way, &totals[way], &totals[0]);
    }
    let (shim, reference) = (median(totals[1].clone()), median(totals[0].clone()));
    let ctl = median(totals[2].clone());
    println!("ctl under runc-shim / paddock-shim = {:.2}", ctl.as_secs_f64() / shim.as_secs_f64());
    println!("cri ratio paddock-shim/runc-shim = {:.2}", shim.as_secs_f64() / reference.as_secs_f64());
}
