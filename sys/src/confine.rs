//! How paddock's helpers confine themselves once set up, as Firecracker's jailer and runsc's
//! gofer do: they keep only the capabilities they still need (the bounding set too, so no
//! child can regain the others), set `no_new_privs`, and install a seccomp allow-list of the
//! system calls they make from then on. `/proc/PID/status` shows it (`CapEff`, `NoNewPrivs`,
//! `Seccomp`).
//!
//! A call outside the list fails with `EPERM` rather than killing the helper: a helper that
//! dies takes its containers' supervision with it, and an unexpected error is reported and
//! logged where a kill would only leave a corpse.

use caps::{CapSet, Capability, CapsHashSet};
use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext, ScmpSyscall};

/// Why confinement failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Changing capabilities failed.
    #[error("dropping capabilities: {0}")]
    Capabilities(#[from] caps::errors::CapsError),
    /// Building or loading the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// A system call name this kernel's libseccomp does not know.
    #[error("seccomp: unknown system call {0:?}")]
    UnknownSyscall(String),
}

/// The system calls every helper makes once set up: memory, signals, time, descriptors,
/// sockets, polling, and what Rust's standard library does by itself.
pub const BASE_SYSCALLS: &[&str] = &[
    "accept4",
    "brk",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "dup",
    "dup2",
    "dup3",
    "exit",
    "exit_group",
    "fcntl",
    "fstat",
    "futex",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getpid",
    "getppid",
    "getrandom",
    "getsockopt",
    "gettid",
    "getuid",
    "lseek",
    "madvise",
    "mmap",
    "mprotect",
    "mremap",
    "munmap",
    "nanosleep",
    "newfstatat",
    "openat",
    "openat2",
    "pipe2",
    "poll",
    "ppoll",
    "pread64",
    "pwrite64",
    "read",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmsg",
    "restart_syscall",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_yield",
    "sendmsg",
    "sendto",
    "shutdown",
    "sigaltstack",
    "socketpair",
    "statx",
    "write",
    "writev",
];

/// Keeps only `keep` of the calling process's capabilities (permitted, effective and bounding;
/// inheritable and ambient emptied), sets `no_new_privs`, and allows only `syscalls` (and
/// [`BASE_SYSCALLS`]) from now on, on the native architecture.
pub fn confine(keep: &[Capability], syscalls: &[&str]) -> Result<(), ConfineError> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    // The bounding set first, while CAP_SETPCAP is still held.
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap)?;
        }
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())?;
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    let fail = |e: libseccomp::error::SeccompError| ConfineError::Seccomp(e.to_string());
    // Anything else fails with EPERM. libseccomp sets no_new_privs as it loads the filter.
    let mut filter = ScmpFilterContext::new(ScmpAction::Errno(libc::EPERM)).map_err(fail)?;
    filter.add_arch(ScmpArch::native()).map_err(fail)?;
    for name in BASE_SYSCALLS.iter().chain(syscalls) {
        let syscall = ScmpSyscall::from_name(name).map_err(|_| ConfineError::UnknownSyscall(name.to_string()))?;
        filter.add_rule(ScmpAction::Allow, syscall).map_err(fail)?;
    }
    filter.load().map_err(fail)?;
    Ok(())
}
