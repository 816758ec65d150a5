//! The sandbox's event loop: one `poll` over the control socket, the connected peers and a
//! signalfd for SIGCHLD. Requests are answered in order; exits are reported to every attached
//! peer as they are reaped.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use wire::conn::Connection;
use wire::frame::DEFAULT_MAX_FRAME;
use wire::gofer_proto::GoferMessage;
use wire::handshake::{check_hello, Hello, Welcome};
use wire::sandbox_proto::{
    CreateContainer, SandboxEvent, SandboxFrame, SandboxReply, SandboxRequest, SandboxRequestFrame,
};
use wire::{ApiError, ErrorKind, ExitStatus, FdSlot};

use crate::containers::{Containers, Phase, Record};
use crate::init::{self, InitConfig};
use crate::sandbox_root;

/// How long a gofer may take to hand over a root filesystem.
const GOFER_TIMEOUT: Duration = Duration::from_secs(60);

struct Peer {
    conn: Connection,
    greeted: bool,
    attached: bool,
    closed: bool,
}

/// The sandbox's state and loop.
pub struct Server {
    id: String,
    listener: UnixListener,
    signals: SignalFd,
    peers: Vec<Peer>,
    containers: Containers,
    setup_error: Option<String>,
}

impl Server {
    /// A server on the listening `listener`, reaping on `signals`. A `setup_error` is reported
    /// to the first peer, and then the sandbox exits.
    pub fn new(
        id: String,
        listener: UnixListener,
        signals: SignalFd,
        setup_error: Option<String>,
    ) -> Self {
        Self {
            id,
            listener,
            signals,
            peers: Vec::new(),
            containers: Containers::default(),
            setup_error,
        }
    }

    /// Runs until the sandbox is killed (or its setup failed and was reported).
    pub fn run(mut self) -> i32 {
        loop {
            let (listener_ready, signals_ready, peers_ready) = match self.wait() {
                Ok(ready) => ready,
                Err(e) => {
                    eprintln!("paddock-sandbox {}: poll: {e}", self.id);
                    return 1;
                }
            };
            if signals_ready {
                self.reap();
            }
            if listener_ready {
                self.accept();
            }
            for (i, ready) in peers_ready.into_iter().enumerate() {
                if ready {
                    if let Some(code) = self.serve_peer(i) {
                        return code;
                    }
                }
            }
            self.peers.retain(|p| !p.closed);
        }
    }

    fn wait(&self) -> nix::Result<(bool, bool, Vec<bool>)> {
        let mut fds = vec![
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(
            self.peers
                .iter()
                .map(|p| PollFd::new(p.conn.as_fd(), PollFlags::POLLIN)),
        );
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        Ok((
            ready(&fds[0]),
            ready(&fds[1]),
            fds[2..].iter().map(ready).collect(),
        ))
    }

    fn accept(&mut self) {
        let Ok((stream, _)) = self.listener.accept() else {
            return;
        };
        // Only root (or our own user) may steer a sandbox; the socket also sits in a 0700
        // directory.
        let allowed =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .map(|cred| cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw())
                .unwrap_or(false);
        if !allowed {
            return;
        }
        self.peers.push(Peer {
            conn: Connection::new(stream, DEFAULT_MAX_FRAME),
            greeted: false,
            attached: false,
            closed: false,
        });
    }

    /// Reads from peer `i` and answers whatever it asked. Returns an exit code when the
    /// sandbox must end.
    fn serve_peer(&mut self, i: usize) -> Option<i32> {
        match self.peers[i].conn.fill() {
            Ok(0) | Err(_) => {
                self.peers[i].closed = true;
                return None;
            }
            Ok(_) => {}
        }
        loop {
            if self.peers[i].closed {
                return None;
            }
            if !self.peers[i].greeted {
                let hello = match self.peers[i].conn.try_next::<Hello>() {
                    Ok(Some(h)) => h,
                    Ok(None) => return None,
                    Err(_) => {
                        self.peers[i].closed = true;
                        return None;
                    }
                };
                let mut welcome = check_hello(
                    &hello,
                    &format!("paddock-sandbox {}", env!("CARGO_PKG_VERSION")),
                );
                if let Some(err) = &self.setup_error {
                    welcome = Welcome::Refused {
                        reason: format!("sandbox {:?} could not set itself up: {err}", self.id),
                    };
                }
                let refused = matches!(welcome, Welcome::Refused { .. });
                let _ = self.peers[i].conn.send(&welcome);
                if self.setup_error.is_some() {
                    return Some(1);
                }
                self.peers[i].greeted = !refused;
                self.peers[i].closed = refused;
                continue;
            }
            let frame = match self.peers[i].conn.try_next::<SandboxRequestFrame>() {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(_) => {
                    self.peers[i].closed = true;
                    return None;
                }
            };
            let attach = matches!(frame.request, SandboxRequest::Attach);
            let result = self.handle(frame.request);
            if attach && result.is_ok() {
                self.peers[i].attached = true;
            }
            let reply = SandboxFrame::Reply {
                id: frame.id,
                result,
            };
            if self.peers[i].conn.send(&reply).is_err() {
                self.peers[i].closed = true;
            }
        }
    }

    fn handle(&mut self, request: SandboxRequest) -> Result<SandboxReply, ApiError> {
        match request {
            SandboxRequest::Attach => Ok(SandboxReply::Attached(self.containers.snapshot())),
            SandboxRequest::Create(create) => self.create(create),
            SandboxRequest::Start { id } => {
                let record = self.containers.get_mut(&id)?;
                let Phase::Created(waiting) = &record.phase else {
                    return Err(ApiError::new(
                        ErrorKind::InvalidStatus,
                        format!("container {id:?} is not waiting to be started"),
                    ));
                };
                let started = init::start(&id, waiting);
                if started.is_ok() {
                    record.phase = Phase::Running;
                }
                started.map(|()| SandboxReply::Done)
            }
            SandboxRequest::Signal { id, signal, all } => {
                let signal = Signal::try_from(signal).map_err(|_| {
                    ApiError::invalid_argument(format!("{signal} is not a valid signal number"))
                })?;
                self.containers
                    .signal(&id, signal, all)
                    .map(|()| SandboxReply::Done)
            }
            SandboxRequest::Release { id } => {
                self.containers.release(&id).map(|()| SandboxReply::Done)
            }
        }
    }

    fn create(&mut self, mut create: CreateContainer) -> Result<SandboxReply, ApiError> {
        let id = create.id.clone();
        if self.containers.contains(&id) {
            return Err(ApiError::new(
                ErrorKind::AlreadyExists,
                format!("container {id:?} already exists in sandbox {:?}", self.id),
            ));
        }
        let spec = create.spec.parse()?;
        let gofer = create
            .gofer
            .take()
            .ok_or_else(|| ApiError::new(ErrorKind::Protocol, "create without a gofer socket"))?;
        let mut gofer = Connection::new(UnixStream::from(gofer), DEFAULT_MAX_FRAME);
        let mount = match recv_gofer(&mut gofer, GOFER_TIMEOUT)? {
            GoferMessage::Rootfs { mut mount } => mount.take().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Protocol,
                    "the gofer sent a rootfs without its descriptor",
                )
            })?,
            GoferMessage::Failed(err) => return Err(err),
        };
        let rootfs = sandbox_root::attach_rootfs(&id, mount)?;
        let result = (|| {
            if create.root {
                set_identity(&spec)?;
            }
            let stdio = [
                create.stdio.stdin.take(),
                create.stdio.stdout.take(),
                create.stdio.stderr.take(),
            ];
            init::spawn(InitConfig {
                id: &id,
                spec: &spec,
                rootfs: rootfs.clone(),
                stdio,
            })
        })();
        let waiting = match result {
            Ok(w) => w,
            Err(e) => {
                sandbox_root::detach_rootfs(&rootfs);
                return Err(e);
            }
        };
        let pid = waiting.pid;
        let pidfd: Option<OwnedFd> = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid.as_raw())
                .ok_or_else(|| ApiError::internal("pid 0"))?,
            rustix::process::PidfdFlags::empty(),
        )
        .ok();
        self.containers.insert(
            id,
            Record {
                pid,
                phase: Phase::Created(waiting),
                _gofer_io: gofer.into_stream(),
                released: false,
            },
        );
        Ok(SandboxReply::Created {
            pid: pid.as_raw(),
            pidfd: FdSlot::from_option(pidfd),
        })
    }

    /// Reaps every exited child; reports the containers whose init ended.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitStatus::Signaled(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some(id) = self.containers.process_exited(pid, status) else {
                continue;
            };
            // The container ended with its init, as with runc: nothing of it may outlive it.
            let _ = self.containers.signal(&id, Signal::SIGKILL, true);
            let event = SandboxFrame::Event(SandboxEvent::Exited { id, status });
            for peer in self.peers.iter_mut().filter(|p| p.attached && !p.closed) {
                if peer.conn.send(&event).is_err() {
                    peer.closed = true;
                }
            }
        }
    }
}

/// Sets the sandbox's hostname and domain name from the root container's spec.
fn set_identity(spec: &oci_spec::runtime::Spec) -> Result<(), ApiError> {
    if let Some(hostname) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(hostname)
            .map_err(|e| ApiError::invalid_spec(format!("hostname {hostname:?}: {e}")))?;
    }
    if let Some(domain) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: setdomainname reads `len` bytes of the string we pass.
        if unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) } != 0 {
            let err = std::io::Error::last_os_error();
            return Err(ApiError::invalid_spec(format!(
                "domainname {domain:?}: {err}"
            )));
        }
    }
    Ok(())
}

/// Receives the gofer's message, failing if none arrives within `timeout`.
fn recv_gofer(conn: &mut Connection, timeout: Duration) -> Result<GoferMessage, ApiError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(msg) = conn.try_next::<GoferMessage>()? {
            return Ok(msg);
        }
        if conn.is_closed() {
            return Err(ApiError::new(
                ErrorKind::Sandbox,
                format!("the gofer closed its socket: {}", conn.end_error()),
            ));
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => {
                return Err(ApiError::new(
                    ErrorKind::Sandbox,
                    "the gofer did not answer in time",
                ))
            }
            Ok(_) => {
                conn.fill()?;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ApiError::io("poll", e)),
        }
    }
}
