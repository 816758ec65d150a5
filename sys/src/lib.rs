//! paddock's system calls, behind small safe wrappers.
//!
//! The sandbox and the gofer both build mount trees from file descriptors and resolve paths
//! beneath a container's root; these are the shared pieces. Where neither nix nor rustix
//! wraps a call yet (`mount_setattr`), it is made here, once. User namespaces made only to
//! carry the id maps of an idmapped mount come from [`userns`].

pub mod cgroup2_stats;
pub mod confine;
pub mod durable;
pub mod helper_args;
pub mod hook;
pub mod mount;
pub mod path;
pub mod proc_stat;
pub mod proctitle;
pub mod remove;
pub mod spawn;
pub mod trust;
pub mod userns;

pub use mount::{
    attach, clone_tree, clone_tree_as_slave, mount_setattr, new_mount, pivot_into, set_idmap, set_propagation,
};
pub use path::{make_beneath, open_beneath, Create};
pub use remove::remove_dir_within_mount;

/// Marks every descriptor from `first` up close-on-exec, so that a program about to be executed
/// gets only the descriptors meant for it (what a daemon or a test runner left inheritable
/// must not reach a container). Async-signal-safe: for the child side of a fork.
pub fn cloexec_from(first: i32) -> std::io::Result<()> {
    // SAFETY: close_range with the CLOEXEC flag only changes descriptor flags.
    let ret = unsafe {
        libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC)
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Closes every descriptor of the calling process except those in `keep`: a process that a
/// container may see holds nothing it was not meant to (close-on-exec is not enough: a
/// descriptor can be taken with `pidfd_getfd` before the `execve`). Async-signal-safe, and
/// allocation-free: for the child side of a fork.
pub fn close_all_except(keep: &[i32]) -> std::io::Result<()> {
    // The kept numbers in order, without allocating: repeatedly the smallest above the last.
    let mut from: u32 = 0;
    loop {
        let next = keep.iter().filter(|&&fd| fd >= 0 && fd as u32 >= from).min().copied();
        let to = match next {
            Some(fd) => fd as u32,
            None => u32::MAX,
        };
        if to > from {
            // SAFETY: close_range on numbers; what this process held there is given up.
            let ret = unsafe { libc::syscall(libc::SYS_close_range, from, to - 1, 0) };
            if ret < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        match next {
            Some(fd) => from = fd as u32 + 1,
            None => return Ok(()),
        }
    }
}

/// Makes `fd` the calling process's descriptor `target`, inheritable, and every descriptor
/// above `target` close-on-exec: a child about to execute keeps stdio and this one only.
/// Async-signal-safe: for the child side of a fork (`pre_exec`).
pub fn inherit_only(fd: i32, target: i32) -> std::io::Result<()> {
    // SAFETY: fcntl and dup2 on descriptor numbers only; dup2 onto `target` replaces whatever
    // the child had there, which is what is asked.
    unsafe {
        if fd == target {
            // dup2 onto itself would leave it close-on-exec.
            let flags = libc::fcntl(target, libc::F_GETFD);
            if flags < 0 || libc::fcntl(target, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        } else if libc::dup2(fd, target) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    cloexec_from(target + 1)
}

/// Makes a panic end the process at once with status 101, after printing the message, instead
/// of unwinding: what `panic = "abort"` would do for the sandbox and gofer alone (Cargo cannot
/// set it per binary, and paddockd keeps unwinding). A forked child of these helpers must never
/// unwind into its parent's copy of the stack and run destructors that belong to the parent,
/// and `abort()` is not used because a PID 1 (the sandbox is one) ignores its own SIGABRT.
pub fn exit_on_panic(program: &'static str) {
    let print = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprint!("{program}: ");
        print(info);
        // SAFETY: _exit ends the process without running anything of the unwound state.
        unsafe { libc::_exit(101) }
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_all_except_keeps_exactly_what_it_is_told() {
        // In a child, so the test runner's own descriptors are not touched.
        let (r, w) = std::io::pipe().unwrap();
        let (r, w) = (std::os::fd::AsRawFd::as_raw_fd(&r), std::os::fd::AsRawFd::as_raw_fd(&w));
        // SAFETY: the child only makes system calls and exits.
        match unsafe { libc::fork() } {
            0 => {
                let ok = super::close_all_except(&[w, 0, 2]).is_ok();
                // SAFETY: F_GETFD only reads the descriptor's flags.
                let alive = |fd: i32| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
                let good = ok && alive(w) && alive(0) && alive(2) && !alive(1) && !alive(r);
                // SAFETY: leaves the forked child without running the test runner's exit path.
                unsafe { libc::_exit(if good { 0 } else { 1 }) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
            }
        }
    }
}
