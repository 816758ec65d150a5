//! Watching the processes paddock started: through pidfds, never by pid alone.
//!
//! A [`ChildProcess`] owns a pidfd; a task waits for it to become readable (the process ended),
//! reaps it if it is our child, and publishes how it ended. paddockd also sets itself as child
//! subreaper and reaps orphans on SIGCHLD ([`reap_orphans`]); the pids watched here are kept
//! in a list so that the orphan reaper never takes their exit status.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use wire::ExitStatus;

/// Pids whose exit is collected through their pidfd (see [`WatchedPid`]).
static WATCHED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Whether the orphan reaper is on (only in paddockd, never in an embedding program whose
/// own children are not ours to reap).
static REAP_ORPHANS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn watch_list() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    WATCHED.lock().unwrap_or_else(|p| p.into_inner())
}

/// A pid on the watch list: its exit status is collected through its pidfd by whoever holds
/// this, never by the orphan reaper. Dropping it takes the pid off the list (and lets the
/// reaper take what it held back meanwhile).
#[derive(Debug)]
pub struct WatchedPid(i32);

impl WatchedPid {
    /// Runs `spawn`, which makes a child, with the watch list held, and puts on it the pid
    /// that `pid_of` finds in what `spawn` returned: the reaper takes the list before it reaps,
    /// so it can never take the new child's exit status, however soon that child ends.
    pub fn spawn<T, E>(
        spawn: impl FnOnce() -> Result<T, E>,
        pid_of: impl FnOnce(&T) -> i32,
    ) -> Result<(T, WatchedPid), E> {
        let mut list = watch_list();
        let spawned = spawn()?;
        let pid = pid_of(&spawned);
        list.insert(pid);
        Ok((spawned, WatchedPid(pid)))
    }

    /// Puts a process started by an earlier paddockd on the list, while it is watched
    /// through its pidfd (it is not our child, so the reaper would never meet it anyway).
    pub fn adopt(pid: i32) -> Self {
        watch_list().insert(pid);
        WatchedPid(pid)
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.0
    }
}

impl Drop for WatchedPid {
    fn drop(&mut self) {
        watch_list().remove(&self.0);
        reap_orphans_if_on();
    }
}

/// How a watched process ended, as far as we can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Our child, reaped: its status.
    Reaped(ExitStatus),
    /// Not our child (adopted after a restart): it is gone, its status went to its parent.
    Gone,
}

/// A process started or adopted by paddock.
#[derive(Debug, Clone)]
pub struct ChildProcess {
    pid: i32,
    pidfd: Arc<OwnedFd>,
    ended: watch::Receiver<Option<Ended>>,
}

impl ChildProcess {
    /// Starts watching `pid` through `pidfd`; the pid leaves the watch list once the process
    /// has been reaped. Must be called inside a tokio runtime.
    pub fn watch(watched: WatchedPid, pidfd: OwnedFd) -> std::io::Result<Self> {
        let pid = watched.pid();
        let (tx, rx) = watch::channel(None);
        // SAFETY: an OwnedFd keeps its descriptor open and unchanged until it is dropped,
        // which is what registering it with the reactor requires.
        let watch_fd = unsafe { AsyncFd::register_with_interest(pidfd.try_clone()?, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        tokio::spawn(async move {
            let _ = watch_fd.readable().await;
            let ended = match rustix::process::waitid(
                rustix::process::WaitId::PidFd(watch_fd.get_ref().as_fd()),
                rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOHANG,
            ) {
                Ok(Some(status)) => Ended::Reaped(if status.killed() || status.dumped() {
                    ExitStatus::Signaled(status.terminating_signal().unwrap_or(libc::SIGKILL))
                } else {
                    ExitStatus::Exited(status.exit_status().unwrap_or(0))
                }),
                _ => Ended::Gone,
            };
            drop(watched);
            let _ = tx.send(Some(ended));
        });
        Ok(Self { pid, pidfd: Arc::new(pidfd), ended: rx })
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether it has ended, as far as the watcher has seen.
    pub fn has_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }

    /// Whether it has ended by now, asking the kernel directly (its pidfd is readable once it
    /// has exited), ahead of the watcher.
    pub fn exited_now(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(self.pidfd.as_fd(), nix::poll::PollFlags::POLLIN)];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Sends `signal`; a process that already ended is not an error.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        let Some(sig) = rustix::process::Signal::from_named_raw(signal) else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad signal"));
        };
        match rustix::process::pidfd_send_signal(self.pidfd.as_fd(), sig) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until it has ended.
    pub async fn ended(&self) -> Ended {
        let mut rx = self.ended.clone();
        loop {
            if let Some(ended) = *rx.borrow_and_update() {
                return ended;
            }
            if rx.changed().await.is_err() {
                return Ended::Gone;
            }
        }
    }

    /// Kills it with SIGKILL and waits until it is gone.
    pub async fn kill(&self) -> Ended {
        let _ = self.signal(libc::SIGKILL);
        self.ended().await
    }
}

/// Runs [`reap_orphans`] if paddockd turned the orphan reaper on: after reaping a watched
/// child, since the reaper stops at the first watched zombie it meets.
fn reap_orphans_if_on() {
    if REAP_ORPHANS.load(std::sync::atomic::Ordering::Relaxed) {
        reap_orphans();
    }
}

/// Makes the calling process a child subreaper and turns on the orphan reaper: paddockd
/// calls this once at start and then [`reap_orphans`] on every SIGCHLD.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)?;
    REAP_ORPHANS.store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Reaps exited children that nobody watches (orphans reparented to us). Stops at the first
/// watched zombie: its watcher reaps it and calls this again.
pub fn reap_orphans() {
    let watched = watch_list();
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes into `info`, which we own. WNOWAIT leaves the zombie in place.
        let ret = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
        if ret != 0 {
            return;
        }
        // SAFETY: after a successful waitid with WEXITED, si_pid is the valid member.
        let pid = unsafe { info.si_pid() };
        if pid == 0 || watched.contains(&pid) {
            return;
        }
        let mut status = 0;
        // SAFETY: reaping a specific zombie child.
        unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    }
}
