//! A container's cgroup as the sandbox sees it: descriptors of its directories (one per
//! hierarchy), handed over by paddockd. The sandbox does not see the host's cgroup mounts.

use std::os::fd::{BorrowedFd, OwnedFd};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rustix::fs::{Mode, OFlags};

/// Moves process `pid` (of the sandbox's PID namespace) into the cgroup, in every hierarchy.
/// The sandbox does this for each process it starts, from outside: the process never holds
/// a descriptor of a cgroup directory (through which `..` leads to the host's cgroupfs).
pub fn place(dirs: &[OwnedFd], pid: Pid) -> std::io::Result<()> {
    for dir in dirs {
        let procs = rustix::fs::openat(dir, "cgroup.procs", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
        rustix::io::write(&procs, pid.as_raw().to_string().as_bytes())?;
    }
    Ok(())
}

/// The processes in the cgroup, as pids of the sandbox's PID namespace (the kernel translates
/// them for the reader).
pub fn procs(dirs: &[OwnedFd]) -> Vec<Pid> {
    let Some(dir) = dirs.first() else { return Vec::new() };
    let Ok(file) = rustix::fs::openat(dir, "cgroup.procs", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
        return Vec::new();
    };
    let mut text = String::new();
    let _ = std::io::Read::read_to_string(&mut std::fs::File::from(file), &mut text);
    text.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|p| *p > 0).map(Pid::from_raw).collect()
}

/// The live (not zombie) processes in the cgroup, looked up in the sandbox's procfs.
pub fn live_procs(dirs: &[OwnedFd], proc: BorrowedFd<'_>) -> Vec<Pid> {
    procs(dirs).into_iter().filter(|pid| is_alive(proc, *pid)).collect()
}

/// Whether `pid` is a live (not zombie) process of the sandbox's PID namespace.
pub fn is_alive(proc: BorrowedFd<'_>, pid: Pid) -> bool {
    sys::proc_stat::ProcStat::read_at(proc, pid.as_raw()).is_ok_and(|s| !s.is_zombie())
}

/// The parent of `pid` in the sandbox's PID namespace.
pub fn parent_of(proc: BorrowedFd<'_>, pid: Pid) -> Option<Pid> {
    sys::proc_stat::ProcStat::read_at(proc, pid.as_raw()).ok().map(|s| Pid::from_raw(s.ppid))
}

/// Sends `signal` to every process in the cgroup.
pub fn signal_all(dirs: &[OwnedFd], signal: Signal) {
    for pid in procs(dirs) {
        let _ = nix::sys::signal::kill(pid, signal);
    }
}
