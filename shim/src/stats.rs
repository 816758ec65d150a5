//! paddockd's stats (runc's `events --stats` JSON, read from the container's cgroups) as
//! containerd's cgroup v1 `Metrics`, the type containerd's CRI plugin reads CPU and memory
//! figures from.
//!
//! On a cgroup v2 host paddockd reports the same JSON shape; its `memory.raw` then has v2's
//! keys (`inactive_file` without a `total_` one), which fill the v1 fields CRI reads as well.

use containerd_shim_protos::cgroups::metrics::{
    BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim_protos::protobuf::MessageField;
use serde_json::Value;

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

    #[test]
    fn v2_keys_fill_the_fields_cri_reads() {
        let stats = serde_json::json!({"memory": {"usage": {"usage": 100}, "raw": {"inactive_file": 30}}});
        let memory = v1_metrics(&stats).memory.unwrap();
        assert_eq!(memory.total_inactive_file, 30);
        assert!(v1_metrics(&serde_json::json!({})).cpu.is_none());
    }
}
