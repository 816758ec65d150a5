//! The wire server: accepts connections on paddockd's socket, checks the peer, performs the
//! handshake, and turns each request frame into the supervisor actor's message. Requests on
//! one connection run concurrently; replies carry their request's id.
//!
//! Shutting down goes in phases ([`Phase`]): first no new connection or request is taken
//! (requests in flight go on), then requests that only wait (for an exit) are answered with
//! an `Unavailable` error, and paddockd waits for the rest to finish.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actors::supervisor::Subscribe;
use actors::Supervisor;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};
use wire::api::{Reply, Request, RequestFrame, ServerFrame};
use wire::async_conn::split;
use wire::events::Events;
use wire::handshake::{check_hello, Hello, Welcome};
use wire::{ApiError, ErrorKind, WireError};

/// How long a client may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Serving.
    Serving,
    /// No new connections or requests; those in flight go on.
    Draining,
    /// Requests that wait for an exit are ended too.
    Cancelling,
}

/// paddockd's hold on its server: moves it through the shutdown phases and counts the
/// requests in flight.
#[derive(Clone)]
pub struct ServerControl {
    phase: Arc<watch::Sender<Phase>>,
    in_flight: Arc<watch::Sender<usize>>,
    connections: Arc<watch::Sender<usize>>,
}

impl Default for ServerControl {
    fn default() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Serving)),
            in_flight: Arc::new(watch::Sender::new(0)),
            connections: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl ServerControl {
    /// Moves to `phase` (never back).
    pub fn enter(&self, phase: Phase) {
        self.phase.send_if_modified(|p| {
            let later = phase > *p;
            if later {
                *p = phase;
            }
            later
        });
    }

    /// Waits until no request is in flight, at most `timeout`; returns how many are left.
    pub async fn finished(&self, timeout: Duration) -> usize {
        let mut count = self.in_flight.subscribe();
        let _ = tokio::time::timeout(timeout, count.wait_for(|n| *n == 0)).await;
        let left = *count.borrow();
        left
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Counts a request as in flight until the guard is dropped.
    fn track(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(self.in_flight.clone())
    }

    /// Counts a connection as open until the guard is dropped.
    fn connected(&self) -> InFlight {
        self.connections.send_modify(|n| *n += 1);
        InFlight(self.connections.clone())
    }

    /// Whether no client is connected and no request is in flight.
    fn unused(&self) -> bool {
        *self.connections.borrow() == 0 && *self.in_flight.borrow() == 0
    }
}

/// When an idle paddockd leaves: after `after` with no container, no client and no request,
/// it takes the root's start lock (so that a ctl arriving now waits, then starts a new daemon
/// once this one is gone), removes its socket and stops accepting. Decided in the accept loop
/// itself, so no connection is accepted after the decision.
pub struct IdleExit {
    /// How long it must have had nothing to do.
    pub after: Duration,
    /// The root's `paddockd.start.lock`.
    pub start_lock: std::path::PathBuf,
    /// The socket to remove (`None`: systemd's, left in place).
    pub socket: Option<std::path::PathBuf>,
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The control left [`Phase::Serving`] (a signal).
    Asked,
    /// The daemon had nothing to do for [`IdleExit::after`]; the start lock is held until the
    /// process exits.
    Idle,
}

struct InFlight(Arc<watch::Sender<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Serves `listener` until the control leaves [`Phase::Serving`], or (with `idle`) until the
/// daemon has had nothing to do for a while.
pub async fn serve(
    listener: UnixListener,
    supervisor: Addr<Supervisor>,
    max_frame: usize,
    control: ServerControl,
    idle: Option<IdleExit>,
) -> Stopped {
    let mut phase = control.phase.subscribe();
    let period = idle.as_ref().map_or(Duration::from_secs(3600), |i| (i.after / 4).max(Duration::from_millis(100)));
    let mut ticks = tokio::time::interval(period);
    let mut idle_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    idle_since = None;
                    let counted = control.connected();
                    let (to, controlled) = (supervisor.clone(), control.clone());
                    actix::spawn(async move {
                        handle_connection(stream, to, max_frame, controlled).await;
                        drop(counted);
                    });
                }
                Err(e) => warn!("accept: {e}"),
            },
            _ = phase.wait_for(|p| *p != Phase::Serving) => return Stopped::Asked,
            now = ticks.tick(), if idle.is_some() => {
                let Some(idle) = &idle else { continue };
                let supervising = supervisor.send(actors::supervisor::Supervising).await.unwrap_or(1);
                if supervising > 0 || !control.unused() {
                    idle_since = None;
                    continue;
                }
                let since = *idle_since.get_or_insert(now);
                if now.duration_since(since) >= idle.after && leave_when_idle(idle) {
                    return Stopped::Idle;
                }
            }
        }
    }
}

/// Takes the start lock for good (released when the process exits) and removes the socket, so
/// that the next ctl starts a new daemon rather than reaching this one as it goes. `false`
/// when a ctl holds the lock: it is about to connect.
fn leave_when_idle(idle: &IdleExit) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&idle.start_lock)
    else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; a lock that cannot be had at once is "no".
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    // Held until exit: leaked on purpose.
    std::mem::forget(file);
    if let Some(socket) = &idle.socket {
        let _ = std::fs::remove_file(socket);
    }
    true
}

/// Whether the peer may use the daemon: root, or the user paddockd runs as.
fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    let cred = stream.peer_cred().map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(format!("uid {} may not use this paddockd", cred.uid()))
    }
}

async fn handle_connection(stream: UnixStream, supervisor: Addr<Supervisor>, max_frame: usize, control: ServerControl) {
    let allowed = peer_allowed(&stream);
    let (mut reader, mut writer) = split(stream, max_frame);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, reader.recv::<Hello>()).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            debug!("connection closed before hello: {e}");
            return;
        }
        Err(_) => {
            debug!("client did not say hello in time");
            return;
        }
    };
    let mut welcome = check_hello(&hello, &format!("paddockd {}", env!("CARGO_PKG_VERSION")));
    if let Err(reason) = allowed {
        welcome = Welcome::Refused { reason };
    }
    let refused = matches!(welcome, Welcome::Refused { .. });
    if writer.send(&welcome).await.is_err() || refused {
        return;
    }

    // Becomes true when the client hangs up: waits it made with `kill_on_hangup` then kill.
    let (hangup_tx, hangup) = tokio::sync::watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel::<ServerFrame>();
    actix::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let fatal = matches!(frame, ServerFrame::Fatal(_));
            if writer.send(&frame).await.is_err() || fatal {
                return;
            }
        }
    });
    loop {
        match reader.recv::<RequestFrame>().await {
            Ok(frame) => {
                let tx = tx.clone();
                if control.phase() != Phase::Serving {
                    let e =
                        ApiError::new(ErrorKind::Unavailable, "paddockd is shutting down; ask again once it is back");
                    let _ = tx.send(ServerFrame::Reply { id: frame.id, result: Err(e) });
                    continue;
                }
                let supervisor = supervisor.clone();
                let control = control.clone();
                let mut hangup = hangup.clone();
                actix::spawn(async move {
                    let _counted = control.track();
                    let name = frame.request.name();
                    let result = if waits_for_exit(&frame.request) {
                        let mut phase = control.phase.subscribe();
                        let on_hangup = kill_on_hangup(&frame.request);
                        // Biased: a wait that has its answer wins over a hangup at the same
                        // moment, so a process that already ended is never killed (its pid may
                        // be reused).
                        tokio::select! {
                            biased;
                            result = route(&supervisor, frame.request) => result,
                            _ = phase.wait_for(|p| *p == Phase::Cancelling) => Err(ApiError::new(
                                ErrorKind::Unavailable,
                                "paddockd is shutting down (the container is not affected); wait again once it is back",
                            )),
                            Ok(_) = hangup.wait_for(|closed| *closed), if on_hangup.is_some() => {
                                if let Some(kill) = on_hangup {
                                    debug!(container = %kill.id, pid = ?kill.pid, "the waiter hung up: killing what it stood for");
                                    let _ = route(&supervisor, Request::Kill(kill)).await;
                                }
                                Err(ApiError::new(ErrorKind::Unavailable, "the waiter hung up"))
                            }
                        }
                    } else {
                        route(&supervisor, frame.request).await
                    };
                    if let Err(e) = &result {
                        debug!(request = name, "failed: {e}");
                    }
                    let _ = tx.send(ServerFrame::Reply { id: frame.id, result });
                });
            }
            Err(WireError::Closed) => {
                let _ = hangup_tx.send(true);
                return;
            }
            Err(e) => {
                // A broken frame: say why and hang up, since the stream cannot be trusted.
                let _ = tx.send(ServerFrame::Fatal(ApiError::new(ErrorKind::Protocol, e.to_string())));
                let _ = hangup_tx.send(true);
                return;
            }
        }
    }
}

/// Sends a request to the supervisor actor and wraps its answer for the wire.
pub async fn route(supervisor: &Addr<Supervisor>, request: Request) -> Result<Reply, ApiError> {
    let stopped = |_| ApiError::internal("the supervisor is not running");
    match request {
        Request::Create(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::Start(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::State(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::List(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::List),
        Request::Kill(m) => supervisor.send(m).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::Wait(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::Exit),
        Request::Delete(m) => supervisor.send(m).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::CopyOut(m) => supervisor.send(m).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::CopyIn(m) => supervisor.send(m).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::Exec(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::Executed),
        Request::WaitProcess(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::Exit),
        Request::Ps(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::Processes),
        Request::Events(m) => stream_events(supervisor, m).await.map(|()| Reply::Done),
        Request::Pause(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::Resume(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::Update(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::Checkpoint(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
    }
}

/// The SIGKILL a wait with `kill_on_hangup` asks for if its caller hangs up first.
fn kill_on_hangup(request: &Request) -> Option<wire::api::Kill> {
    let kill = |id: &str, pid| wire::api::Kill { id: id.to_string(), signal: libc::SIGKILL, all: false, pid };
    match request {
        Request::Wait(w) if w.kill_on_hangup => Some(kill(&w.id, None)),
        Request::WaitProcess(w) if w.kill_on_hangup && !w.root => Some(kill(&w.id, Some(w.pid))),
        _ => None,
    }
}

/// Requests that only wait for a process to exit: ended when paddockd shuts down. (Event
/// streams end when the bus closes.)
fn waits_for_exit(request: &Request) -> bool {
    matches!(request, Request::Wait(_) | Request::WaitProcess(_))
}

/// Writes the events into the request's sink, one JSON line each, until the history is
/// written (or, when following, until the bus closes or the reader goes away).
async fn stream_events(supervisor: &Addr<Supervisor>, mut request: Events) -> Result<(), ApiError> {
    let sink = request.sink.take().ok_or_else(|| ApiError::invalid_argument("events: no descriptor to write to"))?;
    let subscription = supervisor
        .send(Subscribe { ids: request.ids, follow: request.follow })
        .await
        .map_err(|_| ApiError::internal("the supervisor is not running"))??;
    // A blocking thread writes, so that a sink of any kind (pipe, file, socket) works and a
    // slow reader holds up nothing but this thread; the bus's bounded queue protects the rest.
    tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::new(std::fs::File::from(sink));
        let mut write = |event: &wire::events::Event| -> std::io::Result<()> {
            writeln!(out, "{}", event.to_json_line())?;
            out.flush()
        };
        for event in &subscription.history {
            if write(event).is_err() {
                return;
            }
        }
        if let Some(mut live) = subscription.live {
            while let Some(event) = live.blocking_recv() {
                if write(&event).is_err() {
                    return;
                }
            }
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("event writer failed: {e}")))
}
