//! A blocking client of paddockd: connect, handshake, and one method per operation.
//!
//! ```no_run
//! use wire::client::Client;
//! let mut client = Client::connect("/run/paddock/paddockd.sock".as_ref()).unwrap();
//! for c in client.list().unwrap() {
//!     println!("{} {}", c.id, c.status);
//! }
//! ```

use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::api::{
    Checkpoint, ContainerState, CopyIn, CopyOut, Create, Delete, Exec, Executed, ExitStatus, GetState, Kill, List,
    Monitor, Monitored, Pause, ProcessInfo, Ps, Reply, Request, RequestFrame, Resume, ServerFrame, Start, Stats,
    Update, Wait, WaitProcess,
};
use crate::conn::Connection;
use crate::error::{ApiError, ErrorKind, WireError};
use crate::frame::DEFAULT_MAX_FRAME;
use crate::handshake::{Hello, Welcome};

/// Why [`Client::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nobody listens on the socket (it is missing, or refuses connections).
    #[error("no paddockd answers on {path}: {source}")]
    NoDaemon {
        /// The socket path.
        path: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The socket's listener is not root's (nor ours): it gets nothing, not even a hello.
    #[error(
        "{path} is served by a process of uid {uid}, not by root's paddockd: refusing to send it anything \
         (someone else controls this state root)"
    )]
    Untrusted {
        /// The socket path.
        path: String,
        /// The listener's uid.
        uid: u32,
    },
    /// Something answered but the handshake failed.
    #[error("paddockd on {path}: {source}")]
    Handshake {
        /// The socket path.
        path: String,
        /// What went wrong.
        source: WireError,
    },
}

/// A connection to paddockd.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
    next_id: u64,
    server: String,
}

impl std::os::fd::AsFd for Client {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.conn.as_fd()
    }
}

impl Client {
    /// Connects to the daemon's socket and performs the handshake.
    pub fn connect(socket: &Path) -> Result<Self, ConnectError> {
        let path = socket.display().to_string();
        let stream =
            crate::sockpath::connect(socket).map_err(|source| ConnectError::NoDaemon { path: path.clone(), source })?;
        // The kernel says who made the listener; a socket put in place by someone else would
        // otherwise receive the caller's spec and descriptors.
        let uid = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| ConnectError::NoDaemon { path: path.clone(), source: e.into() })?
            .uid();
        if uid != 0 && uid != nix::unistd::geteuid().as_raw() {
            return Err(ConnectError::Untrusted { path, uid });
        }
        Self::handshake(stream, &format!("ctl {}", env!("CARGO_PKG_VERSION")))
            .map_err(|source| ConnectError::Handshake { path, source })
    }

    /// Performs the handshake on an already connected stream.
    pub fn handshake(stream: UnixStream, peer: &str) -> Result<Self, WireError> {
        let mut conn = Connection::new(stream, DEFAULT_MAX_FRAME);
        conn.send(&Hello::new(peer))?;
        match conn.recv::<Welcome>()? {
            Welcome::Accepted { server, .. } => Ok(Self { conn, next_id: 1, server }),
            Welcome::Refused { reason } => Err(WireError::Handshake(reason)),
        }
    }

    /// Who answered the handshake.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one request and waits for its reply.
    pub fn call(&mut self, request: Request) -> Result<Reply, ApiError> {
        self.call_then(request, || {})
    }

    /// Sends one request, calls `sent` once it is written, and waits for its reply.
    pub fn call_then(&mut self, request: Request, sent: impl FnOnce()) -> Result<Reply, ApiError> {
        let id = self.send_request(request)?;
        sent();
        self.reply_to(id)
    }

    /// Sends one request without waiting for its reply; returns the id to pass to
    /// [`Client::reply_to`]. With [`AsFd`](std::os::fd::AsFd), for a caller that polls the
    /// connection along with other descriptors (a monitor that also forwards signals).
    pub fn send_request(&mut self, request: Request) -> Result<u64, ApiError> {
        let id = self.next_id;
        self.next_id += 1;
        self.conn.send(&RequestFrame { id, request })?;
        Ok(id)
    }

    /// A second sender of requests on this same connection, for another thread (ctl's signal
    /// forwarder sends kills while this client waits for an exit): no second connection, no
    /// second handshake. Its requests are sent without waiting for their replies, under ids of
    /// their own that this client's [`Client::reply_to`] skips. The two must not write at the
    /// same time: this client only reads while the sender is in use (it waits).
    pub fn sender(&self) -> Result<RequestSender, ApiError> {
        let stream = self.conn.stream().try_clone().map_err(|e| ApiError::io("duplicating the connection", e))?;
        Ok(RequestSender { conn: Connection::new(stream, DEFAULT_MAX_FRAME), next_id: SENDER_IDS })
    }

    /// Reads until the reply to request `id` (blocking), skipping replies to others.
    pub fn reply_to(&mut self, id: u64) -> Result<Reply, ApiError> {
        loop {
            match self.conn.recv::<ServerFrame>()? {
                ServerFrame::Reply { id: got, result } if got == id => return result,
                ServerFrame::Reply { .. } => continue,
                ServerFrame::Fatal(err) => return Err(err),
            }
        }
    }

    /// A container's resource usage, as runc's `events --stats` reports it (JSON).
    pub fn stats(&mut self, id: &str) -> Result<String, ApiError> {
        match self.call(Request::Stats(Stats { id: id.into() }))? {
            Reply::Stats(json) => Ok(json),
            other => Err(unexpected(other)),
        }
    }

    /// Becomes the monitor of container `id` (or of its process `pid`): see [`Monitor`].
    pub fn monitor(&mut self, id: &str, pid: Option<i32>) -> Result<Monitored, ApiError> {
        match self.call(Request::Monitor(Monitor { id: id.into(), pid, monitor_pid: 0 }))? {
            Reply::Monitored(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a container.
    pub fn create(&mut self, create: Create) -> Result<ContainerState, ApiError> {
        expect_state(self.call(Request::Create(create))?)
    }

    /// Starts a created container.
    pub fn start(&mut self, id: &str) -> Result<ContainerState, ApiError> {
        expect_state(self.call(Request::Start(Start { id: id.into() }))?)
    }

    /// A container's state.
    pub fn state(&mut self, id: &str) -> Result<ContainerState, ApiError> {
        expect_state(self.call(Request::State(GetState { id: id.into() }))?)
    }

    /// Every container's state.
    pub fn list(&mut self) -> Result<Vec<ContainerState>, ApiError> {
        match self.call(Request::List(List))? {
            Reply::List(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// Signals a container's init, one of its processes (`pid`), or all of them (`all`).
    pub fn kill(&mut self, id: &str, signal: i32, all: bool, pid: Option<i32>) -> Result<(), ApiError> {
        expect_done(self.call(Request::Kill(Kill { id: id.into(), signal, all, pid }))?)
    }

    /// Runs another process in a container.
    pub fn exec(&mut self, exec: Exec) -> Result<Executed, ApiError> {
        match self.call(Request::Exec(exec))? {
            Reply::Executed(e) => Ok(e),
            other => Err(unexpected(other)),
        }
    }

    /// Waits for one process and collects its exit status.
    pub fn wait_process(&mut self, id: &str, pid: i32, root: bool) -> Result<ExitStatus, ApiError> {
        self.wait_process_with(WaitProcess { id: id.into(), pid, root, kill_on_hangup: false }, || {})
    }

    /// Waits for one process as `request` says (see [`WaitProcess::kill_on_hangup`]); calls
    /// `sent` once the request is on its way.
    pub fn wait_process_with(&mut self, request: WaitProcess, sent: impl FnOnce()) -> Result<ExitStatus, ApiError> {
        match self.call_then(Request::WaitProcess(request), sent)? {
            Reply::Exit(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// A container's processes.
    pub fn ps(&mut self, id: &str) -> Result<Vec<ProcessInfo>, ApiError> {
        match self.call(Request::Ps(Ps { id: id.into() }))? {
            Reply::Processes(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// Waits for a container's process to exit.
    pub fn wait(&mut self, id: &str) -> Result<ExitStatus, ApiError> {
        self.wait_with(Wait { id: id.into(), kill_on_hangup: false }, || {})
    }

    /// Waits for a container as `request` says (see [`Wait::kill_on_hangup`]); calls `sent`
    /// once the request is on its way.
    pub fn wait_with(&mut self, request: Wait, sent: impl FnOnce()) -> Result<ExitStatus, ApiError> {
        match self.call_then(Request::Wait(request), sent)? {
            Reply::Exit(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// Freezes a running container.
    pub fn pause(&mut self, id: &str) -> Result<ContainerState, ApiError> {
        match self.call(Request::Pause(Pause { id: id.into() }))? {
            Reply::State(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Thaws a paused container.
    pub fn resume(&mut self, id: &str) -> Result<ContainerState, ApiError> {
        match self.call(Request::Resume(Resume { id: id.into() }))? {
            Reply::State(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Changes a container's cgroup limits (`resources`: OCI `LinuxResources` JSON).
    pub fn update(&mut self, id: &str, resources: String) -> Result<ContainerState, ApiError> {
        match self.call(Request::Update(Update { id: id.into(), resources }))? {
            Reply::State(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Checkpoints a running container with CRIU.
    pub fn checkpoint(&mut self, checkpoint: Checkpoint) -> Result<ContainerState, ApiError> {
        match self.call(Request::Checkpoint(checkpoint))? {
            Reply::State(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a container.
    pub fn delete(&mut self, id: &str, force: bool) -> Result<(), ApiError> {
        expect_done(self.call(Request::Delete(Delete { id: id.into(), force }))?)
    }
}

impl Client {
    /// Copies out of a container: the tar stream is written to `copy.sink`.
    pub fn copy_out(&mut self, copy: CopyOut) -> Result<(), ApiError> {
        expect_done(self.call(Request::CopyOut(copy))?)
    }

    /// Copies into a container from the tar stream in `copy.source`.
    pub fn copy_in(&mut self, copy: CopyIn) -> Result<(), ApiError> {
        expect_done(self.call(Request::CopyIn(copy))?)
    }
}

/// Where the ids of a [`RequestSender`]'s requests begin: far above any a [`Client`] reaches.
const SENDER_IDS: u64 = 1 << 62;

/// Sends requests on a [`Client`]'s connection from another thread, without reading their
/// replies (see [`Client::sender`]).
#[derive(Debug)]
pub struct RequestSender {
    conn: Connection,
    next_id: u64,
}

impl RequestSender {
    /// Sends `request`; its reply is skipped by the client's reads.
    pub fn send(&mut self, request: Request) -> Result<(), ApiError> {
        let id = self.next_id;
        self.next_id += 1;
        self.conn.send(&RequestFrame { id, request })?;
        Ok(())
    }

    /// Signals a container's init, or its process `pid` (see [`Client::kill`]), not waiting for
    /// the answer.
    pub fn kill(&mut self, id: &str, signal: i32, pid: Option<i32>) -> Result<(), ApiError> {
        self.send(Request::Kill(Kill { id: id.into(), signal, all: false, pid }))
    }
}

fn unexpected(reply: Reply) -> ApiError {
    ApiError::new(ErrorKind::Protocol, format!("unexpected reply from paddockd: {reply:?}"))
}

fn expect_state(reply: Reply) -> Result<ContainerState, ApiError> {
    match reply {
        Reply::State(state) => Ok(state),
        other => Err(unexpected(other)),
    }
}

fn expect_done(reply: Reply) -> Result<(), ApiError> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}
