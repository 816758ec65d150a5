//! Container metadata on disk: `<root>/<id>/meta.json`, guarded by `<root>/<id>/meta.lock`.
//!
//! Every change is saved at once and atomically: a temporary file is written and fsynced,
//! renamed over `meta.json`, and the directory is fsynced (the fsyncs only where the state root
//! is on storage: on a tmpfs, a host's /run, nothing survives the machine anyway; see
//! [`sys::durable::Durability`]). A crash at any instant leaves the
//! old or the new file, never a torn one. A container's directory appears whole (made under a
//! reserved name and renamed into place) and disappears at once (renamed to a reserved name,
//! then deleted), so a directory under a container's name always holds its `meta.json`.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use wire::{ApiError, ContainerState, ErrorKind, ExitStatus, GoferStatus, Status};

/// The metadata file's name.
pub const META_FILE: &str = "meta.json";
/// The lock file's name.
pub const LOCK_FILE: &str = "meta.lock";
/// Where a container's directory is made before it is renamed into place.
const STAGING_PREFIX: &str = "paddockd.new.";
/// Where a container's directory goes before it is deleted.
const TRASH_PREFIX: &str = "paddockd.trash.";
/// The version of the metadata format written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// A process paddock started, identified so that a reused pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Its pid in paddockd's PID namespace.
    pub pid: i32,
    /// Its start time (clock ticks after boot, from `/proc/<pid>/stat`).
    pub start_time: u64,
}

/// Everything paddock keeps about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// The format version.
    pub format: u32,
    /// The container's id.
    pub id: String,
    /// The sandbox it runs in (its root container's id).
    pub sandbox_id: String,
    /// The bundle directory (empty for the embedded default).
    pub bundle: PathBuf,
    /// The root filesystem on the host.
    pub rootfs: PathBuf,
    /// The spec the container was created with.
    pub spec: Spec,
    /// Its status.
    pub status: Status,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Who created it.
    pub owner: String,
    /// The sandbox process, once started.
    pub sandbox: Option<ProcessRecord>,
    /// The gofer process, once started.
    pub gofer: Option<ProcessRecord>,
    /// The container's init process (host pid), while it exists.
    pub init: Option<ProcessRecord>,
    /// How the init ended, once it has.
    pub exit_status: Option<ExitStatus>,
    /// The sandbox disappeared without reporting the container's end.
    #[serde(default)]
    pub sandbox_lost: bool,
    /// How often the gofer was restarted.
    #[serde(default)]
    pub gofer_restarts: u32,
    /// The container's cgroup, relative to each hierarchy's root.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// The process its pid file names, when a detached create left a monitor there (see
    /// `ctl`'s `monitor-process`): the pid its state reports, so that the two agree.
    #[serde(default)]
    pub monitor: Option<ProcessRecord>,
    /// For a container without a mount namespace, the id of the mount its root filesystem's
    /// path was on at create: the tree its init attached on top is detached at delete, and
    /// never that one.
    #[serde(default)]
    pub host_root_mount: Option<u64>,
    /// What its restart policy did.
    #[serde(default)]
    pub restart: RestartRecord,
}

/// What a container's restart policy did; kept so that a restarted paddockd carries on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RestartRecord {
    /// How often the container was restarted.
    pub count: u32,
    /// How its process last exited.
    pub last_exit: Option<ExitStatus>,
    /// A user stopped it (kill of its init or of all its processes): no policy restarts it.
    pub stopped_by_user: bool,
    /// A restart is scheduled (a paddockd that starts finds it and schedules it again).
    pub pending: bool,
    /// The policy gave up, and why.
    pub gave_up: Option<String>,
}

impl Meta {
    /// Whether it has processes (it is created, running or paused).
    fn live(&self) -> bool {
        matches!(self.status, Status::Created | Status::Running | Status::Paused)
    }

    /// The process whose namespaces are the container's: its init, or for a subcontainer that
    /// is created but not started, which has no process of its own yet, its sandbox (as runsc
    /// reports).
    fn namespaces_process(&self) -> Option<ProcessRecord> {
        self.init.or(self.sandbox)
    }

    /// Whether this is its sandbox's root container (the one the sandbox was made for).
    pub fn is_root(&self) -> bool {
        self.id == self.sandbox_id
    }
}

/// Whether the process `record` describes still runs (not another with its pid).
pub(crate) fn alive(record: &ProcessRecord) -> bool {
    crate::procfs::start_time(record.pid).is_ok_and(|t| t == record.start_time)
}

impl Meta {
    /// The container's state as the API reports it, with its gofer's status.
    pub fn state(&self, gofer: GoferStatus) -> ContainerState {
        ContainerState {
            id: self.id.clone(),
            status: self.status,
            // The pid file's process while it stands for the container (what runc's state and
            // pid file both name), else the process in its namespaces.
            pid: self.live().then(|| self.monitor.filter(alive).or(self.namespaces_process()).map(|p| p.pid)).flatten(),
            init_pid: self.live().then(|| self.namespaces_process().map(|p| p.pid)).flatten(),
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.spec.annotations().clone().unwrap_or_default().into_iter().collect(),
            sandbox_id: self.sandbox_id.clone(),
            exit_status: self.exit_status,
            gofer,
            gofer_restarts: self.gofer_restarts,
            restart: wire::api::RestartInfo {
                policy: crate::restart::RestartPolicy::of(&self.spec).unwrap_or_default().to_string(),
                count: self.restart.count,
                last_exit: self.restart.last_exit,
                gave_up: self.restart.gave_up.clone(),
            },
        }
    }
}

/// Reads and writes the metadata of every container under one state root.
#[derive(Debug, Clone)]
pub struct MetaStore {
    root: PathBuf,
    /// Whether writes under the root are fsynced: decided once, from its file system.
    durability: sys::durable::Durability,
}

fn io_err(what: impl std::fmt::Display, path: &Path, err: impl std::fmt::Display + 'static) -> ApiError {
    ApiError::io(format!("{what} {}", path.display()), err)
}

impl MetaStore {
    /// A store under `root` (which must exist). Whether its writes are fsynced is decided
    /// here, once, from the root's file system (see [`sys::durable::Durability::of`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let durability = sys::durable::Durability::of(&root);
        if durability == sys::durable::Durability::Flush {
            tracing::info!(
                root = %root.display(),
                "the state root is not on a tmpfs: every metadata write is fsynced (a tmpfs such as /run is faster)"
            );
        }
        Self { root, durability }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The container's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(wire::ids::dir_name(id))
    }

    /// Creates the container's directory and its first metadata. Fails with
    /// [`ErrorKind::AlreadyExists`] if a container of that id exists on disk.
    ///
    /// The directory is made whole under a reserved name (lock file and `meta.json` inside)
    /// and renamed into place, so a crash at any instant leaves either no directory of that
    /// id or a complete one; a reserved leftover is emptied by [`MetaStore::load_all`].
    pub fn create(&self, meta: &Meta) -> Result<(), ApiError> {
        let dir = self.dir(&meta.id);
        if dir.join(META_FILE).exists() {
            return Err(already_exists(&meta.id));
        }
        let staging = self.reserved_path(STAGING_PREFIX, &meta.id);
        std::fs::DirBuilder::new().mode(0o700).create(&staging).map_err(|e| io_err("mkdir", &staging, e))?;
        let staged = self.write_meta(&staging, meta).and_then(|()| self.move_into_place(&staging, &dir, &meta.id));
        if staged.is_err() {
            let _ = sys::remove_dir_within_mount(&staging);
        }
        staged
    }

    /// Renames a staged directory to the container's name. A directory of that name that
    /// holds no container is not paddock's (a crash never leaves one: see
    /// [`MetaStore::create`]) and is left alone: the create fails, naming it.
    fn move_into_place(&self, staging: &Path, dir: &Path, id: &str) -> Result<(), ApiError> {
        match std::fs::rename(staging, dir) {
            Ok(()) => sync_dir(&self.root, self.durability),
            // rename(2) replaces only an empty directory: a non-empty one is either a container
            // (someone else won the race) or something that is not paddock's.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY) | Some(libc::EEXIST)) => {
                if dir.join(META_FILE).exists() {
                    Err(already_exists(id))
                } else {
                    Err(ApiError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "container {}: {} exists and is not a container of paddock's; it is left alone",
                            wire::ids::show_id(id),
                            dir.display()
                        ),
                    ))
                }
            }
            Err(e) => Err(io_err("renaming into place", dir, e)),
        }
    }

    /// A path in the state root that [`MetaStore::load_all`] never takes for a container.
    fn reserved_path(&self, prefix: &str, id: &str) -> PathBuf {
        static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.root.join(format!("{prefix}{}.{}.{n}", wire::ids::dir_name(id), std::process::id()))
    }

    /// Takes a directory out of the container namespace at once (one rename, made durable)
    /// and then deletes it; a crash before the deletion leaves a reserved name that the next
    /// [`MetaStore::load_all`] empties.
    fn discard(&self, dir: &Path) -> Result<(), ApiError> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let trash = self.reserved_path(TRASH_PREFIX, &name);
        match std::fs::rename(dir, &trash) {
            Ok(()) => sync_dir(&self.root, self.durability)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("removing", dir, e)),
        }
        sys::remove_dir_within_mount(&trash).map_err(|e| io_err("removing", &trash, e))
    }

    fn lock_file(&self, dir: &Path) -> Result<fd_lock::RwLock<File>, ApiError> {
        let path = dir.join(LOCK_FILE);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map(fd_lock::RwLock::new)
            .map_err(|e| io_err("opening", &path, e))
    }

    /// Saves `meta` atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, meta: &Meta) -> Result<(), ApiError> {
        self.write_meta(&self.dir(&meta.id), meta)
    }

    fn write_meta(&self, dir: &Path, meta: &Meta) -> Result<(), ApiError> {
        let mut lock = self.lock_file(dir)?;
        let _guard = lock.write().map_err(|e| io_err("locking", &dir.join(LOCK_FILE), e))?;
        let json =
            serde_json::to_vec_pretty(meta).map_err(|e| ApiError::internal(format!("encoding metadata: {e}")))?;
        sys::durable::write_atomically_with(&dir.join(META_FILE), &json, 0o600, self.durability)
            .map_err(|e| io_err(e.step, &e.path, e.source))
    }

    /// Loads the metadata in a container directory.
    pub fn load_dir(&self, dir: &Path) -> Result<Meta, ApiError> {
        let lock = self.lock_file(dir)?;
        let _guard = lock.read().map_err(|e| io_err("locking", &dir.join(LOCK_FILE), e))?;
        let path = dir.join(META_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::NotFound } else { ErrorKind::Io };
            ApiError::io(format!("reading {}", path.display()), e).with_kind(kind)
        })?;
        serde_json::from_slice(&bytes).map_err(|e| io_err("parsing", &path, e))
    }

    /// Loads every container under the root. Only what paddock made is ever removed: the
    /// reserved leftovers of a create or delete that a crash cut short. A directory without
    /// `meta.json` is someone else's (another runtime's state, a nested state root such as
    /// containerd's `<root>/k8s.io`) and is left untouched (not even a lock file is made in
    /// it); it is reported, as is unreadable metadata, for a human to look at.
    pub fn load_all(&self) -> (Vec<Meta>, Vec<ApiError>) {
        let mut metas = Vec::new();
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) => return (metas, vec![io_err("listing", &self.root, e)]),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX) {
                // A create or delete that crashed half-way: never a container.
                if let Err(e) = sys::remove_dir_within_mount(&entry.path()) {
                    errors.push(io_err("removing leftovers", &entry.path(), e));
                }
                continue;
            }
            if name.starts_with(wire::ids::RESERVED_PREFIX) {
                continue;
            }
            let dir = entry.path();
            if !dir.join(META_FILE).exists() {
                errors.push(ApiError::new(
                    ErrorKind::NotFound,
                    format!("{} holds no container of paddock's (no {META_FILE}); left alone", dir.display()),
                ));
                continue;
            }
            match self.load_dir(&dir) {
                Ok(meta) => metas.push(meta),
                Err(e) => errors.push(e),
            }
        }
        (metas, errors)
    }

    /// Removes a container's metadata: its directory is renamed to a reserved name first (one
    /// durable step: the container is gone), then deleted.
    pub fn remove(&self, id: &str) -> Result<(), ApiError> {
        self.discard(&self.dir(id))
    }
}

fn already_exists(id: &str) -> ApiError {
    ApiError::new(ErrorKind::AlreadyExists, format!("container {} already exists", wire::ids::show_id(id)))
}

fn sync_dir(dir: &Path, durability: sys::durable::Durability) -> Result<(), ApiError> {
    sys::durable::sync_dir_with(dir, durability).map_err(|e| io_err(e.step, &e.path, e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str) -> Meta {
        Meta {
            format: FORMAT_VERSION,
            id: id.into(),
            sandbox_id: id.into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            spec: Spec::default(),
            status: Status::Creating,
            created: "2026-01-01T00:00:00Z".into(),
            owner: String::new(),
            sandbox: Some(ProcessRecord { pid: 10, start_time: 99 }),
            gofer: None,
            init: None,
            exit_status: None,
            sandbox_lost: false,
            gofer_restarts: 0,
            restart: Default::default(),
            cgroup: None,
            monitor: None,
            host_root_mount: None,
        }
    }

    #[test]
    fn create_save_load_remove() {
        let root = tempfile::tempdir().unwrap();
        let store = MetaStore::new(root.path());
        let mut m = meta("c1");
        store.create(&m).unwrap();
        assert_eq!(store.create(&m).unwrap_err().kind, ErrorKind::AlreadyExists);
        m.status = Status::Stopped;
        m.exit_status = Some(ExitStatus::Exited(3));
        store.save(&m).unwrap();
        assert_eq!(store.load_dir(&store.dir("c1")).unwrap(), m);
        assert!(!sys::durable::temporary_path(&store.dir("c1").join(META_FILE)).exists());
        let (all, errs) = store.load_all();
        assert_eq!((all.len(), errs.len()), (1, 0));
        store.remove("c1").unwrap();
        assert!(!store.dir("c1").exists());
        store.remove("c1").unwrap();
    }

    #[test]
    fn what_paddock_did_not_make_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let store = MetaStore::new(root.path());
        // Another runtime's state, or a nested state root (containerd's <root>/k8s.io), with
        // files of its own.
        let foreign = root.path().join("k8s.io");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("paddockd.sock"), b"").unwrap();
        std::fs::create_dir(foreign.join("c1")).unwrap();
        // paddockd's own files are skipped.
        std::fs::write(root.path().join("paddockd.pid"), b"1").unwrap();
        let (all, errs) = store.load_all();
        assert!(all.is_empty());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains("left alone"), "{}", errs[0].message);
        let mut left: Vec<String> =
            std::fs::read_dir(&foreign).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, ["c1", "paddockd.sock"], "nothing made, nothing removed");
        // A create whose name is taken by it fails and leaves it as it was.
        let err = store.create(&meta("k8s.io")).unwrap_err();
        assert!(err.message.contains("not a container of paddock's"), "{}", err.message);
        assert!(foreign.join("c1").is_dir());
        assert_eq!(store.load_all().0.len(), 0);
    }

    #[test]
    fn a_create_or_delete_cut_short_leaves_only_reserved_names() {
        let root = tempfile::tempdir().unwrap();
        let store = MetaStore::new(root.path());
        // A crash before the rename into place, and one after the rename to the trash.
        for prefix in [STAGING_PREFIX, TRASH_PREFIX] {
            let dir = store.reserved_path(prefix, "cut");
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(dir.join(META_FILE), b"{}").unwrap();
        }
        store.create(&meta("kept")).unwrap();
        store.remove("kept").unwrap();
        store.create(&meta("kept")).unwrap();
        let names = || -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(root.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names().len(), 3, "{:?}", names());
        let (all, errs) = store.load_all();
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(all.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["kept"]);
        assert_eq!(names(), ["kept"]);
    }

    #[test]
    fn corrupt_metadata_is_reported_not_removed() {
        let root = tempfile::tempdir().unwrap();
        let store = MetaStore::new(root.path());
        store.create(&meta("bad")).unwrap();
        std::fs::write(store.dir("bad").join(META_FILE), b"{ not json").unwrap();
        let (all, errs) = store.load_all();
        assert!(all.is_empty());
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().contains("meta.json"), "{}", errs[0]);
        assert!(store.dir("bad").exists());
    }

    #[test]
    fn long_ids_are_stored_under_short_dirs() {
        let root = tempfile::tempdir().unwrap();
        let store = MetaStore::new(root.path());
        let id = "x".repeat(1024);
        store.create(&meta(&id)).unwrap();
        assert_eq!(store.load_all().0[0].id, id);
    }
}
