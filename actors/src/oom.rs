//! Watching a container's memory cgroup for the kernel's OOM killer, as it happens (runc's
//! `events` reports `oom` the same way): on cgroup v1 an eventfd registered for
//! `memory.oom_control` through `cgroup.event_control`; on v2, inotify on `memory.events`,
//! whose `oom_kill` count then says whether a process was killed.
//!
//! The watch yields once per notification, saying whether the cgroup's kill count is already
//! up to date: v1 notifies when the OOM killer is invoked, before its kill is counted (so the
//! notification is the event, as for runc); v2 notifies after `oom_kill` went up, and also for
//! the file's other counters (so the count says whether it was a kill). The container actor
//! keeps the count it has reported, so that a kill is reported once, whether the watch or the
//! container's exit sees it first. The watch ends when the cgroup goes away (v1 signals the
//! eventfd then too; the file is gone afterwards).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use futures_util::stream::{self, Stream};
use tokio::io::unix::AsyncFd;

/// What is watched: the descriptor that becomes readable, and the files that keep it armed.
struct Armed {
    ready: AsyncFd<OwnedFd>,
    /// v1: `memory.oom_control`, which must stay open for the registration to hold.
    _control: Option<std::fs::File>,
    /// The file whose disappearance means the cgroup is gone.
    gone_when_missing: PathBuf,
    /// v2: the kill count is current when the notification comes.
    counted: bool,
}

/// One notification from [`watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomSignal {
    /// The OOM killer was invoked (v1); its kill is not counted yet.
    Invoked,
    /// The memory cgroup's events changed (v2): compare the kill count.
    CountChanged,
}

/// A stream of OOM notifications for the memory cgroup in `dirs` (one of a cgroup's
/// directories holds `memory.oom_control` or `memory.events`), or `None` if there is none.
pub fn watch(dirs: &[PathBuf]) -> Option<impl Stream<Item = OomSignal>> {
    let armed = dirs.iter().find_map(|dir| arm_v1(dir).or_else(|| arm_v2(dir)))?;
    Some(stream::unfold(armed, |armed| async move {
        loop {
            let mut guard = armed.ready.readable().await.ok()?;
            let mut buf = [0u8; 4096];
            match rustix::io::read(armed.ready.get_ref().as_fd(), &mut buf) {
                Ok(_) => {
                    guard.clear_ready();
                    if !armed.gone_when_missing.exists() {
                        return None;
                    }
                    let signal = if armed.counted { OomSignal::CountChanged } else { OomSignal::Invoked };
                    return Some((signal, armed));
                }
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(_) => return None,
            }
        }
    }))
}

fn arm_v1(dir: &Path) -> Option<Armed> {
    let control_path = dir.join("memory.oom_control");
    let control = std::fs::File::open(&control_path).ok()?;
    let event =
        rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK).ok()?;
    let line = format!("{} {}", event.as_raw_fd(), control.as_raw_fd());
    std::fs::write(dir.join("cgroup.event_control"), line).ok()?;
    Some(Armed { ready: register(event)?, _control: Some(control), gone_when_missing: control_path, counted: false })
}

fn arm_v2(dir: &Path) -> Option<Armed> {
    let events = dir.join("memory.events");
    if !events.exists() {
        return None;
    }
    use rustix::fs::inotify;
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
    inotify::add_watch(&fd, &events, inotify::WatchFlags::MODIFY).ok()?;
    Some(Armed { ready: register(fd)?, _control: None, gone_when_missing: events, counted: true })
}

/// Registers `fd` with the runtime's reactor (called from an actor, inside the runtime).
fn register(fd: OwnedFd) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid descriptor that stays open, and its as_raw_fd is the same
    // number, for as long as it is owned, here by the AsyncFd.
    unsafe { AsyncFd::register(fd) }.ok()
}
