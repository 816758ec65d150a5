//! What a gofer hands to its sandbox over their io socket.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::fds::{CarriesFds, FdSlot};

/// A message from the gofer to the sandbox.
#[derive(Debug, Serialize, Deserialize)]
pub enum GoferMessage {
    /// The container's root filesystem, as a detached mount (from `open_tree` or `fsmount`)
    /// that the sandbox attaches with `move_mount`.
    Rootfs {
        /// The detached mount.
        mount: FdSlot,
    },
    /// The gofer could not prepare the filesystem.
    Failed(ApiError),
}

impl CarriesFds for GoferMessage {
    fn fd_slots_mut(&mut self) -> Vec<&mut FdSlot> {
        match self {
            GoferMessage::Rootfs { mount } => vec![mount],
            GoferMessage::Failed(_) => Vec::new(),
        }
    }
    fn fd_slots(&self) -> Vec<&FdSlot> {
        match self {
            GoferMessage::Rootfs { mount } => vec![mount],
            GoferMessage::Failed(_) => Vec::new(),
        }
    }
}
