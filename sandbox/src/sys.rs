//! System calls beyond what nix and rustix wrap, and small safe helpers over the new mount API.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    open_tree, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

/// `mount_setattr(2)`: sets the `MOUNT_ATTR_*` bits in `set` and clears those in `clear` on the
/// mount `fd` refers to (and every mount below it with `recursive`).
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
    // SAFETY: `attr` is a valid mount_attr whose size we pass; the empty path is a valid C
    // string; `fd` stays open for the duration of the call.
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

/// Creates a new, detached mount of filesystem type `fstype`, configured with `options`
/// (`key=value` strings or bare flags, as in mount(8)'s `-o`) and mount attributes `attrs`.
pub fn new_mount(
    fstype: &str,
    source: Option<&str>,
    options: &[String],
    attrs: MountAttrFlags,
) -> std::io::Result<OwnedFd> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    if let Some(source) = source {
        fsconfig_set_string(fs.as_fd(), "source", source)?;
    }
    for opt in options {
        let res = match opt.split_once('=') {
            Some((key, value)) => fsconfig_set_string(fs.as_fd(), key, value),
            None => fsconfig_set_flag(fs.as_fd(), opt.as_str()),
        };
        res.map_err(|e| std::io::Error::new(e.kind(), format!("option {opt:?}: {e}")))?;
    }
    fsconfig_create(fs.as_fd())?;
    Ok(fsmount(fs.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attrs)?)
}

/// Attaches the detached mount `mount` on top of whatever `target` (an `O_PATH` descriptor)
/// refers to.
pub fn attach(mount: BorrowedFd<'_>, target: BorrowedFd<'_>) -> std::io::Result<()> {
    Ok(move_mount(
        mount,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// A detached copy of the mount tree at `target` (an `O_PATH` descriptor).
pub fn clone_tree(target: BorrowedFd<'_>, recursive: bool) -> std::io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(open_tree(target, "", flags)?)
}

/// Opens `path` beneath `root` as if `root` were `/`: `..`, absolute paths and symlinks can
/// never lead out of it, and magic links (`/proc/*/fd/*`) are refused.
pub fn open_beneath(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
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
pub fn make_beneath(root: BorrowedFd<'_>, path: &Path, what: Create) -> std::io::Result<OwnedFd> {
    if let Ok(fd) = open_beneath(root, path, OFlags::PATH) {
        return Ok(fd);
    }
    let parts: Vec<_> = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    let mut prefix = std::path::PathBuf::from("/");
    for (i, part) in parts.iter().enumerate() {
        let parent = open_beneath(root, &prefix, OFlags::PATH | OFlags::DIRECTORY)?;
        prefix.push(part);
        let last = i + 1 == parts.len();
        if open_beneath(root, &prefix, OFlags::PATH).is_ok() {
            continue;
        }
        let res = if last && what == Create::File {
            rustix::fs::openat(
                parent.as_fd(),
                part.as_os_str(),
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rustix::fs::mkdirat(parent.as_fd(), part.as_os_str(), Mode::from_raw_mode(0o755))
        };
        match res {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    open_beneath(root, path, OFlags::PATH)
}

/// Brings the loopback interface of the current network namespace up, as runc does for a new
/// network namespace. A socket ioctl is all it takes; no netlink crate needed.
pub fn loopback_up() -> std::io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own, on a live socket.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
