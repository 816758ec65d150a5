//! paddock's system calls, behind small safe wrappers.
//!
//! The sandbox and the gofer both build mount trees from file descriptors and resolve paths
//! beneath a container's root; these are the shared pieces. Where neither nix nor rustix
//! wraps a call yet (`mount_setattr`), it is made here, once.

pub mod hook;
pub mod mount;
pub mod path;

pub use mount::{attach, clone_tree, mount_setattr, new_mount, pivot_into, set_propagation};
pub use path::{make_beneath, open_beneath, Create};
