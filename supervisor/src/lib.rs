//! paddockd and ctl.
//!
//! - [`daemon`]: paddockd's start-up (lock, pid file, socket, signals) and shutdown.
//! - [`server`]: the wire server that turns frames into the actors' messages.
//! - [`config`]: paddockd's TOML configuration.
//! - [`cli`]: `ctl`, the command-line client, which speaks runc's command line.
//! - [`autostart`]: how `ctl` starts a paddockd when none answers.
//! - [`systemd`]: socket activation and `sd_notify` (readiness, status, watchdog).
//! - [`logging`]: stderr logging, journald-friendly under systemd, reloadable.
//! - [`own_cgroup`]: an autostarted paddockd's own cgroup, away from its caller's.
//! - [`stateroot`]: making and checking a state root (private, not nested in another).

pub mod autostart;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod logging;
pub mod own_cgroup;
pub mod server;
pub mod signals;
pub mod stateroot;
pub mod systemd;

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
