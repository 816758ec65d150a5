//! What the actor system needs to know about its host.

use std::path::{Path, PathBuf};

use wire::{ApiError, ErrorKind};

/// The sandbox binary's file name.
pub const SANDBOX_BINARY: &str = "paddock-sandbox";
/// The gofer binary's file name.
pub const GOFER_BINARY: &str = "paddock-gofer";

/// Settings of one actor system (one state root).
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The state root: container directories, sockets.
    pub root: PathBuf,
    /// Where `paddock-sandbox` and `paddock-gofer` are. `None`: beside the running
    /// executable, or in its parent directory (which covers `target/*/examples/` and
    /// `target/*/deps/` during development), or in `../libexec/paddock/` (an installation).
    pub helper_dir: Option<PathBuf>,
    /// The largest frame accepted on any connection.
    pub max_frame: usize,
    /// The overlay of containers whose spec does not choose one (annotation
    /// `dev.paddock.overlay`).
    pub default_overlay: wire::gofer_proto::Overlay,
    /// The intensity limit of every container's restart policy.
    pub restart_limits: crate::restart::RestartLimits,
    /// The event bus's buffer sizes.
    pub event_limits: crate::events::EventLimits,
    /// How many gofers and how many sandboxes to keep started ahead of need (see
    /// [`crate::pool`]); 0: none, every create starts its own. An embedding program that
    /// sets it stops the pool with [`crate::supervisor::ClosePool`] before it exits.
    pub pool_size: usize,
}

impl SupervisorConfig {
    /// A configuration for `root` with every other setting at its default.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            helper_dir: None,
            max_frame: wire::frame::DEFAULT_MAX_FRAME,
            default_overlay: wire::gofer_proto::Overlay::None,
            restart_limits: Default::default(),
            event_limits: Default::default(),
            pool_size: 0,
        }
    }

    /// The path of a helper binary, or a clear error saying where it was looked for.
    pub fn helper(&self, name: &str) -> Result<PathBuf, ApiError> {
        let candidates: Vec<PathBuf> = match &self.helper_dir {
            Some(dir) => vec![dir.join(name)],
            None => {
                let exe = std::env::current_exe().map_err(|e| ApiError::io("finding the running executable", e))?;
                let dir = exe.parent().unwrap_or(Path::new("/"));
                let mut c = vec![dir.join(name)];
                if let Some(parent) = dir.parent() {
                    c.push(parent.join(name));
                    // An installed paddockd: <prefix>/bin/paddockd, <prefix>/libexec/paddock/.
                    c.push(parent.join("libexec/paddock").join(name));
                }
                c
            }
        };
        candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
            let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            ApiError::new(
                ErrorKind::Internal,
                format!("cannot find {name} (looked at {}); set helper_dir in the configuration", looked.join(", ")),
            )
        })
    }
}
