//! `linux.resources` as runc applies them: which cgroup files are written, with what, in what
//! order — and which are left alone.
//!
//! runc (libcontainer's `fs` and `fs2` drivers, now the `opencontainers/cgroups` module) reads a
//! zero or absent value as "not set" and leaves the file untouched: Docker sends
//! `blockIO.weight: 0` with every `docker run`, and `docker update` sends `cpu.quota: 0`,
//! neither of which the kernel would accept. A few values have a meaning of their own (`-1`
//! is "unlimited" for memory, swap, quota and pids), and some fields exist on one cgroup
//! version only (runc silently skips the others).
//!
//! cgroups-rs 0.5 does not write what runc writes in too many places to be handed the spec
//! (zeros written, `cpu.max` written twice, v2 `memory.swap.max` zeroed whenever a limit is
//! set, a reservation alone dropped on v2, the old shares-to-weight formula, realtime,
//! leaf-weight and network knobs written on v2 where they do not exist, `idle`, `burst`,
//! `rdma` and `unified` never written, ...). So [`plan`] turns the resources into the list of
//! writes runc would do — pure, so every field's rule is unit-tested — and [`execute`] performs
//! it through the small [`Files`] trait (the real cgroupfs, or a recording double in tests).
//! [`crate::cgroups`] creates, finds and freezes the cgroups itself too, from the mount layout
//! it reads once per process.
//!
//! ```
//! use actors::resources::{plan, Version};
//! let docker: oci_spec::runtime::LinuxResources =
//!     serde_json::from_str(r#"{"blockIO": {"weight": 0}, "cpu": {"quota": 0, "shares": 512}}"#).unwrap();
//! let writes: Vec<String> = plan(&docker, Version::V1).unwrap().steps.iter().map(|s| s.to_string()).collect();
//! assert_eq!(writes, ["cpu/cpu.shares=512 (read back)"]);
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

/// The cgroup interface being written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller (also the "hybrid" layout, whose cgroup2 mount holds no
    /// controllers).
    V1,
    /// The unified hierarchy.
    V2,
}

/// The controller a file belongs to: on cgroup v1 it names the hierarchy (the directory) the
/// file is in; on v2 every file is in the cgroup's one directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    /// `cpu` (v1: also `cpuacct`, mounted together on most hosts).
    Cpu,
    /// `cpuset`.
    Cpuset,
    /// `memory`.
    Memory,
    /// `pids`.
    Pids,
    /// `blkio` (v2: `io`).
    Blkio,
    /// `hugetlb`.
    Hugetlb,
    /// `net_cls` (v1 only).
    NetCls,
    /// `net_prio` (v1 only).
    NetPrio,
    /// `rdma`.
    Rdma,
    /// A `linux.resources.unified` key: v2 only, wherever its name says.
    Unified,
}

impl Controller {
    /// The v1 subsystem name (as in `/proc/self/cgroup` and the hierarchy's mount options).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cpuset => "cpuset",
            Self::Memory => "memory",
            Self::Pids => "pids",
            Self::Blkio => "blkio",
            Self::Hugetlb => "hugetlb",
            Self::NetCls => "net_cls",
            Self::NetPrio => "net_prio",
            Self::Rdma => "rdma",
            Self::Unified => "unified",
        }
    }
}

/// One file write, with runc's allowances for what the kernel may say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// Where the file is.
    pub controller: Controller,
    /// The file's name in the cgroup directory.
    pub file: String,
    /// What is written.
    pub value: String,
    /// The file and value to write instead when `file` does not exist (runc's fallbacks:
    /// `blkio.bfq.weight` for `blkio.weight`, `io.weight` for `io.bfq.weight`, the `noprefix`
    /// cpuset names).
    pub otherwise: Option<(String, String)>,
    /// A missing file is not an error: the kernel lacks the knob and runc skips it.
    pub missing_ok: bool,
    /// If the kernel refuses the value (EINVAL), try again right after this other file is
    /// written: two files checked against each other (period and quota) need the right order,
    /// which depends on the old values.
    pub retry_after: Option<&'static str>,
    /// Read the file back and fail if the kernel clamped the value (runc does for cpu.shares).
    pub read_back: bool,
    /// Write each line with its own `write(2)` (runc does for `unified` values).
    pub by_line: bool,
}

impl Write {
    fn new(controller: Controller, file: impl Into<String>, value: impl ToString) -> Self {
        Self {
            controller,
            file: file.into(),
            value: value.to_string(),
            otherwise: None,
            missing_ok: false,
            retry_after: None,
            read_back: false,
            by_line: false,
        }
    }

    fn otherwise(mut self, file: impl Into<String>, value: impl ToString) -> Self {
        self.otherwise = Some((file.into(), value.to_string()));
        self
    }

    fn missing_ok(mut self) -> Self {
        self.missing_ok = true;
        self
    }

    fn retry_after(mut self, file: Option<&'static str>) -> Self {
        self.retry_after = file;
        self
    }
}

/// One thing [`execute`] does: mostly a plain write; a few need the file's current content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write a file.
    Write(Write),
    /// v1 `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes` (0: not set), ordered by
    /// [`memory_and_swap_v1`] from the current limit and whether swap is accounted.
    MemoryAndSwapV1 {
        /// The memory limit.
        limit: i64,
        /// The memory+swap limit.
        swap: i64,
    },
    /// v2 `cpu.max`: the quota and period given, the other kept from the file (see
    /// [`cpu_max_line`]). One write, as runc does (cgroups-rs writes it twice when both are
    /// given, and so passes through a state the kernel may refuse).
    CpuMax {
        /// The quota in µs (negative: unlimited).
        quota: Option<i64>,
        /// The period in µs.
        period: Option<u64>,
    },
    /// v2 `memory.checkBeforeUpdate`: refuse limits at or below `memory.current` (0: not set).
    CheckMemoryUsage {
        /// The memory limit asked for.
        limit: i64,
        /// The swap limit asked for.
        swap: i64,
    },
    /// v2 `weightDevice`: `io.bfq.weight` lines, written only if BFQ takes per-device weights
    /// (see [`bfq_takes_device_weights`]); silently skipped otherwise, as runc does.
    BfqDeviceWeights(Vec<String>),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Write(w) => {
                write!(f, "{}/{}={}", w.controller.name(), w.file, w.value)?;
                if let Some((file, value)) = &w.otherwise {
                    write!(f, " (else {file}={value})")?;
                }
                if w.missing_ok {
                    write!(f, " (if present)")?;
                }
                if let Some(after) = w.retry_after {
                    write!(f, " (retry after {after})")?;
                }
                if w.read_back {
                    write!(f, " (read back)")?;
                }
                if w.by_line {
                    write!(f, " (by line)")?;
                }
                Ok(())
            }
            Self::MemoryAndSwapV1 { limit, swap } => write!(f, "memory limit={limit} swap={swap}"),
            Self::CpuMax { quota, period } => write!(f, "cpu.max quota={quota:?} period={period:?}"),
            Self::CheckMemoryUsage { limit, swap } => write!(f, "check usage limit={limit} swap={swap}"),
            Self::BfqDeviceWeights(lines) => write!(f, "io.bfq.weight devices={lines:?}"),
        }
    }
}

/// What applying a `linux.resources` amounts to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In order.
    pub steps: Vec<Step>,
    /// Fields that were given but that runc ignores (kernel memory always; on v2 the knobs v2
    /// does not have): named as JSON paths under `linux.resources`, for the log.
    pub ignored: Vec<&'static str>,
}

/// Why resources cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// A value runc would refuse before writing anything.
    #[error("linux.resources.{field}: {why}")]
    Invalid {
        /// The field under `linux.resources`.
        field: &'static str,
        /// What is wrong with its value.
        why: String,
    },
    /// A v1 controller that is not mounted.
    #[error("the {controller} controller is not mounted")]
    NoController {
        /// The controller's name.
        controller: &'static str,
    },
    /// The kernel refused a write.
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The kernel took a different value, or the new limit is below the current usage.
    #[error("{0}")]
    Refused(String),
}

fn invalid(field: &'static str, why: impl Into<String>) -> ResourceError {
    ResourceError::Invalid { field, why: why.into() }
}

/// The writes runc would do for `resources` on a cgroup of `version` (device rules aside:
/// see [`crate::cgroups::Cgroup::set_devices`]). A zero or absent value writes nothing; so a
/// partial object (an update) leaves every other file as it is.
pub fn plan(resources: &LinuxResources, version: Version) -> Result<Plan, ResourceError> {
    let mut plan = Plan::default();
    // runc's order of controllers, per driver (fs: cpuset, memory, cpu, pids, blkio, hugetlb,
    // net_cls, net_prio, rdma; fs2: pids, memory, io, cpu, cpuset, hugetlb, rdma, unified).
    match version {
        Version::V1 => {
            if let Some(cpu) = resources.cpu() {
                plan_cpuset(cpu, version, &mut plan);
            }
            if let Some(memory) = resources.memory() {
                plan_memory(memory, version, &mut plan)?;
            }
            if let Some(cpu) = resources.cpu() {
                plan_cpu(cpu, version, &mut plan);
            }
            plan_pids(resources, &mut plan);
            if let Some(block_io) = resources.block_io() {
                plan_block_io(block_io, version, &mut plan);
            }
        }
        Version::V2 => {
            plan_pids(resources, &mut plan);
            if let Some(memory) = resources.memory() {
                plan_memory(memory, version, &mut plan)?;
            }
            if let Some(block_io) = resources.block_io() {
                plan_block_io(block_io, version, &mut plan);
            }
            if let Some(cpu) = resources.cpu() {
                plan_cpu(cpu, version, &mut plan);
                plan_cpuset(cpu, version, &mut plan);
            }
        }
    }
    plan_hugepages(resources, version, &mut plan)?;
    plan_network(resources, version, &mut plan);
    plan_rdma(resources, &mut plan);
    plan_unified(resources, version, &mut plan)?;
    Ok(plan)
}

fn write(plan: &mut Plan, w: Write) {
    plan.steps.push(Step::Write(w));
}

/// `cpu.cpus`, `cpu.mems`: an empty string is "not set".
fn plan_cpuset(cpu: &LinuxCpu, version: Version, plan: &mut Plan) {
    for (name, value) in [("cpus", cpu.cpus()), ("mems", cpu.mems())] {
        let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else { continue };
        let w = Write::new(Controller::Cpuset, format!("cpuset.{name}"), value);
        // A v1 cpuset hierarchy may be mounted with `noprefix` (Android): runc falls back.
        write(plan, if version == Version::V1 { w.otherwise(name, value) } else { w });
    }
}

/// `cpu.*` other than the cpuset: zero shares, quota, period, realtime runtime and period are
/// "not set"; `idle` and `burst` are written whenever given (0 is a value for them).
fn plan_cpu(cpu: &LinuxCpu, version: Version, plan: &mut Plan) {
    let shares = cpu.shares().filter(|&s| s != 0);
    let quota = cpu.quota().filter(|&q| q != 0);
    let period = cpu.period().filter(|&p| p != 0);
    let rt_runtime = cpu.realtime_runtime().filter(|&r| r != 0);
    let rt_period = cpu.realtime_period().filter(|&p| p != 0);
    let c = Controller::Cpu;
    match version {
        Version::V1 => {
            if let Some(shares) = shares {
                let mut w = Write::new(c, "cpu.shares", shares);
                w.read_back = true;
                write(plan, w);
            }
            // The period goes first; the kernel may refuse it against the old quota (and the
            // parent's), in which case it is retried once the new quota is in.
            let after_quota = quota.map(|_| "cpu.cfs_quota_us");
            if let Some(period) = period {
                write(plan, Write::new(c, "cpu.cfs_period_us", period).retry_after(after_quota));
            }
            if let Some(burst) = cpu.burst() {
                write(plan, Write::new(c, "cpu.cfs_burst_us", burst).missing_ok().retry_after(after_quota));
            }
            if let Some(quota) = quota {
                write(plan, Write::new(c, "cpu.cfs_quota_us", quota));
            }
            if let Some(idle) = cpu.idle() {
                write(plan, Write::new(c, "cpu.idle", idle));
            }
            let after_runtime = rt_runtime.map(|_| "cpu.rt_runtime_us");
            if let Some(rt_period) = rt_period {
                write(plan, Write::new(c, "cpu.rt_period_us", rt_period).retry_after(after_runtime));
            }
            if let Some(rt_runtime) = rt_runtime {
                write(plan, Write::new(c, "cpu.rt_runtime_us", rt_runtime));
            }
        }
        Version::V2 => {
            if let Some(idle) = cpu.idle() {
                write(plan, Write::new(c, "cpu.idle", idle));
            }
            if let Some(shares) = shares {
                write(plan, Write::new(c, "cpu.weight", cpu_weight_from_shares(shares)));
            }
            if let Some(burst) = cpu.burst() {
                write(plan, Write::new(c, "cpu.max.burst", burst).retry_after(quota.map(|_| "cpu.max")));
            }
            if quota.is_some() || period.is_some() {
                plan.steps.push(Step::CpuMax { quota, period });
            }
            if rt_runtime.is_some() {
                plan.ignored.push("cpu.realtimeRuntime");
            }
            if rt_period.is_some() {
                plan.ignored.push("cpu.realtimePeriod");
            }
        }
    }
}

/// `memory.*`: zero limit, swap and reservation are "not set", -1 is "unlimited";
/// `disableOOMKiller: false` and an absent swappiness leave the files alone; kernel memory is
/// ignored (deprecated; runc warns).
fn plan_memory(memory: &LinuxMemory, version: Version, plan: &mut Plan) -> Result<(), ResourceError> {
    let limit = memory.limit().unwrap_or(0);
    let swap = memory.swap().unwrap_or(0);
    let reservation = memory.reservation().unwrap_or(0);
    if memory.kernel().is_some_and(|k| k != 0) {
        plan.ignored.push("memory.kernel");
    }
    if memory.kernel_tcp().is_some_and(|k| k != 0) {
        plan.ignored.push("memory.kernelTCP");
    }
    let m = Controller::Memory;
    match version {
        Version::V1 => {
            if limit != 0 || swap != 0 {
                plan.steps.push(Step::MemoryAndSwapV1 { limit, swap });
            }
            if reservation != 0 {
                write(plan, Write::new(m, "memory.soft_limit_in_bytes", reservation));
            }
            if memory.disable_oom_killer() == Some(true) {
                write(plan, Write::new(m, "memory.oom_control", 1));
            }
            // runc's -1 ("leave the default") arrives as u64::MAX through a uint64.
            match memory.swappiness() {
                None | Some(u64::MAX) => {}
                Some(s) if s <= 100 => write(plan, Write::new(m, "memory.swappiness", s)),
                Some(s) => return Err(invalid("memory.swappiness", format!("{s} is not in 0-100"))),
            }
        }
        Version::V2 => {
            if memory.swappiness().is_some() {
                plan.ignored.push("memory.swappiness");
            }
            if memory.disable_oom_killer() == Some(true) {
                plan.ignored.push("memory.disableOOMKiller");
            }
            // runc validates the swap conversion when the container is created, limits or not.
            let swap_v2 = memory_swap_v2(swap, limit).map_err(|why| invalid("memory.swap", why.to_string()))?;
            if limit == 0 && swap == 0 && reservation == 0 {
                return Ok(());
            }
            if memory.check_before_update() == Some(true) {
                plan.steps.push(Step::CheckMemoryUsage { limit, swap });
            }
            let swap_value = match v2_value(swap_v2) {
                // Swap equal to the limit: no swap at all.
                None if swap > 0 => Some("0".to_string()),
                other => other,
            };
            if let Some(value) = swap_value {
                // Without swap accounting the file is missing; "max" and "0" are then moot.
                let moot = value == "max" || value == "0";
                let w = Write::new(m, "memory.swap.max", &value);
                write(plan, if moot { w.missing_ok() } else { w });
            }
            if let Some(value) = v2_value(limit) {
                write(plan, Write::new(m, "memory.max", value));
            }
            if let Some(value) = v2_value(reservation) {
                write(plan, Write::new(m, "memory.low", value));
            }
        }
    }
    Ok(())
}

/// A v2 memory value: 0 is "not set", -1 is "max".
fn v2_value(n: i64) -> Option<String> {
    match n {
        0 => None,
        -1 => Some("max".to_string()),
        n => Some(n.to_string()),
    }
}

/// `pids.limit`: 0 leaves `pids.max` alone (oci-spec reads an absent limit as 0, and runc up
/// to 1.3 reads 0 as "not set"; runc 1.4 writes "1" for an explicit 0), negative is "max".
fn plan_pids(resources: &LinuxResources, plan: &mut Plan) {
    let Some(limit) = resources.pids().as_ref().map(|p| p.limit()).filter(|&l| l != 0) else { return };
    let value = if limit > 0 { limit.to_string() } else { "max".to_string() };
    write(plan, Write::new(Controller::Pids, "pids.max", value));
}

/// `blockIO.*`: zero weights (overall, leaf, per device) are "not set"; throttles are written
/// as given (a zero rate removes a v1 throttle).
fn plan_block_io(block_io: &LinuxBlockIo, version: Version, plan: &mut Plan) {
    let weight = block_io.weight().filter(|&w| w != 0);
    let leaf_weight = block_io.leaf_weight().filter(|&w| w != 0);
    let devices = block_io.weight_device().as_deref().unwrap_or_default();
    let b = Controller::Blkio;
    let throttles = [
        (block_io.throttle_read_bps_device(), "read_bps_device", "rbps"),
        (block_io.throttle_write_bps_device(), "write_bps_device", "wbps"),
        (block_io.throttle_read_iops_device(), "read_iops_device", "riops"),
        (block_io.throttle_write_iops_device(), "write_iops_device", "wiops"),
    ];
    match version {
        Version::V1 => {
            // Kernels without CFQ have BFQ's files instead (and some neither: then a weight
            // fails, as with runc).
            if let Some(w) = weight {
                write(plan, Write::new(b, "blkio.weight", w).otherwise("blkio.bfq.weight", w));
            }
            if let Some(w) = leaf_weight {
                write(plan, Write::new(b, "blkio.leaf_weight", w));
            }
            for d in devices {
                let (major, minor) = (d.major(), d.minor());
                if let Some(w) = d.weight().filter(|&w| w != 0) {
                    let line = format!("{major}:{minor} {w}");
                    write(
                        plan,
                        Write::new(b, "blkio.weight_device", &line).otherwise("blkio.bfq.weight_device", &line),
                    );
                }
                if let Some(w) = d.leaf_weight().filter(|&w| w != 0) {
                    write(plan, Write::new(b, "blkio.leaf_weight_device", format!("{major}:{minor} {w}")));
                }
            }
            for (list, file, _) in throttles {
                for t in list.as_deref().unwrap_or_default() {
                    let line = format!("{}:{} {}", t.major(), t.minor(), t.rate());
                    write(plan, Write::new(b, format!("blkio.throttle.{file}"), line));
                }
            }
        }
        Version::V2 => {
            if let Some(w) = weight {
                write(plan, Write::new(b, "io.bfq.weight", w).otherwise("io.weight", io_weight_from_blkio(w)));
            }
            if leaf_weight.is_some() {
                plan.ignored.push("blockIO.leafWeight");
            }
            let lines: Vec<String> = devices
                .iter()
                .filter_map(|d| d.weight().filter(|&w| w != 0).map(|w| format!("{}:{} {w}", d.major(), d.minor())))
                .collect();
            if devices.iter().any(|d| d.leaf_weight().is_some_and(|w| w != 0)) {
                plan.ignored.push("blockIO.weightDevice[].leafWeight");
            }
            if !lines.is_empty() {
                plan.steps.push(Step::BfqDeviceWeights(lines));
            }
            for (list, _, key) in throttles {
                for t in list.as_deref().unwrap_or_default() {
                    write(plan, Write::new(b, "io.max", format!("{}:{} {key}={}", t.major(), t.minor(), t.rate())));
                }
            }
        }
    }
}

/// `hugepageLimits`: every entry, 0 included (a limit of no huge pages is a limit); the
/// reservation limit too where the kernel has it.
fn plan_hugepages(resources: &LinuxResources, version: Version, plan: &mut Plan) -> Result<(), ResourceError> {
    let suffix = match version {
        Version::V1 => "limit_in_bytes",
        Version::V2 => "max",
    };
    for limit in resources.hugepage_limits().as_deref().unwrap_or_default() {
        let size = limit.page_size();
        if size.is_empty() || size.contains('/') {
            return Err(invalid("hugepageLimits", format!("{size:?} is not a page size")));
        }
        let h = Controller::Hugetlb;
        write(plan, Write::new(h, format!("hugetlb.{size}.{suffix}"), limit.limit()));
        write(plan, Write::new(h, format!("hugetlb.{size}.rsvd.{suffix}"), limit.limit()).missing_ok());
    }
    Ok(())
}

/// `network`: v1 only (cgroup v2 has no net_cls or net_prio); a zero class id is "not set".
fn plan_network(resources: &LinuxResources, version: Version, plan: &mut Plan) {
    let Some(network) = resources.network() else { return };
    let class_id = network.class_id().filter(|&c| c != 0);
    let priorities = network.priorities().as_deref().unwrap_or_default();
    if version == Version::V2 {
        if class_id.is_some() {
            plan.ignored.push("network.classID");
        }
        if !priorities.is_empty() {
            plan.ignored.push("network.priorities");
        }
        return;
    }
    if let Some(class_id) = class_id {
        write(plan, Write::new(Controller::NetCls, "net_cls.classid", class_id));
    }
    for p in priorities {
        write(plan, Write::new(Controller::NetPrio, "net_prio.ifpriomap", format!("{} {}", p.name(), p.priority())));
    }
}

/// `rdma`: one `rdma.max` line per device, with the limits given (0 is a limit). A device with
/// neither limit writes nothing (runc would write the bare device name, which the kernel
/// refuses).
fn plan_rdma(resources: &LinuxResources, plan: &mut Plan) {
    let devices: BTreeMap<_, _> = resources.rdma().iter().flatten().collect();
    for (device, limits) in devices {
        let mut line = device.clone();
        if let Some(n) = limits.hca_handles() {
            line.push_str(&format!(" hca_handle={n}"));
        }
        if let Some(n) = limits.hca_objects() {
            line.push_str(&format!(" hca_object={n}"));
        }
        if line != *device {
            write(plan, Write::new(Controller::Rdma, "rdma.max", line));
        }
    }
}

/// `unified`: v2 only (runc refuses it on v1); each key a file name, its value written line by
/// line, after everything else (so it can override).
fn plan_unified(resources: &LinuxResources, version: Version, plan: &mut Plan) -> Result<(), ResourceError> {
    let entries: BTreeMap<_, _> = resources.unified().iter().flatten().collect();
    if entries.is_empty() {
        return Ok(());
    }
    if version == Version::V1 {
        return Err(invalid("unified", "cannot be used on cgroup v1"));
    }
    for (key, value) in entries {
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            return Err(invalid("unified", format!("{key:?} must be a file name (no slashes)")));
        }
        let mut w = Write::new(Controller::Unified, key, value);
        w.by_line = true;
        write(plan, w);
    }
    Ok(())
}

/// runc's conversion of cpu shares ([2, 262144], default 1024) to a v2 `cpu.weight` ([1,
/// 10000], default 100): a quadratic in log2(shares) through both ranges' bounds and defaults.
/// (cgroups-rs still uses the linear formula runc dropped, which maps 1024 to 39.)
pub fn cpu_weight_from_shares(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            // In range by the bounds above: at most 10000.
            #[expect(clippy::cast_possible_truncation, reason = "between 1 and 10000 by the bounds above")]
            let weight = 10f64.powf(exponent).ceil() as u64;
            weight
        }
    }
}

/// runc's conversion of a v1 blkio weight ([10, 1000]) to a v2 `io.weight` ([1, 10000]), for
/// kernels without BFQ.
pub fn io_weight_from_blkio(weight: u16) -> u64 {
    1 + u64::from(weight.saturating_sub(10)) * 9999 / 990
}

/// The v2 `memory.swap.max` for the OCI `swap` (memory + swap) and `limit`: 0 is "not set",
/// -1 "unlimited". A limit of -1 with no swap given unlimits swap too, as on v1.
pub fn memory_swap_v2(swap: i64, limit: i64) -> Result<i64, SwapError> {
    match (swap, limit) {
        (0, -1) => Ok(-1),
        (-1 | 0, _) => Ok(swap),
        (_, -1) => Ok(swap),
        (_, 0) => Err(SwapError::NoMemoryLimit),
        (_, l) if l < 0 => Err(SwapError::InvalidLimit(l)),
        (s, l) if s < l => Err(SwapError::BelowLimit { swap: s, limit: l }),
        (s, l) => Ok(s - l),
    }
}

/// Why a memory+swap limit has no v2 equivalent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SwapError {
    /// Swap is limited but memory is not.
    #[error("a swap limit needs a memory limit")]
    NoMemoryLimit,
    /// The memory limit is negative (and not -1, unlimited).
    #[error("invalid memory limit {0}")]
    InvalidLimit(i64),
    /// memory+swap is below the memory limit.
    #[error("memory+swap ({swap}) must be at least the memory limit ({limit})")]
    BelowLimit {
        /// The memory+swap limit.
        swap: i64,
        /// The memory limit.
        limit: i64,
    },
}

/// The order of the v1 memory and memory+swap writes (0: not set): the kernel keeps
/// limit <= memsw at every step, so when both are set, swap goes first if it is being raised
/// above the current limit (or unlimited). A limit of -1 with no swap given unlimits swap too,
/// where swap is accounted.
pub fn memory_and_swap_v1(limit: i64, swap: i64, swap_accounted: bool, current_limit: u64) -> Vec<(&'static str, i64)> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const SWAP: &str = "memory.memsw.limit_in_bytes";
    let swap = if limit == -1 && swap == 0 && swap_accounted { -1 } else { swap };
    let swap_first = limit != 0 && swap != 0 && (swap == -1 || current_limit < swap as u64);
    let order = if swap_first { [(SWAP, swap), (LIMIT, limit)] } else { [(LIMIT, limit), (SWAP, swap)] };
    order.into_iter().filter(|&(_, v)| v != 0).collect()
}

/// The `cpu.max` line for a quota and period (either may be absent: the current one is kept).
/// A quota of -1 (any negative) is "max".
pub fn cpu_max_line(quota: Option<i64>, period: Option<u64>, current: &str) -> String {
    let mut parts = current.split_whitespace();
    let (current_quota, current_period) = (parts.next().unwrap_or("max"), parts.next().unwrap_or("100000"));
    let quota = match quota {
        Some(q) if q > 0 => q.to_string(),
        Some(_) => "max".to_string(),
        None => current_quota.to_string(),
    };
    let period = period.map_or_else(|| current_period.to_string(), |p| p.to_string());
    format!("{quota} {period}")
}

/// Whether `io.bfq.weight` (its content given) takes per-device weights: older kernels show a
/// single number there, newer ones a `default N` line and one per device.
pub fn bfq_takes_device_weights(content: &str) -> bool {
    content.trim().parse::<i64>().is_err()
}

/// The cgroup filesystem, as [`execute`] uses it.
pub trait Files {
    /// Writes `value` to the existing file `path` with one `write(2)`.
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Reads the file `path`.
    fn read(&self, path: &Path) -> io::Result<String>;
}

/// The real cgroup filesystem.
pub struct Cgroupfs;

impl Files for Cgroupfs {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // No O_CREAT: cgroupfs makes no files, and a missing one must say ENOENT.
        let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
        io::Write::write_all(&mut file, value.as_bytes())
    }

    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn is_einval(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Performs a [`plan`]'s steps, in order, in the cgroup directories `dir` names (one per v1
/// controller; the same one for all on v2). Stops at the first failure.
pub fn execute(
    steps: &[Step],
    files: &dyn Files,
    dir: &dyn Fn(Controller) -> Result<PathBuf, ResourceError>,
) -> Result<(), ResourceError> {
    let write_err = |path: &Path, value: &str, source| ResourceError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    // Writes refused for now, waiting for the file after which they are retried.
    let mut deferred: Vec<(&'static str, PathBuf, String, io::Error)> = Vec::new();
    for step in steps {
        let written: Option<String> = match step {
            Step::Write(w) => {
                let base = dir(w.controller)?;
                let path = base.join(&w.file);
                let mut target = (path.clone(), w.value.clone());
                let mut result = write_value(files, &path, &w.value, w.by_line);
                if let (Err(e), Some((file, value))) = (&result, &w.otherwise) {
                    if is_missing(e) {
                        target = (base.join(file), value.clone());
                        result = write_value(files, &target.0, value, w.by_line);
                    }
                }
                match result {
                    Ok(()) => {
                        if w.read_back {
                            check_read_back(files, &target.0, &target.1)?;
                        }
                        Some(w.file.clone())
                    }
                    Err(e) if w.missing_ok && is_missing(&e) => None,
                    Err(e) if is_einval(&e) && w.retry_after.is_some() => {
                        deferred.extend(w.retry_after.map(|after| (after, target.0, target.1, e)));
                        None
                    }
                    Err(e) => return Err(write_err(&target.0, &target.1, e)),
                }
            }
            Step::MemoryAndSwapV1 { limit, swap } => {
                let base = dir(Controller::Memory)?;
                let swap_accounted = files.read(&base.join("memory.memsw.limit_in_bytes")).is_ok();
                let current =
                    if *limit != 0 && *swap != 0 { read_u64(files, &base.join("memory.limit_in_bytes"))? } else { 0 };
                for (file, value) in memory_and_swap_v1(*limit, *swap, swap_accounted, current) {
                    let path = base.join(file);
                    match files.write(&path, &value.to_string()) {
                        Ok(()) => {}
                        Err(e) if file == "memory.limit_in_bytes" && e.raw_os_error() == Some(libc::EBUSY) => {
                            let usage = read_u64(files, &base.join("memory.usage_in_bytes"))?;
                            let peak = read_u64(files, &base.join("memory.max_usage_in_bytes"))?;
                            return Err(ResourceError::Refused(format!(
                                "unable to set memory limit to {value} (current usage: {usage}, peak usage: {peak})"
                            )));
                        }
                        Err(e) => return Err(write_err(&path, &value.to_string(), e)),
                    }
                }
                None
            }
            Step::CpuMax { quota, period } => {
                let path = dir(Controller::Cpu)?.join("cpu.max");
                let current = files.read(&path).map_err(|source| ResourceError::Read { path: path.clone(), source })?;
                let line = cpu_max_line(*quota, *period, &current);
                files.write(&path, &line).map_err(|e| write_err(&path, &line, e))?;
                Some("cpu.max".to_string())
            }
            Step::CheckMemoryUsage { limit, swap } => {
                // Best effort, as runc's: an unreadable usage lets the update through.
                let usage = files.read(&dir(Controller::Memory)?.join("memory.current")).ok();
                if let Some(usage) = usage.and_then(|u| u.trim().parse::<u64>().ok()) {
                    for (what, value) in [("memory+swap", *swap), ("memory", *limit)] {
                        if value > 0 && value as u64 <= usage {
                            return Err(ResourceError::Refused(format!(
                                "rejecting {what} limit {value} <= usage {usage}"
                            )));
                        }
                    }
                }
                None
            }
            Step::BfqDeviceWeights(lines) => {
                let path = dir(Controller::Blkio)?.join("io.bfq.weight");
                if files.read(&path).is_ok_and(|content| bfq_takes_device_weights(&content)) {
                    for line in lines {
                        let line = format!("{line}\n");
                        files.write(&path, &line).map_err(|e| write_err(&path, &line, e))?;
                    }
                }
                None
            }
        };
        if let Some(file) = written {
            let (now, later): (Vec<_>, Vec<_>) = deferred.into_iter().partition(|(after, ..)| *after == file);
            deferred = later;
            for (_, path, value, _) in now {
                files.write(&path, &value).map_err(|e| write_err(&path, &value, e))?;
            }
        }
    }
    match deferred.into_iter().next() {
        Some((_, path, value, e)) => Err(write_err(&path, &value, e)),
        None => Ok(()),
    }
}

fn write_value(files: &dyn Files, path: &Path, value: &str, by_line: bool) -> io::Result<()> {
    if !by_line || !value.contains('\n') {
        return files.write(path, value);
    }
    value.split_inclusive('\n').try_for_each(|line| files.write(path, line))
}

fn read_u64(files: &dyn Files, path: &Path) -> Result<u64, ResourceError> {
    let text = files.read(path).map_err(|source| ResourceError::Read { path: path.to_path_buf(), source })?;
    text.trim().parse().map_err(|e| ResourceError::Read {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("{text:?} is not a number: {e}")),
    })
}

fn check_read_back(files: &dyn Files, path: &Path, wanted: &str) -> Result<(), ResourceError> {
    let (Ok(wanted), got) = (wanted.parse::<u64>(), read_u64(files, path)?) else { return Ok(()) };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    match wanted.cmp(&got) {
        std::cmp::Ordering::Greater => Err(ResourceError::Refused(format!("the maximum allowed {name} is {got}"))),
        std::cmp::Ordering::Less => Err(ResourceError::Refused(format!("the minimum allowed {name} is {got}"))),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// The resources a JSON `linux.resources` object stands for.
    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).expect("valid linux.resources")
    }

    /// The plan's steps, as text.
    fn steps(json: serde_json::Value, version: Version) -> Vec<String> {
        plan(&res(json), version).expect("a plan").steps.iter().map(|s| s.to_string()).collect()
    }

    fn v1(json: serde_json::Value) -> Vec<String> {
        steps(json, Version::V1)
    }

    fn v2(json: serde_json::Value) -> Vec<String> {
        steps(json, Version::V2)
    }

    fn ignored(json: serde_json::Value, version: Version) -> Vec<&'static str> {
        plan(&res(json), version).expect("a plan").ignored
    }

    fn error(json: serde_json::Value, version: Version) -> String {
        plan(&res(json), version).expect_err("refused").to_string()
    }

    const NONE: [&str; 0] = [];

    // Everything at once.

    #[test]
    fn empty_resources_write_nothing() {
        assert_eq!(v1(serde_json::json!({})), NONE);
        assert_eq!(v2(serde_json::json!({})), NONE);
    }

    #[test]
    fn dockers_zeros_write_nothing_on_either_version() {
        let docker = serde_json::json!({
            "blockIO": {"weight": 0, "leafWeight": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0, "cpus": "", "mems": ""},
            "memory": {"limit": 0, "swap": 0, "reservation": 0, "kernel": 0, "kernelTCP": 0, "disableOOMKiller": false},
            "pids": {"limit": 0},
            "network": {"classID": 0}
        });
        assert_eq!(v1(docker.clone()), NONE);
        assert_eq!(v2(docker.clone()), NONE);
        assert!(ignored(docker, Version::V1).is_empty());
    }

    #[test]
    fn docker_update_memory_and_swap_touches_only_memory() {
        let update = serde_json::json!({
            "memory": {"limit": 67108864, "swap": 134217728},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
            "blockIO": {"weight": 0},
            "pids": {"limit": 0}
        });
        assert_eq!(v1(update.clone()), ["memory limit=67108864 swap=134217728"]);
        assert_eq!(v2(update), ["memory/memory.swap.max=67108864", "memory/memory.max=67108864"]);
    }

    // cpu

    #[test]
    fn cpu_shares_zero_is_unset_v1_written_and_read_back() {
        assert_eq!(v1(serde_json::json!({"cpu": {"shares": 0}})), NONE);
        assert_eq!(v1(serde_json::json!({"cpu": {"shares": 512}})), ["cpu/cpu.shares=512 (read back)"]);
    }

    #[test]
    fn cpu_shares_become_v2_weight_by_runcs_formula() {
        assert_eq!(v2(serde_json::json!({"cpu": {"shares": 0}})), NONE);
        assert_eq!(v2(serde_json::json!({"cpu": {"shares": 1024}})), ["cpu/cpu.weight=100"]);
        for (shares, weight) in
            [(1, 1), (2, 1), (3, 2), (1024, 100), (262_143, 10_000), (262_144, 10_000), (300_000, 10_000)]
        {
            assert_eq!(cpu_weight_from_shares(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn cpu_quota_zero_is_unset_and_minus_one_unlimited() {
        assert_eq!(v1(serde_json::json!({"cpu": {"quota": 0}})), NONE);
        assert_eq!(v1(serde_json::json!({"cpu": {"quota": -1}})), ["cpu/cpu.cfs_quota_us=-1"]);
        assert_eq!(v2(serde_json::json!({"cpu": {"quota": 0}})), NONE);
        assert_eq!(v2(serde_json::json!({"cpu": {"quota": -1}})), ["cpu.max quota=Some(-1) period=None"]);
    }

    #[test]
    fn cpu_period_zero_is_unset_and_alone_leaves_quota() {
        assert_eq!(v1(serde_json::json!({"cpu": {"period": 0}})), NONE);
        assert_eq!(v1(serde_json::json!({"cpu": {"period": 50000}})), ["cpu/cpu.cfs_period_us=50000"]);
        assert_eq!(v2(serde_json::json!({"cpu": {"period": 50000}})), ["cpu.max quota=None period=Some(50000)"]);
    }

    #[test]
    fn cpu_period_goes_before_quota_and_is_retried_after_it_on_v1() {
        assert_eq!(
            v1(serde_json::json!({"cpu": {"quota": 20000, "period": 50000}})),
            ["cpu/cpu.cfs_period_us=50000 (retry after cpu.cfs_quota_us)", "cpu/cpu.cfs_quota_us=20000"]
        );
        assert_eq!(
            v2(serde_json::json!({"cpu": {"quota": 20000, "period": 50000}})),
            ["cpu.max quota=Some(20000) period=Some(50000)"]
        );
    }

    #[test]
    fn cpu_max_keeps_what_is_not_given() {
        assert_eq!(cpu_max_line(Some(20000), None, "max 100000\n"), "20000 100000");
        assert_eq!(cpu_max_line(None, Some(50000), "20000 100000\n"), "20000 50000");
        assert_eq!(cpu_max_line(Some(-1), Some(10000), "20000 100000\n"), "max 10000");
        assert_eq!(cpu_max_line(None, None, ""), "max 100000");
    }

    #[test]
    fn cpu_realtime_zero_is_unset_v1_period_first_and_ignored_on_v2() {
        assert_eq!(v1(serde_json::json!({"cpu": {"realtimeRuntime": 0, "realtimePeriod": 0}})), NONE);
        let rt = serde_json::json!({"cpu": {"realtimeRuntime": 950000, "realtimePeriod": 1000000}});
        assert_eq!(
            v1(rt.clone()),
            ["cpu/cpu.rt_period_us=1000000 (retry after cpu.rt_runtime_us)", "cpu/cpu.rt_runtime_us=950000"]
        );
        assert_eq!(v1(serde_json::json!({"cpu": {"realtimePeriod": 1000000}})), ["cpu/cpu.rt_period_us=1000000"]);
        assert_eq!(v2(rt.clone()), NONE);
        assert_eq!(ignored(rt, Version::V2), ["cpu.realtimeRuntime", "cpu.realtimePeriod"]);
    }

    #[test]
    fn cpu_cpus_and_mems_empty_is_unset() {
        assert_eq!(v1(serde_json::json!({"cpu": {"cpus": "", "mems": ""}})), NONE);
        assert_eq!(
            v1(serde_json::json!({"cpu": {"cpus": "0-1", "mems": "0"}})),
            ["cpuset/cpuset.cpus=0-1 (else cpus=0-1)", "cpuset/cpuset.mems=0 (else mems=0)"]
        );
        assert_eq!(v2(serde_json::json!({"cpu": {"cpus": "1"}})), ["cpuset/cpuset.cpus=1"]);
    }

    #[test]
    fn cpu_idle_is_written_when_given_even_zero() {
        assert_eq!(v1(serde_json::json!({"cpu": {"idle": 0}})), ["cpu/cpu.idle=0"]);
        assert_eq!(v2(serde_json::json!({"cpu": {"idle": 1}})), ["cpu/cpu.idle=1"]);
        assert_eq!(v1(serde_json::json!({"cpu": {}})), NONE);
    }

    #[test]
    fn cpu_burst_is_written_when_given_before_the_quota() {
        assert_eq!(v1(serde_json::json!({"cpu": {"burst": 0}})), ["cpu/cpu.cfs_burst_us=0 (if present)"]);
        assert_eq!(
            v1(serde_json::json!({"cpu": {"burst": 1000, "quota": 5000}})),
            ["cpu/cpu.cfs_burst_us=1000 (if present) (retry after cpu.cfs_quota_us)", "cpu/cpu.cfs_quota_us=5000"]
        );
        assert_eq!(
            v2(serde_json::json!({"cpu": {"burst": 1000, "quota": 5000}})),
            ["cpu/cpu.max.burst=1000 (retry after cpu.max)", "cpu.max quota=Some(5000) period=None"]
        );
    }

    // memory

    #[test]
    fn memory_limit_zero_is_unset() {
        assert_eq!(v1(serde_json::json!({"memory": {"limit": 0}})), NONE);
        assert_eq!(v2(serde_json::json!({"memory": {"limit": 0}})), NONE);
        assert_eq!(v1(serde_json::json!({"memory": {"limit": 4096}})), ["memory limit=4096 swap=0"]);
        // v2 leaves swap alone (cgroups-rs would write memory.swap.max=0).
        assert_eq!(v2(serde_json::json!({"memory": {"limit": 4096}})), ["memory/memory.max=4096"]);
    }

    #[test]
    fn memory_limit_minus_one_unlimits_memory_and_swap() {
        assert_eq!(v1(serde_json::json!({"memory": {"limit": -1}})), ["memory limit=-1 swap=0"]);
        assert_eq!(
            memory_and_swap_v1(-1, 0, true, 0),
            [("memory.memsw.limit_in_bytes", -1), ("memory.limit_in_bytes", -1)]
        );
        assert_eq!(memory_and_swap_v1(-1, 0, false, 0), [("memory.limit_in_bytes", -1)]);
        assert_eq!(
            v2(serde_json::json!({"memory": {"limit": -1}})),
            ["memory/memory.swap.max=max (if present)", "memory/memory.max=max"]
        );
    }

    #[test]
    fn memory_swap_zero_is_unset_and_v1_order_follows_the_current_limit() {
        assert_eq!(v1(serde_json::json!({"memory": {"swap": 0}})), NONE);
        assert_eq!(v1(serde_json::json!({"memory": {"swap": 8192}})), ["memory limit=0 swap=8192"]);
        assert_eq!(memory_and_swap_v1(0, 8192, true, 4096), [("memory.memsw.limit_in_bytes", 8192)]);
        // Raising: swap first; lowering: limit first.
        let (limit, swap) = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes");
        assert_eq!(memory_and_swap_v1(128, 256, true, 64), [(swap, 256), (limit, 128)]);
        assert_eq!(memory_and_swap_v1(32, 64, true, 128), [(limit, 32), (swap, 64)]);
        assert_eq!(memory_and_swap_v1(32, -1, true, 128), [(swap, -1), (limit, 32)]);
    }

    #[test]
    fn memory_swap_v2_is_swap_beyond_the_limit() {
        let both = serde_json::json!({"memory": {"limit": 100, "swap": 300}});
        assert_eq!(v2(both), ["memory/memory.swap.max=200", "memory/memory.max=100"]);
        let equal = serde_json::json!({"memory": {"limit": 100, "swap": 100}});
        assert_eq!(v2(equal), ["memory/memory.swap.max=0 (if present)", "memory/memory.max=100"]);
        assert_eq!(v2(serde_json::json!({"memory": {"swap": -1}})), ["memory/memory.swap.max=max (if present)"]);
        assert!(error(serde_json::json!({"memory": {"swap": 300}}), Version::V2).contains("needs a memory limit"));
        assert!(error(serde_json::json!({"memory": {"limit": 300, "swap": 100}}), Version::V2).contains("at least"));
        assert_eq!(memory_swap_v2(0, 0), Ok(0));
        assert_eq!(memory_swap_v2(300, -1), Ok(300));
        assert!(memory_swap_v2(300, -2).is_err());
    }

    #[test]
    fn memory_reservation_zero_is_unset() {
        assert_eq!(v1(serde_json::json!({"memory": {"reservation": 0}})), NONE);
        assert_eq!(
            v1(serde_json::json!({"memory": {"reservation": 2048}})),
            ["memory/memory.soft_limit_in_bytes=2048"]
        );
        // Alone on v2 too (cgroups-rs drops a reservation without a limit).
        assert_eq!(v2(serde_json::json!({"memory": {"reservation": 2048}})), ["memory/memory.low=2048"]);
        assert_eq!(v2(serde_json::json!({"memory": {"reservation": -1}})), ["memory/memory.low=max"]);
    }

    #[test]
    fn memory_kernel_and_kernel_tcp_are_ignored() {
        let kernel = serde_json::json!({"memory": {"kernel": 1048576, "kernelTCP": 1048576}});
        assert_eq!(v1(kernel.clone()), NONE);
        assert_eq!(v2(kernel.clone()), NONE);
        assert_eq!(ignored(kernel, Version::V1), ["memory.kernel", "memory.kernelTCP"]);
    }

    #[test]
    fn memory_disable_oom_killer_only_when_true_and_only_v1() {
        assert_eq!(v1(serde_json::json!({"memory": {"disableOOMKiller": false}})), NONE);
        let on = serde_json::json!({"memory": {"disableOOMKiller": true}});
        assert_eq!(v1(on.clone()), ["memory/memory.oom_control=1"]);
        assert_eq!(v2(on.clone()), NONE);
        assert_eq!(ignored(on, Version::V2), ["memory.disableOOMKiller"]);
    }

    #[test]
    fn memory_swappiness_absent_leaves_it_zero_writes_it_and_v2_ignores_it() {
        assert_eq!(v1(serde_json::json!({"memory": {}})), NONE);
        assert_eq!(v1(serde_json::json!({"memory": {"swappiness": 0}})), ["memory/memory.swappiness=0"]);
        assert_eq!(v1(serde_json::json!({"memory": {"swappiness": u64::MAX}})), NONE);
        assert!(error(serde_json::json!({"memory": {"swappiness": 101}}), Version::V1).contains("0-100"));
        let sixty = serde_json::json!({"memory": {"swappiness": 60}});
        assert_eq!(v2(sixty.clone()), NONE);
        assert_eq!(ignored(sixty, Version::V2), ["memory.swappiness"]);
    }

    #[test]
    fn memory_check_before_update_is_v2_only() {
        let check = serde_json::json!({"memory": {"limit": 4096, "checkBeforeUpdate": true}});
        assert_eq!(v2(check.clone()), ["check usage limit=4096 swap=0", "memory/memory.max=4096"]);
        assert_eq!(v1(check), ["memory limit=4096 swap=0"]);
    }

    // pids

    #[test]
    fn pids_limit_zero_is_unset_and_negative_is_max() {
        assert_eq!(v1(serde_json::json!({"pids": {"limit": 0}})), NONE);
        assert_eq!(v2(serde_json::json!({"pids": {}})), NONE);
        assert_eq!(v1(serde_json::json!({"pids": {"limit": 100}})), ["pids/pids.max=100"]);
        assert_eq!(v2(serde_json::json!({"pids": {"limit": -1}})), ["pids/pids.max=max"]);
    }

    // blockIO

    #[test]
    fn blkio_weight_zero_is_unset() {
        assert_eq!(v1(serde_json::json!({"blockIO": {"weight": 0}})), NONE);
        assert_eq!(v2(serde_json::json!({"blockIO": {"weight": 0}})), NONE);
        assert_eq!(
            v1(serde_json::json!({"blockIO": {"weight": 500}})),
            ["blkio/blkio.weight=500 (else blkio.bfq.weight=500)"]
        );
        assert_eq!(
            v2(serde_json::json!({"blockIO": {"weight": 1000}})),
            ["blkio/io.bfq.weight=1000 (else io.weight=10000)"]
        );
        assert_eq!((io_weight_from_blkio(10), io_weight_from_blkio(500), io_weight_from_blkio(1000)), (1, 4950, 10000));
    }

    #[test]
    fn blkio_leaf_weight_zero_is_unset_and_v2_ignores_it() {
        assert_eq!(v1(serde_json::json!({"blockIO": {"leafWeight": 0}})), NONE);
        let leaf = serde_json::json!({"blockIO": {"leafWeight": 300}});
        assert_eq!(v1(leaf.clone()), ["blkio/blkio.leaf_weight=300"]);
        assert_eq!(v2(leaf.clone()), NONE);
        assert_eq!(ignored(leaf, Version::V2), ["blockIO.leafWeight"]);
    }

    #[test]
    fn blkio_weight_device_zero_weights_are_unset() {
        let devices = serde_json::json!({"blockIO": {"weightDevice": [
            {"major": 8, "minor": 0, "weight": 0, "leafWeight": 0},
            {"major": 8, "minor": 16, "weight": 200},
            {"major": 8, "minor": 32, "leafWeight": 300}
        ]}});
        assert_eq!(
            v1(devices.clone()),
            [
                "blkio/blkio.weight_device=8:16 200 (else blkio.bfq.weight_device=8:16 200)",
                "blkio/blkio.leaf_weight_device=8:32 300"
            ]
        );
        assert_eq!(v2(devices), [r#"io.bfq.weight devices=["8:16 200"]"#]);
        assert!(bfq_takes_device_weights("default 100\n8:16 200\n"));
        assert!(!bfq_takes_device_weights("100\n"));
    }

    #[test]
    fn blkio_throttles_are_written_as_given() {
        let throttles = serde_json::json!({"blockIO": {
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]
        }});
        assert_eq!(
            v1(throttles.clone()),
            [
                "blkio/blkio.throttle.read_bps_device=8:0 1048576",
                "blkio/blkio.throttle.write_bps_device=8:0 0",
                "blkio/blkio.throttle.read_iops_device=8:0 100",
                "blkio/blkio.throttle.write_iops_device=8:0 200"
            ]
        );
        assert_eq!(
            v2(throttles),
            [
                "blkio/io.max=8:0 rbps=1048576",
                "blkio/io.max=8:0 wbps=0",
                "blkio/io.max=8:0 riops=100",
                "blkio/io.max=8:0 wiops=200"
            ]
        );
    }

    // hugetlb, network, rdma, unified

    #[test]
    fn hugepage_limits_are_written_zero_included_with_the_reservation_if_present() {
        let huge = serde_json::json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]});
        assert_eq!(
            v1(huge.clone()),
            ["hugetlb/hugetlb.2MB.limit_in_bytes=0", "hugetlb/hugetlb.2MB.rsvd.limit_in_bytes=0 (if present)"]
        );
        assert_eq!(v2(huge), ["hugetlb/hugetlb.2MB.max=0", "hugetlb/hugetlb.2MB.rsvd.max=0 (if present)"]);
        assert!(error(serde_json::json!({"hugepageLimits": [{"pageSize": "../x", "limit": 1}]}), Version::V1)
            .contains("page size"));
    }

    #[test]
    fn network_class_id_zero_is_unset_and_v2_ignores_network() {
        assert_eq!(v1(serde_json::json!({"network": {"classID": 0}})), NONE);
        let net = serde_json::json!({"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}});
        assert_eq!(v1(net.clone()), ["net_cls/net_cls.classid=1048577", "net_prio/net_prio.ifpriomap=eth0 5"]);
        assert_eq!(v2(net.clone()), NONE);
        assert_eq!(ignored(net, Version::V2), ["network.classID", "network.priorities"]);
    }

    #[test]
    fn rdma_limits_are_written_per_device() {
        let rdma = serde_json::json!({"rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 0}, "mlx4_0": {"hcaObjects": 10000}, "none": {}}});
        let expected = ["rdma/rdma.max=mlx4_0 hca_object=10000", "rdma/rdma.max=mlx5_1 hca_handle=3 hca_object=0"];
        assert_eq!(v1(rdma.clone()), expected);
        assert_eq!(v2(rdma), expected);
    }

    #[test]
    fn unified_is_written_line_by_line_on_v2_and_refused_on_v1() {
        let unified =
            serde_json::json!({"unified": {"memory.high": "1073741824", "io.max": "8:0 rbps=1\n8:16 wbps=2"}});
        assert_eq!(
            v2(unified.clone()),
            ["unified/io.max=8:0 rbps=1\n8:16 wbps=2 (by line)", "unified/memory.high=1073741824 (by line)"]
        );
        assert!(error(unified, Version::V1).contains("cgroup v1"));
        assert_eq!(v1(serde_json::json!({"unified": {}})), NONE);
        assert!(error(serde_json::json!({"unified": {"../cpu.max": "1"}}), Version::V2).contains("file name"));
    }

    // execute, on a recording double of the cgroup filesystem.

    /// Files with contents; writes recorded; chosen values refused with EINVAL.
    #[derive(Default)]
    struct FakeFiles {
        files: RefCell<HashMap<PathBuf, String>>,
        refuse_once: RefCell<Vec<String>>,
        log: RefCell<Vec<String>>,
    }

    impl FakeFiles {
        fn with(files: &[(&str, &str)]) -> Self {
            let fake = Self::default();
            for (name, content) in files {
                fake.files.borrow_mut().insert(Path::new("/cg").join(name), content.to_string());
            }
            fake
        }

        fn run(&self, json: serde_json::Value, version: Version) -> Result<Vec<String>, ResourceError> {
            let plan = plan(&res(json), version)?;
            execute(&plan.steps, self, &|_| Ok(PathBuf::from("/cg")))?;
            Ok(self.log.borrow().clone())
        }
    }

    impl Files for FakeFiles {
        fn write(&self, path: &Path, value: &str) -> io::Result<()> {
            let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
            let mut files = self.files.borrow_mut();
            let Some(content) = files.get_mut(path) else { return Err(io::ErrorKind::NotFound.into()) };
            let entry = format!("{name}={value}");
            let mut refuse = self.refuse_once.borrow_mut();
            if let Some(i) = refuse.iter().position(|r| *r == entry) {
                refuse.remove(i);
                self.log.borrow_mut().push(format!("{entry} EINVAL"));
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            // cpu.shares is clamped, as the kernel does.
            *content = if name == "cpu.shares" {
                value.parse::<u64>().map_or(0, |v| v.min(262_144)).to_string()
            } else {
                value.to_string()
            };
            self.log.borrow_mut().push(entry);
            Ok(())
        }

        fn read(&self, path: &Path) -> io::Result<String> {
            self.files.borrow().get(path).cloned().ok_or_else(|| io::ErrorKind::NotFound.into())
        }
    }

    #[test]
    fn execute_retries_a_refused_period_after_the_quota() {
        let fake = FakeFiles::with(&[("cpu.cfs_period_us", "100000"), ("cpu.cfs_quota_us", "-1")]);
        fake.refuse_once.borrow_mut().push("cpu.cfs_period_us=10000".to_string());
        let log = fake.run(serde_json::json!({"cpu": {"quota": 5000, "period": 10000}}), Version::V1).unwrap();
        assert_eq!(log, ["cpu.cfs_period_us=10000 EINVAL", "cpu.cfs_quota_us=5000", "cpu.cfs_period_us=10000"]);
    }

    #[test]
    fn execute_fails_on_a_refused_period_without_a_quota() {
        let fake = FakeFiles::with(&[("cpu.cfs_period_us", "100000")]);
        fake.refuse_once.borrow_mut().push("cpu.cfs_period_us=10000".to_string());
        let err = fake.run(serde_json::json!({"cpu": {"period": 10000}}), Version::V1).unwrap_err();
        assert!(matches!(err, ResourceError::Write { .. }), "{err}");
    }

    #[test]
    fn execute_falls_back_to_bfq_and_skips_missing_optional_files() {
        let fake = FakeFiles::with(&[("blkio.bfq.weight", "100"), ("hugetlb.2MB.limit_in_bytes", "0")]);
        let json =
            serde_json::json!({"blockIO": {"weight": 300}, "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]});
        let log = fake.run(json, Version::V1).unwrap();
        assert_eq!(log, ["blkio.bfq.weight=300", "hugetlb.2MB.limit_in_bytes=4194304"]);
        let none = FakeFiles::with(&[]);
        assert!(none.run(serde_json::json!({"blockIO": {"weight": 300}}), Version::V1).is_err());
    }

    #[test]
    fn execute_reads_shares_back() {
        let fake = FakeFiles::with(&[("cpu.shares", "1024")]);
        let err = fake.run(serde_json::json!({"cpu": {"shares": 300000}}), Version::V1).unwrap_err();
        assert_eq!(err.to_string(), "the maximum allowed cpu.shares is 262144");
    }

    #[test]
    fn execute_orders_v1_memory_by_the_current_limit() {
        let fake =
            FakeFiles::with(&[("memory.limit_in_bytes", "67108864"), ("memory.memsw.limit_in_bytes", "134217728")]);
        let log =
            fake.run(serde_json::json!({"memory": {"limit": 134217728, "swap": 268435456}}), Version::V1).unwrap();
        assert_eq!(log, ["memory.memsw.limit_in_bytes=268435456", "memory.limit_in_bytes=134217728"]);
    }

    #[test]
    fn execute_writes_cpu_max_once_keeping_the_current_period() {
        let fake = FakeFiles::with(&[("cpu.max", "max 50000\n")]);
        let log = fake.run(serde_json::json!({"cpu": {"quota": 25000}}), Version::V2).unwrap();
        assert_eq!(log, ["cpu.max=25000 50000"]);
    }

    #[test]
    fn execute_checks_usage_before_a_v2_update_when_asked() {
        let fake = FakeFiles::with(&[("memory.current", "8192\n"), ("memory.max", "max")]);
        let json = serde_json::json!({"memory": {"limit": 4096, "checkBeforeUpdate": true}});
        assert_eq!(fake.run(json, Version::V2).unwrap_err().to_string(), "rejecting memory limit 4096 <= usage 8192");
        let log = fake.run(serde_json::json!({"memory": {"limit": 4096}}), Version::V2).unwrap();
        assert_eq!(log, ["memory.max=4096"]);
    }

    #[test]
    fn execute_writes_unified_values_line_by_line() {
        let fake = FakeFiles::with(&[("io.max", "")]);
        let log = fake.run(serde_json::json!({"unified": {"io.max": "8:0 rbps=1\n8:16 wbps=2"}}), Version::V2).unwrap();
        assert_eq!(log, ["io.max=8:0 rbps=1\n", "io.max=8:16 wbps=2"]);
    }

    #[test]
    fn execute_writes_bfq_device_weights_only_where_supported() {
        let old = FakeFiles::with(&[("io.bfq.weight", "100\n")]);
        let json = serde_json::json!({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}});
        assert_eq!(old.run(json.clone(), Version::V2).unwrap(), NONE);
        let new = FakeFiles::with(&[("io.bfq.weight", "default 100\n")]);
        assert_eq!(new.run(json, Version::V2).unwrap(), ["io.bfq.weight=8:0 200\n"]);
    }
}
