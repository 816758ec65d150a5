//! Facts about processes from `/proc`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::meta::ProcessRecord;

/// The start time of `pid` in clock ticks after boot (field 22 of `/proc/<pid>/stat`), which
/// together with the pid identifies a process for good.
pub fn start_time(pid: i32) -> std::io::Result<u64> {
    Ok(sys::proc_stat::ProcStat::read(pid)?.start_time)
}

/// The parent of `pid` (field 4 of `/proc/<pid>/stat`), if the process exists.
pub fn parent(pid: i32) -> Option<i32> {
    sys::proc_stat::ProcStat::read(pid).ok().map(|s| s.ppid)
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

/// The helper processes (`paddock-sandbox`, `paddock-gofer`) running on the host, each with
/// the container id and state directory it was started for: read from `/proc` once when
/// paddockd starts, so that taking over n containers costs one scan, not n.
#[derive(Debug, Default)]
pub struct HelperScan {
    helpers: Vec<RunningHelper>,
}

/// One helper process found by [`HelperScan::now`].
#[derive(Debug)]
struct RunningHelper {
    pid: i32,
    /// Its parent: a sandbox's spawner is the sandbox's child, with the sandbox's command
    /// line and environment, and dies with it.
    ppid: i32,
    /// The id after `--id` on its command line.
    id: Vec<u8>,
    /// Its state directory, from its environment.
    state_dir: Vec<u8>,
}

impl HelperScan {
    /// Every helper process now running (those whose /proc files vanish meanwhile are skipped).
    pub fn now() -> Self {
        let marker = format!("{}=", crate::launch::STATE_DIR_ENV).into_bytes();
        let mut helpers = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let program = argv.first().map(|a| a.rsplit(|b| *b == b'/').next().unwrap_or(a)).unwrap_or_default();
            let helper = program == crate::config::SANDBOX_BINARY.as_bytes()
                || program == crate::config::GOFER_BINARY.as_bytes();
            if !helper || argv.get(1) != Some(&&b"--id"[..]) {
                continue;
            }
            let Some(id) = argv.get(2) else { continue };
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
            let Some(state_dir) = environ.split(|b| *b == 0).find_map(|var| var.strip_prefix(marker.as_slice())) else {
                continue;
            };
            let ppid = parent(pid).unwrap_or(0);
            helpers.push(RunningHelper { pid, ppid, id: id.to_vec(), state_dir: state_dir.to_vec() });
        }
        HelperScan { helpers }
    }

    /// Whether `h` is a helper's own child (a sandbox's spawner), which is not a helper to
    /// keep or kill by itself: it lives and dies with its parent.
    fn is_child_of_helper(&self, h: &RunningHelper) -> bool {
        self.helpers.iter().any(|p| p.pid == h.ppid)
    }

    /// The helpers of container `id` started with the state directory `state_dir`, except the
    /// pids in `keep`. A paddockd killed between starting a helper and recording it leaves
    /// such strays; the next one finds them by their command line and environment.
    pub fn strays(&self, id: &str, state_dir: &std::path::Path, keep: &[i32]) -> Vec<i32> {
        use std::os::unix::ffi::OsStrExt;
        self.helpers
            .iter()
            .filter(|h| h.id == id.as_bytes() && h.state_dir == state_dir.as_os_str().as_bytes())
            .filter(|h| !keep.contains(&h.pid) && !self.is_child_of_helper(h))
            .map(|h| h.pid)
            .collect()
    }
}

impl HelperScan {
    /// The helpers started with a state directory under `dir` (paddockd's pool), except those
    /// `keep` records (pid and start time): at start-up, the pool members an earlier paddockd
    /// left, and those it handed to a container whose creation it never recorded. A member
    /// handed over and recorded keeps its pool state directory in its environment, and stays.
    pub fn under(&self, dir: &std::path::Path, keep: &[ProcessRecord]) -> Vec<i32> {
        use std::os::unix::ffi::OsStrExt;
        let prefix = dir.as_os_str().as_bytes();
        self.helpers
            .iter()
            .filter(|h| h.state_dir.starts_with(prefix) && h.state_dir.get(prefix.len()) == Some(&b'/'))
            .filter(|h| !self.is_child_of_helper(h))
            .filter(|h| !keep.iter().any(|r| r.pid == h.pid && start_time(h.pid).ok() == Some(r.start_time)))
            .map(|h| h.pid)
            .collect()
    }
}

/// Kills `strays`, helpers of container `id` no record knows (see [`HelperScan::strays`]),
/// and waits until they are gone: until then they still populate the cgroups a cleanup is
/// about to remove.
pub fn kill_stray_helpers(id: &str, strays: &[i32]) {
    for &pid in strays {
        tracing::warn!(container = id, pid, "killing a helper process no record knows");
        // Through a pidfd, so the wait below follows this very process; it is not our child
        // any more (its parent died), so init reaps it.
        let Some(fd) = rustix::process::Pid::from_raw(pid)
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        else {
            continue;
        };
        let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
        if !wait_exited(fd.as_fd(), std::time::Duration::from_secs(10)) {
            tracing::warn!(container = id, pid, "a killed helper is still there after 10 s");
        }
    }
}

/// Waits until the process of `pidfd` has exited (a pidfd polls readable then), at most
/// `timeout`; whether it did.
pub fn wait_exited(pidfd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [nix::poll::PollFd::new(pidfd, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return false,
            Ok(_) if left.is_zero() => return false,
            Ok(_) => continue,
        }
    }
}

/// The type of the namespace `fd` refers to, as its `CLONE_NEW*` flag (`NS_GET_NSTYPE`).
pub fn namespace_type(fd: &impl std::os::fd::AsRawFd) -> std::io::Result<i32> {
    // _IO(0xb7, 0x3) from <linux/nsfs.h>, which the libc crate does not export.
    const NS_GET_NSTYPE: libc::c_ulong = (0xb7 << 8) | 0x3;
    // SAFETY: the ioctl takes no argument and only reads the descriptor's namespace.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The id of the mount `path` is on (`statx`'s `STATX_MNT_ID`), which tells a mount stacked on
/// a path from the one that was there before.
pub fn mount_id(path: &std::path::Path) -> std::io::Result<u64> {
    let st = rustix::fs::statx(rustix::fs::CWD, path, rustix::fs::AtFlags::empty(), rustix::fs::StatxFlags::MNT_ID)?;
    Ok(st.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;

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
