//! The spec's mounts inside the container's root, and the masked and read-only paths.
//!
//! Kernel filesystems that belong to the container's own namespaces (proc, sysfs, tmpfs,
//! devpts, mqueue) are made here; bind mounts arrive from the gofer as detached mounts, in
//! spec order, and are only attached.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;
use rustix::fs::OFlags;
use sys::{attach, clone_tree, make_beneath, new_mount, open_beneath, Create};
use wire::mounts::{is_bind, parse_options};
use wire::{ApiError, ErrorKind};

fn mount_error(dest: &Path, what: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::InvalidSpec, format!("mount {}: {what}", dest.display()))
}

/// Performs the spec's mounts, in order, beneath `root`; bind mounts move the gofer's
/// mounts from where the sandbox staged them (`binds`, in order).
pub fn mount_all(root: BorrowedFd<'_>, mounts: &[Mount], binds: &mut VecDeque<PathBuf>) -> Result<(), ApiError> {
    for m in mounts {
        if is_bind(m) {
            let staged =
                binds.pop_front().ok_or_else(|| mount_error(m.destination(), "the gofer sent no mount for it"))?;
            let fd = rustix::fs::open(&staged, OFlags::PATH | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| mount_error(m.destination(), format!("staged mount: {e}")))?;
            attach_bind(root, m, &fd)?;
        } else {
            mount_kernel_fs(root, m)?;
        }
    }
    Ok(())
}

fn attach_bind(root: BorrowedFd<'_>, m: &Mount, fd: &OwnedFd) -> Result<(), ApiError> {
    let dest = m.destination();
    let is_dir = rustix::fs::fstat(fd)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
        .map_err(|e| mount_error(dest, e))?;
    let target = make_beneath(root, dest, if is_dir { Create::Dir } else { Create::File })
        .map_err(|e| mount_error(dest, format!("mount point: {e}")))?;
    attach(fd.as_fd(), target.as_fd()).map_err(|e| mount_error(dest, format!("attach: {e}")))?;
    let options = parse_options(m.options().as_deref().unwrap_or_default());
    if let Some(propagation) = options.propagation {
        sys::set_propagation(fd.as_fd(), options.recursive, propagation)
            .map_err(|e| mount_error(dest, format!("propagation: {e}")))?;
    }
    Ok(())
}

fn mount_kernel_fs(root: BorrowedFd<'_>, m: &Mount) -> Result<(), ApiError> {
    let dest = m.destination();
    let options = parse_options(m.options().as_deref().unwrap_or_default());
    let fstype = m.typ().as_deref().unwrap_or_default();
    match fstype {
        "" => return Err(mount_error(dest, "no filesystem type given")),
        "cgroup" | "cgroup2" => {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                format!("mount {}: cgroup mounts are not supported yet", dest.display()),
            ))
        }
        _ => {}
    }
    let target = make_beneath(root, dest, Create::Dir).map_err(|e| mount_error(dest, format!("mount point: {e}")))?;
    let source = m.source().as_ref().and_then(|s| s.to_str());
    let fd = new_mount(fstype, source, &options.data, options.attrs)
        .map_err(|e| mount_error(dest, format!("{fstype}: {e}")))?;
    attach(fd.as_fd(), target.as_fd()).map_err(|e| mount_error(dest, format!("attach: {e}")))?;
    if let Some(propagation) = options.propagation {
        sys::set_propagation(fd.as_fd(), false, propagation)
            .map_err(|e| mount_error(dest, format!("propagation: {e}")))?;
    }
    Ok(())
}

/// Hides each existing path: a directory under an empty read-only tmpfs, a file under
/// `/dev/null`. Runs after pivot_root, so `root` is the container's `/`.
pub fn mask_paths(root: BorrowedFd<'_>, paths: &[String]) -> Result<(), ApiError> {
    for path in paths {
        let path = Path::new(path);
        let target = match open_beneath(root, path, OFlags::PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(mount_error(path, format!("masking: {e}"))),
        };
        let stat = rustix::fs::fstat(&target).map_err(|e| mount_error(path, e))?;
        let cover = if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory {
            new_mount("tmpfs", Some("tmpfs"), &[], libc::MOUNT_ATTR_RDONLY)
        } else {
            open_beneath(root, Path::new("/dev/null"), OFlags::PATH).and_then(|null| clone_tree(null.as_fd(), false))
        }
        .map_err(|e| mount_error(path, format!("masking: {e}")))?;
        attach(cover.as_fd(), target.as_fd()).map_err(|e| mount_error(path, format!("masking: {e}")))?;
    }
    Ok(())
}

/// Makes each existing path read-only with a read-only bind mount of itself.
pub fn readonly_paths(root: BorrowedFd<'_>, paths: &[String]) -> Result<(), ApiError> {
    for path in paths {
        let path = Path::new(path);
        let target = match open_beneath(root, path, OFlags::PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(mount_error(path, format!("read-only: {e}"))),
        };
        let tree = clone_tree(target.as_fd(), true).map_err(|e| mount_error(path, format!("read-only: {e}")))?;
        sys::mount_setattr(tree.as_fd(), true, libc::MOUNT_ATTR_RDONLY, 0)
            .map_err(|e| mount_error(path, format!("read-only: {e}")))?;
        attach(tree.as_fd(), target.as_fd()).map_err(|e| mount_error(path, format!("read-only: {e}")))?;
    }
    Ok(())
}
