//! Starting the helper binaries (sandbox, gofer) in new namespaces.
//!
//! paddockd is multi-threaded, so between fork and exec only async-signal-safe calls are
//! allowed. Everything the child needs (paths, argument and environment arrays, the
//! descriptor plan) is prepared before the fork; the child only resets its signal state,
//! starts a session, moves descriptors into place and calls `execve`.
//!
//! The fork is `clone3` with `CLONE_PIDFD` and the namespace flags: the child is PID 1 of its
//! new PID namespace from the start (std's `Command` cannot ask for that), and the pidfd
//! arrives atomically with the child, so it can never name a recycled pid. No crate wraps
//! `clone3` with these flags, so it is called here directly.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::process::WATCHED;

/// A helper process to start.
#[derive(Debug)]
pub struct LaunchSpec<'a> {
    /// The executable.
    pub program: &'a Path,
    /// Its arguments (without the program name).
    pub args: Vec<String>,
    /// Descriptors to hand over: `(descriptor, number in the child)`; numbers are 3 or above.
    pub fds: Vec<(OwnedFd, RawFd)>,
    /// `CLONE_NEW*` flags.
    pub namespaces: u64,
    /// Existing namespaces the child enters before it executes: `(descriptor, CLONE_NEW*)`.
    pub join: Vec<(OwnedFd, i32)>,
    /// The container's state directory, given to the helper as `PADDOCK_STATE_DIR`: with its
    /// `--id`, it tells a later paddockd whose helper a process is.
    pub state_dir: &'a Path,
}

/// The environment variable that names a helper's state directory.
pub const STATE_DIR_ENV: &str = "PADDOCK_STATE_DIR";

/// A started process.
#[derive(Debug)]
pub struct Launched {
    /// Its pid in our namespace.
    pub pid: i32,
    /// Its pidfd.
    pub pidfd: OwnedFd,
}

fn cstr(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte in argument"))
}

/// The environment variables through which systemd talks to the service it started.
const SYSTEMD_VARIABLES: &[&str] =
    &["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Starts `spec.program`. Blocks briefly (until the child has called `execve`); call it from a
/// blocking thread. The child's stdin is `/dev/null`; stdout and stderr are ours.
pub fn launch(spec: LaunchSpec<'_>) -> std::io::Result<Launched> {
    let program = cstr(spec.program.as_os_str().as_bytes())?;
    let mut argv_owned = vec![program.clone()];
    for a in &spec.args {
        argv_owned.push(cstr(a.as_bytes())?);
    }
    let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp_owned: Vec<CString> = std::env::vars_os()
        // systemd's variables are paddockd's alone: a helper must never notify or listen in
        // its place.
        .filter(|(k, _)| !SYSTEMD_VARIABLES.iter().any(|s| k.as_bytes() == s.as_bytes()))
        .filter(|(k, _)| k != STATE_DIR_ENV)
        .chain(std::iter::once((STATE_DIR_ENV.into(), spec.state_dir.as_os_str().to_owned())))
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let mut envp: Vec<*const libc::c_char> = envp_owned.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    // The descriptor plan: every source is first duplicated above the highest target, so the
    // child's dup2 calls can never overwrite a source that is still needed.
    let devnull = std::fs::File::options().read(true).write(true).open("/dev/null")?;
    let stdout = rustix::io::dup(std::io::stdout())?;
    let stderr = rustix::io::dup(std::io::stderr())?;
    let mut plan: Vec<(OwnedFd, RawFd)> = vec![(OwnedFd::from(devnull), 0), (stdout, 1), (stderr, 2)];
    plan.extend(spec.fds);
    let floor = plan.iter().map(|(_, t)| *t).max().unwrap_or(2) + 1;
    let mut moves: Vec<(OwnedFd, RawFd)> = Vec::with_capacity(plan.len());
    for (fd, target) in plan {
        let high = rustix::io::fcntl_dupfd_cloexec(&fd, floor)?;
        moves.push((high, target));
    }
    let raw_moves: Vec<(RawFd, RawFd)> = moves.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
    let raw_joins: Vec<(RawFd, i32)> = spec.join.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();

    let (err_read, err_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;

    let mut pidfd: libc::c_int = -1;
    // SAFETY: clone_args is plain data; zero is valid for every field we do not set.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = libc::CLONE_PIDFD as u64 | spec.namespaces;
    args.pidfd = &mut pidfd as *mut libc::c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;

    // Hold the watch list while the child comes into being, so the orphan reaper cannot take
    // its exit status before it is registered.
    let mut watched = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: clone3 without CLONE_VM or a stack behaves like fork. In the child (ret == 0)
    // only async-signal-safe system calls follow, on memory prepared above, ending in execve
    // or _exit.
    let ret = unsafe {
        libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, std::mem::size_of::<libc::clone_args>())
    };
    if ret == 0 {
        // SAFETY: see above; every call here is async-signal-safe and touches only memory
        // that was fully initialized before the clone.
        unsafe { child(&raw_moves, &raw_joins, program.as_ptr(), argv.as_ptr(), envp.as_ptr(), err_write.as_raw_fd()) }
    }
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let pid = ret as i32;
    watched.insert(pid);
    drop(watched);
    // SAFETY: the kernel stored a new pidfd in `pidfd` for us.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    drop(err_write);
    drop(moves);

    // Read the child's exec verdict: end-of-file means execve succeeded (the pipe is
    // close-on-exec); four bytes are the errno of a failure.
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match rustix::io::read(&err_read, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if got == 4 {
        let errno = i32::from_ne_bytes(buf);
        let _ = rustix::process::waitid(
            rustix::process::WaitId::PidFd(std::os::fd::AsFd::as_fd(&pidfd)),
            rustix::process::WaitIdOptions::EXITED,
        );
        crate::process::forget(pid);
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    Ok(Launched { pid, pidfd })
}

/// The child side of [`launch`].
///
/// # Safety
/// Must only be called in the child of a fork-like clone, with pointers to live, NUL-terminated
/// data.
unsafe fn child(
    moves: &[(RawFd, RawFd)],
    joins: &[(RawFd, i32)],
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    err_fd: RawFd,
) -> ! {
    // SAFETY: the caller guarantees this runs only in the cloned child, whose copy of the
    // parent's memory keeps these pointers valid.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Rust ignores SIGPIPE; the ignored disposition would survive execve.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::setsid();
        // Before the descriptors move: a move may land on a namespace descriptor's number.
        for &(fd, nstype) in joins {
            if libc::setns(fd, nstype) < 0 {
                fail(err_fd);
            }
        }
        let mut top = 2;
        for &(from, to) in moves {
            if libc::dup2(from, to) < 0 {
                fail(err_fd);
            }
            top = top.max(to);
        }
        // Only the planned descriptors reach the helper, whatever else paddockd has inheritable.
        if sys::cloexec_from(top + 1).is_err() {
            fail(err_fd);
        }
        libc::execve(program, argv, envp);
        fail(err_fd)
    }
}

/// Reports errno to the parent and exits.
///
/// # Safety
/// Child side of a fork only.
unsafe fn fail(err_fd: RawFd) -> ! {
    // SAFETY: the child's own errno and its end of the error pipe; _exit skips the parent's
    // atexit handlers and buffers.
    unsafe {
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(err_fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

/// The namespaces of a gofer: IPC, mount, network, PID, UTS (not cgroup: it is placed in the
/// sandbox's cgroup from outside, as runsc does).
pub const GOFER_NAMESPACES: u64 =
    (libc::CLONE_NEWIPC | libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID | libc::CLONE_NEWUTS) as u64;
