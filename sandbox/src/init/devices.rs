//! The device nodes and links every container gets in `/dev`, as runc creates them: the
//! spec's `linux.devices` and the runtime-spec's default set.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use rustix::fs::{AtFlags, FileType, Mode};
use wire::ApiError;

use sys::{make_beneath, Create};

use super::mounts::Owners;

/// `(name, major, minor)` of the character devices of the OCI runtime spec's default set.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] =
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// `(name, target)` of the default links.
const DEFAULT_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Creates the spec's `linux.devices` (first, so that one of them may replace a default one),
/// then the default devices and links in the container's `/dev` (beneath `root`), and, for a
/// process with a terminal (`console`), the empty file `/dev/console` on which the terminal is
/// bound later (see [`crate::console::connect`]): made here, with the sandbox's privileges,
/// because by then the process may be a user namespace's root that cannot write to `/dev`.
///
/// Each spec device gets its type, major and minor, its `fileMode` (0666 when absent, as
/// runc) and its `uid`/`gid` (container ids, translated through `owners` for a user
/// namespace). A path that exists already is left as it is, as runc does.
pub fn create_all(
    root: BorrowedFd<'_>,
    devices: &[LinuxDevice],
    owners: Option<&Owners>,
    console: bool,
) -> Result<(), ApiError> {
    for (i, device) in devices.iter().enumerate() {
        create_device(root, device, owners)
            .map_err(|e| ApiError::io(format!("linux.devices[{i}] {}", device.path().display()), e))?;
    }
    let dev = make_beneath(root, Path::new("/dev"), Create::Dir).map_err(|e| ApiError::io("/dev", e))?;
    for (name, major, minor) in DEFAULT_DEVICES {
        let res = rustix::fs::mknodat(
            dev.as_fd(),
            name,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        );
        match res {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(ApiError::io(format!("mknod /dev/{name}"), e)),
        }
    }
    for (name, target) in DEFAULT_LINKS {
        match rustix::fs::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(ApiError::io(format!("symlink /dev/{name}"), e)),
        }
    }
    if console {
        let console = crate::console::CONSOLE;
        make_beneath(root, Path::new(console), Create::File).map_err(|e| ApiError::io(console, e))?;
    }
    Ok(())
}

fn create_device(root: BorrowedFd<'_>, device: &LinuxDevice, owners: Option<&Owners>) -> std::io::Result<()> {
    let path = device.path();
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file"));
    };
    let dir = make_beneath(root, parent, Create::Dir)?;
    let (file_type, dev) = match device.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => {
            (FileType::CharacterDevice, rustix::fs::makedev(major_minor(device.major())?, major_minor(device.minor())?))
        }
        LinuxDeviceType::B => {
            (FileType::BlockDevice, rustix::fs::makedev(major_minor(device.major())?, major_minor(device.minor())?))
        }
        LinuxDeviceType::P => (FileType::Fifo, 0),
        LinuxDeviceType::A => {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "type \"a\" is not a node type"))
        }
    };
    let mode = device.file_mode().map_or(0o666, |m| m & 0o7777);
    match rustix::fs::mknodat(dir.as_fd(), name, file_type, Mode::from_raw_mode(mode), dev) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let uid = device.uid().unwrap_or(0);
    let gid = device.gid().unwrap_or(0);
    let (uid, gid) = match owners {
        Some(o) => (o.host_uid(uid).unwrap_or(uid), o.host_gid(gid).unwrap_or(gid)),
        None => (uid, gid),
    };
    let (uid, gid) = (rustix::fs::Uid::from_raw(uid), rustix::fs::Gid::from_raw(gid));
    rustix::fs::chownat(dir.as_fd(), name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)?;
    // The mode again after chown, which clears set-id bits.
    if mode & 0o6000 != 0 {
        rustix::fs::chmodat(dir.as_fd(), name, Mode::from_raw_mode(mode), AtFlags::empty())?;
    }
    Ok(())
}

/// A major or minor number as the kernel takes it (runc refuses negative ones too).
fn major_minor(n: i64) -> std::io::Result<u32> {
    u32::try_from(n).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("device number {n} is out of range"))
    })
}
