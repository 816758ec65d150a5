//! paddock's wire protocol.
//!
//! Everything that crosses a process boundary in paddock goes through this crate:
//!
//! - [`frame`]: a frame is a `u32` little-endian length followed by a bincode 2 payload;
//!   frames larger than a configured maximum are refused before they are buffered.
//! - [`fds`]: file descriptors travel beside a frame as `SCM_RIGHTS`; a message marks where
//!   they belong with [`FdSlot`]s.
//! - [`conn`]: a blocking connection that sends and receives whole messages with their
//!   descriptors (paddockd's async one, on tokio, is `actors::async_conn`: this crate links
//!   no runtime, so neither do the sandbox and the gofer).
//! - [`handshake`]: the first exchange on every connection, carrying the protocol version.
//! - [`api`]: the supervisor's messages (create, start, state, list, kill, wait, delete). They
//!   are the actors' own messages (`actors::Api`), so a Rust program can send them to the
//!   supervisor actor with no socket in between.
//! - [`sandbox_proto`] and [`gofer_proto`]: what paddockd says to a sandbox process, and what a
//!   gofer hands to its sandbox.
//! - [`events`]: the event bus's records, as `ctl events` prints them.
//! - [`client`]: a blocking client of paddockd, used by `ctl` and available to any program;
//!   [`stateroot`]: the names of a state root's files (the daemon's socket among them).
//! - [`spec`]: the OCI spec as a frame carries it, and what ctl and paddockd both know of a
//!   spec: the embedded default, Docker's default seccomp profile, paddock's annotations.
//! - [`fuzzing`]: the decoders' entry points for the fuzzers.
//!
//! This crate depends on no other crate of paddock.

pub mod api;
pub mod autostart;
pub mod client;
pub mod conn;
pub mod error;
pub mod events;
pub mod fds;
pub mod frame;
pub mod fuzzing;
pub mod gofer_proto;
pub mod handshake;
pub mod ids;
pub mod mounts;
pub mod peers;
pub mod rpc;
pub mod sandbox_proto;
pub mod sockpath;
pub mod spec;
pub mod stateroot;

pub use api::{ContainerState, ExitStatus, GoferStatus, Status, Stdio};
pub use error::{ApiError, ErrorKind, Object, WireError};
pub use fds::FdSlot;
pub use spec::SpecJson;
