//! The sandbox's own root: an empty tmpfs that holds nothing but the containers' root
//! filesystems. After [`isolate`], the sandbox process cannot see the host's files at all.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountAttrFlags;
use wire::ApiError;

use crate::sys::{attach, new_mount};

/// Where the containers' root filesystems are attached, one directory per container.
pub const CONTAINERS_DIR: &str = "/containers";

/// Replaces the sandbox's view of the host with a private tmpfs root.
///
/// The sandbox starts in a fresh mount namespace that is a copy of the host's. Everything is
/// made private first (nothing the sandbox mounts may propagate back), then a new tmpfs is
/// stacked on `/` and pivoted into, and the copy of the host's tree is detached.
pub fn isolate() -> Result<(), String> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making mounts private: {e}"))?;
    let root = new_mount(
        "tmpfs",
        Some("paddock-sandbox"),
        &["mode=0700".to_string()],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(|e| format!("creating the sandbox root: {e}"))?;
    rustix::fs::mkdirat(
        root.as_fd(),
        &CONTAINERS_DIR[1..],
        Mode::from_raw_mode(0o700),
    )
    .map_err(|e| format!("mkdir {CONTAINERS_DIR}: {e}"))?;
    let slash = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open /: {e}"))?;
    attach(root.as_fd(), slash.as_fd()).map_err(|e| format!("attaching the sandbox root: {e}"))?;
    nix::unistd::fchdir(&root).map_err(|e| format!("chdir into the sandbox root: {e}"))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| format!("detaching the host's tree: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// Attaches a container's root filesystem (a detached mount from its gofer) at
/// `/containers/<dir>/rootfs` and returns that path.
pub fn attach_rootfs(id: &str, mount: OwnedFd) -> Result<PathBuf, ApiError> {
    let dir = Path::new(CONTAINERS_DIR).join(wire::ids::dir_name(id));
    let rootfs = dir.join("rootfs");
    for d in [&dir, &rootfs] {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ApiError::io(format!("mkdir {}", d.display()), e)),
        }
    }
    let target = rustix::fs::open(
        &rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ApiError::io(format!("open {}", rootfs.display()), e))?;
    attach(mount.as_fd(), target.as_fd()).map_err(|e| ApiError::io("attaching the rootfs", e))?;
    Ok(rootfs)
}

/// Detaches a container's root filesystem again (after a failed create).
pub fn detach_rootfs(rootfs: &Path) {
    let _ = nix::mount::umount2(rootfs, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(rootfs);
    if let Some(dir) = rootfs.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}
