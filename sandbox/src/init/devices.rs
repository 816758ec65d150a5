//! The default device nodes and links every container gets in `/dev`, as runc creates them.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode};
use wire::ApiError;

use sys::{make_beneath, Create};

/// `(name, major, minor)` of the character devices of the OCI runtime spec's default set.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// `(name, target)` of the default links.
const DEFAULT_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Creates the default devices and links in the container's `/dev` (beneath `root`).
pub fn create_default(root: BorrowedFd<'_>) -> Result<(), ApiError> {
    let dev = make_beneath(root, Path::new("/dev"), Create::Dir).map_err(|e| ApiError::io("/dev", e))?;
    for (name, major, minor) in DEFAULT_DEVICES {
        let res = rustix::fs::mknodat(
            dev.as_fd(),
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        );
        match res {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(ApiError::io(format!("mknod /dev/{name}"), e)),
        }
    }
    for (name, target) in DEFAULT_LINKS {
        match rustix::fs::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(ApiError::io(format!("symlink /dev/{name}"), e)),
        }
    }
    Ok(())
}
