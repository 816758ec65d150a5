//! paddock's system calls, behind small safe wrappers.
//!
//! The sandbox and the gofer both build mount trees from file descriptors and resolve paths
//! beneath a container's root; these are the shared pieces. Where neither nix nor rustix
//! wraps a call yet (`mount_setattr`), it is made here, once.

pub mod hook;
pub mod mount;
pub mod path;
pub mod trust;

pub use mount::{attach, clone_tree, mount_setattr, new_mount, pivot_into, set_propagation};
pub use path::{make_beneath, open_beneath, Create};

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
