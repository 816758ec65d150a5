//! The files of a state root that ctl and paddockd both know by name: where a client finds
//! the daemon (its socket), how it tells that one is alive (its lock and pid file), and what
//! ctl uses when it starts one (the start lock, the log).
//!
//! They are here, with the client library, because every program that talks to paddockd
//! needs the first of them, and ctl needs them all without linking the daemon.

/// The daemon's socket in a state root.
pub const SOCKET_NAME: &str = "paddockd.sock";
/// The daemon's pid file in a state root.
pub const PID_FILE: &str = "paddockd.pid";
/// The lock a daemon holds for its whole life, so only one serves a root.
pub const LOCK_FILE: &str = "paddockd.lock";
/// The lock `ctl` holds while starting a daemon, so concurrent calls start only one.
pub const START_LOCK_FILE: &str = "paddockd.start.lock";
/// Where an auto-started daemon writes its log.
pub const LOG_FILE: &str = "paddockd.log";
/// The default state root.
pub const DEFAULT_ROOT: &str = "/run/paddock";
