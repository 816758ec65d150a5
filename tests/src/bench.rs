//! What the benchmarks share: timing one command, medians, alternating, and finding runc.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `cmd` takes (its output discarded); it must succeed.
pub fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    elapsed
}

/// The median of some timings.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The runc binary the benchmarks compare against.
pub fn runc() -> &'static str {
    ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("runc is not installed: apt-get install runc")
}

/// Timings summarised: how many, the fastest, the median, the 99th percentile and the slowest.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// How many timings.
    pub n: usize,
    /// The fastest.
    pub min: Duration,
    /// The median.
    pub median: Duration,
    /// The 99th percentile (nearest rank).
    pub p99: Duration,
    /// The slowest.
    pub max: Duration,
}

impl Summary {
    /// Summarises `timings`; `None` if there are none.
    pub fn of(mut timings: Vec<Duration>) -> Option<Self> {
        if timings.is_empty() {
            return None;
        }
        timings.sort();
        let last = timings.len() - 1;
        let rank = |q: f64| timings[((last as f64) * q).round() as usize];
        Some(Self { n: timings.len(), min: timings[0], median: rank(0.5), p99: rank(0.99), max: timings[last] })
    }
}

/// A duration in microseconds.
pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A `kB` field of `/proc/PID/smaps_rollup` (`"Pss"`, `"Rss"`, …) in KiB, if the process
/// still exists.
pub fn smaps_kib(pid: i32, field: &str) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), field)
}

/// A `kB` field of `/proc/PID/status` (`"VmRSS"`, `"VmHWM"`, …) in KiB, if the process still
/// exists.
pub fn status_kib(pid: i32, field: &str) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/status"), field)
}

fn proc_kib(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let value = l.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Runs every one of `ops`, starting with a different one each round, so that no way always
/// goes first (right after the previous round's clean-up) or last.
pub fn alternate(round: usize, ops: &mut [&mut dyn FnMut()]) {
    for i in rotation(round, ops.len()) {
        (ops[i])();
    }
}

/// The order of `n` ways in round `round` of [`alternate`]: `round % n` first, then on
/// around.
pub fn rotation(round: usize, n: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (round + k) % n)
}
