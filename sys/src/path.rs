//! Resolving paths beneath a container's root, so that no `..`, absolute symlink or symlink
//! swapped in meanwhile can lead out of it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Opens `path` beneath `root` as if `root` were `/` (`openat2` with `RESOLVE_IN_ROOT`):
/// `..`, absolute paths and symlinks can never lead out of it, and magic links
/// (`/proc/*/fd/*`) are refused.
pub fn open_beneath(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    Ok(rustix::fs::openat2(
        root,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// What to create when a path beneath the root is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Directories all the way.
    Dir,
    /// Directories, and an empty file as the last component.
    File,
}

/// Opens `path` beneath `root` as an `O_PATH` descriptor, creating what is missing
/// (directories mode 0755, a file mode 0644), every step resolved beneath `root`.
///
/// A dangling symlink on the way is followed beneath `root` and what it names is created
/// (as runc does: an image's `/etc/resolv.conf -> ../run/resolv.conf` gets its file);
/// `..` in it stops at `root`.
pub fn make_beneath(root: BorrowedFd<'_>, path: &Path, what: Create) -> std::io::Result<OwnedFd> {
    make_following(root, path, what, 0)
}

/// As many dangling symlinks as the kernel follows in one path (`MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// `path`'s normal components, with `..` resolved lexically and stopping at the root, as
/// `RESOLVE_IN_ROOT` resolves a path beneath a root (symlinks aside).
pub fn lexical_parts(path: &Path) -> Vec<&std::ffi::OsStr> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    parts
}

fn make_following(root: BorrowedFd<'_>, path: &Path, what: Create, followed: usize) -> std::io::Result<OwnedFd> {
    if let Ok(fd) = open_beneath(root, path, OFlags::PATH) {
        return Ok(fd);
    }
    let parts = lexical_parts(path);
    let mut prefix = PathBuf::from("/");
    for (i, part) in parts.iter().enumerate() {
        let parent = open_beneath(root, &prefix, OFlags::PATH | OFlags::DIRECTORY)?;
        let dir_of_part = prefix.clone();
        prefix.push(part);
        if open_beneath(root, &prefix, OFlags::PATH).is_ok() {
            continue;
        }
        let last = i + 1 == parts.len();
        let res = if last && what == Create::File {
            rustix::fs::openat(
                parent.as_fd(),
                *part,
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(parent.as_fd(), *part, Mode::from_raw_mode(0o755))
        };
        match res {
            Ok(()) => {}
            // Something is there that does not resolve: a dangling symlink is followed.
            Err(rustix::io::Errno::EXIST | rustix::io::Errno::LOOP) => {
                let Ok(target) = rustix::fs::readlinkat(parent.as_fd(), *part, Vec::new()) else {
                    continue;
                };
                if followed >= MAX_SYMLINKS {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                let mut next = if target.is_absolute() { target } else { dir_of_part.join(target) };
                for rest in &parts[i + 1..] {
                    next.push(rest);
                }
                return make_following(root, &next, what, followed + 1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    open_beneath(root, path, OFlags::PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_and_dotdot_stay_beneath_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../", root.join("up")).unwrap();
        let rootfd = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for p in ["/link/hostname", "up/etc/hostname", "../../etc/hostname", "/up/up/link/hostname"] {
            let fd = open_beneath(rootfd.as_fd(), Path::new(p), OFlags::RDONLY).unwrap();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s).unwrap();
            assert_eq!(s, "inside", "{p}");
        }
    }

    #[test]
    fn make_beneath_creates_inside_even_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink("/", root.join("abs")).unwrap();
        let rootfd = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        make_beneath(rootfd.as_fd(), Path::new("/abs/new/dir"), Create::Dir).unwrap();
        assert!(root.join("new/dir").is_dir());
        make_beneath(rootfd.as_fd(), Path::new("/abs/f/file"), Create::File).unwrap();
        assert!(root.join("f/file").is_file());
        assert!(!Path::new("/new/dir").exists());
    }

    #[test]
    fn make_beneath_follows_dangling_symlinks_beneath_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/../../outside", root.join("up")).unwrap();
        std::os::unix::fs::symlink("../run/resolv.conf", root.join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let rootfd = rustix::fs::open(&root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        make_beneath(rootfd.as_fd(), Path::new("/up/data"), Create::Dir).unwrap();
        assert!(root.join("outside/data").is_dir());
        make_beneath(rootfd.as_fd(), Path::new("/etc/resolv.conf"), Create::File).unwrap();
        assert!(root.join("run/resolv.conf").is_file());
        assert!(make_beneath(rootfd.as_fd(), Path::new("/loop/x"), Create::Dir).is_err());
        assert!(!dir.path().join("outside").exists());
    }
}
