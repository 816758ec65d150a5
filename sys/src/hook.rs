//! Running an OCI hook: a program given the container's state on stdin, its own argv and
//! environment, an optional timeout, and (for hooks that run in the container's namespaces)
//! namespaces to enter first.
//!
//! Written by hand because the hook must be forked from a multi-threaded paddockd (only
//! async-signal-safe calls in the child), may have to enter namespaces and execute a file
//! opened beforehand in another mount namespace, and must be reaped by us alone while paddockd
//! also reaps orphans: `std::process::Command` can do none of the last three.
//!
//! The state is given as a sealed-in-memory file rather than a pipe, so writing it can never
//! block on a hook that does not read it; the hook's stdout and stderr go to another memory
//! file, read after it ended, so a hook that leaves a daemon holding them open cannot hang us.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::MemfdFlags;

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
pub struct Prepared {
    path: CString,
    argv_owned: Vec<CString>,
    envp_owned: Vec<CString>,
    cwd: Option<CString>,
    /// Descriptors to place in the child: `(source, target)`, sources all above the targets.
    moves: Vec<(OwnedFd, RawFd)>,
    joins: Vec<(RawFd, i32)>,
    /// See [`Place::root`] and [`Place::cwd_fd`] (-1: none).
    root_fd: RawFd,
    cwd_fd: RawFd,
    /// Whether the file is executed through descriptor 3.
    by_fd: bool,
    output: OwnedFd,
    timeout: Option<Duration>,
}

fn cstr(bytes: &[u8], what: &str) -> Result<CString, HookError> {
    CString::new(bytes).map_err(|_| {
        HookError::Start(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("NUL byte in {what}")))
    })
}

/// The number the file to execute gets in the child (scripts are then run by their
/// interpreter as `/dev/fd/3`).
const EXE_FD: RawFd = 3;
/// Sources are duplicated at or above this, so that placing them never overwrites another.
const SOURCE_FLOOR: RawFd = 10;

/// Prepares `hook` to run with `state` on its stdin.
pub fn prepare(hook: Hook, state: &[u8], place: &Place<'_>) -> Result<Prepared, HookError> {
    let start = HookError::Start;
    let path = cstr(hook.path.as_os_str().as_bytes(), "the path")?;
    let args = if hook.args.is_empty() { vec![hook.path.to_string_lossy().into_owned()] } else { hook.args };
    let argv_owned = args.iter().map(|a| cstr(a.as_bytes(), "an argument")).collect::<Result<Vec<_>, _>>()?;
    let envp_owned = hook.env.iter().map(|e| cstr(e.as_bytes(), "the environment")).collect::<Result<Vec<_>, _>>()?;
    let cwd = place.cwd.map(|c| cstr(c.as_os_str().as_bytes(), "the working directory")).transpose()?;

    let stdin = rustix::fs::memfd_create("paddock-hook-state", MemfdFlags::CLOEXEC).map_err(|e| start(e.into()))?;
    rustix::io::write(&stdin, state).map_err(|e| start(e.into()))?;
    rustix::fs::seek(&stdin, rustix::fs::SeekFrom::Start(0)).map_err(|e| start(e.into()))?;
    let output = rustix::fs::memfd_create("paddock-hook-output", MemfdFlags::CLOEXEC).map_err(|e| start(e.into()))?;

    let high = |fd: &OwnedFd| rustix::io::fcntl_dupfd_cloexec(fd, SOURCE_FLOOR).map_err(|e| start(e.into()));
    let mut moves = vec![(high(&stdin)?, 0), (high(&output)?, 1), (high(&output)?, 2)];
    let by_fd = hook.exe.is_some();
    if let Some(exe) = &hook.exe {
        moves.push((high(exe)?, EXE_FD));
    }
    let joins = place.join.iter().map(|(fd, typ)| (fd.as_raw_fd(), *typ)).collect();
    let (root_fd, cwd_fd) = (place.root.map_or(-1, |f| f.as_raw_fd()), place.cwd_fd.map_or(-1, |f| f.as_raw_fd()));
    Ok(Prepared {
        path,
        argv_owned,
        envp_owned,
        cwd,
        moves,
        joins,
        root_fd,
        cwd_fd,
        by_fd,
        output,
        timeout: hook.timeout,
    })
}

/// A started hook.
pub struct Running {
    /// Its pid.
    pub pid: i32,
    pidfd: OwnedFd,
    errors: OwnedFd,
    prepared: Prepared,
}

impl Prepared {
    /// Forks the hook. Returns at once; the caller registers the pid where an orphan reaper
    /// would look, then calls [`Running::wait`].
    pub fn spawn(self) -> Result<Running, HookError> {
        let start = HookError::Start;
        let mut argv: Vec<*const libc::c_char> = self.argv_owned.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.envp_owned.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        let raw_moves: Vec<(RawFd, RawFd)> = self.moves.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
        let (err_read, err_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| start(e.into()))?;
        let empty = c"";
        let child = Child {
            moves: &raw_moves,
            joins: &self.joins,
            root_fd: self.root_fd,
            cwd_fd: self.cwd_fd,
            cwd: self.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            path: if self.by_fd { empty.as_ptr() } else { self.path.as_ptr() },
            by_fd: self.by_fd,
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            err_fd: err_write.as_raw_fd(),
        };

        let mut pidfd: libc::c_int = -1;
        // SAFETY: clone_args is plain data; zero is valid for every field we do not set.
        let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
        args.flags = libc::CLONE_PIDFD as u64;
        args.pidfd = &mut pidfd as *mut libc::c_int as u64;
        args.exit_signal = libc::SIGCHLD as u64;
        // SAFETY: clone3 without CLONE_VM or a stack behaves like fork. The child runs only
        // async-signal-safe calls on memory prepared above and ends in execve or _exit.
        let ret = unsafe {
            libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, std::mem::size_of::<libc::clone_args>())
        };
        if ret == 0 {
            // SAFETY: see above.
            unsafe { child.run() }
        }
        if ret < 0 {
            return Err(start(std::io::Error::last_os_error()));
        }
        drop(err_write);
        // SAFETY: the kernel stored a new pidfd in `pidfd` for us.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        // The kernel returns a pid_t in a long.
        let pid = i32::try_from(ret).map_err(|_| start(std::io::Error::from_raw_os_error(libc::ERANGE)))?;
        Ok(Running { pid, pidfd, errors: err_read, prepared: self })
    }
}

impl Running {
    /// Waits for the hook to end (killing it and its process group at its timeout) and reaps
    /// it. `Ok` when it exited with 0.
    pub fn wait(self) -> Result<(), HookError> {
        let deadline = self.prepared.timeout.map(|t| Instant::now() + t);
        let timed_out = !wait_readable(self.pidfd.as_fd(), deadline);
        if timed_out {
            // The hook leads its own process group: whatever it forked goes with it.
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_raw(self.pid).expect("a child's pid is positive"),
                rustix::process::Signal::KILL,
            );
            let _ = rustix::process::pidfd_send_signal(self.pidfd.as_fd(), rustix::process::Signal::KILL);
        }
        let status = rustix::process::waitid(
            rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED,
        )
        .map_err(|e| HookError::Start(e.into()))?;
        if let Some(errno) = read_errno(&self.errors) {
            return Err(HookError::Start(std::io::Error::from_raw_os_error(errno)));
        }
        let output = || tail(&self.prepared.output);
        if timed_out {
            return Err(HookError::TimedOut { after: self.prepared.timeout.unwrap_or_default(), output: output() });
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

/// The errno a child reported before it could execute, if it did.
fn read_errno(pipe: &OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match rustix::io::read(pipe, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    (got == 4).then(|| i32::from_ne_bytes(buf))
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

/// What the child needs, as raw pointers and numbers only.
struct Child<'a> {
    moves: &'a [(RawFd, RawFd)],
    joins: &'a [(RawFd, i32)],
    root_fd: RawFd,
    cwd_fd: RawFd,
    cwd: *const libc::c_char,
    path: *const libc::c_char,
    by_fd: bool,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    err_fd: RawFd,
}

impl Child<'_> {
    /// The child's side: a clean signal state, a process group of its own, the namespaces,
    /// the descriptors, then execve.
    ///
    /// # Safety
    /// Only in the child of a fork-like clone, with pointers to live, NUL-terminated data.
    unsafe fn run(&self) -> ! {
        // SAFETY: the caller guarantees this runs only in the cloned child, with the
        // pointers it holds still valid (the parent's memory is the child's copy).
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // Rust ignores SIGPIPE; the ignored disposition would survive execve.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::setsid();
            for &(fd, nstype) in self.joins {
                if libc::setns(fd, nstype) < 0 {
                    self.fail();
                }
            }
            // Before the descriptors are moved, which could overwrite these.
            if self.root_fd >= 0 && (libc::fchdir(self.root_fd) < 0 || libc::chroot(c".".as_ptr()) < 0) {
                self.fail();
            }
            if self.cwd_fd >= 0 {
                if libc::fchdir(self.cwd_fd) < 0 {
                    self.fail();
                }
            } else if !self.cwd.is_null() && libc::chdir(self.cwd) < 0 {
                self.fail();
            }
            for &(from, to) in self.moves {
                // dup2 clears close-on-exec on the copy: the interpreter of a script executed
                // through descriptor 3 opens /dev/fd/3.
                if libc::dup2(from, to) < 0 {
                    self.fail();
                }
            }
            // Only stdio (and the file to run) reach the hook.
            if crate::cloexec_from(if self.by_fd { EXE_FD + 1 } else { EXE_FD }).is_err() {
                self.fail();
            }
            if self.by_fd {
                libc::syscall(libc::SYS_execveat, EXE_FD, self.path, self.argv, self.envp, libc::AT_EMPTY_PATH);
            } else {
                libc::execve(self.path, self.argv, self.envp);
            }
            self.fail()
        }
    }

    /// Reports errno to the parent and exits.
    ///
    /// # Safety
    /// Child side of a fork only.
    unsafe fn fail(&self) -> ! {
        // SAFETY: the child's own errno and its end of the error pipe; _exit skips the
        // parent's atexit handlers and buffers, which the child must not run.
        unsafe {
            let errno = *libc::__errno_location();
            let bytes = errno.to_ne_bytes();
            libc::write(self.err_fd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    }
}
