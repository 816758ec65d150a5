//! Whether a directory can be trusted with paddock's state: nobody but its owner (root, or
//! the user paddock runs as) can have put anything in it, or swap it for something else.
//!
//! A state root made by someone else is a way in: its owner could put a symlink where the
//! log goes (paddockd would append to whatever it names), or replace the socket with a
//! listener of their own (ctl would send it the caller's spec and stdio). So paddockd and ctl
//! check the root, and every directory above it, before they create or open anything there,
//! as OpenSSH's `StrictModes` checks a user's files.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why a directory is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// It (or a directory above it) belongs to someone else, or others may write to it.
    #[error(
        "{path} is owned by uid {uid} with mode {mode:04o}: paddock keeps its state only where no one but \
         root (or uid {me}) can write{what}; remove it or choose another --root"
    )]
    Writable {
        /// The directory at fault.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
        /// The uid paddock runs as.
        me: u32,
        /// ", as in a directory above the state root" when the fault is above it.
        what: &'static str,
    },
    /// It is not a directory.
    #[error("{path} is not a directory")]
    NotDirectory {
        /// The path.
        path: PathBuf,
    },
    /// It cannot be examined.
    #[error("examining {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why a state root could not be made ready.
///
/// An I/O failure is this error's source, so a chain printer (anyhow's `{:#}`) prints it
/// once, after the path; a refusal is part of the message itself.
#[derive(Debug, thiserror::Error)]
pub enum StateRootError {
    /// It, or a directory above it, could not be created.
    #[error("creating the state root {path}")]
    Create {
        /// The state root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Its path could not be resolved.
    #[error("resolving the state root {path}")]
    Resolve {
        /// The state root.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not trusted.
    #[error("state root: {0}")]
    Untrusted(Untrusted),
}

/// Creates the state root `root` (mode 0700, parents as needed) if it is missing, resolves
/// it, and checks it with [`check_private_dir`]. Returns the resolved path. Nothing is
/// created inside it. Both paddockd (before it serves a root) and ctl (before it starts a
/// paddockd for one) call this.
pub fn prepare_state_root(root: &Path) -> Result<PathBuf, StateRootError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|source| StateRootError::Create { path: root.to_path_buf(), source })?;
    let resolved =
        std::fs::canonicalize(root).map_err(|source| StateRootError::Resolve { path: root.to_path_buf(), source })?;
    check_private_dir(&resolved).map_err(StateRootError::Untrusted)?;
    Ok(resolved)
}

/// Checks that `dir` (an absolute path, symlinks resolved) and every directory above it are
/// owned by root or by us, and that no one else can write to `dir`; a directory above it may
/// be writable by others only if it is sticky (`/tmp`), where no one can rename or remove
/// what they do not own.
pub fn check_private_dir(dir: &Path) -> Result<(), Untrusted> {
    let me = rustix::process::geteuid().as_raw();
    let meta = std::fs::symlink_metadata(dir).map_err(|source| Untrusted::Io { path: dir.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(Untrusted::NotDirectory { path: dir.to_path_buf() });
    }
    let trusted_owner = |uid: u32| uid == 0 || uid == me;
    if !trusted_owner(meta.uid()) || meta.mode() & 0o022 != 0 {
        return Err(Untrusted::Writable {
            path: dir.to_path_buf(),
            uid: meta.uid(),
            mode: meta.mode() & 0o7777,
            me,
            what: "",
        });
    }
    for above in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(above).map_err(|source| Untrusted::Io { path: above.to_path_buf(), source })?;
        let sticky = meta.mode() & 0o1000 != 0;
        if !trusted_owner(meta.uid()) || (meta.mode() & 0o022 != 0 && !sticky) {
            return Err(Untrusted::Writable {
                path: above.to_path_buf(),
                uid: meta.uid(),
                mode: meta.mode() & 0o7777,
                me,
                what: ", as in a directory above the state root",
            });
        }
    }
    Ok(())
}

/// Opens (creating it, 0600) a lock file in a state root, refusing a symlink in its place: the
/// lock paddockd holds for its life and the one `ctl` holds while starting a paddockd.
pub fn open_lock_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_is_trusted_and_a_shared_one_is_not() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("root");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        check_private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("mode 0777"), "{err}");
        // Beneath a directory others can write to (and that is not sticky).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inner = dir.join("inner");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = check_private_dir(&inner).unwrap_err();
        assert!(err.to_string().contains("directory above"), "{err}");
        // Sticky like /tmp: fine.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        check_private_dir(&inner).unwrap();
        // Not a directory.
        let file = base.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(check_private_dir(&file), Err(Untrusted::NotDirectory { .. })));
    }

    #[test]
    fn a_state_root_is_made_private_and_resolved() {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let root = base.path().join("a/b");
        let resolved = prepare_state_root(&root).unwrap();
        assert_eq!(resolved, std::fs::canonicalize(&root).unwrap());
        assert_eq!(std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777, 0o700);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_state_root(&root).unwrap_err();
        assert!(matches!(err, StateRootError::Untrusted(Untrusted::Writable { .. })), "{err}");
        assert!(err.to_string().starts_with("state root: "), "{err}");
        let file = base.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = prepare_state_root(&file.join("root")).unwrap_err();
        assert!(matches!(err, StateRootError::Create { .. }), "{err}");
    }
}
