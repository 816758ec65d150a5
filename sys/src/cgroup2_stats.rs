//! A cgroup v2 directory's usage figures, read from its interface files in the kernel's
//! formats (Documentation/admin-guide/cgroup-v2.rst, "Interface Files" and the controllers'
//! sections; PSI in Documentation/accounting/psi.rst), grouped as containerd's
//! `io.containerd.cgroups.v2.Metrics` groups them: paddockd reads them for a container on a
//! cgroup v2 host, containerd's shim turns them into that message.
//!
//! A group whose files are missing (its controller is not enabled in the cgroup's parent) is
//! absent (`None`, an empty list), never an error: `cpu.stat` is on every cgroup2 directory,
//! `memory.*`, `pids.*`, `io.stat`, `hugetlb.*` and `rdma.*` only with their controller. A
//! key a file lacks (an older kernel) reads as 0, as containerd reads it. A limit of `max`
//! reads as the type's largest value, as containerd reports it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file system magic of a cgroup2 mount.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Whether `path` is on a cgroup2 mount.
pub fn is_cgroup2(path: &Path) -> bool {
    // `f_type` is an i64 here, a u32 or i32 on other architectures.
    #[allow(clippy::useless_conversion)]
    rustix::fs::statfs(path).is_ok_and(|s| i64::from(s.f_type) == CGROUP2_SUPER_MAGIC)
}

/// Whether the host's controllers are in the v2 tree, the test containerd makes to choose
/// between the v1 and v2 metrics (`cgroups.Mode() == Unified`): `/sys/fs/cgroup` itself is a
/// cgroup2 mount. A hybrid host (v1 controllers, a controller-less cgroup2 tree at
/// `/sys/fs/cgroup/unified`) is not.
pub fn unified_host() -> bool {
    is_cgroup2(Path::new("/sys/fs/cgroup"))
}

/// The figures of one cgroup v2 directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cgroup2Stats {
    /// `pids.current` and `pids.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
    /// `cpu.stat` (and `cpu.pressure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// `memory.stat`, `memory.current`, `memory.max`, the swap and peak files (and
    /// `memory.pressure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// `memory.events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_events: Option<MemoryEvents>,
    /// `io.stat` (and `io.pressure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<Io>,
    /// `hugetlb.<size>.current`, `.max` and `.events`, one entry per page size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hugetlb: Vec<Hugetlb>,
    /// `rdma.current` and `rdma.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma: Option<Rdma>,
}

/// The pids controller's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pids {
    /// Tasks in the cgroup now.
    pub current: u64,
    /// The limit (`u64::MAX` for `max`, or when `pids.max` is missing).
    pub limit: u64,
}

/// `cpu.stat`: the usage keys are there on every cgroup2 directory; the throttling and burst
/// keys only with the cpu controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// CPU time used, in microseconds.
    pub usage_usec: u64,
    /// Of which in user mode.
    pub user_usec: u64,
    /// Of which in kernel mode.
    pub system_usec: u64,
    /// Enforcement periods elapsed (cpu controller).
    pub nr_periods: u64,
    /// Periods in which the cgroup was throttled.
    pub nr_throttled: u64,
    /// Time throttled, in microseconds.
    pub throttled_usec: u64,
    /// Periods in which a burst was used.
    pub nr_bursts: u64,
    /// Time spent bursting, in microseconds.
    pub burst_usec: u64,
    /// `cpu.pressure`, when the kernel keeps pressure figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
}

/// The memory controller's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// `memory.stat`, every key the kernel writes (`anon`, `file`, `inactive_file`, ...).
    pub stat: BTreeMap<String, u64>,
    /// `memory.current`.
    pub usage: u64,
    /// `memory.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_limit: Option<u64>,
    /// `memory.swap.current` (swap only, unlike v1's memory+swap `memsw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_usage: Option<u64>,
    /// `memory.swap.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_limit: Option<u64>,
    /// `memory.peak` (kernel 5.19+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    /// `memory.swap.peak` (kernel 6.5+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_max_usage: Option<u64>,
    /// `memory.pressure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
}

/// `memory.events`: how many times each boundary was hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEvents {
    /// Times reclaimed below `memory.low` under pressure.
    pub low: u64,
    /// Times throttled above `memory.high`.
    pub high: u64,
    /// Times usage was about to go over `memory.max`.
    pub max: u64,
    /// Times an allocation met the limit and reclaim failed.
    pub oom: u64,
    /// Processes the OOM killer killed.
    pub oom_kill: u64,
    /// Group OOM kills.
    pub oom_group_kill: u64,
}

/// The io controller's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Io {
    /// `io.stat`, one entry per device.
    pub devices: Vec<IoDevice>,
    /// `io.pressure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
}

/// One `io.stat` line: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoDevice {
    /// The device's major number.
    pub major: u64,
    /// The device's minor number.
    pub minor: u64,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Read operations.
    pub rios: u64,
    /// Write operations.
    pub wios: u64,
}

/// One huge page size's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hugetlb {
    /// The size as the file names spell it: `2MB`, `1GB`.
    pub pagesize: String,
    /// `hugetlb.<size>.current`.
    pub current: u64,
    /// `hugetlb.<size>.max` (`u64::MAX` for `max`).
    pub max: u64,
    /// `hugetlb.<size>.events`' `max`: allocations refused at the limit.
    pub failcnt: u64,
}

/// The rdma controller's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rdma {
    /// `rdma.current`.
    pub current: Vec<RdmaDevice>,
    /// `rdma.max`.
    pub limit: Vec<RdmaDevice>,
}

/// One `rdma.current`/`rdma.max` line: `DEVICE hca_handle=N hca_object=N` (`max` is
/// `u32::MAX`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdmaDevice {
    /// The RDMA device's name.
    pub device: String,
    /// HCA handles.
    pub hca_handles: u32,
    /// HCA objects.
    pub hca_objects: u32,
}

/// A `*.pressure` file: `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and a `full` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Psi {
    /// Time some tasks were stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub some: Option<PsiData>,
    /// Time all non-idle tasks were stalled at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<PsiData>,
}

/// One line of a `*.pressure` file: stall percentages over 10, 60 and 300 seconds and the
/// total stall time in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiData {
    /// Share of the last 10 seconds stalled, in percent.
    pub avg10: f64,
    /// Share of the last 60 seconds stalled, in percent.
    pub avg60: f64,
    /// Share of the last 300 seconds stalled, in percent.
    pub avg300: f64,
    /// Total stall time, in microseconds.
    pub total: u64,
}

/// Reads the figures of the cgroup v2 directory `dir`; what is missing or unreadable is left
/// out.
pub fn read(dir: &Path) -> Cgroup2Stats {
    Cgroup2Stats {
        pids: single(dir, "pids.current")
            .map(|current| Pids { current, limit: single(dir, "pids.max").unwrap_or(u64::MAX) }),
        cpu: flat_keyed(dir, "cpu.stat").map(|stat| {
            let key = |k: &str| stat.get(k).copied().unwrap_or(0);
            Cpu {
                usage_usec: key("usage_usec"),
                user_usec: key("user_usec"),
                system_usec: key("system_usec"),
                nr_periods: key("nr_periods"),
                nr_throttled: key("nr_throttled"),
                throttled_usec: key("throttled_usec"),
                nr_bursts: key("nr_bursts"),
                burst_usec: key("burst_usec"),
                psi: pressure(dir, "cpu.pressure"),
            }
        }),
        memory: single(dir, "memory.current").map(|usage| Memory {
            stat: flat_keyed(dir, "memory.stat").unwrap_or_default(),
            usage,
            usage_limit: single(dir, "memory.max"),
            swap_usage: single(dir, "memory.swap.current"),
            swap_limit: single(dir, "memory.swap.max"),
            max_usage: single(dir, "memory.peak"),
            swap_max_usage: single(dir, "memory.swap.peak"),
            psi: pressure(dir, "memory.pressure"),
        }),
        memory_events: flat_keyed(dir, "memory.events").map(|events| {
            let key = |k: &str| events.get(k).copied().unwrap_or(0);
            MemoryEvents {
                low: key("low"),
                high: key("high"),
                max: key("max"),
                oom: key("oom"),
                oom_kill: key("oom_kill"),
                oom_group_kill: key("oom_group_kill"),
            }
        }),
        io: text(dir, "io.stat").map(|stat| Io { devices: io_devices(&stat), psi: pressure(dir, "io.pressure") }),
        hugetlb: hugepage_sizes(dir, ".current")
            .into_iter()
            .map(|size| Hugetlb {
                current: single(dir, &format!("hugetlb.{size}.current")).unwrap_or(0),
                max: single(dir, &format!("hugetlb.{size}.max")).unwrap_or(u64::MAX),
                failcnt: flat_keyed(dir, &format!("hugetlb.{size}.events"))
                    .and_then(|events| events.get("max").copied())
                    .unwrap_or(0),
                pagesize: size,
            })
            .collect(),
        rdma: text(dir, "rdma.current").map(|current| Rdma {
            current: rdma_devices(&current),
            limit: text(dir, "rdma.max").map(|max| rdma_devices(&max)).unwrap_or_default(),
        }),
    }
}

fn text(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// A single value file: a number, or `max` (no limit).
fn single(dir: &Path, file: &str) -> Option<u64> {
    let text = text(dir, file)?;
    match text.trim() {
        "max" => Some(u64::MAX),
        value => value.parse().ok(),
    }
}

/// A flat keyed file: `KEY VALUE` lines (a line that is not is skipped).
fn flat_keyed(dir: &Path, file: &str) -> Option<BTreeMap<String, u64>> {
    let text = text(dir, file)?;
    Some(
        text.lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(' ')?;
                Some((key.to_string(), value.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// A nested keyed line's `KEY=VALUE` pairs after its first field.
fn nested<'a>(fields: impl Iterator<Item = &'a str>) -> impl Iterator<Item = (&'a str, &'a str)> {
    fields.filter_map(|field| field.split_once('='))
}

fn io_devices(stat: &str) -> Vec<IoDevice> {
    stat.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let mut device = IoDevice { major: major.parse().ok()?, minor: minor.parse().ok()?, ..Default::default() };
            for (key, value) in nested(fields) {
                let Ok(value) = value.parse() else { continue };
                match key {
                    "rbytes" => device.rbytes = value,
                    "wbytes" => device.wbytes = value,
                    "rios" => device.rios = value,
                    "wios" => device.wios = value,
                    _ => {}
                }
            }
            Some(device)
        })
        .collect()
}

fn rdma_devices(text: &str) -> Vec<RdmaDevice> {
    let count = |value: &str| if value == "max" { Some(u32::MAX) } else { value.parse().ok() };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let mut device = RdmaDevice { device: fields.next()?.to_string(), ..Default::default() };
            for (key, value) in nested(fields) {
                match key {
                    "hca_handle" => device.hca_handles = count(value)?,
                    "hca_object" => device.hca_objects = count(value)?,
                    _ => {}
                }
            }
            Some(device)
        })
        .collect()
}

fn pressure(dir: &Path, file: &str) -> Option<Psi> {
    let text = text(dir, file)?;
    let mut psi = Psi::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut psi.some,
            Some("full") => &mut psi.full,
            _ => continue,
        };
        let mut data = PsiData::default();
        for (key, value) in nested(fields) {
            match key {
                "avg10" => data.avg10 = value.parse().unwrap_or(0.0),
                "avg60" => data.avg60 = value.parse().unwrap_or(0.0),
                "avg300" => data.avg300 = value.parse().unwrap_or(0.0),
                "total" => data.total = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        *slot = Some(data);
    }
    Some(psi)
}

/// The page sizes of the `hugetlb.<size><suffix>` files in `dir` (`.current` on cgroup v2,
/// `.usage_in_bytes` on v1), sorted.
pub fn hugepage_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let name = entry.file_name().into_string().ok()?;
                    let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
                    (!size.contains('.')).then(|| size.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// A cgroup2 directory of this test's own with one busy process in it; the process is
    /// killed and the directory removed when dropped.
    struct BusyCgroup {
        dir: PathBuf,
        child: std::process::Child,
    }

    impl BusyCgroup {
        /// Under the host's cgroup2 tree: `/sys/fs/cgroup` on a v2 host, `/sys/fs/cgroup/unified`
        /// on a hybrid one. `None` where there is none.
        fn create() -> Option<Self> {
            let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .into_iter()
                .map(PathBuf::from)
                .find(|root| is_cgroup2(root))?;
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
            let dir = root.join(format!("paddock-cgroup2-stats-test-{}-{nanos}", std::process::id()));
            std::fs::create_dir(&dir).expect("a test cgroup");
            let child = std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn();
            let cgroup = Self { dir, child: child.expect("sh") };
            std::fs::write(cgroup.dir.join("cgroup.procs"), cgroup.child.id().to_string()).expect("moved in");
            Some(cgroup)
        }
    }

    impl Drop for BusyCgroup {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            // The kernel may take a moment to see the reaped process gone (EBUSY meanwhile).
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Err(e) = std::fs::remove_dir(&self.dir) {
                if e.kind() == std::io::ErrorKind::NotFound || Instant::now() > deadline {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        eprintln!("cannot remove the test cgroup {}: {e}", self.dir.display());
                    }
                    break;
                }
                std::thread::yield_now();
            }
        }
    }

    /// A real cgroup2 directory (this needs root): the busy process's CPU time is there, and
    /// each controller's group is there exactly when the controller is enabled for the
    /// directory. On a hybrid host (no controllers in the v2 tree) memory, pids, io, hugetlb
    /// and rdma are all absent, and absent from the JSON paddockd sends too.
    #[test]
    fn a_real_cgroup2_directory_reports_its_cpu_and_only_its_enabled_controllers() {
        if !rustix::process::geteuid().is_root() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "this test needs root");
            eprintln!(
                "SKIPPED a_real_cgroup2_directory_reports_its_cpu_and_only_its_enabled_controllers: it needs root"
            );
            return;
        }
        let Some(cgroup) = BusyCgroup::create() else {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "this host has no cgroup2 tree");
            eprintln!(
                "SKIPPED a_real_cgroup2_directory_reports_its_cpu_and_only_its_enabled_controllers: no cgroup2 tree"
            );
            return;
        };
        let dir = cgroup.dir.as_path();
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
        assert_eq!(procs.trim(), cgroup.child.id().to_string());

        // Until the process has run 10ms in the cgroup.
        let deadline = Instant::now() + Duration::from_secs(20);
        let stats = loop {
            let stats = read(dir);
            if stats.cpu.as_ref().is_some_and(|cpu| cpu.usage_usec >= 10_000) || Instant::now() > deadline {
                break stats;
            }
            std::thread::yield_now();
        };
        let cpu = stats.cpu.as_ref().expect("cpu.stat is on every cgroup2 directory");
        assert!(cpu.usage_usec >= 10_000, "{cpu:?}");
        assert!(cpu.user_usec > 0 && cpu.user_usec <= cpu.usage_usec, "{cpu:?}");
        assert!(cpu.system_usec <= cpu.usage_usec, "{cpu:?}");
        assert_eq!(cpu.psi.is_some(), dir.join("cpu.pressure").exists());
        if let Some(psi) = &cpu.psi {
            assert!(psi.some.is_some(), "{psi:?}");
        }

        let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).expect("cgroup.controllers");
        let enabled = |c: &str| controllers.split_whitespace().any(|e| e == c);
        eprintln!("controllers of the test cgroup: {:?}", controllers.trim());
        assert_eq!(stats.memory.is_some(), enabled("memory"), "{stats:?}");
        assert_eq!(stats.memory_events.is_some(), enabled("memory"), "{stats:?}");
        assert_eq!(stats.pids.is_some(), enabled("pids"), "{stats:?}");
        assert_eq!(stats.io.is_some(), enabled("io"), "{stats:?}");
        assert_eq!(!stats.hugetlb.is_empty(), enabled("hugetlb"), "{stats:?}");
        assert_eq!(stats.rdma.is_some(), enabled("rdma"), "{stats:?}");
        if let Some(pids) = &stats.pids {
            assert_eq!(pids.current, 1);
        }

        let json = serde_json::to_value(&stats).expect("JSON");
        assert!(json.get("cpu").is_some());
        assert_eq!(json.get("memory").is_some(), enabled("memory"), "{json}");
        assert_eq!(serde_json::from_value::<Cgroup2Stats>(json).expect("read back"), stats);
    }

    #[test]
    fn no_directory_reads_as_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(&dir.path().join("gone")), Cgroup2Stats::default());
        assert_eq!(serde_json::to_string(&Cgroup2Stats::default()).expect("JSON"), "{}");
    }
}
