//! The new mount API: detached mounts made from descriptors and attached where they belong.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree, FsMountFlags,
    FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

fn raw_mount_setattr(fd: BorrowedFd<'_>, flags: libc::c_int, attr: &mut libc::mount_attr) -> std::io::Result<()> {
    // SAFETY: `attr` is a valid mount_attr whose size we pass; the empty path is a valid C
    // string; `fd` stays open for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `mount_setattr(2)` on the mount `fd` refers to (and every mount below it with
/// `recursive`): sets the `MOUNT_ATTR_*` bits in `set`, clears those in `clear`.
///
/// Neither nix nor rustix wraps `mount_setattr` yet, hence the raw call.
pub fn mount_setattr(fd: BorrowedFd<'_>, recursive: bool, set: u64, clear: u64) -> std::io::Result<()> {
    let mut attr = libc::mount_attr { attr_set: set, attr_clr: clear, propagation: 0, userns_fd: 0 };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    raw_mount_setattr(fd, flags, &mut attr)
}

/// Makes the detached mount `fd` (and, with `recursive`, every mount below it) idmapped
/// through the user namespace `userns` (`MOUNT_ATTR_IDMAP`): a file whose owner on the
/// filesystem is id `n` inside `userns` shows, and is written, as the id `n` maps to outside.
///
/// The kernel allows it only on a mount that was never attached (a fresh `open_tree` copy), of
/// a filesystem that supports idmapped mounts (`EINVAL` otherwise; tmpfs only from Linux 6.3),
/// that is not idmapped already (`EPERM`).
pub fn set_idmap(fd: BorrowedFd<'_>, recursive: bool, userns: BorrowedFd<'_>) -> std::io::Result<()> {
    let userns_fd = u64::try_from(userns.as_raw_fd()).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    let mut attr = libc::mount_attr { attr_set: libc::MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    raw_mount_setattr(fd, flags, &mut attr)
}

/// Sets the propagation type (`MS_PRIVATE`, `MS_SHARED`, `MS_SLAVE`, `MS_UNBINDABLE`) of the
/// mount `fd` refers to (and those below it with `recursive`).
pub fn set_propagation(fd: BorrowedFd<'_>, recursive: bool, propagation: u64) -> std::io::Result<()> {
    let mut attr = libc::mount_attr { attr_set: 0, attr_clr: 0, propagation, userns_fd: 0 };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    raw_mount_setattr(fd, flags, &mut attr)
}

/// A new, detached mount of filesystem type `fstype`, configured with `options`
/// (`key=value` strings or bare flags, as in mount(8)'s `-o`) and mount attributes `attrs`.
pub fn new_mount(fstype: &str, source: Option<&str>, options: &[String], attrs: u64) -> std::io::Result<OwnedFd> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    if let Some(source) = source {
        fsconfig_set_string(fs.as_fd(), "source", source)?;
    }
    for opt in options {
        let res = match opt.split_once('=') {
            Some((key, value)) => fsconfig_set_string(fs.as_fd(), key, value),
            None => fsconfig_set_flag(fs.as_fd(), opt.as_str()),
        };
        res.map_err(|e| std::io::Error::new(std::io::Error::from(e).kind(), format!("option {opt:?}: {e}")))?;
    }
    fsconfig_create(fs.as_fd())?;
    Ok(fsmount(fs.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::from_bits_retain(attr_bits(attrs)?))?)
}

/// Attaches the detached mount `mount` on top of what `target` (an `O_PATH` descriptor)
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

/// A detached, private copy of the mount (tree, with `recursive`) at `target`, which may itself
/// be a detached mount or an `O_PATH` descriptor of a path in our mount namespace.
///
/// The kernel's copy stays in the peer group of its source: cloned from a shared mount (every
/// mount of a systemd host, and every rootfs under dockerd's or containerd's shared data
/// root) it would propagate mount events back to the host, and `pivot_root` refuses a shared
/// new root (`EINVAL`). So every copy is made private before anyone can attach it; a caller
/// that wants another propagation (a spec's `rslave` bind mount) sets it afterwards.
pub fn clone_tree(target: BorrowedFd<'_>, recursive: bool) -> std::io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = open_tree(target, "", flags)?;
    set_propagation(tree.as_fd(), recursive, libc::MS_PRIVATE)?;
    Ok(tree)
}

/// A detached copy of the mount (tree, with `recursive`) at `target` that is a slave of what
/// `target` is a member or slave of: mount events beneath the source reach the copy, never the
/// other way. (A copy of a private mount is private.) For the spec's `slave` and `rslave`
/// bind mounts, whose point is to see what the host mounts later.
pub fn clone_tree_as_slave(target: BorrowedFd<'_>, recursive: bool) -> std::io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = open_tree(target, "", flags)?;
    set_propagation(tree.as_fd(), recursive, libc::MS_SLAVE)?;
    Ok(tree)
}

/// Makes the detached mount `root` the calling process's `/`, and detaches everything it saw
/// before. Every mount is made private first, so nothing propagates back to where the mount
/// namespace was copied from.
///
/// `pivot_root(2)` refuses (`EINVAL`) when the mount *above* the current root is shared, and
/// that mount cannot even be named when the caller is chrooted (a `chroot` into a directory of
/// a systemd host, whose mounts are all shared: how many people try a fresh system). So the
/// pivot happens one level down, where every mount involved is ours: a scaffold tmpfs is
/// stacked on the current `/` and made the root with `chroot`, `root` is attached inside it,
/// and `pivot_root(".", ".")` from there swaps them; `umount2(MNT_DETACH)` lets the scaffold
/// (and beneath it, everything seen before) go.
pub fn pivot_into(root: BorrowedFd<'_>) -> std::io::Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    let slash = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let scaffold = new_mount(
        "tmpfs",
        Some("paddock-pivot"),
        &["mode=0700".to_string()],
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
    )?;
    rustix::fs::mkdirat(scaffold.as_fd(), "new", Mode::from_raw_mode(0o700))?;
    attach(scaffold.as_fd(), slash.as_fd())?;
    nix::unistd::fchdir(scaffold.as_fd())?;
    nix::unistd::chroot(".")?;
    let place =
        rustix::fs::openat(scaffold.as_fd(), "new", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    attach(root, place.as_fd())?;
    nix::unistd::fchdir(root)?;
    nix::unistd::pivot_root(".", ".")?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)?;
    nix::unistd::chdir("/")?;
    Ok(())
}

/// The 32 bits `fsmount` takes, from the 64-bit `mount_setattr` attribute set the callers build;
/// an attribute above them is refused rather than silently dropped.
fn attr_bits(attrs: u64) -> std::io::Result<u32> {
    u32::try_from(attrs).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("mount attributes {attrs:#x} do not fit fsmount"))
    })
}
