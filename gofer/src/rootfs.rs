//! Turning the host's root filesystem for a container into one detached mount.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use rustix::fs::{Mode, OFlags, CWD};
use rustix::mount::{
    fsconfig_create, fsconfig_set_fd, fsconfig_set_string, fsmount, fsopen, open_tree,
    FsMountFlags, FsOpenFlags, MountAttrFlags, OpenTreeFlags,
};
use wire::ApiError;

use crate::args::GoferArgs;
use crate::sys::mount_setattr;
use crate::sys_err;

/// Builds the container's root filesystem as a detached mount.
///
/// Without an overlay it is a recursive clone of the host directory. With an overlay, the host directory is the read-only lower layer and a private tmpfs that
/// was never attached anywhere holds the upper and work directories: writes stay in memory
/// and vanish with the last reference to the mount.
pub fn prepare(args: &GoferArgs) -> Result<OwnedFd, ApiError> {
    let rootfs = &args.rootfs;
    let meta = std::fs::metadata(rootfs)
        .map_err(|e| sys_err(format!("rootfs {}", rootfs.display()), e))?;
    if !meta.is_dir() {
        return Err(ApiError::invalid_spec(format!(
            "rootfs {} is not a directory",
            rootfs.display()
        )));
    }
    if args.overlay {
        overlay(args, &meta)
    } else {
        open_tree(
            CWD,
            rootfs,
            OpenTreeFlags::OPEN_TREE_CLONE
                | OpenTreeFlags::OPEN_TREE_CLOEXEC
                | OpenTreeFlags::AT_RECURSIVE,
        )
        .map_err(|e| sys_err(format!("open_tree {}", rootfs.display()), e))
    }
}

fn overlay(args: &GoferArgs, lower_meta: &std::fs::Metadata) -> Result<OwnedFd, ApiError> {
    let tmpfs =
        fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| sys_err("fsopen tmpfs", e))?;
    fsconfig_set_string(tmpfs.as_fd(), "mode", "0700").map_err(|e| sys_err("tmpfs mode", e))?;
    if let Some(size) = args.overlay_size {
        fsconfig_set_string(tmpfs.as_fd(), "size", size.to_string())
            .map_err(|e| sys_err("tmpfs size", e))?;
    }
    fsconfig_create(tmpfs.as_fd()).map_err(|e| sys_err("creating the overlay's tmpfs", e))?;
    let upper_mnt = fsmount(
        tmpfs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .map_err(|e| sys_err("fsmount tmpfs", e))?;

    // The overlay's root directory takes its owner and mode from the upper directory, so it
    // must look like the lower root.
    let dir_mode = Mode::from_raw_mode(lower_meta.mode() & 0o7777);
    let mkdir = |name: &str| -> Result<OwnedFd, ApiError> {
        rustix::fs::mkdirat(upper_mnt.as_fd(), name, dir_mode)
            .map_err(|e| sys_err(format!("mkdir {name}"), e))?;
        let dir = rustix::fs::openat(
            upper_mnt.as_fd(),
            name,
            OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| sys_err(format!("open {name}"), e))?;
        rustix::fs::fchown(
            &dir,
            Some(rustix::fs::Uid::from_raw(lower_meta.uid())),
            Some(rustix::fs::Gid::from_raw(lower_meta.gid())),
        )
        .map_err(|e| sys_err(format!("chown {name}"), e))?;
        rustix::fs::fchmod(&dir, dir_mode).map_err(|e| sys_err(format!("chmod {name}"), e))?;
        Ok(dir)
    };
    let upper = mkdir("upper")?;
    let work = mkdir("work")?;

    let lower = open_tree(
        CWD,
        &args.rootfs,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| sys_err(format!("open_tree {}", args.rootfs.display()), e))?;
    // The lower layer is only ever read: make its mount read-only too, so even a bug in the
    // overlay could not write to the host.
    mount_setattr(lower.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0)
        .map_err(|e| sys_err("making the lower layer read-only", e))?;

    let ovl =
        fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| sys_err("fsopen overlay", e))?;
    fsconfig_set_fd(ovl.as_fd(), "lowerdir+", lower.as_fd())
        .map_err(|e| sys_err("overlay lowerdir+", e))?;
    fsconfig_set_fd(ovl.as_fd(), "upperdir", upper.as_fd())
        .map_err(|e| sys_err("overlay upperdir", e))?;
    fsconfig_set_fd(ovl.as_fd(), "workdir", work.as_fd())
        .map_err(|e| sys_err("overlay workdir", e))?;
    fsconfig_create(ovl.as_fd()).map_err(|e| sys_err("creating the overlay", e))?;
    fsmount(
        ovl.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::empty(),
    )
    .map_err(|e| sys_err("fsmount overlay", e))
}
