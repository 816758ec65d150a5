//! paddock's system calls, behind small safe wrappers.
//!
//! The sandbox and the gofer both build mount trees from file descriptors and resolve paths
//! beneath a container's root; these are the shared pieces. Where neither nix nor rustix
//! wraps a call yet (`mount_setattr`), it is made here, once.

pub mod hook;
pub mod mount;
pub mod path;

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
