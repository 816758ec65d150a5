//! The spec's mounts inside the container's root, and the masked and read-only paths.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use oci_spec::runtime::Mount;
use rustix::fs::OFlags;
use rustix::mount::MountAttrFlags;
use wire::{ApiError, ErrorKind};

use crate::sys::{self, attach, clone_tree, make_beneath, new_mount, open_beneath, Create};

/// A mount's options, sorted into what the new mount API wants.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Mount attributes (read-only, nosuid, ...).
    pub attrs: MountAttrFlags,
    /// Filesystem parameters handed to `fsconfig` (`mode=755`, `newinstance`, ...).
    pub data: Vec<String>,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// `rbind` was given.
    pub recursive: bool,
    /// A propagation type (`MS_PRIVATE`, `MS_SHARED`, ...), if given.
    pub propagation: Option<u64>,
}

/// Sorts mount(8)-style options.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        attrs: MountAttrFlags::empty(),
        data: Vec::new(),
        bind: false,
        recursive: false,
        propagation: None,
    };
    for opt in options {
        let attr = |o: &mut MountOptions, set: bool, flag: MountAttrFlags| {
            if set {
                o.attrs |= flag
            } else {
                o.attrs &= !flag
            }
        };
        let atime = |o: &mut MountAttrFlags, flag: MountAttrFlags| {
            *o &= !MountAttrFlags::MOUNT_ATTR__ATIME;
            *o |= flag;
        };
        match opt.as_str() {
            "ro" | "rro" => attr(&mut o, true, MountAttrFlags::MOUNT_ATTR_RDONLY),
            "rw" | "rrw" => attr(&mut o, false, MountAttrFlags::MOUNT_ATTR_RDONLY),
            "nosuid" | "rnosuid" => attr(&mut o, true, MountAttrFlags::MOUNT_ATTR_NOSUID),
            "suid" | "rsuid" => attr(&mut o, false, MountAttrFlags::MOUNT_ATTR_NOSUID),
            "nodev" | "rnodev" => attr(&mut o, true, MountAttrFlags::MOUNT_ATTR_NODEV),
            "dev" | "rdev" => attr(&mut o, false, MountAttrFlags::MOUNT_ATTR_NODEV),
            "noexec" | "rnoexec" => attr(&mut o, true, MountAttrFlags::MOUNT_ATTR_NOEXEC),
            "exec" | "rexec" => attr(&mut o, false, MountAttrFlags::MOUNT_ATTR_NOEXEC),
            "nodiratime" | "rnodiratime" => {
                attr(&mut o, true, MountAttrFlags::MOUNT_ATTR_NODIRATIME)
            }
            "diratime" | "rdiratime" => attr(&mut o, false, MountAttrFlags::MOUNT_ATTR_NODIRATIME),
            "nosymfollow" | "rnosymfollow" => {
                attr(&mut o, true, MountAttrFlags::MOUNT_ATTR_NOSYMFOLLOW)
            }
            "symfollow" | "rsymfollow" => {
                attr(&mut o, false, MountAttrFlags::MOUNT_ATTR_NOSYMFOLLOW)
            }
            "relatime" | "rrelatime" => atime(&mut o.attrs, MountAttrFlags::MOUNT_ATTR_RELATIME),
            "norelatime" | "rnorelatime" => atime(&mut o.attrs, MountAttrFlags::empty()),
            "strictatime" | "rstrictatime" => {
                atime(&mut o.attrs, MountAttrFlags::MOUNT_ATTR_STRICTATIME)
            }
            "noatime" | "rnoatime" => atime(&mut o.attrs, MountAttrFlags::MOUNT_ATTR_NOATIME),
            "atime" | "ratime" => atime(&mut o.attrs, MountAttrFlags::empty()),
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.recursive = true;
            }
            "private" | "rprivate" => o.propagation = Some(libc::MS_PRIVATE),
            "shared" | "rshared" => o.propagation = Some(libc::MS_SHARED),
            "slave" | "rslave" => o.propagation = Some(libc::MS_SLAVE),
            "unbindable" | "runbindable" => o.propagation = Some(libc::MS_UNBINDABLE),
            "defaults" | "async" => {}
            other => o.data.push(other.to_string()),
        }
    }
    o
}

/// Whether `mount` is a bind mount (by type or option).
pub fn is_bind(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || mount
            .options()
            .as_ref()
            .is_some_and(|opts| opts.iter().any(|o| o == "bind" || o == "rbind"))
}

fn mount_error(dest: &Path, what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidSpec,
        format!("mount {}: {what}", dest.display()),
    )
}

/// Performs the spec's mounts, in order, beneath `root`.
pub fn mount_all(root: BorrowedFd<'_>, mounts: &[Mount]) -> Result<(), ApiError> {
    for m in mounts {
        mount_one(root, m)?;
    }
    Ok(())
}

fn mount_one(root: BorrowedFd<'_>, m: &Mount) -> Result<(), ApiError> {
    let dest = m.destination();
    let options = parse_options(m.options().as_deref().unwrap_or_default());
    if is_bind(m) {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            format!(
                "mount {}: bind mounts of host paths are not supported yet (they will come through the gofer)",
                dest.display()
            ),
        ));
    }
    let fstype = m.typ().as_deref().unwrap_or_default();
    match fstype {
        "" => return Err(mount_error(dest, "no filesystem type given")),
        "cgroup" | "cgroup2" => {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                format!(
                    "mount {}: cgroup mounts are not supported yet",
                    dest.display()
                ),
            ))
        }
        _ => {}
    }
    let target = make_beneath(root, dest, Create::Dir)
        .map_err(|e| mount_error(dest, format!("mount point: {e}")))?;
    let source = m.source().as_ref().and_then(|s| s.to_str());
    let fd = new_mount(fstype, source, &options.data, options.attrs)
        .map_err(|e| mount_error(dest, format!("{fstype}: {e}")))?;
    attach(fd.as_fd(), target.as_fd()).map_err(|e| mount_error(dest, format!("attach: {e}")))?;
    if let Some(propagation) = options.propagation {
        set_propagation(&fd, propagation)
            .map_err(|e| mount_error(dest, format!("propagation: {e}")))?;
    }
    Ok(())
}

fn set_propagation(fd: &std::os::fd::OwnedFd, propagation: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut attr = libc::mount_attr {
        attr_set: 0,
        attr_clr: 0,
        propagation,
        userns_fd: 0,
    };
    // SAFETY: as in sys::mount_setattr: valid struct and size, live descriptor.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
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
        let cover = if rustix::fs::FileType::from_raw_mode(stat.st_mode)
            == rustix::fs::FileType::Directory
        {
            new_mount(
                "tmpfs",
                Some("tmpfs"),
                &[],
                MountAttrFlags::MOUNT_ATTR_RDONLY,
            )
        } else {
            open_beneath(root, Path::new("/dev/null"), OFlags::PATH)
                .and_then(|null| clone_tree(null.as_fd(), false))
        }
        .map_err(|e| mount_error(path, format!("masking: {e}")))?;
        attach(cover.as_fd(), target.as_fd())
            .map_err(|e| mount_error(path, format!("masking: {e}")))?;
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
        let tree = clone_tree(target.as_fd(), true)
            .map_err(|e| mount_error(path, format!("read-only: {e}")))?;
        sys::mount_setattr(tree.as_fd(), true, libc::MOUNT_ATTR_RDONLY, 0)
            .map_err(|e| mount_error(path, format!("read-only: {e}")))?;
        attach(tree.as_fd(), target.as_fd())
            .map_err(|e| mount_error(path, format!("read-only: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &[&str]) -> MountOptions {
        parse_options(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_are_sorted() {
        let o = opts(&[
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
            "ro",
            "rprivate",
        ]);
        assert_eq!(
            o.attrs,
            MountAttrFlags::MOUNT_ATTR_NOSUID
                | MountAttrFlags::MOUNT_ATTR_STRICTATIME
                | MountAttrFlags::MOUNT_ATTR_RDONLY
        );
        assert_eq!(
            o.data,
            vec!["mode=755".to_string(), "size=65536k".to_string()]
        );
        assert_eq!(o.propagation, Some(libc::MS_PRIVATE));
        assert!(!o.bind);
        let o = opts(&["ro", "rw", "noatime", "relatime", "rbind"]);
        assert_eq!(o.attrs, MountAttrFlags::MOUNT_ATTR_RELATIME);
        assert!(o.bind && o.recursive);
    }
}
