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

/// The container's cgroups, as `/proc/self/cgroup` listed them once the init had joined them
/// and before it entered a cgroup namespace: `(controllers, path)`, controllers empty for the
/// v2 hierarchy.
#[derive(Debug, Default)]
pub struct CgroupPaths {
    /// The container's place in each hierarchy.
    pub entries: Vec<(String, String)>,
    /// Whether the container has a cgroup namespace of its own (then a fresh cgroup mount
    /// already shows its cgroup as the root).
    pub namespaced: bool,
}

impl CgroupPaths {
    /// Parses the text of `/proc/self/cgroup`.
    pub fn parse(text: &str, namespaced: bool) -> Self {
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                Some((controllers.to_string(), path.to_string()))
            })
            .collect();
        Self { entries, namespaced }
    }
}

/// A user-namespaced container's id mappings, so that the filesystems the sandbox mounts for
/// it (in the host's user namespace) belong to the ids the container sees: a tmpfs's root to
/// the container's root, and `uid=`/`gid=` options read as the container's ids, as they would
/// be had the container mounted them itself (as runc's do).
pub struct Owners {
    uids: Vec<(u32, u32, u32)>,
    gids: Vec<(u32, u32, u32)>,
}

impl Owners {
    /// The mappings of `spec`, if it gives the container a user namespace.
    pub fn of(spec: &oci_spec::runtime::Spec) -> Option<Self> {
        let linux = spec.linux().as_ref()?;
        let user_ns = linux
            .namespaces()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User);
        if !user_ns {
            return None;
        }
        let maps = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            m.as_deref().unwrap_or_default().iter().map(|m| (m.container_id(), m.host_id(), m.size())).collect()
        };
        Some(Self { uids: maps(linux.uid_mappings()), gids: maps(linux.gid_mappings()) })
    }

    fn host(maps: &[(u32, u32, u32)], id: u32) -> Option<u32> {
        maps.iter()
            .find(|(c, _, size)| id >= *c && u64::from(id) < u64::from(*c) + u64::from(*size))
            .map(|(c, h, _)| h + (id - c))
    }

    /// The host's uid for the container's `id`, if the mappings map it.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        Self::host(&self.uids, id)
    }

    /// The host's gid for the container's `id`, if the mappings map it.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        Self::host(&self.gids, id)
    }

    /// `data` with its `uid=`/`gid=` translated to host ids, and a tmpfs given the container's
    /// root as owner when it names none.
    fn translate(&self, fstype: &str, data: &[String]) -> Vec<String> {
        let mut out: Vec<String> = data
            .iter()
            .map(|opt| {
                let translated = match opt.split_once('=') {
                    Some(("uid", v)) => {
                        v.parse().ok().and_then(|id| Self::host(&self.uids, id)).map(|h| format!("uid={h}"))
                    }
                    Some(("gid", v)) => {
                        v.parse().ok().and_then(|id| Self::host(&self.gids, id)).map(|h| format!("gid={h}"))
                    }
                    _ => None,
                };
                translated.unwrap_or_else(|| opt.clone())
            })
            .collect();
        if fstype == "tmpfs" {
            for (key, maps) in [("uid", &self.uids), ("gid", &self.gids)] {
                if !data.iter().any(|o| o.starts_with(&format!("{key}="))) {
                    if let Some(root) = Self::host(maps, 0) {
                        out.push(format!("{key}={root}"));
                    }
                }
            }
        }
        out
    }
}

/// A mount's propagation option (`shared`, `rslave`, …), applied once the container's mount
/// namespace is final (see [`apply_propagations`]).
#[derive(Debug, Clone)]
pub struct Propagation {
    destination: PathBuf,
    flag: u64,
    recursive: bool,
}

/// Performs the spec's mounts, in order, beneath `root`; bind mounts move the gofer's
/// mounts from where the sandbox staged them (`binds`, in order). Returns the mounts'
/// propagation options, for [`apply_propagations`].
pub fn mount_all(
    root: BorrowedFd<'_>,
    mounts: &[Mount],
    binds: &mut VecDeque<PathBuf>,
    cgroups: &CgroupPaths,
    owners: Option<&Owners>,
) -> Result<Vec<Propagation>, ApiError> {
    let mut propagations = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        if matches!(m.typ().as_deref(), Some("proc" | "sysfs")) {
            refuse_unless_directory(root, i, m)?;
        }
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            mount_cgroups(root, m, cgroups)?;
            continue;
        }
        if is_bind(m) {
            let staged =
                binds.pop_front().ok_or_else(|| mount_error(m.destination(), "the gofer sent no mount for it"))?;
            let fd = rustix::fs::open(&staged, OFlags::PATH | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| mount_error(m.destination(), format!("staged mount: {e}")))?;
            attach_bind(root, m, &fd)?;
        } else {
            mount_kernel_fs(root, m, owners)?;
        }
        let options = parse_options(m.options().as_deref().unwrap_or_default());
        if let Some(flag) = options.propagation {
            propagations.push(Propagation {
                destination: m.destination().clone(),
                flag,
                recursive: options.propagation_recursive,
            });
        }
    }
    Ok(propagations)
}

/// Gives each mount its propagation option, in spec order, beneath `root` (the container's
/// `/`, after `pivot_root`). Done last, once the container's mount namespace is final: a copy
/// into a less privileged user namespace (the container's own, or the one that locks its
/// mounts) would turn a shared mount into a slave of one that is gone, and a detached mount
/// (a masked path) cannot be attached beneath a shared one.
pub fn apply_propagations(root: BorrowedFd<'_>, propagations: &[Propagation]) -> Result<(), ApiError> {
    for p in propagations {
        let dest = &p.destination;
        let fd = open_beneath(root, dest, OFlags::PATH).map_err(|e| mount_error(dest, format!("propagation: {e}")))?;
        sys::set_propagation(fd.as_fd(), p.recursive, p.flag)
            .map_err(|e| mount_error(dest, format!("propagation: {e}")))?;
    }
    Ok(())
}

/// Refuses a proc or sysfs mount whose destination exists in the root filesystem as anything
/// but a directory, a symlink above all: the image would choose where the container's
/// `/proc` lands (CVE-2019-19921), and runc refuses too. Other destinations resolve their
/// symlinks beneath the root.
fn refuse_unless_directory(root: BorrowedFd<'_>, index: usize, m: &Mount) -> Result<(), ApiError> {
    let dest = m.destination();
    let (Some(parent), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Err(ApiError::invalid_spec(format!(
            "mounts[{index}]: destination {} names no directory",
            dest.display()
        )));
    };
    let refused = |what: String| {
        ApiError::invalid_spec(format!("mounts[{index}]: destination {} {what}: refused", dest.display()))
    };
    let Ok(dir) = open_beneath(root, parent, OFlags::PATH | OFlags::DIRECTORY) else {
        return Ok(()); // Nothing there yet: it is made as a directory.
    };
    let stat = match rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(mount_error(dest, e)),
    };
    match rustix::fs::FileType::from_raw_mode(stat.st_mode) {
        rustix::fs::FileType::Directory => Ok(()),
        rustix::fs::FileType::Symlink => {
            let target = rustix::fs::readlinkat(&dir, name, Vec::new())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            Err(refused(format!("is a symlink in the root filesystem (to {target:?})")))
        }
        _ => Err(refused("is not a directory in the root filesystem".to_string())),
    }
}

fn attach_bind(root: BorrowedFd<'_>, m: &Mount, fd: &OwnedFd) -> Result<(), ApiError> {
    let dest = m.destination();
    let is_dir = rustix::fs::fstat(fd)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
        .map_err(|e| mount_error(dest, e))?;
    let target = make_beneath(root, dest, if is_dir { Create::Dir } else { Create::File })
        .map_err(|e| mount_error(dest, format!("mount point: {e}")))?;
    attach(fd.as_fd(), target.as_fd()).map_err(|e| mount_error(dest, format!("attach: {e}")))?;
    Ok(())
}

fn mount_kernel_fs(root: BorrowedFd<'_>, m: &Mount, owners: Option<&Owners>) -> Result<(), ApiError> {
    let dest = m.destination();
    let options = parse_options(m.options().as_deref().unwrap_or_default());
    let fstype = m.typ().as_deref().unwrap_or_default();
    if fstype.is_empty() {
        return Err(mount_error(dest, "no filesystem type given"));
    }
    let target = make_beneath(root, dest, Create::Dir).map_err(|e| mount_error(dest, format!("mount point: {e}")))?;
    let source = m.source().as_ref().and_then(|s| s.to_str());
    let data = owners.map_or_else(|| options.data.clone(), |o| o.translate(fstype, &options.data));
    let fd = new_mount(fstype, source, &data, options.fresh_attrs())
        .map_err(|e| mount_error(dest, format!("{fstype}: {e}")))?;
    attach(fd.as_fd(), target.as_fd()).map_err(|e| mount_error(dest, format!("attach: {e}")))?;
    Ok(())
}

/// A cgroup mount: the container's own cgroups, as runc lays them out. With cgroup v1, a
/// tmpfs at the destination holding one mount per hierarchy (`memory`, `cpu,cpuacct`, with
/// symlinks for co-mounted controllers); with v2 alone, one cgroup2 mount. Each shows only the
/// container's cgroup: a cgroup namespace does that by itself, otherwise the container's
/// subdirectory of a fresh mount is what gets attached.
fn mount_cgroups(root: BorrowedFd<'_>, m: &Mount, cgroups: &CgroupPaths) -> Result<(), ApiError> {
    let dest = m.destination();
    let attrs = parse_options(m.options().as_deref().unwrap_or_default()).fresh_attrs();
    let fail = |what: &str, e: std::io::Error| mount_error(dest, format!("{what}: {e}"));
    let v1: Vec<&(String, String)> = cgroups.entries.iter().filter(|(c, _)| !c.is_empty()).collect();
    let own_part = |fd: OwnedFd, path: &str| -> std::io::Result<OwnedFd> {
        if cgroups.namespaced || path == "/" {
            return Ok(fd);
        }
        let inner = open_beneath(fd.as_fd(), Path::new(path), OFlags::PATH | OFlags::DIRECTORY)?;
        clone_tree(inner.as_fd(), false)
    };
    let target = make_beneath(root, dest, Create::Dir).map_err(|e| fail("mount point", e))?;
    if v1.is_empty() {
        let path = cgroups.entries.iter().find(|(c, _)| c.is_empty()).map_or("/", |(_, p)| p.as_str());
        let fd = new_mount("cgroup2", Some("cgroup2"), &[], attrs)
            .and_then(|fd| own_part(fd, path))
            .map_err(|e| fail("cgroup2", e))?;
        return attach(fd.as_fd(), target.as_fd()).map_err(|e| fail("attach", e));
    }
    let rw = attrs & !libc::MOUNT_ATTR_RDONLY;
    let tmpfs = new_mount("tmpfs", Some("tmpfs"), &["mode=755".to_string()], rw).map_err(|e| fail("tmpfs", e))?;
    attach(tmpfs.as_fd(), target.as_fd()).map_err(|e| fail("attach", e))?;
    for (controllers, path) in v1 {
        let (name, fs_options): (&str, Vec<String>) = match controllers.strip_prefix("name=") {
            Some(named) => (named, vec!["none".into(), format!("name={named}")]),
            None => (controllers.as_str(), controllers.split(',').map(String::from).collect()),
        };
        let what = format!("cgroup {controllers}");
        let fd = new_mount("cgroup", Some("cgroup"), &fs_options, attrs)
            .and_then(|fd| own_part(fd, path))
            .map_err(|e| fail(&what, e))?;
        let place = make_beneath(tmpfs.as_fd(), Path::new(name), Create::Dir).map_err(|e| fail(&what, e))?;
        attach(fd.as_fd(), place.as_fd()).map_err(|e| fail(&what, e))?;
        if controllers.contains(',') {
            for alias in controllers.split(',') {
                let _ = rustix::fs::symlinkat(name, tmpfs.as_fd(), alias);
            }
        }
    }
    if attrs & libc::MOUNT_ATTR_RDONLY != 0 {
        sys::mount_setattr(tmpfs.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0).map_err(|e| fail("read-only", e))?;
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
