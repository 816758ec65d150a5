//! Kubernetes' path: containerd 1.6's CRI plugin, started privately by the test (its own
//! configuration, root, state, socket and CNI network: [`harness::cri::Node`]), drives a pod
//! through a real CRI gRPC client — once with the runtime handler `runc` (runc through the
//! runc v2 shim), once with `paddock` (the same shim with `BinaryName` = ctl), and once with
//! `paddock-shim` (paddock's own shim, `runtime_type = "io.containerd.paddock.v1"`), through
//! the same steps and checks. Every step runc passes must pass with both paddock handlers; the
//! table of all is printed.
//!
//! The pod's network is a CNI bridge of the test's own with no address on the host side and no
//! route out: nothing is sent beyond the namespaces the test creates. Images are busybox-static
//! OCI layouts built here and imported with `ctr images import`.
//!
//! Needs containerd, runc, busybox-static and containernetworking-plugins (.ci/run installs
//! them); a missing one fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::cri::{mount_points, tail, ContainerSpec as Spec, Node, HANDLERS, MIB, PAUSE_COMMAND};
use harness::{capture_within, cri, eventually, processes_mentioning, stderr, stdout};
use k8s_cri::v1::{
    ContainerState, ContainerStatsRequest, ContainerStatus, ContainerStatusRequest, CreateContainerRequest,
    ExecSyncRequest, LinuxContainerResources, ListContainersRequest, ListPodSandboxRequest, NamespaceMode,
    PodSandboxConfig, PodSandboxState, PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    ReopenContainerLogRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
    StopPodSandboxRequest, UpdateContainerResourcesRequest,
};

/// Fails the current step (returns `Err`) with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// The process running `sleep MARKER`, the command of one of the test's containers, found by
/// its command line (not through what a runtime reports).
fn sleeper(marker: &str) -> Option<i32> {
    let wanted = format!("sleep\0{marker}\0");
    processes_mentioning(&format!("sleep {marker}"))
        .into_iter()
        .find(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
}

/// What the kernel says of a process's cgroups: `/proc/PID/cgroup`, one line per hierarchy.
fn cgroup_lines(pid: i32) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    Ok(lines)
}

/// The directory of `pid`'s cgroup in the hierarchy of `controller` (v1), or in the unified
/// hierarchy when `controller` is empty.
fn cgroup_dir(pid: i32, controller: &str) -> Result<PathBuf, String> {
    for line in cgroup_lines(pid)? {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let path = path.trim_start_matches('/');
        if controller.is_empty() && controllers.is_empty() {
            let unified = Path::new("/sys/fs/cgroup/unified");
            let base = if unified.is_dir() { unified } else { Path::new("/sys/fs/cgroup") };
            return Ok(base.join(path));
        }
        if !controller.is_empty() && controllers.split(',').any(|c| c == controller) {
            return Ok(Path::new("/sys/fs/cgroup").join(controllers).join(path));
        }
    }
    Err(format!("process {pid} is in no {controller:?} cgroup"))
}

fn read_number(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = text.trim();
    if text == "max" {
        return Ok(u64::MAX);
    }
    text.parse().map_err(|e| format!("{}: {text:?}: {e}", path.display()))
}

fn stat_field(path: &Path, key: &str) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no {key} in {}", path.display()))
}

/// A container's figures read from its own cgroup files, as containerd 1.6 computes them:
/// CPU is cpuacct.usage (v2: cpu.stat usage_usec), the working set is the usage less the
/// inactive file pages, and the memory limit.
#[derive(Debug, Clone, Copy)]
struct Figures {
    cpu_ns: u64,
    working_set: u64,
    memory_limit: u64,
}

fn figures(pid: i32) -> Result<Figures, String> {
    if let Ok(memory) = cgroup_dir(pid, "memory") {
        let cpu = cgroup_dir(pid, "cpuacct")?;
        let usage = read_number(&memory.join("memory.usage_in_bytes"))?;
        let inactive = stat_field(&memory.join("memory.stat"), "total_inactive_file")?;
        return Ok(Figures {
            cpu_ns: read_number(&cpu.join("cpuacct.usage"))?,
            working_set: usage.saturating_sub(inactive),
            memory_limit: read_number(&memory.join("memory.limit_in_bytes"))?,
        });
    }
    let dir = cgroup_dir(pid, "")?;
    let usage = read_number(&dir.join("memory.current"))?;
    let inactive = stat_field(&dir.join("memory.stat"), "inactive_file")?;
    Ok(Figures {
        cpu_ns: stat_field(&dir.join("cpu.stat"), "usage_usec")? * 1000,
        working_set: usage.saturating_sub(inactive),
        memory_limit: read_number(&dir.join("memory.max"))?,
    })
}

fn namespace_of(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).map(|p| p.display().to_string()).unwrap_or_default()
}

/// Process `pid`'s command line, arguments separated by spaces.
fn command_line(pid: i32) -> String {
    let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&command).replace('\0', " ").trim().to_string()
}

/// How the process a runtime reported for container `name`, `pid`, differs from the container's
/// own process `process` in what containerd reads through that pid: its cgroups (the shim loads
/// them from `/proc/<pid>/cgroup` right after `create`, for its metrics and its OOM watch) and
/// its network, IPC and UTS namespaces (the pod's members join them). Empty when it stands where
/// the container does.
///
/// Every hierarchy but the v1 freezer, which containerd never reads through the pid (its pause
/// is the runtime's `pause`), and which paddock keeps for the container's own processes.
fn stands_for(name: &str, pid: i32, process: i32) -> Result<Vec<String>, String> {
    let mut wrong = Vec::new();
    let read = |pid| -> Result<Vec<String>, String> {
        Ok(cgroup_lines(pid)?.into_iter().filter(|l| l.split(':').nth(1) != Some("freezer")).collect())
    };
    let (reported, actual) = (read(pid)?, read(process)?);
    if reported != actual {
        wrong.push(format!(
            "{name}: the reported pid {pid} (`{}`) is in cgroups {reported:?}, the container's process {process} in \
             {actual:?}",
            command_line(pid)
        ));
    }
    for kind in ["net", "ipc", "uts"] {
        let (reported, actual) = (namespace_of(pid, kind), namespace_of(process, kind));
        if reported != actual {
            wrong.push(format!("{name}: the reported pid {pid} is in {reported}, the container's process in {actual}"));
        }
    }
    Ok(wrong)
}

/// The pod of one runtime handler and what its steps found.
struct PodRun<'a> {
    node: &'a Node,
    handler: &'static str,
    pod_config: PodSandboxConfig,
    pod: Option<String>,
    containers: BTreeMap<&'static str, String>,
    markers: BTreeMap<&'static str, String>,
    log_dir: PathBuf,
    results: Vec<(&'static str, Result<String, String>)>,
}

impl<'a> PodRun<'a> {
    fn new(node: &'a Node, handler: &'static str) -> Self {
        let log_dir = node.dir().join("logs").join(handler);
        std::fs::create_dir_all(&log_dir).unwrap();
        let pod_config = node.pod_config(&format!("cri-{handler}"), handler, &format!("pod-{handler}"), &log_dir);
        // Distinct per test process and handler: the containers' processes are found by them.
        let base = 1_000_000_000 + u64::from(std::process::id() % 100_000) * 100;
        let offset = match handler {
            "runc" => 0,
            "paddock" => 50,
            _ => 75,
        };
        let markers = ["shared", "own"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| (name, (base + offset + i as u64).to_string()))
            .collect();
        Self {
            node,
            handler,
            pod_config,
            pod: None,
            containers: BTreeMap::new(),
            markers,
            log_dir,
            results: Vec::new(),
        }
    }

    /// Runs one step, recording its outcome (a panic inside counts as a failure).
    fn step(&mut self, name: &'static str, f: impl FnOnce(&mut Self) -> Result<String, String>) {
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))).unwrap_or_else(|panic| {
            Err(panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()))
        });
        match &outcome {
            Ok(note) => println!("[{}] {name}: ok ({:.1?}) {note}", self.handler, started.elapsed()),
            Err(why) => println!("[{}] {name}: FAILED ({:.1?}): {why}", self.handler, started.elapsed()),
        }
        self.results.push((name, outcome));
    }

    fn pod_id(&self) -> Result<String, String> {
        self.pod.clone().ok_or_else(|| "no pod (RunPodSandbox failed)".to_string())
    }

    fn container(&self, name: &str) -> Result<String, String> {
        self.containers.get(name).cloned().ok_or_else(|| format!("no container {name:?} (its creation failed)"))
    }

    fn create_and_start(&mut self, spec: Spec) -> Result<String, String> {
        let pod = self.pod_id()?;
        let config = spec.config();
        let created = cri!(
            self.node,
            create_container,
            CreateContainerRequest {
                pod_sandbox_id: pod,
                config: Some(config),
                sandbox_config: Some(self.pod_config.clone()),
            }
        )?;
        let id = created.container_id;
        self.containers.insert(spec.name, id.clone());
        cri!(self.node, start_container, StartContainerRequest { container_id: id.clone() })?;
        Ok(id)
    }

    fn status(&self, id: &str) -> Result<(ContainerStatus, serde_json::Value), String> {
        let response =
            cri!(self.node, container_status, ContainerStatusRequest { container_id: id.into(), verbose: true })?;
        let info = response.info.get("info").and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default();
        Ok((response.status.ok_or("ContainerStatus without a status")?, info))
    }

    /// Waits until container `id` has exited; returns its status.
    fn exited(&self, id: &str, within: Duration) -> Result<ContainerStatus, String> {
        let mut last = None;
        eventually(within, || {
            last = self.status(id).ok().map(|(s, _)| s);
            last.as_ref().is_some_and(|s| s.state == ContainerState::ContainerExited as i32)
        });
        match last {
            Some(s) if s.state == ContainerState::ContainerExited as i32 => Ok(s),
            other => Err(format!("container {id} did not exit within {within:?}: {other:?}")),
        }
    }

    fn exec(&self, name: &str, cmd: &[&str]) -> Result<(String, String, i32), String> {
        let id = self.container(name)?;
        let out = cri!(
            self.node,
            exec_sync,
            ExecSyncRequest { container_id: id, cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 60 }
        )?;
        Ok((String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into(), out.exit_code))
    }

    /// The host process of container `name` (its `sleep MARKER`).
    fn process_of(&self, name: &str) -> Result<i32, String> {
        let marker = &self.markers[name];
        sleeper(marker).ok_or_else(|| format!("no process runs `sleep {marker}` (container {name})"))
    }

    fn stop(&self, name: &str, grace: i64) -> Result<(Duration, ContainerStatus), String> {
        let id = self.container(name)?;
        let started = Instant::now();
        cri!(self.node, stop_container, StopContainerRequest { container_id: id.clone(), timeout: grace })?;
        let status = self.exited(&id, Duration::from_secs(30))?;
        Ok((started.elapsed(), status))
    }

    /// Every step, in order. Each records its own outcome; a later step that needs what an
    /// earlier one failed to make fails too, saying so.
    fn run(&mut self) {
        self.step("RunPodSandbox", |r| {
            let handler = r.handler.to_string();
            let created = cri!(
                r.node,
                run_pod_sandbox,
                RunPodSandboxRequest { config: Some(r.pod_config.clone()), runtime_handler: handler }
            )?;
            r.pod = Some(created.pod_sandbox_id.clone());
            let status = cri!(
                r.node,
                pod_sandbox_status,
                PodSandboxStatusRequest { pod_sandbox_id: created.pod_sandbox_id.clone(), verbose: false }
            )?
            .status
            .ok_or("no status")?;
            ensure!(status.state == PodSandboxState::SandboxReady as i32, "pod not ready: {status:?}");
            let ip = status.network.map(|n| n.ip).unwrap_or_default();
            ensure!(ip.starts_with("10.222.0."), "pod address {ip:?} is not from the test's network");
            Ok(format!("pod {} at {ip}", &created.pod_sandbox_id[..12]))
        });

        self.step("Create+StartContainer x2 (pid POD, pid CONTAINER)", |r| {
            for (name, pid) in [("shared", NamespaceMode::Pod), ("own", NamespaceMode::Container)] {
                let command = vec!["sleep".to_string(), r.markers[name].clone()];
                r.create_and_start(Spec { name, command, pid, memory_limit: 128 * MIB })?;
            }
            for name in ["shared", "own"] {
                let (status, _) = r.status(&r.container(name)?)?;
                ensure!(status.state == ContainerState::ContainerRunning as i32, "{name}: {status:?}");
            }
            Ok(String::new())
        });

        self.step("one shim process serves the pod", |r| {
            let pod = r.pod_id()?;
            let mut ids = vec![pod.clone()];
            ids.extend(r.containers.values().cloned());
            let dir = r.node.dir().display().to_string();
            let shims: Vec<(i32, String)> = processes_mentioning(&format!("-address {dir}/containerd.sock"))
                .into_iter()
                .map(|pid| (pid, command_line(pid)))
                .filter(|(_, command)| command.contains("containerd-shim") && ids.iter().any(|id| command.contains(id)))
                .collect();
            ensure!(
                shims.len() == 1 && shims[0].1.contains(&format!("-id {pod}")),
                "the pod's shims (one per pod, named by the pod): {shims:?}"
            );
            Ok(format!("pid {}", shims[0].0))
        });

        self.step("ExecSync (stdout, stderr, exit code)", |r| {
            for name in ["shared", "own"] {
                let (out, err, code) = r.exec(name, &["sh", "-c", "echo out; echo err >&2; exit 3"])?;
                ensure!((out.as_str(), err.as_str(), code) == ("out\n", "err\n", 3), "{name}: {out:?} {err:?} {code}");
            }
            Ok(String::new())
        });

        self.step("ExecSync: PID 1 of pid CONTAINER is its command", |r| {
            let (out, _, code) = r.exec("own", &["cat", "/proc/1/cmdline"])?;
            let wanted = format!("sleep\0{}\0", r.markers["own"]);
            ensure!(code == 0 && out == wanted, "/proc/1/cmdline is {out:?} (exit {code}), not {wanted:?}");
            Ok(String::new())
        });

        self.step("ExecSync: PID 1 of pid POD is the pause", |r| {
            let (out, _, code) = r.exec("shared", &["cat", "/proc/1/cmdline"])?;
            let wanted = format!("{}\0", PAUSE_COMMAND.join("\0"));
            ensure!(code == 0 && out == wanted, "/proc/1/cmdline is {out:?} (exit {code}), not {wanted:?}");
            let (ps, _, _) = r.exec("shared", &["ps", "-o", "args"])?;
            ensure!(ps.contains(&format!("sleep {}", r.markers["shared"])), "the pod's ps misses the container: {ps}");
            Ok(String::new())
        });

        self.step("ContainerStatus: RUNNING, pid in the container's cgroups and namespaces", |r| {
            let (mut notes, mut wrong) = (Vec::new(), Vec::new());
            for name in ["shared", "own"] {
                let (status, info) = r.status(&r.container(name)?)?;
                ensure!(status.state == ContainerState::ContainerRunning as i32, "{name}: {status:?}");
                let pid = info["pid"].as_i64().ok_or_else(|| format!("{name}: no pid in {info}"))? as i32;
                notes.push(format!("{name}: pid {pid} `{}`", command_line(pid)));
                wrong.extend(stands_for(name, pid, r.process_of(name)?)?);
            }
            ensure!(wrong.is_empty(), "{}", wrong.join("; "));
            Ok(notes.join(", "))
        });

        self.step("PodSandboxStatus: pid in the pause's cgroups and namespaces", |r| {
            let pod = r.pod_id()?;
            let response = cri!(
                r.node,
                pod_sandbox_status,
                PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: true }
            )?;
            let info: serde_json::Value =
                response.info.get("info").and_then(|i| serde_json::from_str(i).ok()).unwrap_or_default();
            let pid = info["pid"].as_i64().ok_or_else(|| format!("no pid in {info}"))? as i32;
            // The pause runs PAUSE_COMMAND in the pod's own cgroup, named after the pod.
            let wanted = format!("{}\0", PAUSE_COMMAND.join("\0"));
            let pause = processes_mentioning(&PAUSE_COMMAND.join(" "))
                .into_iter()
                .find(|p| {
                    std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == wanted.as_bytes())
                        && cgroup_lines(*p).is_ok_and(|lines| lines.iter().any(|l| l.contains(&pod)))
                })
                .ok_or("no pause process in the pod's cgroup")?;
            let wrong = stands_for("pause", pid, pause)?;
            ensure!(wrong.is_empty(), "{}", wrong.join("; "));
            Ok(format!("pid {pid} `{}`", command_line(pid)))
        });

        self.step("ContainerStats = the container's cgroup files", |r| {
            let (mut notes, mut wrong) = (Vec::new(), Vec::new());
            for name in ["shared", "own"] {
                let id = r.container(name)?;
                let process = r.process_of(name)?;
                let before = figures(process)?;
                let stats = cri!(r.node, container_stats, ContainerStatsRequest { container_id: id })?
                    .stats
                    .ok_or("ContainerStats without stats")?;
                let after = figures(process)?;
                let cpu = stats.cpu.and_then(|c| c.usage_core_nano_seconds).map(|v| v.value);
                let memory = stats.memory.and_then(|m| m.working_set_bytes).map(|v| v.value);
                let (Some(cpu), Some(memory)) = (cpu, memory) else {
                    return Err(format!("{name}: no cpu or memory figures: cpu {cpu:?}, memory {memory:?}"));
                };
                // The shim reads between the test's two reads; a sleeping process barely moves.
                const CPU_SLACK: u64 = 5_000_000;
                const MEMORY_SLACK: u64 = 256 << 10;
                if cpu + CPU_SLACK < before.cpu_ns || cpu > after.cpu_ns + CPU_SLACK {
                    wrong.push(format!("{name}: CPU {cpu} ns, its cgroup {} .. {} ns", before.cpu_ns, after.cpu_ns));
                }
                let (low, high) =
                    (before.working_set.min(after.working_set), before.working_set.max(after.working_set));
                if memory + MEMORY_SLACK < low || memory > high + MEMORY_SLACK {
                    wrong.push(format!("{name}: working set {memory} bytes, its cgroup {low} .. {high}"));
                }
                if before.memory_limit != 128 << 20 {
                    wrong.push(format!("{name}: memory limit {} in its cgroup, not 128 MiB", before.memory_limit));
                }
                notes.push(format!("{name}: {cpu} ns, {memory} B"));
            }
            ensure!(wrong.is_empty(), "{}", wrong.join("; "));
            Ok(notes.join(", "))
        });

        self.step("OOM: reason OOMKilled, exit 137", |r| {
            let script = "x=$(yes | head -c 200000000); echo survived ${#x}";
            let command = ["sh", "-c", script].map(String::from).to_vec();
            let id = r.create_and_start(Spec {
                name: "oom",
                command,
                pid: NamespaceMode::Container,
                memory_limit: 32 * MIB,
            })?;
            let mut last = None;
            eventually(Duration::from_secs(60), || {
                last = r.status(&id).ok().map(|(s, _)| s);
                last.as_ref().is_some_and(|s| s.state == ContainerState::ContainerExited as i32 && !s.reason.is_empty())
            });
            let status = last.ok_or("no status")?;
            ensure!(
                status.state == ContainerState::ContainerExited as i32
                    && status.exit_code == 137
                    && status.reason == "OOMKilled",
                "state {}, exit {}, reason {:?}",
                status.state,
                status.exit_code,
                status.reason
            );
            Ok(String::new())
        });

        self.step("ReopenContainerLog", |r| {
            let script =
                "trap 'echo got TERM; exit 3' TERM; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done";
            let command = ["sh", "-c", script].map(String::from).to_vec();
            let id =
                r.create_and_start(Spec { name: "logger", command, pid: NamespaceMode::Container, memory_limit: 0 })?;
            let log = r.log_dir.join("logger.log");
            let ticked = |path: &Path| std::fs::read_to_string(path).is_ok_and(|t| t.contains(" stdout F tick "));
            ensure!(eventually(Duration::from_secs(20), || ticked(&log)), "no tick in {}", log.display());
            let rotated = r.log_dir.join("logger.log.1");
            std::fs::rename(&log, &rotated).map_err(|e| e.to_string())?;
            cri!(r.node, reopen_container_log, ReopenContainerLogRequest { container_id: id })?;
            ensure!(eventually(Duration::from_secs(20), || ticked(&log)), "no tick in the reopened {}", log.display());
            Ok(String::new())
        });

        self.step("UpdateContainerResources (memory limit in the cgroup)", |r| {
            let id = r.container("own")?;
            let resources =
                LinuxContainerResources { memory_limit_in_bytes: 96 * MIB, cpu_shares: 256, ..Default::default() };
            cri!(
                r.node,
                update_container_resources,
                UpdateContainerResourcesRequest { container_id: id, linux: Some(resources), ..Default::default() }
            )?;
            let limit = figures(r.process_of("own")?)?.memory_limit;
            ensure!(limit == 96 << 20, "memory limit {limit} in the container's cgroup, not {}", 96 << 20);
            Ok(String::new())
        });

        self.step("StopContainer: PID 1 ignoring TERM waits the grace period, 137", |r| {
            let (took, status) = r.stop("own", 2)?;
            ensure!(took >= Duration::from_secs(2), "stopped after {took:?}, within the grace period");
            ensure!(took < Duration::from_secs(12), "stopped only after {took:?}");
            ensure!(status.exit_code == 137, "exit {} (reason {:?}) after {took:?}", status.exit_code, status.reason);
            Ok(format!("{took:.1?}"))
        });

        self.step("StopContainer: a TERM trap runs, exit 3 at once", |r| {
            let (took, status) = r.stop("logger", 20)?;
            ensure!(took < Duration::from_secs(10), "took {took:?}");
            ensure!(status.exit_code == 3, "exit {} (reason {:?})", status.exit_code, status.reason);
            let log = std::fs::read_to_string(r.log_dir.join("logger.log")).unwrap_or_default();
            ensure!(log.contains(" stdout F got TERM"), "the trap's output is not in the log");
            Ok(format!("{took:.1?}"))
        });

        self.step("StopContainer: not PID 1 (pid POD), TERM ends sleep, 143", |r| {
            let (took, status) = r.stop("shared", 20)?;
            ensure!(took < Duration::from_secs(10), "took {took:?}");
            ensure!(status.exit_code == 143, "exit {} (reason {:?})", status.exit_code, status.reason);
            Ok(format!("{took:.1?}"))
        });

        self.step("RemoveContainer", |r| {
            r.pod_id()?;
            for (name, id) in r.containers.clone() {
                cri!(r.node, remove_container, RemoveContainerRequest { container_id: id.clone() })
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            let left = cri!(r.node, list_containers, ListContainersRequest { filter: None })?.containers;
            ensure!(left.is_empty(), "containers left: {left:?}");
            Ok(String::new())
        });

        self.step("StopPodSandbox", |r| {
            let pod = r.pod_id()?;
            cri!(r.node, stop_pod_sandbox, StopPodSandboxRequest { pod_sandbox_id: pod.clone() })?;
            let status =
                cri!(r.node, pod_sandbox_status, PodSandboxStatusRequest { pod_sandbox_id: pod, verbose: false })?
                    .status
                    .ok_or("no status")?;
            ensure!(status.state == PodSandboxState::SandboxNotready as i32, "{status:?}");
            Ok(String::new())
        });

        self.step("RemovePodSandbox", |r| {
            let pod = r.pod_id()?;
            cri!(r.node, remove_pod_sandbox, RemovePodSandboxRequest { pod_sandbox_id: pod })?;
            let left = cri!(r.node, list_pod_sandbox, ListPodSandboxRequest { filter: None })?.items;
            ensure!(left.is_empty(), "pods left: {left:?}");
            Ok(String::new())
        });

        self.step("nothing left (processes, mounts, cgroups, runtime state)", |r| {
            let pod = r.pod_id()?;
            let mut ids = vec![pod.clone()];
            ids.extend(r.containers.values().cloned());
            let markers: Vec<String> = r.markers.values().map(|m| format!("sleep {m}")).collect();
            let dir = r.node.dir().display().to_string();
            let root = r.node.runtime_root(r.handler);
            let leftovers = || {
                let mut found = Vec::new();
                for needle in ids.iter().chain(&markers) {
                    let procs = processes_mentioning(needle);
                    if !procs.is_empty() {
                        found.push(format!("processes mentioning {needle}: {procs:?}"));
                    }
                }
                for id in &ids {
                    for (what, list) in [
                        ("mounts", harness::mounts_mentioning(id)),
                        ("cgroups", harness::cgroups_mentioning(id).iter().map(|p| p.display().to_string()).collect()),
                    ] {
                        if !list.is_empty() {
                            found.push(format!("{what} of {id}: {list:?}"));
                        }
                    }
                }
                let beneath: Vec<String> = mount_points().into_iter().filter(|m| m.starts_with(&dir)).collect();
                if !beneath.is_empty() {
                    found.push(format!("mounts beneath {dir}: {beneath:?}"));
                }
                let cached: Vec<String> = std::fs::read_dir("/var/lib/cni/results")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(&pod))
                    .collect();
                if !cached.is_empty() {
                    found.push(format!("CNI results cached: {cached:?}"));
                }
                found
            };
            let clean = eventually(Duration::from_secs(30), || leftovers().is_empty());
            ensure!(clean, "{}", leftovers().join("; "));
            let binary = if r.handler == "runc" { PathBuf::from("runc") } else { harness::ctl_path() };
            let listed = capture_within(
                Command::new(binary).arg("--root").arg(&root).args(["list", "-q"]),
                Duration::from_secs(60),
            );
            ensure!(
                listed.status.success() && stdout(&listed).trim().is_empty(),
                "{} list: {}{}",
                r.handler,
                stdout(&listed),
                stderr(&listed)
            );
            Ok(String::new())
        });
    }
}

#[test]
fn cri_pod_lifecycle_passes_with_paddock_every_step_it_passes_with_runc() {
    let node = Node::start();
    let mut runs = Vec::new();
    for handler in HANDLERS {
        let started = Instant::now();
        let mut run = PodRun::new(&node, handler);
        run.run();
        println!("[{handler}] {:.1?}", started.elapsed());
        runs.push(run.results);
        // Whatever a failed step left of this pod goes before the next handler's.
        node.remove_every_pod();
    }
    let (runc, paddock, shim) = (&runs[0], &runs[1], &runs[2]);
    let width = runc.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    println!("\n{:width$}  runc  paddock  paddock-shim", "CRI step");
    let (mut regressions, mut reference_failures) = (Vec::new(), Vec::new());
    for (((name, by_runc), (_, by_paddock)), (_, by_shim)) in runc.iter().zip(paddock).zip(shim) {
        let mark = |r: &Result<String, String>| if r.is_ok() { "pass" } else { "FAIL" };
        println!("{name:width$}  {}  {}     {}", mark(by_runc), mark(by_paddock), mark(by_shim));
        match by_runc {
            Ok(_) => {
                for (handler, outcome) in [("paddock", by_paddock), ("paddock-shim", by_shim)] {
                    if let Err(why) = outcome {
                        regressions.push(format!("[{handler}] {name}: {why}"));
                    }
                }
            }
            Err(why) => reference_failures.push(format!("{name}: {why}")),
        }
    }
    // A step the reference fails judges nothing: the machine or the test is wrong there.
    assert!(
        reference_failures.is_empty(),
        "runc, the reference, fails steps (see containerd's log):\n{}\n{}",
        reference_failures.join("\n"),
        node.log_tail("containerd.log", 60)
    );
    if !regressions.is_empty() {
        println!("\ncontainerd's log (last lines):\n{}", node.log_tail("containerd.log", 60));
        for handler in ["paddock", "paddock-shim"] {
            let log = tail(&node.runtime_root(handler).join("paddockd.log"), 60);
            println!("\npaddockd's log for {handler} (last lines):\n{log}");
        }
    }
    assert!(regressions.is_empty(), "steps runc passes and paddock fails:\n{}", regressions.join("\n"));
}
