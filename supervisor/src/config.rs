//! paddockd's configuration: one TOML file, every key optional; paddockd runs with no file at
//! all. `paddockd --config FILE` reads it; SIGHUP reads it again (keys marked "reloadable"
//! take effect at once, for containers created from then on; the others need a restart).
//!
//! ```toml
//! # The state root: container directories and paddockd's socket. Default: /run/paddock.
//! root = "/run/paddock"
//! # Where paddock-sandbox and paddock-gofer are. Default: beside paddockd.
//! helper_dir = "/usr/local/libexec/paddock"
//! # The largest frame accepted on the socket, in bytes (4096 to 1 GiB). Default: 16 MiB.
//! max_frame = 16777216
//! # Log filter (tracing's env-filter syntax); RUST_LOG overrides it. Reloadable.
//! # Default: "info".
//! log = "info"
//! # Where containers write when their spec does not say (annotation dev.paddock.overlay):
//! # "none" (to the host's files), "root:memory" (the rootfs under a tmpfs overlay) or
//! # "all:memory" (the rootfs and every bind mount), optionally ":size=SIZE". Reloadable.
//! # Default: "none".
//! overlay = "none"
//! # What SIGTERM does to the containers: "leave" them running (a new paddockd takes them
//! # over) or "stop" them (SIGTERM, then SIGKILL after stop_timeout). Reloadable.
//! # Default: "leave".
//! shutdown = "leave"
//! # Seconds a container gets to exit after SIGTERM when paddockd stops them. Reloadable.
//! # Default: 10.
//! stop_timeout = 10
//! # Seconds requests in flight get to finish when paddockd stops (waits and event streams
//! # are ended at once, with an error saying paddockd is going away). Reloadable. Default: 30.
//! drain_timeout = 30
//! # A restart policy gives up after more than restart_intensity restarts within
//! # restart_period seconds (an OTP supervisor's intensity). Reloadable. Defaults: 5, 60.
//! restart_intensity = 5
//! restart_period = 60
//! # Events kept per container for `ctl events` (until it is deleted). Default: 256.
//! event_history = 256
//! # Events queued for one `ctl events --follow` before it starts losing them (it is then
//! # told how many, in a "lagged" event). Default: 1024.
//! event_queue = 1024
//! # What one client may hold: connections open at once (more are refused with a reason),
//! # requests in flight per connection (with all taken, nothing more is read from it), seconds
//! # a connection with nothing in flight may stay silent (0: forever), seconds a frame that
//! # began may take to arrive whole (and a reply to be taken). Defaults: 1024, 128, 60, 10.
//! max_connections = 1024
//! max_requests = 128
//! connection_idle_timeout = 60
//! frame_timeout = 10
//! # Seconds after which a paddockd with no container and no client exits (0: never). The
//! # next ctl starts it again. Default: 30 for a paddockd that ctl started, 0 (never) for one
//! # started by hand or by systemd.
//! idle_exit = 0
//! # Gofers and sandboxes kept started ahead of need, so that a create takes a ready pair
//! # instead of starting one (0: none). Costs about 1 MiB and 3 processes per pair while
//! # idle. Needs a restart. Default: 2 (the pool refills only once paddockd is quiet, so the
//! # second pair serves a create that follows another closely).
//! pool_size = 2
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use actors::events::EventLimits;
use actors::restart::RestartLimits;
use serde::Deserialize;

/// The helper pool's size when the configuration gives none: two pairs, because the pool
/// refills only once paddockd has been quiet a moment (`actors::supervisor`'s refill rule), and
/// a create that closely follows another then still finds a pair (a `run` right after another
/// measured 8 ms with two, 16 ms with one).
pub const DEFAULT_POOL_SIZE: usize = 2;

/// What SIGTERM does to the containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownMode {
    /// Leave them running.
    #[default]
    Leave,
    /// Stop them.
    Stop,
}

/// The configuration file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// The state root.
    pub root: Option<PathBuf>,
    /// Where the helper binaries are.
    pub helper_dir: Option<PathBuf>,
    /// The largest frame accepted.
    pub max_frame: Option<usize>,
    /// The log filter.
    pub log: Option<String>,
    /// The default overlay.
    pub overlay: Option<String>,
    /// What SIGTERM does to the containers.
    pub shutdown: Option<ShutdownMode>,
    /// Seconds a container gets after SIGTERM.
    pub stop_timeout: Option<u64>,
    /// Seconds requests in flight get to finish.
    pub drain_timeout: Option<u64>,
    /// Restarts allowed within the period.
    pub restart_intensity: Option<usize>,
    /// The intensity period, in seconds.
    pub restart_period: Option<u64>,
    /// Events kept per container.
    pub event_history: Option<usize>,
    /// Events queued per follower.
    pub event_queue: Option<usize>,
    /// Seconds of having nothing to do before exiting (0: never).
    pub idle_exit: Option<u64>,
    /// Connections open at once.
    pub max_connections: Option<usize>,
    /// Requests in flight per connection.
    pub max_requests: Option<usize>,
    /// Seconds an idle connection stays open (0: forever).
    pub connection_idle_timeout: Option<u64>,
    /// Seconds for a frame to arrive whole.
    pub frame_timeout: Option<u64>,
    /// Helpers kept started ahead of need.
    pub pool_size: Option<usize>,
}

impl DaemonConfig {
    /// Reads a configuration file; a clear error names the file and the problem.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let config: Self = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.check().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if let Some(max) = self.max_frame {
            if !(4096..=wire::frame::HARD_MAX_FRAME).contains(&max) {
                anyhow::bail!("max_frame {max} is outside 4096..={}", wire::frame::HARD_MAX_FRAME);
            }
        }
        if let Some(overlay) = &self.overlay {
            actors::spec::parse_overlay(overlay)?;
        }
        if let Some(log) = &self.log {
            tracing_subscriber::EnvFilter::try_new(log).map_err(|e| anyhow::anyhow!("log {log:?}: {e}"))?;
        }
        for (key, zero) in [
            ("max_connections", self.max_connections == Some(0)),
            ("max_requests", self.max_requests == Some(0)),
            ("frame_timeout", self.frame_timeout == Some(0)),
            ("restart_intensity", self.restart_intensity == Some(0)),
            ("restart_period", self.restart_period == Some(0)),
            ("event_history", self.event_history == Some(0)),
            ("event_queue", self.event_queue == Some(0)),
        ] {
            if zero {
                anyhow::bail!("{key} must be at least 1");
            }
        }
        Ok(())
    }

    /// The default overlay (checked at load).
    pub fn default_overlay(&self) -> wire::gofer_proto::Overlay {
        self.overlay.as_deref().and_then(|o| actors::spec::parse_overlay(o).ok()).unwrap_or_default()
    }

    /// What SIGTERM does to the containers.
    pub fn shutdown_mode(&self) -> ShutdownMode {
        self.shutdown.unwrap_or_default()
    }

    /// How long a container gets after SIGTERM.
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.stop_timeout.unwrap_or(10))
    }

    /// How long requests in flight get to finish.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout.unwrap_or(30))
    }

    /// The restart intensity limit.
    pub fn restart_limits(&self) -> RestartLimits {
        let default = RestartLimits::default();
        RestartLimits {
            intensity: self.restart_intensity.unwrap_or(default.intensity),
            period: self.restart_period.map_or(default.period, Duration::from_secs),
        }
    }

    /// The event bus's sizes.
    pub fn event_limits(&self) -> EventLimits {
        let default = EventLimits::default();
        EventLimits {
            history: self.event_history.unwrap_or(default.history),
            queue: self.event_queue.unwrap_or(default.queue),
        }
    }

    /// What one client may take of paddockd.
    pub fn limits(&self) -> crate::server::Limits {
        let mut limits = crate::server::Limits::new(self.max_frame.unwrap_or(wire::frame::DEFAULT_MAX_FRAME));
        if let Some(n) = self.max_connections {
            limits.max_connections = n;
        }
        if let Some(n) = self.max_requests {
            limits.max_requests = n;
        }
        if let Some(seconds) = self.connection_idle_timeout {
            limits.idle_timeout = (seconds > 0).then(|| Duration::from_secs(seconds));
        }
        if let Some(seconds) = self.frame_timeout {
            limits.frame_timeout = Duration::from_secs(seconds);
        }
        limits
    }

    /// How many gofers and sandboxes the helper pool keeps ready (see `actors::pool`).
    pub fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or(DEFAULT_POOL_SIZE)
    }

    /// How long paddockd may have no container and no client before it exits; `None` never.
    /// Unless configured, only a paddockd that ctl started on demand leaves (after 30 s): one
    /// started by hand or by systemd stays, as its starter expects.
    pub fn idle_exit(&self, autostarted: bool) -> Option<Duration> {
        match self.idle_exit {
            Some(0) => None,
            Some(seconds) => Some(Duration::from_secs(seconds)),
            None => autostarted.then(|| Duration::from_secs(30)),
        }
    }

    fn limits_keys(&self) -> (Option<usize>, Option<usize>, Option<u64>, Option<u64>) {
        (self.max_connections, self.max_requests, self.connection_idle_timeout, self.frame_timeout)
    }

    /// The keys whose change needs a restart of paddockd, if `new` changes any.
    pub fn unreloadable_changes(&self, new: &DaemonConfig) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.root != new.root {
            keys.push("root");
        }
        if self.helper_dir != new.helper_dir {
            keys.push("helper_dir");
        }
        if self.max_frame != new.max_frame {
            keys.push("max_frame");
        }
        if self.event_history != new.event_history || self.event_queue != new.event_queue {
            keys.push("event_history/event_queue");
        }
        if self.idle_exit != new.idle_exit {
            keys.push("idle_exit");
        }
        if self.pool_size != new.pool_size {
            keys.push("pool_size");
        }
        if self.limits_keys() != new.limits_keys() {
            keys.push("max_connections/max_requests/connection_idle_timeout/frame_timeout");
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = toml::from_str::<DaemonConfig>("").unwrap();
        assert_eq!(c, DaemonConfig::default());
        assert_eq!(c.shutdown_mode(), ShutdownMode::Leave);
        assert_eq!(c.stop_timeout(), Duration::from_secs(10));
        assert_eq!(c.restart_limits(), RestartLimits::default());
        assert_eq!(c.event_limits(), EventLimits::default());
    }

    #[test]
    fn the_documented_example_is_valid() {
        let doc: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let c: DaemonConfig = toml::from_str(&doc).unwrap();
        c.check().unwrap();
        assert_eq!(c.shutdown_mode(), ShutdownMode::Leave);
        assert_eq!(c.restart_limits(), RestartLimits::default());
        assert_eq!(c.event_limits(), EventLimits::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        for (text, named) in [
            ("rooot = \"/x\"\n", "rooot"),
            ("max_frame = 10\n", "max_frame"),
            ("overlay = \"root:disk\"\n", "overlay"),
            ("shutdown = \"explode\"\n", "explode"),
            ("restart_intensity = 0\n", "restart_intensity"),
            ("log = \"info,[\"\n", "log"),
            ("stop_timeout = -1\n", "stop_timeout"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = DaemonConfig::load(&p).unwrap_err().to_string();
            assert!(e.contains(named) && e.contains("c.toml"), "{text}: {e}");
        }
        std::fs::write(&p, "root = \"/x\"\nlog = \"debug\"\noverlay = \"all:memory:size=1g\"\nshutdown = \"stop\"\n")
            .unwrap();
        let c = DaemonConfig::load(&p).unwrap();
        assert_eq!(c.root.as_deref(), Some(Path::new("/x")));
        assert_eq!(c.default_overlay(), wire::gofer_proto::Overlay::AllMemory { size: Some(1 << 30) });
        assert_eq!(c.shutdown_mode(), ShutdownMode::Stop);
        assert_eq!(DaemonConfig::default().unreloadable_changes(&c), vec!["root"]);
    }
}
