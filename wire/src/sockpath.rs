//! Unix socket paths of any length.
//!
//! `sockaddr_un` holds at most 107 bytes of path, and state roots plus long container ids
//! easily exceed that. A longer path is reached through the parent directory's descriptor:
//! `/proc/self/fd/N/<name>` is short whatever N's directory is. No crate does this for us.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Paths up to this length are used as they are.
const DIRECT_LIMIT: usize = 100;

fn via_parent<T>(path: &Path, op: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    if path.as_os_str().len() <= DIRECT_LIMIT {
        return op(path);
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return op(path);
    };
    let dir =
        File::options().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC).open(parent)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    op(&short)
}

/// Connects to the stream socket at `path`.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    via_parent(path, |p| UnixStream::connect(p))
}

/// Binds a listening stream socket at `path`.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    via_parent(path, |p| UnixListener::bind(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_bind_and_connect() {
        let base = std::env::temp_dir().join(format!("paddock-sockpath-{}", std::process::id()));
        let deep = base.join("d".repeat(120));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("s.sock");
        assert!(path.as_os_str().len() > 108);
        let listener = bind(&path).unwrap();
        let _client = connect(&path).unwrap();
        let (_server, _) = listener.accept().unwrap();
        assert!(path.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
