//! User namespaces that exist only to carry id maps: what `MOUNT_ATTR_IDMAP` takes to say how
//! an idmapped mount translates owners.
//!
//! A user namespace needs a process to be made in and to have its maps written through. Here
//! that is a short-lived child forked straight into a new user namespace; the caller writes its
//! `uid_map` and `gid_map` (only a process privileged in the parent namespace may write maps
//! of more than its own id), keeps a descriptor of the namespace, and kills and reaps the
//! child before returning, also when anything failed: the descriptor alone keeps the
//! namespace alive, and nothing else is left.
//!
//! The maps are written through a procfs instance made for the occasion: the caller's `/proc`
//! may belong to another PID namespace than the child (the gofer is PID 1 of its own but sees
//! the host's `/proc`), where the child's pid would name another process.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

/// Why a user namespace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// A procfs instance of our PID namespace could not be made.
    #[error("mounting a procfs to write the maps through: {0}")]
    Proc(#[source] std::io::Error),
    /// The child could not be forked into a new user namespace.
    #[error("forking into a new user namespace: {0}")]
    Fork(#[source] std::io::Error),
    /// The kernel refused a map (overlapping ranges, ids beyond 32 bits, too many lines).
    #[error("writing {file} ({map:?}): {source}")]
    Map {
        /// `uid_map` or `gid_map`.
        file: &'static str,
        /// What was written.
        map: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// The namespace's descriptor could not be opened.
    #[error("opening the user namespace: {0}")]
    Open(#[source] std::io::Error),
}

/// The child holding the user namespace: killed and reaped when dropped.
struct Holder {
    pidfd: OwnedFd,
}

impl Drop for Holder {
    fn drop(&mut self) {
        // SIGKILL cannot be blocked or handled: the wait below ends.
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        while let Err(rustix::io::Errno::INTR) = rustix::process::waitid(
            rustix::process::WaitId::PidFd(self.pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED,
        ) {}
    }
}

/// A descriptor of a new user namespace (a child of the caller's) whose maps are `uid_map` and
/// `gid_map`, in the text `/proc/PID/uid_map` takes (`inside outside count` lines).
///
/// The caller must hold `CAP_SETUID`, `CAP_SETGID` and `CAP_SYS_ADMIN` in its user namespace
/// (the last for the procfs), and must not be chrooted (the kernel refuses a new user
/// namespace to a chrooted process). The child makes only async-signal-safe calls, so a
/// multi-threaded caller may use this too.
pub fn with_maps(uid_map: &str, gid_map: &str) -> Result<OwnedFd, UsernsError> {
    let proc = crate::new_mount(
        "proc",
        Some("proc"),
        &[],
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
    )
    .map_err(UsernsError::Proc)?;
    // SAFETY: the child makes only async-signal-safe system calls and never returns: it waits
    // in pause() for the SIGKILL the Holder sends (or the one of its parent's death).
    let forked = unsafe { crate::spawn::fork(libc::CLONE_NEWUSER as u64, true) }.map_err(UsernsError::Fork)?;
    let (pid, pidfd) = match forked {
        crate::spawn::Forked::Child => {
            // SAFETY: prctl, pause and _exit are async-signal-safe; the child touches no memory
            // of its parent's.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                loop {
                    libc::pause();
                }
            }
        }
        crate::spawn::Forked::Parent { pid, pidfd, .. } => (pid, pidfd),
    };
    let Some(pidfd) = pidfd else {
        // fork() was asked for a pidfd: without one the child cannot be killed safely by pid
        // alone (its number may be reused), so it is signalled once and reaped by number.
        // SAFETY: the pid is our own unreaped child's, so it cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(UsernsError::Fork(std::io::Error::other("no pidfd for the child")));
    };
    let _holder = Holder { pidfd };
    for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let fail = |source: std::io::Error| UsernsError::Map { file, map: map.to_string(), source };
        let fd = rustix::fs::openat(&proc, format!("{pid}/{file}"), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| fail(e.into()))?;
        // The kernel takes a map in one write only.
        let written = rustix::io::write(&fd, map.as_bytes()).map_err(|e| fail(e.into()))?;
        if written != map.len() {
            return Err(fail(std::io::Error::from_raw_os_error(libc::EIO)));
        }
    }
    rustix::fs::openat(&proc, format!("{pid}/ns/user"), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| UsernsError::Open(e.into()))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    /// The namespace carries the maps asked for, and the child that made it is gone. Needs
    /// root (skipped loudly otherwise).
    #[test]
    fn a_namespace_with_the_maps_and_no_child_left() {
        // SAFETY: geteuid only reads.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: SKIPPED");
            return;
        }
        let before = children();
        let ns = super::with_maps("0 1000 1\n1 100000 65536\n", "0 2000 10\n").unwrap();
        assert_eq!(children(), before, "the helper child was reaped");
        // A child that enters it reads the maps from inside (and sends them back raw: no
        // allocation after a fork in the multi-threaded test runner).
        let (r, w) = std::io::pipe().unwrap();
        // SAFETY: the child only makes system calls on prepared memory and exits.
        match unsafe { libc::fork() } {
            0 => {
                let mut buf = [0u8; 512];
                // SAFETY: setns, open, read, write on our descriptors and stack buffer; _exit.
                unsafe {
                    if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWUSER) != 0 {
                        libc::_exit(1)
                    }
                    let fd = libc::open(c"/proc/self/uid_map".as_ptr(), libc::O_RDONLY);
                    let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                    if n > 0 {
                        libc::write(w.as_raw_fd(), buf.as_ptr().cast(), n as usize);
                    }
                    libc::_exit(0)
                }
            }
            pid => {
                drop(w);
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "setns into it");
                let seen = std::io::read_to_string(r).unwrap();
                let lines: Vec<Vec<&str>> = seen.lines().map(|l| l.split_whitespace().collect()).collect();
                assert_eq!(lines, vec![vec!["0", "1000", "1"], vec!["1", "100000", "65536"]], "{seen}");
            }
        }
        let err = super::with_maps("0 1000 1\n0 2000 1\n", "0 0 1\n").unwrap_err();
        assert!(err.to_string().contains("uid_map"), "{err}");
        assert_eq!(children(), before, "the helper child was reaped after a failure too");
    }

    /// This thread's children (each test runs on a thread of its own).
    fn children() -> Vec<String> {
        std::fs::read_to_string("/proc/thread-self/children")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}
