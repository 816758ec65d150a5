//! Facts about processes from `/proc`.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::meta::ProcessRecord;

/// The start time of `pid` in clock ticks after boot (field 22 of `/proc/<pid>/stat`), which
/// together with the pid identifies a process for good.
pub fn start_time(pid: i32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed stat"))?;
    after
        .split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed stat"))
}

/// The pid, in our PID namespace, of the process a pidfd refers to (`-1` once it has been
/// reaped).
pub fn pidfd_pid(pidfd: BorrowedFd<'_>) -> std::io::Result<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no Pid in pidfd fdinfo"))
}

/// Identifies a live process for the metadata.
pub fn record(pid: i32) -> std::io::Result<ProcessRecord> {
    Ok(ProcessRecord { pid, start_time: start_time(pid)? })
}

/// A pidfd for the process `record` describes, if that very process is still alive (a pid
/// reused by another process is refused).
pub fn open_verified(record: &ProcessRecord) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(record.pid)?;
    // Open first, then check: if the pid was reused in between, the start time differs.
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    (start_time(record.pid).ok()? == record.start_time).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn our_own_process() {
        let me = std::process::id() as i32;
        let rec = record(me).unwrap();
        assert!(rec.start_time > 0);
        let fd = open_verified(&rec).unwrap();
        assert_eq!(pidfd_pid(fd.as_fd()).unwrap(), me);
        let stale = ProcessRecord { pid: me, start_time: rec.start_time + 1 };
        assert!(open_verified(&stale).is_none());
    }
}
