//! Running an OCI hook: a program given the container's state on stdin, its own argv and
//! environment, an optional timeout, and (for hooks that run in the container's namespaces)
//! namespaces to enter first.
//!
//! Started with [`crate::spawn`] because the hook must be forked from a multi-threaded
//! paddockd (only async-signal-safe calls in the child), may have to enter namespaces and
//! execute a file opened beforehand in another mount namespace, and must be reaped by us alone
//! while paddockd also reaps orphans: `std::process::Command` can do none of the last three.
//!
//! The state is given as a sealed-in-memory file rather than a pipe, so writing it can never
//! block on a hook that does not read it; the hook's stdout and stderr go to another memory
//! file, read after it ended, so a hook that leaves a daemon holding them open cannot hang us.

use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::MemfdFlags;

use crate::spawn::{Command, Spawned};

/// How much of a failed hook's output goes into the error.
const OUTPUT_TAIL: usize = 4096;

/// One hook, as the spec gives it.
#[derive(Debug)]
pub struct Hook {
    /// Its path, absolute.
    pub path: PathBuf,
    /// The file, already opened (in the runtime's mount namespace) when the hook runs in
    /// another one; executed through this descriptor instead of `path`.
    pub exe: Option<OwnedFd>,
    /// Its argv, `args[0]` included; `[path]` when the spec gives none.
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Vec<String>,
    /// How long it may run.
    pub timeout: Option<Duration>,
}

/// Where and how a hook runs.
#[derive(Debug, Default)]
pub struct Place<'a> {
    /// Namespaces to enter, in order: `(descriptor, CLONE_NEW*)`.
    pub join: Vec<(&'a OwnedFd, i32)>,
    /// Its working directory (after entering the namespaces).
    pub cwd: Option<&'a Path>,
    /// A root to change to after entering the namespaces (a directory of another mount
    /// namespace: the runtime's, where a `createContainer` hook's paths resolve).
    pub root: Option<&'a OwnedFd>,
    /// A working directory given as a descriptor, taking the place of `cwd`: the
    /// container's rootfs, before its pivot.
    pub cwd_fd: Option<&'a OwnedFd>,
}

/// How a hook failed.
#[derive(Debug)]
pub enum HookError {
    /// It could not be started (bad path, namespaces, descriptors).
    Start(std::io::Error),
    /// It ran longer than its timeout and was killed.
    TimedOut {
        /// The timeout.
        after: Duration,
        /// What it wrote before.
        output: String,
    },
    /// It ended unsuccessfully.
    Failed {
        /// `exit status N` or `killed by signal N`.
        how: String,
        /// The tail of its stdout and stderr.
        output: String,
    },
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let with_output = |f: &mut std::fmt::Formatter<'_>, output: &str| {
            if output.is_empty() {
                Ok(())
            } else {
                write!(f, ", output: {output}")
            }
        };
        match self {
            HookError::Start(e) => write!(f, "cannot start: {e}"),
            HookError::TimedOut { after, output } => {
                write!(f, "timed out after {}s and was killed", after.as_secs())?;
                with_output(f, output)
            }
            HookError::Failed { how, output } => {
                write!(f, "{how}")?;
                with_output(f, output)
            }
        }
    }
}

impl std::error::Error for HookError {}

/// A hook ready to fork: everything allocated, so the child only makes system calls.
#[derive(Debug)]
pub struct Prepared {
    command: Command,
    output: OwnedFd,
    timeout: Option<Duration>,
}

/// The number the file to execute gets in the child (scripts are then run by their
/// interpreter as `/dev/fd/3`).
const EXE_FD: RawFd = 3;

/// Prepares `hook` to run with `state` on its stdin.
pub fn prepare(hook: Hook, state: &[u8], place: &Place<'_>) -> Result<Prepared, HookError> {
    let start = |e: rustix::io::Errno| HookError::Start(e.into());
    let args = if hook.args.is_empty() { vec![hook.path.to_string_lossy().into_owned()] } else { hook.args };
    let stdin = rustix::fs::memfd_create("paddock-hook-state", MemfdFlags::CLOEXEC).map_err(start)?;
    rustix::io::write(&stdin, state).map_err(start)?;
    rustix::fs::seek(&stdin, rustix::fs::SeekFrom::Start(0)).map_err(start)?;
    let output = rustix::fs::memfd_create("paddock-hook-output", MemfdFlags::CLOEXEC).map_err(start)?;
    // The command owns what it places; the namespaces and directories are the caller's, so
    // it gets copies.
    let copy = |fd: &OwnedFd| fd.try_clone().map_err(HookError::Start);
    let mut command = Command::new(&hook.path)
        .argv(args)
        .environment(hook.env)
        .new_session()
        .fd(stdin, 0)
        .fd(copy(&output)?, 1)
        .fd(copy(&output)?, 2);
    if let Some(exe) = hook.exe {
        command = command.execute_fd(exe, EXE_FD);
    }
    for (fd, nstype) in &place.join {
        command = command.join_namespace(copy(fd)?, *nstype);
    }
    if let Some(root) = place.root {
        command = command.root(copy(root)?);
    }
    if let Some(cwd) = place.cwd_fd {
        command = command.current_dir_fd(copy(cwd)?);
    } else if let Some(cwd) = place.cwd {
        command = command.current_dir(cwd);
    }
    Ok(Prepared { command, output, timeout: hook.timeout })
}

/// A started hook.
#[derive(Debug)]
pub struct Running {
    /// Its pid.
    pub pid: i32,
    spawned: Spawned,
    output: OwnedFd,
    timeout: Option<Duration>,
}

impl Prepared {
    /// Forks the hook. Returns at once; the caller registers the pid where an orphan reaper
    /// would look, then calls [`Running::wait`].
    pub fn spawn(self) -> Result<Running, HookError> {
        let spawned = self.command.spawn().map_err(|e| HookError::Start(e.into()))?;
        Ok(Running { pid: spawned.pid(), spawned, output: self.output, timeout: self.timeout })
    }
}

impl Running {
    /// Waits for the hook to end (killing it and its process group at its timeout) and reaps
    /// it. `Ok` when it exited with 0.
    pub fn wait(self) -> Result<(), HookError> {
        let child = self.spawned.executed().map_err(|e| HookError::Start(e.into()))?;
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let timed_out = !wait_readable(child.pidfd(), deadline);
        if timed_out {
            // The hook leads its own process group: whatever it forked goes with it.
            if let Some(pid) = rustix::process::Pid::from_raw(self.pid) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = rustix::process::pidfd_send_signal(child.pidfd(), rustix::process::Signal::KILL);
        }
        let status = child.wait().map_err(HookError::Start)?;
        let output = || tail(&self.output);
        if timed_out {
            return Err(HookError::TimedOut { after: self.timeout.unwrap_or_default(), output: output() });
        }
        match status {
            Some(s) if s.exited() && s.exit_status() == Some(0) => Ok(()),
            Some(s) if s.exited() => Err(HookError::Failed {
                how: format!("exit status {}", s.exit_status().unwrap_or(0)),
                output: output(),
            }),
            Some(s) => Err(HookError::Failed {
                how: format!("killed by signal {}", s.terminating_signal().unwrap_or(0)),
                output: output(),
            }),
            None => Err(HookError::Failed { how: "vanished".into(), output: output() }),
        }
    }
}

/// Prepares, starts and waits for `hook` in one go (for a caller that reaps no orphans
/// concurrently).
pub fn run(hook: Hook, state: &[u8], place: &Place<'_>) -> Result<(), HookError> {
    prepare(hook, state, place)?.spawn()?.wait()
}

/// Waits until `pidfd` is readable (the process ended); `false` once `deadline` passed.
fn wait_readable(pidfd: std::os::fd::BorrowedFd<'_>, deadline: Option<Instant>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => return true,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return true,
        }
    }
}

/// The last [`OUTPUT_TAIL`] bytes of the hook's output, trimmed.
fn tail(output: &OwnedFd) -> String {
    let len = rustix::fs::fstat(output).map(|s| s.st_size.max(0) as u64).unwrap_or(0);
    let from = len.saturating_sub(OUTPUT_TAIL as u64);
    let mut buf = vec![0u8; usize::try_from(len - from).unwrap_or(OUTPUT_TAIL)];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(output, &mut buf[got..], from + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    buf.truncate(got);
    String::from_utf8_lossy(&buf).trim().to_string()
}
