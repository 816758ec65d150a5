//! The event bus's records: everything that happens to a container, as `ctl events` prints it
//! (one JSON object per line).
//!
//! ```json
//! {"seq":7,"time":"2026-11-23T16:30:09.123456789Z","id":"web","sandboxId":"web","type":"exited","exitStatus":3}
//! ```

use serde::{Deserialize, Serialize};

use crate::api::ExitStatus;
use crate::FdSlot;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum EventKind {
    /// The container was created (its process waits for start).
    Created,
    /// Its process runs (first start, or a restart).
    Started {
        /// The init's host pid.
        pid: i32,
        /// How often it was restarted so far.
        restarts: u32,
    },
    /// Its init exited.
    Exited {
        /// The exit code, 128+N for signal N.
        exit_status: i32,
    },
    /// The kernel's OOM killer killed a process of the container.
    Oom,
    /// The container was frozen.
    Paused,
    /// The container was thawed.
    Resumed,
    /// The container was deleted; its history goes with it.
    Deleted,
    /// Its restart policy will start it again after `delayMs`.
    RestartScheduled {
        /// Which restart this will be (1 for the first).
        attempt: u32,
        /// The backoff before it, in milliseconds.
        delay_ms: u64,
    },
    /// Its restart policy gave up: the container stays stopped.
    RestartGaveUp {
        /// Why.
        reason: String,
        /// How often it was restarted.
        restarts: u32,
    },
    /// Its gofer died and was started again.
    GoferRestarted {
        /// How often the gofer was restarted.
        restarts: u32,
    },
    /// Its gofer died and will not be restarted.
    GoferFailed {
        /// Why.
        reason: String,
    },
    /// Its sandbox vanished without reporting the container's end (killed from outside).
    SandboxLost,
    /// This subscriber was too slow: `dropped` events were not delivered to it.
    Lagged {
        /// How many.
        dropped: u64,
    },
}

impl EventKind {
    /// The name `ctl events` prints in `type`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Started { .. } => "started",
            EventKind::Exited { .. } => "exited",
            EventKind::Oom => "oom",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Deleted => "deleted",
            EventKind::RestartScheduled { .. } => "restart-scheduled",
            EventKind::RestartGaveUp { .. } => "restart-gave-up",
            EventKind::GoferRestarted { .. } => "gofer-restarted",
            EventKind::GoferFailed { .. } => "gofer-failed",
            EventKind::SandboxLost => "sandbox-lost",
            EventKind::Lagged { .. } => "lagged",
        }
    }

    /// An `exited` event for `status`.
    pub fn exited(status: ExitStatus) -> Self {
        EventKind::Exited { exit_status: status.code() }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Its place in paddockd's order of events (increasing, from 1 at daemon start).
    pub seq: u64,
    /// When, RFC 3339.
    pub time: String,
    /// The container (empty for `lagged`).
    pub id: String,
    /// Its sandbox (empty for `lagged`).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub sandbox_id: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// The event as one line of JSON (without the newline).
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Streams events into `sink` as JSON lines: the retained history of the containers `ids`
/// (every container if empty), then, with `follow`, every new event until the reader goes away
/// or paddockd stops. The reply comes when the stream ends.
#[derive(Debug, Serialize, Deserialize)]
pub struct Events {
    /// Full ids or unambiguous prefixes; empty for all containers.
    pub ids: Vec<String>,
    /// Keep streaming new events.
    pub follow: bool,
    /// Where the lines go (the write end of a pipe).
    pub sink: FdSlot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_flat_json_lines() {
        let e = Event {
            seq: 3,
            time: "t".into(),
            id: "c".into(),
            sandbox_id: "c".into(),
            kind: EventKind::RestartScheduled { attempt: 2, delay_ms: 200 },
        };
        assert_eq!(
            e.to_json_line(),
            r#"{"seq":3,"time":"t","id":"c","sandboxId":"c","type":"restart-scheduled","attempt":2,"delayMs":200}"#
        );
        let back: Event = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(back, e);
        let lagged = Event {
            seq: 4,
            time: "t".into(),
            id: String::new(),
            sandbox_id: String::new(),
            kind: EventKind::Lagged { dropped: 9 },
        };
        assert_eq!(lagged.to_json_line(), r#"{"seq":4,"time":"t","id":"","type":"lagged","dropped":9}"#);
        assert_eq!(EventKind::exited(ExitStatus::Signaled(15)), EventKind::Exited { exit_status: 143 });
        assert_eq!(EventKind::SandboxLost.name(), "sandbox-lost");
    }
}
