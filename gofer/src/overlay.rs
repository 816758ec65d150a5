//! Overlays over host directories, with their writable layers in a private tmpfs that is
//! never attached anywhere: writes stay in memory and vanish with the last reference.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{fsconfig_create, fsconfig_set_fd, fsmount, fsopen, FsMountFlags, FsOpenFlags, MountAttrFlags};
use wire::ApiError;

/// The gofer's scratch tmpfs: upper and work directories of every overlay, and private
/// copies of bind-mounted files.
pub struct Scratch {
    size: Option<u64>,
    mount: Option<OwnedFd>,
    next: u32,
}

impl Scratch {
    /// A scratch space capped at `size` bytes (created on first use).
    pub fn new(size: Option<u64>) -> Self {
        Self { size, mount: None, next: 0 }
    }

    fn mount(&mut self) -> Result<BorrowedFd<'_>, ApiError> {
        if self.mount.is_none() {
            let mut options = vec!["mode=0700".to_string()];
            if let Some(size) = self.size {
                options.push(format!("size={size}"));
            }
            let m = sys::new_mount("tmpfs", Some("paddock-overlay"), &options, 0)
                .map_err(|e| ApiError::io("creating the overlay's tmpfs", e))?;
            self.mount = Some(m);
        }
        Ok(self.mount.as_ref().expect("just created").as_fd())
    }

    /// A fresh directory in the scratch space, with `meta`'s owner and mode.
    fn dir_like(&mut self, meta: &std::fs::Metadata) -> Result<OwnedFd, ApiError> {
        let name = format!("d{}", self.next);
        self.next += 1;
        let mount = self.mount()?;
        let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
        rustix::fs::mkdirat(mount, name.as_str(), mode).map_err(|e| ApiError::io(format!("mkdir {name}"), e))?;
        let dir = rustix::fs::openat(
            mount,
            name.as_str(),
            OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| ApiError::io(format!("open {name}"), e))?;
        own_like(&dir, meta)?;
        Ok(dir)
    }

    /// A private copy of the regular file `source` (with its owner and mode), as a detached
    /// mount of that single file.
    pub fn copy_file(&mut self, source: &mut std::fs::File, meta: &std::fs::Metadata) -> Result<OwnedFd, ApiError> {
        let name = format!("f{}", self.next);
        self.next += 1;
        let mount = self.mount()?;
        let copy = rustix::fs::openat(
            mount,
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| ApiError::io(format!("create {name}"), e))?;
        let mut writer = std::fs::File::from(copy);
        std::io::copy(source, &mut writer).map_err(|e| ApiError::io("copying a bind-mounted file", e))?;
        own_like(&writer, meta)?;
        let path =
            rustix::fs::openat(mount, name.as_str(), OFlags::PATH | OFlags::CLOEXEC | OFlags::NOFOLLOW, Mode::empty())
                .map_err(|e| ApiError::io(format!("open {name}"), e))?;
        sys::clone_tree(path.as_fd(), false).map_err(|e| ApiError::io("cloning a file copy", e))
    }

    /// An overlay whose lower layer is the detached mount `lower` (a directory with `meta`).
    pub fn overlay(&mut self, lower: BorrowedFd<'_>, meta: &std::fs::Metadata) -> Result<OwnedFd, ApiError> {
        // The overlay's root takes its owner and mode from the upper directory, so that must
        // look like the lower root.
        let upper = self.dir_like(meta)?;
        let work = self.dir_like(meta)?;
        // The lower layer is only ever read: make its mount read-only too, so even a bug in
        // the overlay could not write to the host.
        sys::mount_setattr(lower, false, libc::MOUNT_ATTR_RDONLY, 0)
            .map_err(|e| ApiError::io("making the lower layer read-only", e))?;
        let ovl = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| ApiError::io("fsopen overlay", e))?;
        fsconfig_set_fd(ovl.as_fd(), "lowerdir+", lower).map_err(|e| ApiError::io("overlay lowerdir+", e))?;
        fsconfig_set_fd(ovl.as_fd(), "upperdir", upper.as_fd()).map_err(|e| ApiError::io("overlay upperdir", e))?;
        fsconfig_set_fd(ovl.as_fd(), "workdir", work.as_fd()).map_err(|e| ApiError::io("overlay workdir", e))?;
        fsconfig_create(ovl.as_fd()).map_err(|e| ApiError::io("creating the overlay", e))?;
        fsmount(ovl.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
            .map_err(|e| ApiError::io("fsmount overlay", e))
    }
}

fn own_like(fd: &impl AsFd, meta: &std::fs::Metadata) -> Result<(), ApiError> {
    rustix::fs::fchown(fd, Some(rustix::fs::Uid::from_raw(meta.uid())), Some(rustix::fs::Gid::from_raw(meta.gid())))
        .map_err(|e| ApiError::io("chown", e))?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode() & 0o7777)).map_err(|e| ApiError::io("chmod", e))
}
