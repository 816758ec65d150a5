//! paddockd, the supervisor daemon. (Its command-line client, `ctl`, is the `paddock-ctl`
//! crate: it links the wire protocol and not the actors.)
//!
//! - [`daemon`]: paddockd's start-up (lock, pid file, socket, signals) and shutdown.
//! - [`server`]: the wire server that turns frames into the actors' messages.
//! - [`config`]: paddockd's TOML configuration.
//! - [`systemd`]: socket activation and `sd_notify` (readiness, status, watchdog).
//! - [`logging`]: stderr logging, journald-friendly under systemd, reloadable.
//! - [`own_cgroup`]: an autostarted paddockd's own cgroup, away from its caller's.
//! - [`stateroot`]: refusing a state root nested in (or around) a live one. (Making one
//!   private is `sys::trust::prepare_state_root`, which ctl calls too; the names of its
//!   files are `wire::stateroot`'s.)

pub mod config;
pub mod daemon;
pub mod logging;
pub mod own_cgroup;
pub mod server;
pub mod stateroot;
pub mod systemd;
