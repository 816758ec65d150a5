//! Preparing a container's filesystem: every mount opened on the host as a detached mount,
//! handed to the sandbox, and assembled into the gofer's own view.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use sys::Create;
use wire::conn::Connection;
use wire::frame::DEFAULT_MAX_FRAME;
use wire::gofer_proto::{BindMount, GoferMessage, GoferSetup, IdMapping, Overlay};
use wire::{ApiError, ErrorKind, FdSlot};

use crate::overlay::Scratch;

/// The gofer's view of the container once set up.
pub struct View {
    /// The container's `/` as the gofer sees it (after pivoting into it).
    pub root: OwnedFd,
    /// Where the container mounts its own filesystems, out of the gofer's reach.
    pub unreachable: Vec<std::path::PathBuf>,
}

fn mount_err(dest: &Path, what: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::InvalidSpec, format!("mount {}: {what}", dest.display()))
}

/// Sets everything up: opens (or adopts) the mounts, sends them to the sandbox, and pivots
/// into the gofer's own copy of the tree. After this the host's files are out of reach.
pub fn setup(mut s: GoferSetup) -> Result<View, ApiError> {
    let adopted: Vec<OwnedFd> = s.adopted.iter_mut().filter_map(FdSlot::take).collect();
    let adopting = !adopted.is_empty();
    let mounts = if !adopting {
        open_all(&s)?
    } else {
        if adopted.len() != s.binds.len() + 1 {
            return Err(ApiError::new(
                ErrorKind::Protocol,
                format!("{} mounts adopted for {} bind mounts and the rootfs", adopted.len(), s.binds.len()),
            ));
        }
        adopted
    };
    // A restarted gofer's mounts came from the sandbox, which has them already.
    if !adopting {
        // The rootfs first, then the binds: a slave bind's copy stays a slave.
        let slaves: Vec<bool> = std::iter::once(false).chain(s.binds.iter().map(|b| b.slave)).collect();
        send_to_sandbox(&mut s.io, &mounts, &slaves)?;
    }
    assemble_view(&s, mounts)
}

fn open_all(s: &GoferSetup) -> Result<Vec<OwnedFd>, ApiError> {
    let size = match s.overlay {
        Overlay::RootMemory { size } | Overlay::AllMemory { size } => size,
        Overlay::None => None,
    };
    let mut scratch = Scratch::new(size);
    let mut mounts = vec![open_rootfs(&s.rootfs, s.overlay, &mut scratch)?];
    let bundle = if s.bundle.as_os_str().is_empty() {
        None
    } else {
        Some(
            rustix::fs::open(&s.bundle, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ApiError::io(format!("bundle {}", s.bundle.display()), e))?,
        )
    };
    let mut namespaces = IdmapNamespaces::default();
    for bind in &s.binds {
        mounts.push(open_bind(bundle.as_ref(), bind, s.overlay, &mut scratch, &mut namespaces)?);
    }
    Ok(mounts)
}

/// The user namespaces made for the idmapped bind mounts, one per distinct pair of maps (as
/// runc shares them): each costs a fork. Dropped (closed) once the mounts are made, which keep
/// what they need of them.
#[derive(Default)]
struct IdmapNamespaces {
    made: Vec<((String, String), OwnedFd)>,
}

impl IdmapNamespaces {
    /// A user namespace with `idmap`'s maps.
    fn get(&mut self, idmap: &IdMapping) -> Result<std::os::fd::BorrowedFd<'_>, sys::userns::UsernsError> {
        let key = (IdMapping::map_text(&idmap.uids), IdMapping::map_text(&idmap.gids));
        let index = match self.made.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let ns = sys::userns::with_maps(&key.0, &key.1)?;
                self.made.push((key, ns));
                self.made.len() - 1
            }
        };
        Ok(self.made[index].1.as_fd())
    }
}

/// Makes the detached mount `tree` of `bind` idmapped (every mount of it with `ridmap`), if
/// the spec asks.
fn apply_idmap(
    tree: &OwnedFd,
    bind: &BindMount,
    recursive: bool,
    namespaces: &mut IdmapNamespaces,
) -> Result<(), ApiError> {
    let Some(idmap) = &bind.idmap else { return Ok(()) };
    let dest = &bind.destination;
    let userns = namespaces.get(idmap).map_err(|e| mount_err(dest, format!("idmap: {e}")))?;
    sys::set_idmap(tree.as_fd(), recursive, userns).map_err(|e| {
        let source = bind.source.display();
        match e.raw_os_error() {
            // What the kernel answers for a filesystem without idmapped mounts (EINVAL), or
            // one it does not let us idmap (EPERM: a filesystem mounted in another user
            // namespace, or a source that is an idmapped mount already).
            Some(libc::EINVAL) => mount_err(
                dest,
                format!(
                    "the filesystem of {source} does not support idmapped mounts on this kernel (mount_setattr \
                     MOUNT_ATTR_IDMAP: {e})"
                ),
            ),
            Some(libc::EPERM) => mount_err(
                dest,
                format!(
                    "the filesystem of {source} does not support idmapped mounts here: it belongs to another user \
                     namespace or {source} is idmapped already (mount_setattr MOUNT_ATTR_IDMAP: {e})"
                ),
            ),
            _ => mount_err(dest, format!("idmap {source}: {e}")),
        }
    })
}

fn open_rootfs(rootfs: &Path, overlay: Overlay, scratch: &mut Scratch) -> Result<OwnedFd, ApiError> {
    // Not through a symlink (paddockd refused one; this closes the window since).
    let dir =
        rustix::fs::open(rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| match e {
                rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP => {
                    ApiError::invalid_spec(format!("rootfs {} is a symlink or not a directory", rootfs.display()))
                }
                other => ApiError::io(format!("rootfs {}", rootfs.display()), other),
            })?;
    let meta = std::fs::File::from(
        rustix::fs::openat(&dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ApiError::io(format!("rootfs {}", rootfs.display()), e))?,
    )
    .metadata()
    .map_err(|e| ApiError::io(format!("rootfs {}", rootfs.display()), e))?;
    match overlay {
        Overlay::None => {
            sys::clone_tree(dir.as_fd(), true).map_err(|e| ApiError::io(format!("open_tree {}", rootfs.display()), e))
        }
        Overlay::RootMemory { .. } | Overlay::AllMemory { .. } => {
            // Submounts are not visible through an overlay: the lower layer is the rootfs's
            // own filesystem.
            let lower = sys::clone_tree(dir.as_fd(), false)
                .map_err(|e| ApiError::io(format!("open_tree {}", rootfs.display()), e))?;
            scratch.overlay(lower.as_fd(), &meta)
        }
    }
}

/// Opens a bind source: an absolute path as given (symlinks followed, as runc does); a
/// relative one beneath the bundle, where no symlink or `..` may lead out.
fn open_source(bundle: Option<&OwnedFd>, bind: &BindMount, flags: OFlags) -> Result<OwnedFd, ApiError> {
    let source = &bind.source;
    let dest = &bind.destination;
    let res = if source.is_absolute() {
        rustix::fs::open(source, flags | OFlags::CLOEXEC, Mode::empty())
    } else {
        let bundle =
            bundle.ok_or_else(|| mount_err(dest, format!("source {source:?} is relative but there is no bundle")))?;
        rustix::fs::openat2(
            bundle,
            source,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    };
    res.map_err(|e| match e {
        rustix::io::Errno::NOENT => mount_err(dest, format!("bind source {} does not exist", source.display())),
        rustix::io::Errno::XDEV => {
            mount_err(dest, format!("bind source {} escapes the bundle through a symlink or '..'", source.display()))
        }
        other => mount_err(dest, format!("bind source {}: {other}", source.display())),
    })
}

fn open_bind(
    bundle: Option<&OwnedFd>,
    bind: &BindMount,
    overlay: Overlay,
    scratch: &mut Scratch,
    namespaces: &mut IdmapNamespaces,
) -> Result<OwnedFd, ApiError> {
    let dest = &bind.destination;
    let source = open_source(bundle, bind, OFlags::PATH)?;
    let stat = rustix::fs::fstat(&source).map_err(|e| mount_err(dest, e))?;
    let is_dir = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory;
    // In all-memory mode an idmapped bind's lower layer (or the file copied) is read through
    // an idmapped copy of the source, so the writable layer and the copies carry the owners
    // the container is to see (the overlay itself cannot be idmapped).
    let mapped_source = |namespaces: &mut IdmapNamespaces| -> Result<OwnedFd, ApiError> {
        let lower = sys::clone_tree(source.as_fd(), false).map_err(|e| mount_err(dest, format!("open_tree: {e}")))?;
        apply_idmap(&lower, bind, false, namespaces)?;
        Ok(lower)
    };
    let tree = match overlay {
        Overlay::AllMemory { .. } if is_dir => {
            let lower = mapped_source(namespaces)?;
            let meta = std::fs::File::from(
                rustix::fs::openat(&lower, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| mount_err(dest, e))?,
            )
            .metadata()
            .map_err(|e| mount_err(dest, e))?;
            scratch.overlay(lower.as_fd(), &meta)?
        }
        Overlay::AllMemory { .. }
            if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile =>
        {
            let mut file = std::fs::File::from(open_source(bundle, bind, OFlags::RDONLY)?);
            // The owner as the (idmapped) mount shows it: statx of the copy's O_PATH descriptor.
            let meta = match bind.idmap {
                Some(_) => std::fs::File::from(mapped_source(namespaces)?).metadata(),
                None => file.metadata(),
            }
            .map_err(|e| mount_err(dest, e))?;
            scratch.copy_file(&mut file, &meta)?
        }
        _ => {
            let tree = if bind.slave {
                sys::clone_tree_as_slave(source.as_fd(), bind.recursive)
            } else {
                sys::clone_tree(source.as_fd(), bind.recursive)
            }
            .map_err(|e| mount_err(dest, format!("open_tree: {e}")))?;
            apply_idmap(&tree, bind, bind.idmap.as_ref().is_some_and(|m| m.recursive), namespaces)?;
            tree
        }
    };
    // The plain options change the bind mount itself, as a remount of it would; with `rbind`
    // its submounts keep theirs (`ro` leaves them writable). The `r` forms change them all.
    if bind.attrs | bind.clear != 0 {
        sys::mount_setattr(tree.as_fd(), false, bind.attrs, bind.clear)
            .map_err(|e| mount_err(dest, format!("mount attributes: {e}")))?;
    }
    if bind.rec_attrs | bind.rec_clear != 0 {
        sys::mount_setattr(tree.as_fd(), true, bind.rec_attrs, bind.rec_clear)
            .map_err(|e| mount_err(dest, format!("recursive mount attributes: {e}")))?;
    }
    Ok(tree)
}

/// Sends a copy of each mount down its io socket, in order. (Copies are made here: a detached
/// mount can be cloned only by the process that made it.)
fn send_to_sandbox(io: &mut [FdSlot], mounts: &[OwnedFd], slaves: &[bool]) -> Result<(), ApiError> {
    if io.len() != mounts.len() {
        return Err(ApiError::new(ErrorKind::Protocol, format!("{} io sockets for {} mounts", io.len(), mounts.len())));
    }
    for ((slot, mount), slave) in io.iter_mut().zip(mounts).zip(slaves) {
        let socket = slot.take().ok_or_else(|| ApiError::new(ErrorKind::Protocol, "an io socket is missing"))?;
        let copy =
            if *slave { sys::clone_tree_as_slave(mount.as_fd(), true) } else { sys::clone_tree(mount.as_fd(), true) }
                .map_err(|e| ApiError::io("cloning a mount", e))?;
        let mut conn = Connection::new(UnixStream::from(socket), DEFAULT_MAX_FRAME);
        conn.send(&GoferMessage::Mount { mount: FdSlot::new(copy) })
            .map_err(|e| ApiError::new(ErrorKind::Sandbox, format!("handing a mount to the sandbox: {e}")))?;
    }
    Ok(())
}

/// Pivots into the container's tree, assembled from `mounts`: the rootfs with every bind
/// mount at its place.
fn assemble_view(s: &GoferSetup, mounts: Vec<OwnedFd>) -> Result<View, ApiError> {
    sys::pivot_into(mounts[0].as_fd()).map_err(|e| ApiError::io("pivoting into the container's tree", e))?;
    let root = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ApiError::io("open /", e))?;
    for (bind, mount) in s.binds.iter().zip(&mounts[1..]) {
        let dest = &bind.destination;
        let is_dir = rustix::fs::fstat(mount)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
            .map_err(|e| mount_err(dest, e))?;
        let target = sys::make_beneath(root.as_fd(), dest, if is_dir { Create::Dir } else { Create::File })
            .map_err(|e| mount_err(dest, format!("mount point: {e}")))?;
        sys::attach(mount.as_fd(), target.as_fd()).map_err(|e| mount_err(dest, format!("attach: {e}")))?;
    }
    // The container may not write to a read-only root, so neither may a copy into it.
    if s.readonly_root {
        sys::mount_setattr(root.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0)
            .map_err(|e| ApiError::io("making the root read-only", e))?;
    }
    Ok(View { root, unreachable: s.unreachable.clone() })
}
