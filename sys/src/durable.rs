//! Writing files so that a crash at any instant leaves the old content or the new one, never
//! a mixture or nothing: a temporary file beside the target, written and flushed, renamed over
//! the target, and the directory flushed so that the rename itself survives a crash.

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
    file.sync_all().map_err(fail("fsync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail("renaming over", path))?;
    sync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Flushes directory `dir`, so that the entries just made, renamed or removed in it survive a
/// crash.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
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
