//! The shim's side of paddockd: finding (or starting) the daemon of a state root, calling it
//! off the async runtime, and following its event bus.
//!
//! The wire client is blocking, so every call runs on tokio's blocking pool over a connection
//! of its own: a long `wait` never holds up a `state`, and a connection paddockd closed (it
//! restarted, or timed an idle one out) costs one reconnect, not a broken shim.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use wire::api::{Reply, Request};
use wire::autostart::{connect_or_start, AutostartError};
use wire::client::Client;
use wire::events::{Event, Events};
use wire::{ApiError, FdSlot};

/// Why the shim could not reach paddockd.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No daemon answered and none could be started.
    #[error(transparent)]
    Autostart(#[from] AutostartError),
    /// Setting up a stream from paddockd failed.
    #[error("following paddockd of {root}: {reason}")]
    Start {
        /// The state root.
        root: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A blocking call's thread went away.
    #[error("a call to paddockd was cancelled: {0}")]
    Cancelled(String),
}

/// Where paddockd is: the state root it serves.
#[derive(Debug, Clone)]
pub struct Daemon {
    root: PathBuf,
}

impl Daemon {
    /// The daemon of state root `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `call` with a fresh connection on the blocking pool.
    pub async fn call<T, F>(&self, call: F) -> Result<T, DaemonError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> Result<T, ApiError> + Send + 'static,
    {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut client = connect_or_start(&root)?;
            call(&mut client).map_err(DaemonError::from)
        })
        .await
        .map_err(|e| DaemonError::Cancelled(e.to_string()))?
    }

    /// Runs a call that only reads (state, processes, stats): a connection that breaks under
    /// it (paddockd killed mid-call; it live-restores) is made again, up to three times.
    pub async fn read<T, F>(&self, call: F) -> Result<T, DaemonError>
    where
        T: Send + 'static,
        F: Fn(&mut Client) -> Result<T, ApiError> + Clone + Send + 'static,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.call(call.clone()).await {
                Err(DaemonError::Api(e)) if e.kind == wire::ErrorKind::Io && tries < 3 => {
                    log::warn!("paddockd went away during a call ({e}): calling again");
                }
                other => return other,
            }
        }
    }

    /// Follows paddockd's event bus on a thread of its own: every event (the retained history
    /// first, then each new one) goes to `sink` until paddockd stops or `sink` is closed.
    /// Returns once the subscription is in place, so that nothing that happens after is missed.
    pub fn follow_events(&self, sink: tokio::sync::mpsc::UnboundedSender<Event>) -> Result<(), DaemonError> {
        let mut client = connect_or_start(&self.root)?;
        let (reader, writer) = std::io::pipe().map_err(|e| DaemonError::Start {
            root: self.root.clone(),
            reason: format!("pipe for the event stream: {e}"),
        })?;
        let id = client.send_request(Request::Events(Events {
            ids: Vec::new(),
            follow: true,
            sink: FdSlot::new(writer),
        }))?;
        std::thread::Builder::new()
            .name("paddockd-events".into())
            .spawn(move || {
                // The reply comes when the stream ends; keeping the connection keeps the stream.
                let reader_thread = std::thread::spawn(move || {
                    for line in std::io::BufReader::new(reader).lines() {
                        let Ok(line) = line else { return };
                        match serde_json::from_str::<Event>(&line) {
                            Ok(event) => {
                                if sink.send(event).is_err() {
                                    return;
                                }
                            }
                            Err(e) => log::warn!("paddockd sent an event the shim cannot read ({e}): {line}"),
                        }
                    }
                });
                if let Err(e) = client.reply_to(id).map(|reply| matches!(reply, Reply::Done)) {
                    log::warn!("paddockd's event stream ended: {e}");
                }
                let _ = reader_thread.join();
            })
            .map_err(|e| DaemonError::Start { root: self.root.clone(), reason: format!("event thread: {e}") })?;
        Ok(())
    }
}
