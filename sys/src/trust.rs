//! Whether a directory can be trusted with paddock's state: nobody but its owner (root, or
//! the user paddock runs as) can have put anything in it, or swap it for something else.
//!
//! A state root made by someone else is a way in: its owner could put a symlink where the
//! log goes (paddockd would append to whatever it names), or replace the socket with a
//! listener of their own (ctl would send it the caller's spec and stdio). So paddockd and ctl
//! check the root, and every directory above it, before they create or open anything there,
//! as OpenSSH's `StrictModes` checks a user's files.

use std::os::unix::fs::MetadataExt;
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
}
