//! The wire server: accepts connections on paddockd's socket, checks the peer, performs the
//! handshake, and turns each request frame into the supervisor actor's message. Requests on
//! one connection run concurrently; replies carry their request's id.
//!
//! The server runs on a tokio runtime of its own, apart from the actors' thread: `state` and
//! `list` are answered from the [`StateBoard`] the container actors publish on, so they never
//! wait for that thread, which a burst of creates keeps busy (see [`actors::board`]). Every
//! other request is a message to the supervisor actor.
//!
//! Shutting down goes in phases ([`Phase`]): first no new connection or request is taken
//! (requests in flight go on), then requests that only wait (for an exit) are answered with
//! an `Unavailable` error, and paddockd waits for the rest to finish.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actors::async_conn::split;
use actors::board::StateBoard;
use actors::supervisor::Subscribe;
use actors::Supervisor;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};
use wire::api::{Reply, Request, RequestFrame, ServerFrame};
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

/// What one client may take of paddockd: its memory, its descriptors and its time stay bounded
/// whatever a peer does.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest frame accepted.
    pub max_frame: usize,
    /// Connections open at once; more are refused (with a reason) at once.
    pub max_connections: usize,
    /// Requests in flight (and replies unwritten) per connection; with all taken, nothing more
    /// is read from that client until one is answered.
    pub max_requests: usize,
    /// A connection with nothing in flight that sends nothing for this long is closed
    /// (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// A frame that began must be whole within this, and a reply must be taken within it.
    pub frame_timeout: Duration,
    /// Frames above [`actors::async_conn::SMALL_FRAME`] being received at once, across clients.
    pub large_frames: actors::async_conn::Budget,
}

impl Limits {
    /// The defaults: 1024 connections, 128 requests each, 60 s idle, 10 s per frame, 4 large
    /// frames at once.
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            max_connections: 1024,
            max_requests: 128,
            idle_timeout: Some(Duration::from_secs(60)),
            frame_timeout: Duration::from_secs(10),
            large_frames: Arc::new(tokio::sync::Semaphore::new(4)),
        }
    }
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
/// daemon has had nothing to do for a while. `state` and `list` are answered from `board`.
/// Call it on a tokio runtime apart from the actors' thread (it spawns its tasks
/// with `tokio::spawn`).
pub async fn serve(
    listener: UnixListener,
    supervisor: Addr<Supervisor>,
    board: StateBoard,
    limits: Limits,
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
                    if *control.connections.borrow() >= limits.max_connections {
                        tokio::spawn(refuse(stream, limits.max_connections));
                        continue;
                    }
                    let counted = control.connected();
                    let (to, controlled, limited) = (supervisor.clone(), control.clone(), limits.clone());
                    let board = board.clone();
                    tokio::spawn(async move {
                        handle_connection(stream, to, board, limited, controlled).await;
                        drop(counted);
                    });
                }
                Err(e) => warn!("accept: {e}"),
            },
            // (The borrow `wait_for` returns is dropped at once: it may not cross an await.)
            _ = async { drop(phase.wait_for(|p| *p != Phase::Serving).await) } => return Stopped::Asked,
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

/// Tells a client over the connection limit why it is turned away (after its hello, which it
/// sends before it reads anything, so that the refusal is what it reads), and hangs up.
async fn refuse(stream: UnixStream, max: usize) {
    let (reader, mut writer) = split(stream, 4096);
    let mut reader = reader.bounded(Arc::new(tokio::sync::Semaphore::new(0)), Duration::from_secs(1));
    let _ = reader.recv_or_idle::<Hello>(Some(tokio::time::Instant::now() + Duration::from_secs(1))).await;
    let reason = format!("paddockd serves {max} connections already (max_connections); try again later");
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.send(&Welcome::Refused { reason })).await;
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
fn peer_allowed(stream: &UnixStream) -> Result<(), ApiError> {
    let cred = stream.peer_cred().map_err(|e| ApiError::io("reading the peer's credentials", e))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::PermissionDenied, format!("uid {} may not use this paddockd", cred.uid())))
    }
}

async fn handle_connection(
    stream: UnixStream,
    supervisor: Addr<Supervisor>,
    board: StateBoard,
    limits: Limits,
    control: ServerControl,
) {
    let allowed = peer_allowed(&stream);
    // The peer's pid as paddockd sees it: a monitor is moved into its container's cgroups by
    // this pid, which the kernel vouches for (a pid in a request could name anyone).
    let peer_pid = stream.peer_cred().ok().and_then(|c| c.pid()).unwrap_or(0);
    let (reader, mut writer) = split(stream, limits.max_frame);
    let mut reader = reader.bounded(limits.large_frames.clone(), limits.frame_timeout);
    let hello = match reader.recv_or_idle::<Hello>(Some(tokio::time::Instant::now() + HELLO_TIMEOUT)).await {
        Ok(h) => h,
        Err(e) => {
            debug!("connection closed before hello: {e}");
            return;
        }
    };
    let mut welcome = check_hello(&hello, &format!("paddockd {}", env!("CARGO_PKG_VERSION")));
    if let Err(refused) = allowed {
        welcome = Welcome::Refused { reason: refused.to_string() };
    }
    let refused = matches!(welcome, Welcome::Refused { .. });
    if writer.send(&welcome).await.is_err() || refused {
        return;
    }

    // Becomes true when the client hangs up: its waits end (and those it made with
    // `kill_on_hangup` kill what they stood for).
    let (hangup_tx, hangup) = tokio::sync::watch::channel(false);
    // A request holds a slot while it runs: a peer has at most `max_requests` at a time, and
    // is told so for any beyond (reading goes on, so its hang-up is always seen). Replies
    // queue in a bounded channel; a client that does not take them within the frame timeout
    // is let go.
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_requests));
    let (tx, mut rx) = mpsc::channel::<ServerFrame>(limits.max_requests + 16);
    let write_timeout = limits.frame_timeout;
    let writer_hangup = hangup_tx.clone();
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let fatal = matches!(frame, ServerFrame::Fatal(_));
            let written = tokio::time::timeout(write_timeout, writer.send(&frame)).await;
            if !matches!(written, Ok(Ok(()))) || fatal {
                let _ = writer_hangup.send(true);
                return;
            }
        }
    });
    let fatal = |tx: &mpsc::Sender<ServerFrame>, hangup_tx: &tokio::sync::watch::Sender<bool>, e: String| {
        let _ = tx.try_send(ServerFrame::Fatal(ApiError::new(ErrorKind::Protocol, e)));
        let _ = hangup_tx.send(true);
    };
    let reply = |tx: mpsc::Sender<ServerFrame>, frame: ServerFrame| async move {
        let _ = tx.send(frame).await;
    };
    loop {
        let idle = limits.idle_timeout.map(|t| tokio::time::Instant::now() + t);
        let received = tokio::select! {
            received = reader.recv_or_idle::<RequestFrame>(idle) => received,
            _ = wait_hangup(&hangup) => return,
        };
        match received {
            Ok(mut frame) => {
                if let Request::Monitor(m) = &mut frame.request {
                    m.monitor_pid = peer_pid;
                }
                let refusal = if control.phase() != Phase::Serving {
                    Some(ApiError::new(ErrorKind::Unavailable, "paddockd is shutting down; ask again once it is back"))
                } else {
                    None
                };
                let slot = match (refusal, slots.clone().try_acquire_owned()) {
                    (Some(e), _) => Err(e),
                    (None, Ok(slot)) => Ok(slot),
                    (None, Err(_)) => Err(ApiError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "{} requests of this connection are in flight already (max_requests); wait for one",
                            limits.max_requests
                        ),
                    )),
                };
                let slot = match slot {
                    Ok(slot) => slot,
                    Err(e) => {
                        tokio::select! {
                            _ = reply(tx.clone(), ServerFrame::Reply { id: frame.id, result: Err(e) }) => {}
                            _ = wait_hangup(&hangup) => return,
                        }
                        continue;
                    }
                };
                let tx = tx.clone();
                let supervisor = supervisor.clone();
                let board = board.clone();
                let control = control.clone();
                let hangup = hangup.clone();
                tokio::spawn(async move {
                    let _counted = control.track();
                    let id = frame.id;
                    let name = frame.request.name();
                    let result = match from_board(&board, &frame.request) {
                        Some(reply) => Ok(reply),
                        None => answer(&supervisor, frame.request, &control, hangup).await,
                    };
                    drop(slot);
                    if let Err(e) = &result {
                        debug!(request = name, "failed: {e}");
                    }
                    reply(tx, ServerFrame::Reply { id, result }).await;
                });
            }
            // Nothing came for a while, but requests are in flight (a wait, an event stream):
            // the connection is in use.
            Err(WireError::TimedOut(_)) if !reader.mid_frame() && slots.available_permits() < limits.max_requests => {}
            Err(WireError::TimedOut(what)) => {
                debug!("closing a connection: {what}");
                fatal(&tx, &hangup_tx, format!("closing the connection: {what}"));
                return;
            }
            Err(WireError::Closed) => {
                let _ = hangup_tx.send(true);
                return;
            }
            // A broken frame: say why and hang up, since the stream cannot be trusted.
            Err(e) => {
                fatal(&tx, &hangup_tx, e.to_string());
                return;
            }
        }
    }
}

/// The reply to a `state` of a full id or to a `list`, read from the board; `None` for any
/// other request, and for a `state` whose id is not on the board (a prefix, a container still
/// being created, or none at all: the supervisor resolves and answers those).
fn from_board(board: &StateBoard, request: &Request) -> Option<Reply> {
    match request {
        Request::State(m) => board.state(&m.id).map(Reply::State),
        Request::List(_) => board.list().map(Reply::List),
        _ => None,
    }
}

/// Resolves once the client has hung up.
async fn wait_hangup(hangup: &tokio::sync::watch::Receiver<bool>) {
    let mut hangup = hangup.clone();
    let _ = hangup.wait_for(|closed| *closed).await;
}

/// Answers one request. A request that only waits (for an exit, for events) ends when its
/// client hangs up, or when paddockd shuts down; one that changes something runs to its end,
/// whoever is still listening, so that nothing is left half-made.
async fn answer(
    supervisor: &Addr<Supervisor>,
    request: Request,
    control: &ServerControl,
    hangup: tokio::sync::watch::Receiver<bool>,
) -> Result<Reply, ApiError> {
    if !waits(&request) {
        return route(supervisor, request).await;
    }
    if matches!(request, Request::Events(_)) {
        // An event stream ends cleanly when the bus closes at shutdown; early only when its
        // client is gone.
        return tokio::select! {
            biased;
            result = route(supervisor, request) => result,
            _ = wait_hangup(&hangup) => Err(ApiError::new(ErrorKind::Unavailable, "the follower hung up")),
        };
    }
    let mut phase = control.phase.subscribe();
    let on_hangup = kill_on_hangup(&request);
    // Biased: a wait that has its answer wins over a hangup at the same moment, so a process
    // that already ended is never killed (its pid may be reused).
    tokio::select! {
        biased;
        result = route(supervisor, request) => result,
        _ = async { drop(phase.wait_for(|p| *p == Phase::Cancelling).await) } => Err(ApiError::new(
            ErrorKind::Unavailable,
            "paddockd is shutting down (the container is not affected); wait again once it is back",
        )),
        _ = wait_hangup(&hangup) => {
            if let Some(kill) = on_hangup {
                debug!(container = %kill.id, pid = ?kill.pid, "the waiter hung up: killing what it stood for");
                let _ = route(supervisor, Request::Kill(kill)).await;
            }
            Err(ApiError::new(ErrorKind::Unavailable, "the waiter hung up"))
        }
    }
}

/// Sends a request to the supervisor actor and wraps its answer for the wire.
pub async fn route(supervisor: &Addr<Supervisor>, request: Request) -> Result<Reply, ApiError> {
    let stopped = |_| ApiError::internal("the supervisor is not running");
    match request {
        Request::Create(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::State),
        Request::Start(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::State),
        Request::State(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::State),
        Request::List(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::List),
        Request::Kill(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::Wait(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::Exit),
        Request::Delete(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::CopyOut(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::CopyIn(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::Exec(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::Executed),
        Request::WaitProcess(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::Exit),
        Request::Ps(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::Processes),
        Request::Events(m) => stream_events(supervisor, m).await.map(|()| Reply::Done),
        Request::Pause(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::State),
        Request::Resume(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::State),
        Request::Update(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::State),
        Request::Checkpoint(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::State),
        Request::Monitor(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::Monitored),
        Request::Stats(m) => supervisor.send(actors::Api(m)).await.map_err(stopped)?.map(Reply::Stats),
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

/// Requests that only wait: for a process to exit, or for events. They end when their client
/// hangs up (nobody would read the answer) and when paddockd shuts down.
fn waits(request: &Request) -> bool {
    matches!(request, Request::Wait(_) | Request::WaitProcess(_) | Request::Events(_))
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
    // Live events reach it through a channel this future owns: when the client hangs up (the
    // future is dropped), the channel closes and the thread ends, whatever the sink.
    let (to_writer, mut for_writer) = tokio::sync::mpsc::channel::<wire::events::Event>(16);
    let history = subscription.history;
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = std::io::BufWriter::new(std::fs::File::from(sink));
        let mut write = |event: &wire::events::Event| -> std::io::Result<()> {
            writeln!(out, "{}", event.to_json_line())?;
            out.flush()
        };
        for event in &history {
            if write(event).is_err() {
                return;
            }
        }
        while let Some(event) = for_writer.blocking_recv() {
            if write(&event).is_err() {
                return;
            }
        }
    });
    if let Some(mut live) = subscription.live {
        while let Some(event) = live.recv().await {
            if to_writer.send(event).await.is_err() {
                break;
            }
        }
    }
    drop(to_writer);
    writer.await.map_err(|e| ApiError::internal(format!("event writer failed: {e}")))
}
