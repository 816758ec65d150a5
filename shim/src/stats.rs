//! paddockd's stats as containerd's cgroup metrics, the type containerd's CRI plugin reads CPU
//! and memory figures from: on a cgroup v1 (or hybrid) host the v1 `Metrics` of runc's
//! `events --stats` JSON, on a cgroup v2 host the v2 `Metrics` (`io.containerd.cgroups.v2`)
//! of the v2 files' own figures paddockd sends beside it ([`wire::api::STATS_CGROUP2`]), as
//! containerd's runc shim chooses by the host's layout.
//!
//! On a cgroup v2 host the runc-shaped part's `memory.raw` has v2's keys (`inactive_file`
//! without a `total_` one), which fill the v1 fields CRI reads as well.

use containerd_shim_protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::{MessageDyn, MessageField};
use serde_json::Value;
use sys::cgroup2_stats::{Cgroup2Stats, Psi, PsiData};

/// The metrics containerd expects on this host, of paddockd's stats JSON `stats`.
pub fn metrics(stats: &Value) -> Box<dyn MessageDyn> {
    if sys::cgroup2_stats::unified_host() {
        Box::new(v2_metrics(&cgroup2_of(stats)))
    } else {
        Box::new(v1_metrics(stats))
    }
}

/// The v2 figures in paddockd's stats JSON; none (every group absent) from a paddockd that
/// does not send them or a container without a cgroup.
pub fn cgroup2_of(stats: &Value) -> Cgroup2Stats {
    stats.get(wire::api::STATS_CGROUP2).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

fn psi(psi: &Option<Psi>) -> MessageField<v2::PSIStats> {
    let data = |d: &Option<PsiData>| {
        d.as_ref().map_or_else(MessageField::none, |d| {
            MessageField::some(v2::PSIData {
                avg10: d.avg10,
                avg60: d.avg60,
                avg300: d.avg300,
                total: d.total,
                ..Default::default()
            })
        })
    };
    psi.as_ref().map_or_else(MessageField::none, |p| {
        MessageField::some(v2::PSIStats { some: data(&p.some), full: data(&p.full), ..Default::default() })
    })
}

/// containerd's v2 `Metrics` of a cgroup's v2 figures: a group whose controller the cgroup
/// lacks stays unset; a limit of `max` is the largest value, as containerd's own reader gives.
pub fn v2_metrics(stats: &Cgroup2Stats) -> v2::Metrics {
    let mut metrics = v2::Metrics::default();
    if let Some(pids) = &stats.pids {
        metrics.pids =
            MessageField::some(v2::PidsStat { current: pids.current, limit: pids.limit, ..Default::default() });
    }
    if let Some(cpu) = &stats.cpu {
        metrics.cpu = MessageField::some(v2::CPUStat {
            usage_usec: cpu.usage_usec,
            user_usec: cpu.user_usec,
            system_usec: cpu.system_usec,
            nr_periods: cpu.nr_periods,
            nr_throttled: cpu.nr_throttled,
            throttled_usec: cpu.throttled_usec,
            nr_bursts: cpu.nr_bursts,
            burst_usec: cpu.burst_usec,
            psi: psi(&cpu.psi),
            ..Default::default()
        });
    }
    if let Some(memory) = &stats.memory {
        let stat = |key: &str| memory.stat.get(key).copied().unwrap_or(0);
        metrics.memory = MessageField::some(v2::MemoryStat {
            anon: stat("anon"),
            file: stat("file"),
            kernel_stack: stat("kernel_stack"),
            slab: stat("slab"),
            sock: stat("sock"),
            shmem: stat("shmem"),
            file_mapped: stat("file_mapped"),
            file_dirty: stat("file_dirty"),
            file_writeback: stat("file_writeback"),
            anon_thp: stat("anon_thp"),
            inactive_anon: stat("inactive_anon"),
            active_anon: stat("active_anon"),
            inactive_file: stat("inactive_file"),
            active_file: stat("active_file"),
            unevictable: stat("unevictable"),
            slab_reclaimable: stat("slab_reclaimable"),
            slab_unreclaimable: stat("slab_unreclaimable"),
            pgfault: stat("pgfault"),
            pgmajfault: stat("pgmajfault"),
            workingset_refault: stat("workingset_refault"),
            workingset_activate: stat("workingset_activate"),
            workingset_nodereclaim: stat("workingset_nodereclaim"),
            pgrefill: stat("pgrefill"),
            pgscan: stat("pgscan"),
            pgsteal: stat("pgsteal"),
            pgactivate: stat("pgactivate"),
            pgdeactivate: stat("pgdeactivate"),
            pglazyfree: stat("pglazyfree"),
            pglazyfreed: stat("pglazyfreed"),
            thp_fault_alloc: stat("thp_fault_alloc"),
            thp_collapse_alloc: stat("thp_collapse_alloc"),
            usage: memory.usage,
            usage_limit: memory.usage_limit.unwrap_or(0),
            swap_usage: memory.swap_usage.unwrap_or(0),
            swap_limit: memory.swap_limit.unwrap_or(0),
            max_usage: memory.max_usage.unwrap_or(0),
            swap_max_usage: memory.swap_max_usage.unwrap_or(0),
            psi: psi(&memory.psi),
            ..Default::default()
        });
    }
    if let Some(events) = &stats.memory_events {
        metrics.memory_events = MessageField::some(v2::MemoryEvents {
            low: events.low,
            high: events.high,
            max: events.max,
            oom: events.oom,
            oom_kill: events.oom_kill,
            oom_group_kill: events.oom_group_kill,
            ..Default::default()
        });
    }
    if let Some(io) = &stats.io {
        metrics.io = MessageField::some(v2::IOStat {
            usage: io
                .devices
                .iter()
                .map(|d| v2::IOEntry {
                    major: d.major,
                    minor: d.minor,
                    rbytes: d.rbytes,
                    wbytes: d.wbytes,
                    rios: d.rios,
                    wios: d.wios,
                    ..Default::default()
                })
                .collect(),
            psi: psi(&io.psi),
            ..Default::default()
        });
    }
    metrics.hugetlb = stats
        .hugetlb
        .iter()
        .map(|h| v2::HugeTlbStat {
            current: h.current,
            max: h.max,
            pagesize: h.pagesize.clone(),
            failcnt: h.failcnt,
            ..Default::default()
        })
        .collect();
    if let Some(rdma) = &stats.rdma {
        let entries = |list: &[sys::cgroup2_stats::RdmaDevice]| {
            list.iter()
                .map(|d| v2::RdmaEntry {
                    device: d.device.clone(),
                    hca_handles: d.hca_handles,
                    hca_objects: d.hca_objects,
                    ..Default::default()
                })
                .collect()
        };
        metrics.rdma = MessageField::some(v2::RdmaStat {
            current: entries(&rdma.current),
            limit: entries(&rdma.limit),
            ..Default::default()
        });
    }
    metrics
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn entry(v: &Value) -> MessageField<MemoryEntry> {
    if v.is_null() {
        return MessageField::none();
    }
    MessageField::some(MemoryEntry {
        limit: n(&v["limit"]),
        usage: n(&v["usage"]),
        max: n(&v["max"]),
        failcnt: n(&v["failcnt"]),
        ..Default::default()
    })
}

fn blkio_entries(v: &Value) -> Vec<BlkIOEntry> {
    v.as_array()
        .map(|list| {
            list.iter()
                .map(|e| BlkIOEntry {
                    op: e["op"].as_str().unwrap_or_default().to_string(),
                    major: n(&e["major"]),
                    minor: n(&e["minor"]),
                    value: n(&e["value"]),
                    ..Default::default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The v1 `Metrics` of paddockd's stats JSON `stats`.
pub fn v1_metrics(stats: &Value) -> Metrics {
    let mut metrics = Metrics::default();
    let cpu = &stats["cpu"];
    if !cpu.is_null() {
        let usage = &cpu["usage"];
        let throttling = &cpu["throttling"];
        metrics.cpu = MessageField::some(CPUStat {
            usage: MessageField::some(CPUUsage {
                total: n(&usage["total"]),
                kernel: n(&usage["kernel"]),
                user: n(&usage["user"]),
                per_cpu: usage["percpu"].as_array().map(|l| l.iter().map(n).collect()).unwrap_or_default(),
                ..Default::default()
            }),
            throttling: MessageField::some(Throttle {
                periods: n(&throttling["periods"]),
                throttled_periods: n(&throttling["throttledPeriods"]),
                throttled_time: n(&throttling["throttledTime"]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let memory = &stats["memory"];
    if !memory.is_null() {
        let raw = &memory["raw"];
        // v1's hierarchical `total_` counter, else the plain one (v2 has only those).
        let r = |key: &str| n(&raw[key]);
        let total = |key: &str| raw.get(format!("total_{key}")).map_or_else(|| r(key), n);
        metrics.memory = MessageField::some(MemoryStat {
            cache: r("cache").max(n(&memory["cache"])),
            rss: r("rss"),
            rss_huge: r("rss_huge"),
            mapped_file: r("mapped_file"),
            dirty: r("dirty"),
            writeback: r("writeback"),
            pg_pg_in: r("pgpgin"),
            pg_pg_out: r("pgpgout"),
            pg_fault: r("pgfault"),
            pg_maj_fault: r("pgmajfault"),
            inactive_anon: r("inactive_anon"),
            active_anon: r("active_anon"),
            inactive_file: r("inactive_file"),
            active_file: r("active_file"),
            unevictable: r("unevictable"),
            hierarchical_memory_limit: r("hierarchical_memory_limit"),
            hierarchical_swap_limit: r("hierarchical_memsw_limit"),
            total_cache: total("cache"),
            total_rss: total("rss"),
            total_rss_huge: total("rss_huge"),
            total_mapped_file: total("mapped_file"),
            total_dirty: total("dirty"),
            total_writeback: total("writeback"),
            total_pg_pg_in: total("pgpgin"),
            total_pg_pg_out: total("pgpgout"),
            total_pg_fault: total("pgfault"),
            total_pg_maj_fault: total("pgmajfault"),
            total_inactive_anon: total("inactive_anon"),
            total_active_anon: total("active_anon"),
            total_inactive_file: total("inactive_file"),
            total_active_file: total("active_file"),
            total_unevictable: total("unevictable"),
            usage: entry(&memory["usage"]),
            swap: entry(&memory["swap"]),
            kernel: entry(&memory["kernel"]),
            kernel_tcp: entry(&memory["kernelTCP"]),
            ..Default::default()
        });
    }
    let pids = &stats["pids"];
    if !pids.is_null() {
        metrics.pids = MessageField::some(PidsStat {
            current: n(&pids["current"]),
            limit: n(&pids["limit"]),
            ..Default::default()
        });
    }
    let blkio = &stats["blkio"];
    if !blkio.is_null() {
        metrics.blkio = MessageField::some(BlkIOStat {
            io_service_bytes_recursive: blkio_entries(&blkio["ioServiceBytesRecursive"]),
            io_serviced_recursive: blkio_entries(&blkio["ioServicedRecursive"]),
            ..Default::default()
        });
    }
    if let Some(sizes) = stats["hugetlb"].as_object() {
        metrics.hugetlb = sizes
            .iter()
            .map(|(size, v)| HugetlbStat {
                usage: n(&v["usage"]),
                max: n(&v["max"]),
                failcnt: n(&v["failcnt"]),
                pagesize: size.clone(),
                ..Default::default()
            })
            .collect();
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_stats_become_v1_metrics() {
        let stats = serde_json::json!({
            "cpu": {"usage": {"total": 5000, "percpu": [2000, 3000], "kernel": 10, "user": 20},
                    "throttling": {"periods": 4, "throttledPeriods": 2, "throttledTime": 99}},
            "memory": {"cache": 7, "usage": {"limit": 134217728, "usage": 4096, "max": 8192, "failcnt": 1},
                       "raw": {"rss": 3, "total_inactive_file": 1024, "inactive_file": 512}},
            "pids": {"current": 2, "limit": 10},
            "blkio": {"ioServiceBytesRecursive": [{"major": 8, "minor": 0, "op": "Read", "value": 42}]},
            "hugetlb": {"2MB": {"usage": 1, "max": 2, "failcnt": 0}}
        });
        let m = v1_metrics(&stats);
        let cpu = m.cpu.as_ref().unwrap();
        assert_eq!(cpu.usage.total, 5000);
        assert_eq!(cpu.usage.per_cpu, vec![2000, 3000]);
        assert_eq!(cpu.throttling.throttled_time, 99);
        let memory = m.memory.as_ref().unwrap();
        assert_eq!((memory.usage.usage, memory.usage.limit, memory.cache), (4096, 134217728, 7));
        assert_eq!((memory.total_inactive_file, memory.inactive_file, memory.rss), (1024, 512, 3));
        assert_eq!((m.pids.current, m.pids.limit), (2, 10));
        assert_eq!(m.blkio.io_service_bytes_recursive[0].value, 42);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
    }

    /// A cgroup v2 directory in a temporary directory, its files in the kernel's formats
    /// (Documentation/admin-guide/cgroup-v2.rst: flat keyed `cpu.stat`, `memory.stat`,
    /// `memory.events`, `hugetlb.<size>.events`; single values with `max`; nested keyed
    /// `io.stat`, `rdma.current`, `rdma.max`, the examples there; Documentation/accounting/
    /// psi.rst's `*.pressure`), as paddockd reads and sends them.
    fn paddockd_stats_of(files: &[(&str, &str)]) -> Value {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let cgroup2 = serde_json::to_value(sys::cgroup2_stats::read(dir.path())).unwrap();
        // Over the wire as paddockd sends it: a string of JSON, runc's shape beside.
        let json = serde_json::json!({"cpu": {"usage": {"total": 1}}, (wire::api::STATS_CGROUP2): cgroup2}).to_string();
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn the_v2_files_become_containerds_v2_metrics() {
        let pressure =
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=678\n";
        let stats = paddockd_stats_of(&[
            ("cgroup.controllers", "cpu io memory hugetlb pids rdma\n"),
            ("cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0\n"),
            (
                "cpu.stat",
                "usage_usec 7000\nuser_usec 5000\nsystem_usec 2000\nnice_usec 0\nnr_periods 10\nnr_throttled 3\nthrottled_usec 900\nnr_bursts 1\nburst_usec 50\n",
            ),
            ("cpu.pressure", pressure),
            ("memory.current", "8388608\n"),
            ("memory.max", "max\n"),
            ("memory.peak", "9437184\n"),
            ("memory.swap.current", "4096\n"),
            ("memory.swap.max", "134217728\n"),
            (
                "memory.stat",
                "anon 4194304\nfile 2097152\nkernel 65536\nkernel_stack 16384\nslab 32768\nsock 0\nshmem 8192\nfile_mapped 1024\nfile_dirty 512\nfile_writeback 0\nanon_thp 0\ninactive_anon 100\nactive_anon 200\ninactive_file 300\nactive_file 400\nunevictable 0\nslab_reclaimable 20000\nslab_unreclaimable 12768\npgfault 1500\npgmajfault 7\nworkingset_refault_anon 0\nworkingset_refault_file 0\npgscan 11\npgsteal 10\nthp_fault_alloc 0\n",
            ),
            ("memory.events", "low 0\nhigh 4\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n"),
            ("memory.pressure", pressure),
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            (
                "io.stat",
                "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n",
            ),
            ("io.pressure", pressure),
            ("hugetlb.2MB.current", "2097152\n"),
            ("hugetlb.2MB.max", "max\n"),
            ("hugetlb.2MB.events", "max 5\n"),
            ("hugetlb.2MB.rsvd.current", "0\n"),
            ("hugetlb.1GB.current", "0\n"),
            ("hugetlb.1GB.max", "0\n"),
            ("hugetlb.1GB.events", "max 0\n"),
            ("rdma.current", "mlx4_0 hca_handle=1 hca_object=20\nocrdma1 hca_handle=1 hca_object=23\n"),
            ("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000\nocrdma1 hca_handle=3 hca_object=max\n"),
        ]);
        let m = v2_metrics(&cgroup2_of(&stats));

        let cpu = m.cpu.as_ref().unwrap();
        assert_eq!((cpu.usage_usec, cpu.user_usec, cpu.system_usec), (7000, 5000, 2000));
        assert_eq!((cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec), (10, 3, 900));
        assert_eq!((cpu.nr_bursts, cpu.burst_usec), (1, 50));
        assert_eq!((cpu.psi.some.avg10, cpu.psi.some.avg60, cpu.psi.some.total), (1.5, 0.25, 12345));
        assert_eq!(cpu.psi.full.total, 678);

        let memory = m.memory.as_ref().unwrap();
        assert_eq!((memory.usage, memory.usage_limit, memory.max_usage), (8388608, u64::MAX, 9437184));
        assert_eq!((memory.swap_usage, memory.swap_limit, memory.swap_max_usage), (4096, 134217728, 0));
        assert_eq!((memory.anon, memory.file, memory.kernel_stack, memory.slab), (4194304, 2097152, 16384, 32768));
        assert_eq!((memory.shmem, memory.file_mapped, memory.file_dirty), (8192, 1024, 512));
        assert_eq!(
            (memory.inactive_anon, memory.active_anon, memory.inactive_file, memory.active_file),
            (100, 200, 300, 400)
        );
        assert_eq!((memory.slab_reclaimable, memory.slab_unreclaimable), (20000, 12768));
        assert_eq!((memory.pgfault, memory.pgmajfault, memory.pgscan, memory.pgsteal), (1500, 7, 11, 10));
        assert_eq!(memory.psi.some.total, 12345);

        let events = m.memory_events.as_ref().unwrap();
        assert_eq!((events.low, events.high, events.max, events.oom, events.oom_kill), (0, 4, 2, 1, 1));
        assert_eq!((m.pids.current, m.pids.limit), (3, u64::MAX));

        let io = m.io.as_ref().unwrap();
        assert_eq!(io.usage.len(), 2);
        let sdb = &io.usage[0];
        assert_eq!(
            (sdb.major, sdb.minor, sdb.rbytes, sdb.wbytes, sdb.rios, sdb.wios),
            (8, 16, 1459200, 314773504, 192, 353)
        );
        assert_eq!((io.usage[1].minor, io.usage[1].wios), (0, 1252));
        assert_eq!(io.psi.full.total, 678);

        // Sorted by size name; the reservation files are not a page size.
        let sizes: Vec<(&str, u64, u64, u64)> =
            m.hugetlb.iter().map(|h| (h.pagesize.as_str(), h.current, h.max, h.failcnt)).collect();
        assert_eq!(sizes, vec![("1GB", 0, 0, 0), ("2MB", 2097152, u64::MAX, 5)]);

        let rdma = m.rdma.as_ref().unwrap();
        let entries = |l: &[v2::RdmaEntry]| {
            l.iter().map(|e| (e.device.clone(), e.hca_handles, e.hca_objects)).collect::<Vec<_>>()
        };
        assert_eq!(entries(&rdma.current), vec![("mlx4_0".into(), 1, 20), ("ocrdma1".into(), 1, 23)]);
        assert_eq!(entries(&rdma.limit), vec![("mlx4_0".into(), 2, 2000), ("ocrdma1".into(), 3, u32::MAX)]);

        // What containerd receives: the Any of `io.containerd.cgroups.v2.Metrics`, decoded back.
        let any = containerd_shim::util::convert_to_any(Box::new(m.clone())).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        let decoded = <v2::Metrics as containerd_shim_protos::protobuf::Message>::parse_from_bytes(&any.value).unwrap();
        assert_eq!(decoded, m);
    }

    /// A cgroup without controllers (a hybrid host's v2 tree, or one whose parent enables
    /// none): only `cpu.stat` and the pressure files exist. The groups of the missing
    /// controllers are unset, not zeros and not an error.
    #[test]
    fn missing_controller_files_leave_their_groups_unset() {
        let stats = paddockd_stats_of(&[
            ("cgroup.controllers", ""),
            ("cgroup.stat", "nr_descendants 0\nnr_dying_descendants 0\n"),
            ("cpu.stat", "usage_usec 294514\nuser_usec 294514\nsystem_usec 0\nnice_usec 0\n"),
            (
                "memory.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            ),
        ]);
        let m = v2_metrics(&cgroup2_of(&stats));
        let cpu = m.cpu.as_ref().unwrap();
        assert_eq!((cpu.usage_usec, cpu.user_usec, cpu.nr_periods), (294514, 294514, 0));
        assert!(cpu.psi.is_none(), "no cpu.pressure file");
        assert!(m.memory.is_none() && m.memory_events.is_none() && m.pids.is_none());
        assert!(m.io.is_none() && m.rdma.is_none() && m.hugetlb.is_empty());

        // A paddockd that sends no v2 figures (or a container without a cgroup): all unset.
        assert_eq!(v2_metrics(&cgroup2_of(&serde_json::json!({}))), v2::Metrics::default());
    }

    /// containerd's choice: v2 metrics where `/sys/fs/cgroup` is a cgroup2 mount, v1 on a v1
    /// or hybrid host (a hybrid host's `/sys/fs/cgroup` is a tmpfs).
    #[test]
    fn the_host_layout_chooses_v1_or_v2_metrics() {
        let root_is_cgroup2 = rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type == 0x6367_7270);
        let expected =
            if root_is_cgroup2 { "io.containerd.cgroups.v2.Metrics" } else { "io.containerd.cgroups.v1.Metrics" };
        let any = containerd_shim::util::convert_to_any(metrics(&paddockd_stats_of(&[("cpu.stat", "usage_usec 1\n")])))
            .unwrap();
        assert_eq!(any.type_url, expected);
    }

    #[test]
    fn v2_keys_fill_the_fields_cri_reads() {
        let stats = serde_json::json!({"memory": {"usage": {"usage": 100}, "raw": {"inactive_file": 30}}});
        let memory = v1_metrics(&stats).memory.unwrap();
        assert_eq!(memory.total_inactive_file, 30);
        assert!(v1_metrics(&serde_json::json!({})).cpu.is_none());
    }
}
