//! A container's time namespace and its clock offsets (`linux.timeOffsets`).
//!
//! `unshare(CLONE_NEWTIME)` puts only the caller's *children* in the new namespace, and its
//! offsets can be written only until a process is in it. The init needs to be in it itself
//! (it is the container's process), and it is single-threaded, which is what `setns` into a
//! time namespace asks: so it unshares, writes the offsets for the namespace its children
//! would get (`/proc/self/timens_offsets` shows that one), and then enters that namespace
//! itself, which fixes the offsets. Its clocks change at once, and so do those of whatever it
//! runs. This happens in the sandbox's user namespace, where the init holds CAP_SYS_TIME,
//! before it enters the container's own.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use oci_spec::runtime::LinuxTimeOffset;
use rustix::fs::{Mode, OFlags};
use wire::ApiError;

/// `CLONE_NEWTIME`, which neither libc nor nix names yet.
pub const CLONE_NEWTIME: i32 = 0x80;

/// Creates a time namespace with `offsets` (clock name → offset) and enters it. `proc` is the
/// sandbox's procfs, in which the caller sees itself.
pub fn unshare_with_offsets(proc: &OwnedFd, offsets: &HashMap<String, LinuxTimeOffset>) -> Result<(), ApiError> {
    // SAFETY: unshare takes a plain flag; the caller is single-threaded.
    if unsafe { libc::unshare(CLONE_NEWTIME) } != 0 {
        return Err(ApiError::io("unshare time namespace", std::io::Error::last_os_error()));
    }
    // In a stable order, one line per clock, all in one write (the kernel takes them whole).
    let mut clocks: Vec<_> = offsets.iter().collect();
    clocks.sort_by_key(|(name, _)| name.as_str());
    let text: String = clocks
        .iter()
        .map(|(name, o)| format!("{name} {} {}\n", o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)))
        .collect();
    if !text.is_empty() {
        let file = rustix::fs::openat(proc, "self/timens_offsets", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ApiError::io("opening /proc/self/timens_offsets", e))?;
        rustix::io::write(&file, text.as_bytes()).map_err(|e| {
            ApiError::invalid_spec(format!(
                "linux.timeOffsets ({}): {}",
                text.trim().replace('\n', "; "),
                std::io::Error::from(e)
            ))
        })?;
    }
    let namespace =
        rustix::fs::openat(proc, "self/ns/time_for_children", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ApiError::io("opening the new time namespace", e))?;
    enter(&namespace).map_err(|e| ApiError::io("entering the new time namespace", e))
}

/// Enters the time namespace `namespace` (the caller must be single-threaded).
pub fn enter(namespace: &OwnedFd) -> std::io::Result<()> {
    rustix::thread::move_into_link_name_space(namespace.as_fd(), Some(rustix::thread::LinkNameSpaceType::Time))
        .map_err(std::io::Error::from)
}
