//! Starting a program in a new process, from a process that may be multi-threaded: paddock's
//! one spawner.
//!
//! [`Command`] describes what the child does between the fork and `execve`: the namespaces it
//! is created in or enters, a root and a working directory, its own session, the descriptors
//! it gets (and that it gets no others), and what it executes. Everything the child needs is
//! allocated before the fork; the child only makes async-signal-safe system calls on memory
//! prepared beforehand, so this is safe from paddockd's many threads. What `std::process`
//! cannot do and paddock needs: the child created in new namespaces (PID 1 of a new PID
//! namespace from the start), namespaces entered before `execve`, a file executed through a
//! descriptor opened in another mount namespace, and a pidfd that arrives with the child.
//!
//! [`Command::spawn`] makes the child as `posix_spawn` does, with `CLONE_VM | CLONE_VFORK`
//! and `CLONE_PIDFD` (see `spawn/vfork.rs` for why paddockd must not fork itself). A request
//! that `clone(2)` cannot carry (`CLONE_NEWTIME`), or that enters a time namespace, is forked
//! instead.
//!
//! The fork is `clone3` with `CLONE_PIDFD` ([`fork`]): either way the pidfd is made atomically
//! with the child, so it can never name a recycled pid. Where `clone3` is refused (`ENOSYS` from an
//! older kernel or, like `EPERM`, from a seccomp profile that filters it because its flags sit
//! behind a pointer), the same process is made with `clone(2)`, which takes `CLONE_PIDFD` too
//! (Linux 5.2): still atomic, unlike `pidfd_open` after the fact.
//!
//! A failure in the child before `execve` is reported through a close-on-exec pipe: four bytes
//! of errno, or end-of-file once `execve` succeeded ([`Spawned::executed`]).
//!
//! ```no_run
//! let child = sys::spawn::Command::new("/bin/true").new_session().spawn()?.executed()?;
//! let status = child.wait()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

mod vfork;

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// An argument, the path, the environment or the working directory holds a NUL byte.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// Which part.
        what: &'static str,
    },
    /// Preparing the child's descriptors or its error pipe failed.
    #[error("preparing the child: {0}")]
    Prepare(#[source] std::io::Error),
    /// Neither `clone3` nor `clone` made the process.
    #[error("cannot fork: {0}")]
    Fork(#[source] std::io::Error),
    /// The child failed before it could execute its program (entering a namespace, changing
    /// directory, placing a descriptor, `execve` itself); it has been reaped.
    #[error("{0}")]
    Exec(#[source] std::io::Error),
}

impl From<SpawnError> for std::io::Error {
    /// The underlying system error (what a caller reporting `errno` wants).
    fn from(e: SpawnError) -> Self {
        match e {
            SpawnError::Nul { what } => {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("NUL byte in {what}"))
            }
            SpawnError::Prepare(e) | SpawnError::Fork(e) | SpawnError::Exec(e) => e,
        }
    }
}

/// The system call that made a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneCall {
    /// `clone3`.
    Clone3,
    /// `clone(2)`, `clone3` having been refused.
    Clone,
    /// `clone(2)` with `CLONE_VM | CLONE_VFORK`, as `posix_spawn` does: [`Command::spawn`]'s
    /// way, for every request `clone(2)` can carry (see `spawn/vfork.rs`).
    Vfork,
}

/// What a fork-like [`fork`] returned, in each of the two processes.
#[derive(Debug)]
pub enum Forked {
    /// In the new process.
    Child,
    /// In the calling process.
    Parent {
        /// The child's pid, in the caller's PID namespace.
        pid: i32,
        /// Its pidfd, if one was asked for.
        pidfd: Option<OwnedFd>,
        /// How it was made.
        via: CloneCall,
    },
}

/// The flags `clone(2)` can carry (its flags argument is 32 bits wide, and its low byte is the
/// exit signal); a request with others (`CLONE_INTO_CGROUP`, `CLONE_CLEAR_SIGHAND`) has no
/// fallback.
const CLONE_FLAGS_MASK: u64 = 0xffff_ff00;

/// Forks the calling process with `clone3` (falling back to `clone(2)` where `clone3` is
/// refused with `ENOSYS` or `EPERM`): `flags` are `CLONE_*` flags without `CLONE_VM` or
/// `CLONE_THREAD` (new namespaces, `CLONE_PARENT`); with `pidfd`, `CLONE_PIDFD` is added and
/// the pidfd returned. The child is signalled to its parent with `SIGCHLD` (with
/// `CLONE_PARENT`, the kernel gives it the caller's own exit signal).
///
/// # Safety
/// As for `fork`: in [`Forked::Child`], a multi-threaded caller may only make
/// async-signal-safe calls, and the child must end with `execve` or `_exit`, never by
/// returning into code that would run the parent's destructors or unwind.
pub unsafe fn fork(flags: u64, pidfd: bool) -> std::io::Result<Forked> {
    let mut flags = flags;
    if pidfd {
        flags |= libc::CLONE_PIDFD as u64;
    }
    // With CLONE_PARENT the child's exit signal is the caller's (the kernel wants none given).
    let exit_signal = if flags & libc::CLONE_PARENT as u64 != 0 { 0 } else { libc::SIGCHLD as u64 };
    let mut fd: libc::c_int = -1;
    // SAFETY: clone_args is plain data; zero is valid for every field not set.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags;
    args.pidfd = &mut fd as *mut libc::c_int as u64;
    args.exit_signal = exit_signal;
    // SAFETY: clone3 without CLONE_VM or a stack behaves like fork; the caller upholds fork's
    // rules in the child. `args` lives across the call.
    let mut ret = unsafe {
        libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, std::mem::size_of::<libc::clone_args>())
    };
    let mut via = CloneCall::Clone3;
    if ret < 0 {
        let err = std::io::Error::last_os_error();
        let refused = matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM));
        if !refused || flags & !CLONE_FLAGS_MASK != 0 {
            return Err(err);
        }
        // SAFETY: as above; clone(2) without CLONE_VM and with a null stack behaves like fork.
        ret = unsafe { clone2(flags | exit_signal, &mut fd) };
        via = CloneCall::Clone;
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if ret == 0 {
        return Ok(Forked::Child);
    }
    // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor in `fd`, ours alone (and a
    // number that is not one is never taken for one).
    let pidfd = (pidfd && fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
    // The kernel returns a pid_t in a long.
    let pid = i32::try_from(ret).map_err(|_| std::io::Error::from_raw_os_error(libc::ERANGE))?;
    Ok(Forked::Parent { pid, pidfd, via })
}

/// `clone(2)` with `flags` (exit signal in the low byte), no new stack, the pidfd (with
/// `CLONE_PIDFD`) stored in `pidfd`. Its argument order differs between architectures.
///
/// # Safety
/// See [`fork`].
unsafe fn clone2(flags: u64, pidfd: &mut libc::c_int) -> libc::c_long {
    let pidfd = pidfd as *mut libc::c_int;
    let none: usize = 0;
    // SAFETY: the kernel writes at most the pidfd through `pidfd`, which is live.
    #[cfg(target_arch = "s390x")]
    let ret = unsafe { libc::syscall(libc::SYS_clone, none, flags as libc::c_ulong, pidfd, none, none) };
    // SAFETY: as above (x86_64, aarch64 and the others: flags, stack, parent_tid, ...).
    #[cfg(not(target_arch = "s390x"))]
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, none, pidfd, none, none) };
    ret
}

/// The child's working directory.
#[derive(Debug)]
enum Cwd {
    Path(PathBuf),
    Fd(OwnedFd),
}

/// A program to start, and what its process does before it executes it: a builder.
///
/// The signal mask is always emptied, and every signal with a handler, and `SIGPIPE`, given
/// back its default disposition (Rust ignores `SIGPIPE`, and an ignored signal stays ignored
/// across `execve`). Every descriptor the
/// child has besides those placed with [`Command::fd`] and [`Command::execute_fd`] is marked
/// close-on-exec before `execve`, whatever the parent left inheritable. The environment is
/// empty unless given with [`Command::environment`].
///
/// The child's steps, in order: signals, [`Command::new_session`], the namespaces of
/// [`Command::join_namespace`], [`Command::root`], the working directory, the descriptors,
/// `execve`.
#[derive(Debug)]
pub struct Command {
    program: PathBuf,
    argv: Vec<OsString>,
    env: Vec<OsString>,
    fds: Vec<(OwnedFd, RawFd)>,
    exe: Option<RawFd>,
    new_namespaces: u64,
    join: Vec<(OwnedFd, i32)>,
    root: Option<OwnedFd>,
    cwd: Option<Cwd>,
    new_session: bool,
}

impl Command {
    /// Runs `program` (an absolute path: there is no `PATH` search), with itself as `argv[0]`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        let program = program.into();
        Self {
            argv: vec![program.clone().into_os_string()],
            program,
            env: Vec::new(),
            fds: Vec::new(),
            exe: None,
            new_namespaces: 0,
            join: Vec::new(),
            root: None,
            cwd: None,
            new_session: false,
        }
    }

    /// Appends arguments after those given so far.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Replaces the whole argument vector, `argv[0]` included.
    pub fn argv<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.argv = argv.into_iter().map(Into::into).collect();
        self
    }

    /// The child's whole environment, as `KEY=value` entries.
    pub fn environment<I, S>(mut self, env: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.env = env.into_iter().map(Into::into).collect();
        self
    }

    /// Gives the child `fd` as its descriptor `target` (inheritable across `execve`). The
    /// parent's `fd` is closed once the child has been made.
    pub fn fd(mut self, fd: impl Into<OwnedFd>, target: RawFd) -> Self {
        self.fds.push((fd.into(), target));
        self
    }

    /// Executes the file open at `fd` (`execveat` with `AT_EMPTY_PATH`) instead of the path,
    /// placed at `target` and inheritable, so that the interpreter of a script can open it as
    /// `/dev/fd/<target>`. For a file opened in another mount namespace than the one the
    /// child executes in.
    pub fn execute_fd(mut self, fd: impl Into<OwnedFd>, target: RawFd) -> Self {
        self.exe = Some(target);
        self.fd(fd, target)
    }

    /// Creates the child in new namespaces: `CLONE_NEW*` flags (in a new PID namespace, it is
    /// its PID 1).
    pub fn new_namespaces(mut self, flags: u64) -> Self {
        self.new_namespaces |= flags;
        self
    }

    /// Has the child enter the namespace `fd` refers to (`setns` with `nstype`, a `CLONE_NEW*`
    /// flag), after those given before.
    pub fn join_namespace(mut self, fd: impl Into<OwnedFd>, nstype: i32) -> Self {
        self.join.push((fd.into(), nstype));
        self
    }

    /// Has the child change its root to the directory `dir` refers to, after entering the
    /// namespaces (a directory of another mount namespace: the runtime's, where paths resolve).
    pub fn root(mut self, dir: impl Into<OwnedFd>) -> Self {
        self.root = Some(dir.into());
        self
    }

    /// The child's working directory, resolved after the namespaces and the root.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(Cwd::Path(dir.into()));
        self
    }

    /// The child's working directory, given as a descriptor (a directory of another mount
    /// namespace, or not reachable by path).
    pub fn current_dir_fd(mut self, dir: impl Into<OwnedFd>) -> Self {
        self.cwd = Some(Cwd::Fd(dir.into()));
        self
    }

    /// Has the child start a session (and process group) of its own: no terminal of ours, and
    /// one `kill(-pid)` reaches whatever it forks.
    pub fn new_session(mut self) -> Self {
        self.new_session = true;
        self
    }

    /// Makes the child and returns at once; see [`Spawned::executed`] for whether it got to
    /// execute its program. The descriptors given to the command are closed in the caller.
    pub fn spawn(self) -> Result<Spawned, SpawnError> {
        let nul = |what| move |_| SpawnError::Nul { what };
        let program = CString::new(self.program.as_os_str().as_bytes()).map_err(nul("the program's path"))?;
        let argv_owned = self
            .argv
            .into_iter()
            .map(|a| CString::new(a.into_vec()).map_err(nul("an argument")))
            .collect::<Result<Vec<_>, _>>()?;
        let envp_owned = self
            .env
            .into_iter()
            .map(|e| CString::new(e.into_vec()).map_err(nul("the environment")))
            .collect::<Result<Vec<_>, _>>()?;
        let cwd_path = match &self.cwd {
            Some(Cwd::Path(p)) => Some(CString::new(p.as_os_str().as_bytes()).map_err(nul("the working directory"))?),
            _ => None,
        };
        let mut argv: Vec<*const libc::c_char> = argv_owned.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = envp_owned.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());

        // Every source is first duplicated above the highest target (and above the standard
        // descriptors), so that no dup2 in the child overwrites a source still to be placed.
        let top = self.fds.iter().map(|(_, t)| *t).max().unwrap_or(2).max(2);
        let mut moves: Vec<(OwnedFd, RawFd)> = Vec::with_capacity(self.fds.len());
        for (fd, target) in &self.fds {
            let high = rustix::io::fcntl_dupfd_cloexec(fd, top + 1).map_err(|e| SpawnError::Prepare(e.into()))?;
            moves.push((high, *target));
        }
        let raw_moves: Vec<(RawFd, RawFd)> = moves.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
        let raw_joins: Vec<(RawFd, i32)> = self.join.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
        let (err_read, err_write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| SpawnError::Prepare(e.into()))?;
        let empty = c"";
        let plan = ChildPlan {
            moves: &raw_moves,
            joins: &raw_joins,
            root_fd: self.root.as_ref().map_or(-1, |f| f.as_raw_fd()),
            cwd_fd: match &self.cwd {
                Some(Cwd::Fd(f)) => f.as_raw_fd(),
                _ => -1,
            },
            cwd: cwd_path.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            new_session: self.new_session,
            keep_up_to: top,
            exe_fd: self.exe.unwrap_or(-1),
            path: if self.exe.is_some() { empty.as_ptr() } else { program.as_ptr() },
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            err_fd: err_write.as_raw_fd(),
        };
        if vfork::can_make(self.new_namespaces, &raw_joins) {
            match vfork::spawn(self.new_namespaces, &plan) {
                Ok((pid, pidfd)) => {
                    // The child has executed or failed by now; the write end goes, and the
                    // read end holds its errno or end-of-file.
                    drop(err_write);
                    return Ok(Spawned { pid, pidfd, errors: err_read, via: CloneCall::Vfork });
                }
                // Refused to a caller that unshared a time namespace it has not entered; a
                // fork is not (and any other reason fails the fork the same way).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(SpawnError::Fork(e)),
            }
        }
        // SAFETY: in the child, `plan.run` makes only async-signal-safe system calls on memory
        // prepared above, and ends in execve or _exit.
        match unsafe { fork(self.new_namespaces, true) }.map_err(SpawnError::Fork)? {
            // SAFETY: see above.
            Forked::Child => unsafe { plan.run() },
            Forked::Parent { pid, pidfd, via } => {
                let pidfd = pidfd.ok_or_else(|| SpawnError::Fork(std::io::Error::other("no pidfd from clone")))?;
                // The write end goes now: end-of-file on the read end then means execve.
                drop(err_write);
                Ok(Spawned { pid, pidfd, errors: err_read, via })
            }
        }
    }
}

/// A process made by [`Command::spawn`] that may not have executed its program yet.
#[derive(Debug)]
pub struct Spawned {
    pid: i32,
    pidfd: OwnedFd,
    errors: OwnedFd,
    via: CloneCall,
}

impl Spawned {
    /// Its pid, in the caller's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until it has executed its program (or failed to). A child that failed is reaped
    /// here, and the error is the errno it reported.
    pub fn executed(self) -> Result<Child, SpawnError> {
        if let Some(errno) = read_errno(&self.errors) {
            let _ = rustix::process::waitid(
                rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            );
            return Err(SpawnError::Exec(std::io::Error::from_raw_os_error(errno)));
        }
        Ok(Child { pid: self.pid, pidfd: self.pidfd, via: self.via })
    }
}

/// A started program: its pid and its pidfd.
#[derive(Debug)]
pub struct Child {
    pid: i32,
    pidfd: OwnedFd,
    via: CloneCall,
}

impl Child {
    /// Its pid, in the caller's PID namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its pidfd.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Its pidfd, for a caller that watches it from now on.
    pub fn into_pidfd(self) -> OwnedFd {
        self.pidfd
    }

    /// How it was made.
    pub fn via(&self) -> CloneCall {
        self.via
    }

    /// Waits for it to end and reaps it, through its pidfd.
    pub fn wait(&self) -> std::io::Result<Option<rustix::process::WaitIdStatus>> {
        loop {
            match rustix::process::waitid(
                rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                other => return other.map_err(Into::into),
            }
        }
    }
}

/// The errno a child reported before it could execute, if it did (end-of-file: it executed).
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

/// The kernel's `struct sigaction` as `rt_sigaction` reads and writes it. The handler comes
/// first on every architecture; the rest (flags, a restorer on some, the mask) stays zero here,
/// and 32 bytes hold the largest layout (x86_64's).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    rest: [u64; 3],
}

/// The size of the kernel's signal set, which `rt_sigaction` and `rt_sigprocmask` want told.
const KERNEL_SIGSET_SIZE: usize = 8;

/// Sets the calling thread's signal mask to `mask` (one bit per signal, signal 1 the lowest)
/// with the raw system call, and returns the mask it had. libc's wrappers would keep its own
/// two signals (32 and 33) out of a full mask.
///
/// # Safety
/// Async-signal-safe.
pub(crate) unsafe fn set_signal_mask(mask: u64) -> u64 {
    let mut before: u64 = 0;
    // SAFETY: rt_sigprocmask reads and writes 8-byte signal sets of ours.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            &mut before as *mut u64,
            KERNEL_SIGSET_SIZE,
        );
    }
    before
}

/// Gives every signal that has a handler its default disposition back, and `SIGPIPE` too
/// (Rust ignores it, and an ignored disposition would survive execve; other ignored signals
/// stay ignored, as a shell leaves them). A handler would run in the child on the parent's
/// memory, shared with a `CLONE_VM` child, copied with a forked one; the handler is lost at
/// execve anyway, and a signal meanwhile must act as it will on the program.
///
/// Through the raw `rt_sigaction`: libc's `sigaction` refuses its own signals (32, 33), and
/// newer glibc takes a process-wide lock in it for `SIGABRT`, a lock in the parent's memory
/// that a child killed meanwhile would leave held.
///
/// # Safety
/// Async-signal-safe; for the child side of a fork or clone.
unsafe fn default_signal_handlers() {
    const SIG_IGN: usize = 1;
    for signal in 1..=64 {
        let mut current = KernelSigaction { handler: 0, rest: [0; 3] };
        // SAFETY: rt_sigaction writes the current disposition into a structure of ours, large
        // enough for the kernel's layout.
        let got = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                std::ptr::null::<KernelSigaction>(),
                &mut current as *mut KernelSigaction,
                KERNEL_SIGSET_SIZE,
            )
        };
        if got != 0 {
            continue;
        }
        let handled = current.handler != 0 && current.handler != SIG_IGN;
        if handled || signal == libc::SIGPIPE {
            let default = KernelSigaction { handler: 0, rest: [0; 3] };
            // SAFETY: as above; all zero is SIG_DFL with no flags and an empty mask.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    KERNEL_SIGSET_SIZE,
                );
            }
        }
    }
}

/// What the child needs, as raw pointers and numbers only.
struct ChildPlan<'a> {
    moves: &'a [(RawFd, RawFd)],
    joins: &'a [(RawFd, i32)],
    root_fd: RawFd,
    cwd_fd: RawFd,
    cwd: *const libc::c_char,
    new_session: bool,
    /// The highest placed descriptor (at least 2): all above become close-on-exec.
    keep_up_to: RawFd,
    /// The placed descriptor to execute through (-1: the path).
    exe_fd: RawFd,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    err_fd: RawFd,
}

impl ChildPlan<'_> {
    /// The child's side: a clean signal state, perhaps a session, the namespaces, the root
    /// and working directory, the descriptors, then execve.
    ///
    /// # Safety
    /// Only in the child of a fork-like clone, or of a `CLONE_VM` clone whose parent sleeps
    /// until it executes with every signal blocked, with pointers to live, NUL-terminated data.
    unsafe fn run(&self) -> ! {
        // SAFETY: for every call below, async-signal-safe system calls on numbers and on
        // memory fully initialized before the clone; the caller guarantees we are the child.
        unsafe {
            // Still blocked (by a `CLONE_VM` caller): no handler of the parent's may run here.
            default_signal_handlers();
            set_signal_mask(0);
            if self.new_session {
                libc::setsid();
            }
            // Before the descriptors move: a move may land on one of these numbers.
            for &(fd, nstype) in self.joins {
                if libc::setns(fd, nstype) < 0 {
                    self.fail();
                }
            }
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
                // dup2 clears close-on-exec on the copy.
                if libc::dup2(from, to) < 0 {
                    self.fail();
                }
            }
            // Only the planned descriptors reach the program, whatever else the parent has
            // inheritable.
            if crate::cloexec_from(self.keep_up_to + 1).is_err() {
                self.fail();
            }
            if self.exe_fd >= 0 {
                libc::syscall(libc::SYS_execveat, self.exe_fd, self.path, self.argv, self.envp, libc::AT_EMPTY_PATH);
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
        // SAFETY: reading errno, a write on a descriptor number, and _exit are
        // async-signal-safe.
        unsafe {
            let bytes = (*libc::__errno_location()).to_ne_bytes();
            libc::write(self.err_fd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `sh -c script` and returns how it was made and its exit code.
    fn run_shell(script: &str) -> (CloneCall, i32) {
        let child = Command::new("/bin/sh").args(["-c", script]).spawn().unwrap().executed().unwrap();
        let status = child.wait().unwrap().expect("a status for our own child");
        assert!(status.exited(), "{status:?}");
        (child.via(), status.exit_status().unwrap())
    }

    /// Forks with [`fork`]; the child exits with `code` at once. Returns how it was made and
    /// its exit code.
    fn fork_and_exit(code: i32) -> (CloneCall, i32) {
        // SAFETY: the child only calls _exit.
        match unsafe { fork(0, true) }.unwrap() {
            // SAFETY: _exit is async-signal-safe.
            Forked::Child => unsafe { libc::_exit(code) },
            Forked::Parent { pidfd, via, .. } => {
                let pidfd = pidfd.expect("a pidfd");
                let status = rustix::process::waitid(
                    rustix::process::WaitId::PidFd(pidfd.as_fd()),
                    rustix::process::WaitIdOptions::EXITED,
                )
                .unwrap()
                .expect("a status for our own child");
                (via, status.exit_status().unwrap())
            }
        }
    }

    #[test]
    fn a_child_runs_and_its_status_comes_through_the_pidfd() {
        let (via, code) = run_shell("exit 7");
        assert_eq!(via, CloneCall::Vfork);
        assert_eq!(code, 7);
        assert_eq!(fork_and_exit(8), (CloneCall::Clone3, 8));
    }

    /// Runs `readlink /proc/self/ns/<kind>` as `command` makes it; returns how it was made and
    /// what it printed.
    fn namespace_of(command: Command, kind: &str) -> (CloneCall, String) {
        let (read, write) = std::io::pipe().unwrap();
        let child = command.argv(["/bin/readlink", &format!("/proc/self/ns/{kind}")]).fd(write, 1);
        let child = child.spawn().unwrap().executed().unwrap();
        assert_eq!(child.wait().unwrap().unwrap().exit_status(), Some(0));
        let mut link = String::new();
        std::io::Read::read_to_string(&mut &read, &mut link).unwrap();
        (child.via(), link.trim_end().to_string())
    }

    /// Starts `sleep 60` in the new namespaces `flags`; returns it and its namespace `kind`
    /// (open, and as its link reads).
    fn holder_of(flags: u64, kind: &str) -> (Child, std::fs::File, String) {
        let holder = Command::new("/bin/sleep").args(["60"]).new_namespaces(flags).spawn().unwrap().executed().unwrap();
        // The clone put it in its namespaces: they are there before it runs.
        let path = format!("/proc/{}/ns/{kind}", holder.pid());
        let link = std::fs::read_link(&path).unwrap().to_str().unwrap().to_string();
        (holder, std::fs::File::open(&path).unwrap(), link)
    }

    /// Kills and reaps `child`.
    fn end(child: Child) {
        // SAFETY: a signal to our own unreaped child.
        unsafe { libc::kill(child.pid(), libc::SIGKILL) };
        child.wait().unwrap();
    }

    #[test]
    fn a_time_namespace_is_made_or_entered_by_a_fork() {
        // clone(2) cannot carry CLONE_NEWTIME, and the kernel lets only a process that shares
        // its memory with no other enter a time namespace.
        let ours = std::fs::read_link("/proc/self/ns/time").unwrap().to_str().unwrap().to_string();
        let (holder, ns, link) = holder_of(0x80, "time");
        assert_eq!(holder.via(), CloneCall::Clone3);
        assert!(link.starts_with("time:[") && link != ours, "{link:?} (ours: {ours:?})");
        let (via, joined) = namespace_of(Command::new("/bin/readlink").join_namespace(ns, 0x80), "time");
        end(holder);
        assert_eq!((via, joined), (CloneCall::Clone3, link));
    }

    #[test]
    fn a_user_namespace_is_made_and_entered_by_the_vfork_clone() {
        let ours = std::fs::read_link("/proc/self/ns/user").unwrap().to_str().unwrap().to_string();
        let (holder, ns, link) = holder_of(libc::CLONE_NEWUSER as u64, "user");
        assert_eq!(holder.via(), CloneCall::Vfork);
        assert!(link.starts_with("user:[") && link != ours, "{link:?} (ours: {ours:?})");
        let (via, joined) = namespace_of(Command::new("/bin/readlink").join_namespace(ns, libc::CLONE_NEWUSER), "user");
        end(holder);
        assert_eq!((via, joined), (CloneCall::Vfork, link));
    }

    #[test]
    fn a_caller_that_unshared_a_time_namespace_gets_a_child_in_it() {
        // In a thread of its own: only its children are to be in the new namespace. Kernels
        // that refuse such a caller a `CLONE_VM` child (EINVAL) get a fork instead.
        std::thread::spawn(|| {
            // SAFETY: unshare of a time namespace changes only this thread's children's.
            assert_eq!(unsafe { libc::unshare(0x80) }, 0, "{}", std::io::Error::last_os_error());
            let next = std::fs::read_link("/proc/thread-self/ns/time_for_children").unwrap();
            let (_, theirs) = namespace_of(Command::new("/bin/readlink"), "time");
            assert_eq!(theirs, next.to_str().unwrap());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_child_starts_with_no_signal_blocked_and_sigpipe_not_ignored() {
        // In a thread of its own, which blocks SIGUSR1; Rust ignores SIGPIPE process-wide.
        std::thread::spawn(|| {
            // SAFETY: this thread's mask only.
            unsafe { set_signal_mask(1 << (libc::SIGUSR1 - 1)) };
            let (read, write) = std::io::pipe().unwrap();
            let child = Command::new("/bin/grep")
                .args(["-E", "^Sig(Blk|Ign):", "/proc/self/status"])
                .fd(write, 1)
                .spawn()
                .unwrap()
                .executed()
                .unwrap();
            assert_eq!(child.wait().unwrap().unwrap().exit_status(), Some(0));
            let mut text = String::new();
            std::io::Read::read_to_string(&mut &read, &mut text).unwrap();
            let set = |name: &str| {
                let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text:?}"));
                u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
            };
            assert_eq!(set("SigBlk:"), 0, "{text}");
            assert_eq!(set("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored in the child: {text}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_callers_signal_mask_is_as_it_was_after_a_spawn() {
        // In a thread of its own: the mask is per thread.
        std::thread::spawn(|| {
            // SAFETY: sigset_t is plain data, set up by sigemptyset/sigaddset; pthread_sigmask
            // changes only this thread's mask.
            let mask = |how, add: Option<i32>| unsafe {
                let (mut set, mut old): (libc::sigset_t, libc::sigset_t) = (std::mem::zeroed(), std::mem::zeroed());
                libc::sigemptyset(&mut set);
                if let Some(s) = add {
                    libc::sigaddset(&mut set, s);
                }
                libc::pthread_sigmask(how, &set, &mut old);
                (0..=64).filter(|&s| libc::sigismember(&old, s) == 1).collect::<Vec<i32>>()
            };
            mask(libc::SIG_SETMASK, Some(libc::SIGUSR2));
            let (via, code) = run_shell("exit 3");
            assert_eq!((via, code), (CloneCall::Vfork, 3));
            assert_eq!(mask(libc::SIG_BLOCK, None), vec![libc::SIGUSR2]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn falls_back_to_clone_where_clone3_is_refused() {
        for errno in [libc::ENOSYS, libc::EPERM] {
            // In a thread of its own: a seccomp filter loaded without TSYNC binds only the
            // calling thread (and its children), not the test runner's others.
            std::thread::spawn(move || {
                use libseccomp::{ScmpAction, ScmpFilterContext, ScmpSyscall};
                let mut filter = ScmpFilterContext::new(ScmpAction::Allow).unwrap();
                filter.add_rule(ScmpAction::Errno(errno), ScmpSyscall::from_name("clone3").unwrap()).unwrap();
                filter.load().unwrap();
                // SAFETY: clone_args is plain data; the call only returns an error here.
                let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
                // SAFETY: clone3 is refused by the filter before it does anything.
                let ret = unsafe {
                    libc::syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, std::mem::size_of_val(&args))
                };
                assert_eq!((ret, std::io::Error::last_os_error().raw_os_error()), (-1, Some(errno)));

                let (via, code) = fork_and_exit(9);
                assert_eq!((via, code), (CloneCall::Clone, 9), "clone3 refused with errno {errno}");
            })
            .join()
            .unwrap();
        }
    }

    #[test]
    fn a_failure_before_execve_is_the_childs_errno() {
        let err = Command::new("/nonexistent/program").spawn().unwrap().executed().unwrap_err();
        assert!(matches!(&err, SpawnError::Exec(e) if e.raw_os_error() == Some(libc::ENOENT)), "{err:?}");
        // Joining something that is not a namespace fails in the child, before execve.
        let file = std::fs::File::open("/bin/sh").unwrap();
        let err =
            Command::new("/bin/true").join_namespace(file, libc::CLONE_NEWNET).spawn().unwrap().executed().unwrap_err();
        assert!(matches!(&err, SpawnError::Exec(e) if e.raw_os_error() == Some(libc::EINVAL)), "{err:?}");
    }

    #[test]
    fn only_the_placed_descriptors_reach_the_program() {
        let (read, write) = std::io::pipe().unwrap();
        // Left inheritable (as a careless embedding program might), above the placed one.
        // SAFETY: F_DUPFD makes a new descriptor, owned by `stray` alone.
        let stray = unsafe { OwnedFd::from_raw_fd(libc::fcntl(read.as_raw_fd(), libc::F_DUPFD, 100)) };
        let stray_no = stray.as_raw_fd();
        assert!(stray_no >= 100);
        let script = format!("test -e /proc/self/fd/{stray_no} && exit 1; echo placed >&5; pwd >&5");
        let child = Command::new("/bin/sh")
            .args(["-c", &script])
            .fd(write, 5)
            .current_dir("/tmp")
            .spawn()
            .unwrap()
            .executed()
            .unwrap();
        let status = child.wait().unwrap().unwrap();
        assert_eq!(status.exit_status(), Some(0), "the stray descriptor reached the child");
        drop(stray);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut &read, &mut text).unwrap();
        assert_eq!(text, "placed\n/tmp\n");
    }
}
