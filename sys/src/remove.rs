//! Removing a directory tree without ever leaving its mount.
//!
//! `std::fs::remove_dir_all` follows the tree wherever it goes, into whatever is mounted in it:
//! a bind mount of a container's rootfs, of a host directory, of `/` itself. A directory that
//! paddock removes (a crashed create's staging directory, a deleted container's state, a
//! sandbox's staging place) should hold nothing mounted; if something is, because a detach
//! failed or because someone mounted it there, deleting through it would delete the files of
//! whoever owns that mount. So this removal opens every directory with `RESOLVE_NO_XDEV` (which
//! refuses every mount point, bind mounts of the same filesystem included, where comparing
//! `st_dev` would not), and stops with an error naming the mount point instead of entering it.
//! No crate offers a removal bounded by mounts, hence this by hand.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

/// Removes the directory `path` and everything in it, provided nothing beneath it is a mount
/// point: the first one found is left untouched (with whatever else could not be removed
/// around it) and named in the error. A `path` that does not exist is not an error.
pub fn remove_dir_within_mount(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{} names no directory entry", path.display()))
    })?;
    let parent = rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    match remove_entry_dir(parent.as_fd(), name, path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Removes directory `name` of `parent` (shown as `shown` in errors) and its contents.
fn remove_entry_dir(parent: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> std::io::Result<()> {
    let dir = open_same_mount(parent, name, shown)?;
    for (child, is_dir) in entries(&dir)? {
        let child_shown = shown.join(&child);
        if is_dir {
            remove_entry_dir(dir.as_fd(), child.as_os_str(), &child_shown)?;
        } else {
            match rustix::fs::unlinkat(&dir, child.as_os_str(), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                // A regular file bind-mounted here is busy: its owner's, never removed.
                Err(e) => return Err(with_path(e.into(), &child_shown)),
            }
        }
    }
    drop(dir);
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR).map_err(|e| with_path(e.into(), shown))
}

/// Opens directory `name` of `parent`, refusing a mount point and a symlink.
fn open_same_mount(parent: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> std::io::Result<OwnedFd> {
    let how = ResolveFlags::NO_XDEV | ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat2(parent, name, flags, Mode::empty(), how).map_err(|e| match e {
        rustix::io::Errno::XDEV => std::io::Error::new(
            std::io::ErrorKind::ResourceBusy,
            format!("{} is a mount point: left in place, with what contains it", shown.display()),
        ),
        e => with_path(e.into(), shown),
    })
}

/// The entries of `dir` (not `.` or `..`), each with whether it is a directory.
fn entries(dir: &OwnedFd) -> std::io::Result<Vec<(PathBuf, bool)>> {
    let mut listing = rustix::fs::Dir::read_from(dir)?;
    let mut found = Vec::new();
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from(OsStr::from_bytes(name));
        let is_dir = match entry.file_type() {
            rustix::fs::FileType::Directory => true,
            rustix::fs::FileType::Unknown => {
                let stat = rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)?;
                rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory
            }
            _ => false,
        };
        found.push((PathBuf::from(name), is_dir));
    }
    Ok(found)
}

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_plain_tree_and_ignores_a_missing_one() {
        let base = tempfile::tempdir().unwrap();
        let top = base.path().join("top");
        std::fs::create_dir_all(top.join("a/b/c")).unwrap();
        std::fs::write(top.join("a/file"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", top.join("a/b/link")).unwrap();
        remove_dir_within_mount(&top).unwrap();
        assert!(!top.exists());
        remove_dir_within_mount(&top).unwrap();
    }

    /// A tmpfs mounted inside the tree is left whole, its contents untouched; the error names
    /// it. (In a forked child with a mount namespace of its own: unshare needs one thread.)
    #[test]
    fn never_enters_a_mount_point() {
        let base = tempfile::tempdir().unwrap();
        let top = base.path().join("top");
        std::fs::create_dir_all(top.join("plain")).unwrap();
        std::fs::create_dir_all(top.join("mnt")).unwrap();
        std::fs::write(top.join("plain/file"), "x").unwrap();
        // SAFETY: the child only makes system calls and exits; it never returns into the test
        // harness.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| -> Result<(), String> {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string())?;
                    let none = None::<&str>;
                    nix::mount::mount(
                        none,
                        "/",
                        none,
                        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                        none,
                    )
                    .map_err(|e| e.to_string())?;
                    nix::mount::mount(
                        Some("tmpfs"),
                        &top.join("mnt"),
                        Some("tmpfs"),
                        nix::mount::MsFlags::empty(),
                        none,
                    )
                    .map_err(|e| e.to_string())?;
                    std::fs::write(top.join("mnt/keep"), "kept").map_err(|e| e.to_string())?;
                    let err = remove_dir_within_mount(&top).expect_err("a mount point inside");
                    if !err.to_string().contains("mnt is a mount point") {
                        return Err(format!("unexpected error: {err}"));
                    }
                    if std::fs::read_to_string(top.join("mnt/keep")).ok().as_deref() != Some("kept") {
                        return Err("the mount's contents were touched".into());
                    }
                    Ok(())
                })();
                let status = match code {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("{e}");
                        1
                    }
                };
                // SAFETY: ends the forked child at once, without running the parent's exit code.
                unsafe { libc::_exit(status) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        // Outside the child's namespace nothing is mounted: the rest goes.
        remove_dir_within_mount(&top).unwrap();
        assert!(!top.exists());
    }
}
