//! Writing files so that a crash at any instant leaves the old content or the new one, never
//! a mixture or nothing: a temporary file beside the target, written and flushed, renamed over
//! the target, and the directory flushed so that the rename itself survives a crash.
//!
//! The rename alone is what makes a crash of a *process* safe; the flushes (`fsync`) are for a
//! crash of the *machine*. On a file system in memory (tmpfs, ramfs: a host's /run) nothing
//! survives the machine anyway, and an fsync there is a no-op that still costs its system
//! calls: [`Durability::of`] tells the two apart, once per directory, and the writes here
//! flush only where it buys something.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A step of [`write_atomically`] that failed, with the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{step} {}: {source}", path.display())]
pub struct WriteError {
    /// What was being done: `creating`, `writing`, `fsync`, `renaming over`.
    pub step: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: std::io::Error,
}

/// Whether what is written under a directory must be flushed to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On storage: files and directories are fsynced.
    Flush,
    /// In memory (tmpfs, ramfs): nothing outlives the machine, so nothing is fsynced; renames
    /// still make each write atomic for any process that crashes.
    InMemory,
}

impl Durability {
    /// The durability writes under `dir` need, from the type of its file system (`statfs`);
    /// [`Durability::Flush`] when that cannot be told.
    pub fn of(dir: &Path) -> Self {
        // From <linux/magic.h>.
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        match rustix::fs::statfs(dir) {
            // f_type's integer type differs between targets.
            #[allow(clippy::unnecessary_cast)]
            Ok(fs) if matches!(fs.f_type as i64, TMPFS_MAGIC | RAMFS_MAGIC) => Durability::InMemory,
            _ => Durability::Flush,
        }
    }
}

/// The temporary file [`write_atomically`] writes before it renames it over `path`:
/// `<name>.tmp` beside it.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` atomically and durably (see the module), the file created with
/// `mode` (before the umask). Neither the temporary file nor `path` is followed if it is a
/// symbolic link. Two writers of one path must be serialized by the caller.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    write_atomically_with(path, bytes, mode, Durability::Flush)
}

/// [`write_atomically`], flushing the file and its directory only for [`Durability::Flush`].
pub fn write_atomically_with(path: &Path, bytes: &[u8], mode: u32, durability: Durability) -> Result<(), WriteError> {
    let tmp = temporary_path(path);
    fn fail<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WriteError + 'a {
        move |source| WriteError { step, path: path.to_path_buf(), source }
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(fail("creating", &tmp))?;
    file.write_all(bytes).map_err(fail("writing", &tmp))?;
    if durability == Durability::Flush {
        file.sync_all().map_err(fail("fsync", &tmp))?;
    }
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail("renaming over", path))?;
    sync_dir_with(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")), durability)
}

/// Flushes directory `dir`, so that the entries just made, renamed or removed in it survive a
/// crash.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    sync_dir_with(dir, Durability::Flush)
}

/// [`sync_dir`] for [`Durability::Flush`]; nothing for [`Durability::InMemory`].
pub fn sync_dir_with(dir: &Path, durability: Durability) -> Result<(), WriteError> {
    if durability == Durability::InMemory {
        return Ok(());
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| WriteError {
        step: "fsync",
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomically(&path, b"one", 0o600).unwrap();
        write_atomically(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!temporary_path(&path).exists());
        assert_eq!(temporary_path(&path), dir.path().join("f.json.tmp"));
    }

    #[test]
    // f_type's integer type differs between targets.
    #[allow(clippy::unnecessary_cast)]
    fn memory_file_systems_are_told_from_storage() {
        // /dev/shm is a tmpfs wherever these tests run; the crate's own directory is not.
        if std::path::Path::new("/dev/shm").is_dir() {
            assert_eq!(Durability::of(Path::new("/dev/shm")), Durability::InMemory);
        }
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        if rustix::fs::statfs(here).is_ok_and(|fs| fs.f_type as i64 != 0x0102_1994) {
            assert_eq!(Durability::of(here), Durability::Flush);
        }
        assert_eq!(Durability::of(Path::new("/nonexistent/paddock")), Durability::Flush);
    }

    #[test]
    fn an_unflushed_write_is_still_whole_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomically_with(&path, b"one", 0o600, Durability::InMemory).unwrap();
        write_atomically_with(&path, b"two", 0o600, Durability::InMemory).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn never_writes_through_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let elsewhere = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, temporary_path(&path)).unwrap();
        let err = write_atomically(&path, b"x", 0o600).unwrap_err();
        assert_eq!(err.step, "creating");
        assert!(!elsewhere.exists() && !path.exists());
    }
}
