//! The sandbox's own root, an empty tmpfs: after [`isolate`], the sandbox process cannot see
//! the host's files at all. The containers' mounts are staged by the spawner, in a mount
//! namespace and tmpfs of its own ([`staging_area`]), which the sandbox never sees either.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use wire::ApiError;

/// Where the containers' root filesystems are attached, one directory per container.
pub const CONTAINERS_DIR: &str = "/containers";

/// A step of the sandbox's (or its spawner's) own setup that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct SetupError {
    /// What was being done.
    pub step: &'static str,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SetupError {
    /// For `map_err`: the failure of `step`.
    pub fn at<E: Into<Box<dyn std::error::Error + Send + Sync>>>(step: &'static str) -> impl FnOnce(E) -> Self {
        move |e| SetupError { step, source: e.into() }
    }
}

/// Replaces the sandbox's view of the host with a private, empty tmpfs root.
pub fn isolate() -> Result<(), SetupError> {
    let root = new_root("paddock-sandbox").map_err(SetupError::at("creating the sandbox root"))?;
    sys::pivot_into(root.as_fd()).map_err(SetupError::at("pivoting into the sandbox root"))
}

fn new_root(name: &str) -> std::io::Result<OwnedFd> {
    sys::new_mount(
        "tmpfs",
        Some(name),
        &["mode=0700".to_string()],
        libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC,
    )
}

/// The spawner's own view: a mount namespace of its own, rooted in a tmpfs of its own that
/// holds [`CONTAINERS_DIR`], where it stages the containers' mounts. The sandbox's root stays
/// empty.
pub fn staging_area() -> Result<(), SetupError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(SetupError::at("unshare mount namespace"))?;
    let root = new_root("paddock-staging").map_err(SetupError::at("creating the staging area"))?;
    rustix::fs::mkdirat(root.as_fd(), &CONTAINERS_DIR[1..], Mode::from_raw_mode(0o700))
        .map_err(SetupError::at("making /containers in the staging area"))?;
    sys::pivot_into(root.as_fd()).map_err(SetupError::at("pivoting into the staging area"))
}

/// A container's mounts as the sandbox holds them: attached in the sandbox's own tree, from
/// where the container's init moves them into place and a restarted gofer gets copies.
#[derive(Debug, Clone)]
pub struct Staged {
    /// `/containers/<dir>`.
    pub dir: PathBuf,
    /// Where the root filesystem is attached.
    pub rootfs: PathBuf,
    /// Where each bind mount is attached, in spec order.
    pub binds: Vec<PathBuf>,
}

impl Staged {
    /// Every staged mount: the rootfs first, then the bind mounts.
    pub fn all(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.rootfs).chain(self.binds.iter())
    }
}

/// Attaches a container's mounts (detached mounts from its gofer: the rootfs, then the bind
/// mounts) under `/containers/<dir>`.
pub fn stage(id: &str, mounts: Vec<OwnedFd>) -> Result<Staged, ApiError> {
    let dir = Path::new(CONTAINERS_DIR).join(wire::ids::dir_name(id));
    let staged = Staged {
        rootfs: dir.join("rootfs"),
        binds: (1..mounts.len()).map(|i| dir.join("binds").join(i.to_string())).collect(),
        dir: dir.clone(),
    };
    let result = (|| {
        for d in [&dir, &dir.join("binds")] {
            std::fs::create_dir(d).map_err(|e| ApiError::io(format!("mkdir {}", d.display()), e))?;
        }
        for (mount, place) in mounts.iter().zip(staged.all()) {
            let is_dir = rustix::fs::fstat(mount)
                .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
                .map_err(|e| ApiError::io("fstat", e))?;
            if is_dir { std::fs::create_dir(place) } else { std::fs::File::create(place).map(drop) }
                .map_err(|e| ApiError::io(format!("creating {}", place.display()), e))?;
            let target = rustix::fs::open(place, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ApiError::io(format!("open {}", place.display()), e))?;
            sys::attach(mount.as_fd(), target.as_fd())
                .map_err(|e| ApiError::io(format!("attaching {}", place.display()), e))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(staged),
        Err(e) => {
            unstage(&staged);
            Err(e)
        }
    }
}

/// Detaches a container's staged mounts and removes their places.
pub fn unstage(staged: &Staged) {
    for place in staged.all() {
        let _ = nix::mount::umount2(place, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = sys::remove_dir_within_mount(&staged.dir);
}

/// Fresh detached copies of a container's staged mounts (the rootfs first), for a restarted
/// gofer.
pub fn copies(staged: &Staged) -> Result<Vec<OwnedFd>, ApiError> {
    staged
        .all()
        .map(|place| {
            let fd = rustix::fs::open(place, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ApiError::io(format!("open {}", place.display()), e))?;
            sys::clone_tree(fd.as_fd(), true).map_err(|e| ApiError::io(format!("copying {}", place.display()), e))
        })
        .collect()
}
