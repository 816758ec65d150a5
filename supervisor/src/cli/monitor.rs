//! The process a pid file names.
//!
//! runc's callers (podman's conmon, containerd's shim) are child subreapers: they learn that a
//! container (or an exec'd process) ended by `waitpid` on the pid in `--pid-file`, which with
//! runc is their reparented grandchild. A paddock container's processes are the sandbox's
//! children, never the caller's. So a detached `create`, `run -d` or `exec -d` with a pid file
//! leaves a monitor behind instead — as runsc's pid file names its sandbox: a small child of
//! the caller (reparented to it when ctl exits) that waits for the container's exit through
//! paddockd and exits the same way (the same code, or killed by the same signal). Catchable
//! signals sent to it go on to the container; SIGKILL, which it cannot catch, reaches the
//! process through paddockd, which kills it when the monitor's connection hangs up in the
//! middle of its wait. It holds none of the caller's descriptors.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wire::{ErrorKind, ExitStatus};

use crate::autostart::connect_or_start;

/// The hidden subcommand the monitor runs as.
pub const COMMAND: &str = "monitor-process";

/// How long the monitor keeps trying to reach paddockd (it may be restarting) before it gives
/// up and exits with 255.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(120);

/// Starts a monitor of container `id` (or of its process `pid`, a pid in the container's PID
/// namespace) and returns its pid, for the pid file. Returns once the monitor's wait is with
/// paddockd, so that a SIGKILL sent to it from then on reaches the process.
pub fn spawn(root: &Path, id: &str, pid: Option<i32>) -> anyhow::Result<i32> {
    use std::os::fd::AsRawFd;
    const READY_FD: i32 = 3;
    let (mut ready_read, ready_write) = std::io::pipe()?;
    let ready_raw = ready_write.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--root").arg(root).arg(COMMAND).arg("--ready-fd").arg(READY_FD.to_string());
    if let Some(pid) = pid {
        cmd.arg("--pid").arg(pid.to_string());
    }
    cmd.arg(id);
    // Its own process group: a terminal's ^C to the caller's group is not meant for it.
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    // SAFETY: only async-signal-safe calls (dup2, fcntl, close_range) between fork and exec.
    unsafe {
        cmd.pre_exec(move || sys::inherit_only(ready_raw, READY_FD));
    }
    let child = cmd.spawn()?;
    drop(ready_write);
    // A byte once its wait is sent; end-of-file if it died first (then the pid file names a
    // process that is gone, and the caller sees that when it reaps it).
    let mut byte = [0u8; 1];
    let _ = std::io::Read::read(&mut ready_read, &mut byte);
    // Never waited for by ctl: when ctl exits, it becomes the caller's (the subreaper's) child.
    Ok(child.id() as i32)
}

/// The monitor itself: forwards signals, waits, and ends as the container ended.
pub fn run(root: &Path, id: &str, pid: Option<i32>, ready_fd: Option<i32>) -> i32 {
    // SAFETY: the descriptor was handed to us for this alone; it is owned (and closed) here.
    let mut ready = ready_fd.map(|fd| unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    if let Ok(mut signals) = signal_hook::iterator::Signals::new(super::run::forwarded_signals()) {
        let (root, id) = (root.to_path_buf(), id.to_string());
        std::thread::spawn(move || {
            for signal in signals.forever() {
                if let Ok(mut client) = connect_or_start(&root) {
                    let _ = client.kill(&id, signal, false, pid);
                }
            }
        });
    }
    let mut unreachable_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let waited = connect_or_start(root).map_err(|e| (None, e.to_string())).and_then(|mut client| {
            // If the monitor is SIGKILLed (which it cannot pass on), paddockd sees it hang up
            // and kills the process it stands for, as that signal would have with runc.
            let sent = || {
                if let Some(fd) = ready.take() {
                    let _ = rustix::io::write(&fd, b"r");
                }
            };
            match pid {
                None => client.wait_with(wire::api::Wait { id: id.into(), kill_on_hangup: true }, sent),
                Some(pid) => client.wait_process_with(
                    wire::api::WaitProcess { id: id.into(), pid, root: false, kill_on_hangup: true },
                    sent,
                ),
            }
            .map_err(|e| (Some(e.kind), e.message))
        });
        match waited {
            Ok(status) => end_like(status),
            // Deleted before it could be waited for: it was killed.
            Err((Some(ErrorKind::NotFound), _)) => end_like(ExitStatus::Signaled(libc::SIGKILL)),
            Err((Some(kind), _)) if kind != ErrorKind::Unavailable && kind != ErrorKind::Io => return 255,
            Err(_) => {
                // paddockd is restarting (or was killed): try again, for a while.
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNREACHABLE_LIMIT {
                    return 255;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Exits as `status` says: with its code, or killed by its signal (core dumps off, so a
/// SIGSEGV'd container does not make the monitor dump core too).
fn end_like(status: ExitStatus) -> ! {
    if let ExitStatus::Signaled(signal) = status {
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: plain system calls on values we own; the signal's default action ends us.
        unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
        }
    }
    // Exited, or a signal whose default action does not end a process.
    std::process::exit(status.code())
}
