//! The one mount system call no crate wraps yet.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `mount_setattr(2)` on the mount `fd` refers to (and, with `recursive`, every mount below):
/// sets the `MOUNT_ATTR_*` bits in `set` and clears those in `clear`.
///
/// Neither nix nor rustix wraps `mount_setattr` yet, hence the raw call.
pub fn mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clear: u64,
) -> std::io::Result<()> {
    let mut attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `attr` is a valid, initialized mount_attr whose size we pass; the empty path is
    // a valid NUL-terminated string; `fd` is a live descriptor for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
