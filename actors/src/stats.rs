//! A container's resource usage as runc's `events --stats` reports it, read from its cgroups
//! (v1 controllers or the v2 tree): `cpu`, `memory`, `pids`, `blkio`, `hugetlb`, with runc's
//! field names, so that tools written for runc's output read paddock's.
//!
//! Each controller's files are looked for in every directory of the cgroup; a controller this
//! host does not mount is left out, as runc leaves it out. On a cgroup v2 host the reply also
//! carries the v2 files' own figures under [`wire::api::STATS_CGROUP2`], which containerd's
//! shim turns into containerd's v2 metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// Nanoseconds per second, and the kernel's clock ticks (`USER_HZ`) in which v1's
/// `cpuacct.stat` counts.
const NANOS: u64 = 1_000_000_000;

/// The stats of the cgroup whose directories (one per hierarchy, or the v2 one) are `dirs`;
/// `v2` when the host's controllers are in the v2 tree (a hybrid host's v2 tree, which has no
/// controllers, only counts its processes).
pub fn collect(dirs: &[PathBuf], v2: bool) -> Value {
    let find = |file: &str| dirs.iter().find(|d| d.join(file).exists()).cloned();
    let mut stats = Map::new();
    match find("cgroup.controllers").filter(|_| v2) {
        Some(dir) => {
            v2_stats(&dir, &mut stats);
            // The v2 figures as the files have them, for containerd's v2 metrics.
            if let Ok(cgroup2) = serde_json::to_value(sys::cgroup2_stats::read(&dir)) {
                stats.insert(wire::api::STATS_CGROUP2.into(), cgroup2);
            }
        }
        None => v1_stats(&find, &mut stats),
    }
    Value::Object(stats)
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// A file holding one number (`max`, as v2 writes "no limit", is 0 as runc reports it).
fn number(dir: &Path, file: &str) -> Option<u64> {
    let text = read(dir, file)?;
    let text = text.trim();
    if text == "max" {
        return Some(0);
    }
    text.parse().ok()
}

/// A flat keyed file (`key value` lines, as `memory.stat` and `cpu.stat`).
fn keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn v1_stats(find: &dyn Fn(&str) -> Option<PathBuf>, stats: &mut Map<String, Value>) {
    let mut cpu = Map::new();
    if let Some(dir) = find("cpuacct.usage") {
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ticks = keyed(&dir, "cpuacct.stat");
        let percpu: Vec<u64> = read(&dir, "cpuacct.usage_percpu")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        cpu.insert(
            "usage".into(),
            json!({
                "total": number(&dir, "cpuacct.usage").unwrap_or(0),
                "percpu": percpu,
                "kernel": ticks.get("system").copied().unwrap_or(0) * NANOS / hz,
                "user": ticks.get("user").copied().unwrap_or(0) * NANOS / hz,
            }),
        );
    }
    if let Some(dir) = find("cpu.cfs_quota_us") {
        cpu.insert("throttling".into(), throttling(&keyed(&dir, "cpu.stat"), "throttled_time", 1));
    }
    if !cpu.is_empty() {
        stats.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(dir) = find("memory.usage_in_bytes") {
        let raw = keyed(&dir, "memory.stat");
        let entry = |prefix: &str| {
            json!({
                "limit": number(&dir, &format!("{prefix}limit_in_bytes")).unwrap_or(0),
                "usage": number(&dir, &format!("{prefix}usage_in_bytes")).unwrap_or(0),
                "max": number(&dir, &format!("{prefix}max_usage_in_bytes")).unwrap_or(0),
                "failcnt": number(&dir, &format!("{prefix}failcnt")).unwrap_or(0),
            })
        };
        let mut memory = Map::new();
        memory.insert("cache".into(), json!(raw.get("cache").copied().unwrap_or(0)));
        memory.insert("usage".into(), entry("memory."));
        if dir.join("memory.memsw.usage_in_bytes").exists() {
            memory.insert("swap".into(), entry("memory.memsw."));
        }
        if dir.join("memory.kmem.usage_in_bytes").exists() {
            memory.insert("kernel".into(), entry("memory.kmem."));
            memory.insert("kernelTCP".into(), entry("memory.kmem.tcp."));
        }
        memory.insert("raw".into(), json!(raw));
        stats.insert("memory".into(), Value::Object(memory));
    }
    if let Some(dir) = find("pids.current") {
        stats.insert("pids".into(), pids(&dir));
    }
    if let Some(dir) = find("blkio.throttle.io_service_bytes_recursive") {
        // runc reads the CFQ files first and falls back to the throttling layer's counts.
        let pick = |cfq: &str, throttle: &str| {
            let entries = blkio_entries(&read(&dir, cfq).unwrap_or_default());
            if entries.is_empty() {
                blkio_entries(&read(&dir, throttle).unwrap_or_default())
            } else {
                entries
            }
        };
        stats.insert(
            "blkio".into(),
            json!({
                "ioServiceBytesRecursive": pick("blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive"),
                "ioServicedRecursive": pick("blkio.io_serviced_recursive", "blkio.throttle.io_serviced_recursive"),
            }),
        );
    }
    if let Some(dir) = find("hugetlb.2MB.usage_in_bytes").or_else(|| find("hugetlb.1GB.usage_in_bytes")) {
        let mut hugetlb = Map::new();
        for size in sys::cgroup2_stats::hugepage_sizes(&dir, ".usage_in_bytes") {
            hugetlb.insert(
                size.clone(),
                json!({
                    "usage": number(&dir, &format!("hugetlb.{size}.usage_in_bytes")).unwrap_or(0),
                    "max": number(&dir, &format!("hugetlb.{size}.max_usage_in_bytes")).unwrap_or(0),
                    "failcnt": number(&dir, &format!("hugetlb.{size}.failcnt")).unwrap_or(0),
                }),
            );
        }
        stats.insert("hugetlb".into(), Value::Object(hugetlb));
    }
}

fn v2_stats(dir: &Path, stats: &mut Map<String, Value>) {
    let cpu_stat = keyed(dir, "cpu.stat");
    if !cpu_stat.is_empty() {
        let usec = |k: &str| cpu_stat.get(k).copied().unwrap_or(0) * 1000;
        stats.insert(
            "cpu".into(),
            json!({
                "usage": {"total": usec("usage_usec"), "kernel": usec("system_usec"), "user": usec("user_usec")},
                "throttling": throttling(&cpu_stat, "throttled_usec", 1000),
            }),
        );
    }
    if dir.join("memory.current").exists() {
        let raw = keyed(dir, "memory.stat");
        let usage = number(dir, "memory.current").unwrap_or(0);
        let events = keyed(dir, "memory.events");
        let mut memory = Map::new();
        memory.insert("cache".into(), json!(raw.get("file").copied().unwrap_or(0)));
        memory.insert(
            "usage".into(),
            json!({
                "limit": number(dir, "memory.max").unwrap_or(0),
                "usage": usage,
                "max": number(dir, "memory.peak").unwrap_or(0),
                "failcnt": events.get("max").copied().unwrap_or(0),
            }),
        );
        if dir.join("memory.swap.current").exists() {
            // runc reports v2 swap as memory + swap, as v1's memsw counts.
            let swap = number(dir, "memory.swap.current").unwrap_or(0);
            let swap_limit = number(dir, "memory.swap.max").unwrap_or(0);
            memory.insert("swap".into(), json!({"limit": swap_limit, "usage": usage + swap, "failcnt": 0}));
        }
        memory.insert("raw".into(), json!(raw));
        stats.insert("memory".into(), Value::Object(memory));
    }
    if dir.join("pids.current").exists() {
        stats.insert("pids".into(), pids(dir));
    }
    if let Some(io) = read(dir, "io.stat") {
        let mut bytes = Vec::new();
        let mut ios = Vec::new();
        for line in io.lines() {
            let mut fields = line.split_whitespace();
            let Some((major, minor)) = fields.next().and_then(device) else { continue };
            for field in fields {
                let Some((key, value)) = field.split_once('=') else { continue };
                let Ok(value) = value.parse::<u64>() else { continue };
                let (list, op) = match key {
                    "rbytes" => (&mut bytes, "Read"),
                    "wbytes" => (&mut bytes, "Write"),
                    "rios" => (&mut ios, "Read"),
                    "wios" => (&mut ios, "Write"),
                    _ => continue,
                };
                list.push(json!({"major": major, "minor": minor, "op": op, "value": value}));
            }
        }
        stats.insert("blkio".into(), json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios}));
    }
    let sizes = sys::cgroup2_stats::hugepage_sizes(dir, ".current");
    if !sizes.is_empty() {
        let mut hugetlb = Map::new();
        for size in sizes {
            let events = keyed(dir, &format!("hugetlb.{size}.events"));
            hugetlb.insert(
                size.clone(),
                json!({
                    "usage": number(dir, &format!("hugetlb.{size}.current")).unwrap_or(0),
                    "failcnt": events.get("max").copied().unwrap_or(0),
                }),
            );
        }
        stats.insert("hugetlb".into(), Value::Object(hugetlb));
    }
}

/// `cpu.stat`'s throttling counts; the throttled time in nanoseconds (`scale` per unit).
fn throttling(stat: &BTreeMap<String, u64>, time_key: &str, scale: u64) -> Value {
    json!({
        "periods": stat.get("nr_periods").copied().unwrap_or(0),
        "throttledPeriods": stat.get("nr_throttled").copied().unwrap_or(0),
        "throttledTime": stat.get(time_key).copied().unwrap_or(0) * scale,
    })
}

fn pids(dir: &Path) -> Value {
    json!({"current": number(dir, "pids.current").unwrap_or(0), "limit": number(dir, "pids.max").unwrap_or(0)})
}

/// `major:minor`.
fn device(text: &str) -> Option<(u64, u64)> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// v1 blkio lines: `major:minor Op value` (a `Total` line without a device is skipped).
fn blkio_entries(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = device(fields.next()?)?;
            let op = fields.next()?;
            let value: u64 = fields.next()?.parse().ok()?;
            Some(json!({"major": major, "minor": minor, "op": op, "value": value}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn v1_files_become_runcs_fields() {
        let dir = dir_with(&[
            ("cpuacct.usage", "5000\n"),
            ("cpuacct.usage_percpu", "3000 2000 \n"),
            ("cpuacct.stat", "user 2\nsystem 1\n"),
            ("cpu.cfs_quota_us", "-1\n"),
            ("cpu.stat", "nr_periods 4\nnr_throttled 1\nthrottled_time 77\n"),
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.limit_in_bytes", "67108864\n"),
            ("memory.max_usage_in_bytes", "8192\n"),
            ("memory.failcnt", "0\n"),
            ("memory.stat", "cache 100\nrss 200\n"),
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            ("blkio.throttle.io_service_bytes_recursive", "8:0 Read 10\n8:0 Write 20\nTotal 30\n"),
            ("blkio.throttle.io_serviced_recursive", "8:0 Read 1\n"),
        ]);
        let stats = collect(&[dir.path().to_path_buf()], false);
        assert!(stats.get(wire::api::STATS_CGROUP2).is_none(), "v1 has no v2 figures");
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(stats["cpu"]["usage"]["total"], 5000);
        assert_eq!(stats["cpu"]["usage"]["percpu"], json!([3000, 2000]));
        assert_eq!(stats["cpu"]["usage"]["user"], 2 * NANOS / hz);
        assert_eq!(stats["cpu"]["throttling"]["throttledTime"], 77);
        assert_eq!(stats["memory"]["usage"], json!({"limit": 67108864, "usage": 4096, "max": 8192, "failcnt": 0}));
        assert_eq!(stats["memory"]["cache"], 100);
        assert_eq!(stats["memory"]["raw"]["rss"], 200);
        assert_eq!(stats["pids"], json!({"current": 3, "limit": 0}));
        assert_eq!(
            stats["blkio"]["ioServiceBytesRecursive"][1],
            json!({"major": 8, "minor": 0, "op": "Write", "value": 20})
        );
        assert!(stats.get("hugetlb").is_none());
    }

    #[test]
    fn v2_files_become_runcs_fields() {
        let dir = dir_with(&[
            ("cgroup.controllers", "cpu memory pids io\n"),
            ("cpu.stat", "usage_usec 7\nuser_usec 5\nsystem_usec 2\nnr_periods 0\nnr_throttled 0\nthrottled_usec 3\n"),
            ("memory.current", "1024\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
            ("memory.stat", "anon 10\nfile 20\n"),
            ("pids.current", "2\n"),
            ("pids.max", "10\n"),
            ("io.stat", "8:16 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n"),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.events", "max 0\n"),
        ]);
        let stats = collect(&[dir.path().to_path_buf()], true);
        assert_eq!(stats["cpu"]["usage"], json!({"total": 7000, "kernel": 2000, "user": 5000}));
        assert_eq!(stats["cpu"]["throttling"]["throttledTime"], 3000);
        assert_eq!(stats["memory"]["usage"]["usage"], 1024);
        assert_eq!(stats["memory"]["usage"]["limit"], 0);
        assert_eq!(stats["memory"]["usage"]["failcnt"], 2);
        assert_eq!(stats["memory"]["cache"], 20);
        assert_eq!(stats["pids"], json!({"current": 2, "limit": 10}));
        assert_eq!(
            stats["blkio"]["ioServiceBytesRecursive"][0],
            json!({"major": 8, "minor": 16, "op": "Read", "value": 100})
        );
        assert_eq!(stats["blkio"]["ioServicedRecursive"][1]["value"], 2);
        assert_eq!(stats["hugetlb"]["2MB"], json!({"usage": 0, "failcnt": 0}));
        // The v2 figures as they are, beside runc's shape.
        let cgroup2 = &stats[wire::api::STATS_CGROUP2];
        assert_eq!(cgroup2, &serde_json::to_value(sys::cgroup2_stats::read(dir.path())).unwrap());
        assert_eq!(cgroup2["memory"]["usage_limit"], u64::MAX);
        assert_eq!(cgroup2["memory_events"]["oom_kill"], 1);
        assert_eq!(cgroup2["io"]["devices"][0]["wios"], 2);
    }
}
