//! A FIFO gate that holds an OCI hook (one that `read`s from it) until the test lets it go:
//! how tests keep a create or start in the middle of its hooks for as long as they need.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{command_timeout, eventually};

/// A FIFO a hook blocks on (`read` from it) until the test writes a line.
pub struct Gate {
    path: PathBuf,
    writer: Option<std::fs::File>,
}

impl Gate {
    /// Makes the FIFO `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        Self { path, writer: None }
    }

    /// Waits until the hook holds the gate open for reading (opening a FIFO for writing
    /// without blocking succeeds only once it has a reader).
    pub fn wait_for_hook(&mut self) {
        let opened = eventually(command_timeout(), || {
            match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&self.path) {
                Ok(f) => {
                    self.writer = Some(f);
                    true
                }
                Err(_) => false,
            }
        });
        assert!(opened, "the hook never opened {}", self.path.display());
    }

    /// Lets the hook finish.
    pub fn open(&mut self) {
        use std::io::Write;
        let mut writer = self.writer.take().expect("the hook is waiting");
        writer.write_all(b"go\n").expect("writing to the gate");
    }
}

/// Lets a hook that is still waiting go when the test fails, so no create is left hanging.
impl Drop for Gate {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.open();
        }
    }
}

impl Gate {
    /// The FIFO's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
