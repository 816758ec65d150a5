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
use wire::peers::Peers;
use wire::sandbox_proto::{CreateContainer, SandboxEvent, SandboxFrame, SandboxReply, SandboxRequest};
use wire::{ApiError, ErrorKind, ExitStatus, FdSlot};

use crate::containers::{Containers, Phase, Record};
use crate::init::{self, InitConfig};
use crate::sandbox_root;

/// How long a gofer may take to hand over a mount.
const GOFER_TIMEOUT: Duration = Duration::from_secs(60);

/// The sandbox's state and loop.
pub struct Server {
    id: String,
    peers: Peers,
    signals: SignalFd,
    containers: Containers,
}

impl Server {
    /// A server on `listener`, reaping on `signals`. A `setup_error` is reported to the first
    /// peer, and then the sandbox exits.
    pub fn new(id: String, listener: UnixListener, signals: SignalFd, setup_error: Option<String>) -> Self {
        let refusal = setup_error.map(|e| format!("sandbox {id:?} could not set itself up: {e}"));
        let peers = Peers::new(listener, format!("paddock-sandbox {}", env!("CARGO_PKG_VERSION")), refusal);
        Self { id, peers, signals, containers: Containers::default() }
    }

    /// Runs until the sandbox is killed (or its setup failed and was reported).
    pub fn run(mut self) -> i32 {
        loop {
            let ready: Vec<bool> = {
                let mut pollfds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                pollfds.extend(self.peers.fds().into_iter().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
                match poll(&mut pollfds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("paddock-sandbox {}: poll: {e}", self.id);
                        return 1;
                    }
                }
                pollfds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect()
            };
            if ready[0] {
                self.reap();
            }
            if ready[1] {
                self.peers.accept();
            }
            for (i, _) in ready.iter().enumerate().skip(2).filter(|(_, r)| **r) {
                let peer = i - 2;
                let (requests, refused) = self.peers.read::<SandboxRequest>(peer);
                if refused {
                    return 1;
                }
                for envelope in requests {
                    let attach = matches!(envelope.request, SandboxRequest::Attach);
                    let result = self.handle(envelope.request);
                    if attach && result.is_ok() {
                        self.peers.subscribe(peer);
                    }
                    self.peers.reply(peer, &SandboxFrame::Reply { id: envelope.id, result });
                }
            }
            self.peers.prune();
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
                let signal = Signal::try_from(signal)
                    .map_err(|_| ApiError::invalid_argument(format!("{signal} is not a valid signal number")))?;
                self.containers.signal(&id, signal, all).map(|()| SandboxReply::Done)
            }
            SandboxRequest::Release { id } => self.containers.release(&id).map(|()| SandboxReply::Done),
            SandboxRequest::CloneMounts { id } => {
                Ok(SandboxReply::Mounts(self.containers.clone_mounts(&id)?.into_iter().map(FdSlot::new).collect()))
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
        let mounts = receive_mounts(&mut create.mounts)?;
        if mounts.is_empty() {
            return Err(ApiError::new(ErrorKind::Protocol, "create without a rootfs from the gofer"));
        }
        let staged = sandbox_root::stage(&id, mounts)?;
        let result = (|| {
            if create.root {
                set_identity(&spec)?;
            }
            let stdio = [create.stdio.stdin.take(), create.stdio.stdout.take(), create.stdio.stderr.take()];
            init::spawn(InitConfig {
                id: &id,
                spec: &spec,
                rootfs: staged.rootfs.clone(),
                stdio,
                binds: staged.binds.clone(),
            })
        })();
        let waiting = match result {
            Ok(w) => w,
            Err(e) => {
                sandbox_root::unstage(&staged);
                return Err(e);
            }
        };
        let pid = waiting.pid;
        let pidfd: Option<OwnedFd> = rustix::process::Pid::from_raw(pid.as_raw())
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
        self.containers.insert(id, Record { pid, phase: Phase::Created(waiting), staged, released: false });
        Ok(SandboxReply::Created { pid: pid.as_raw(), pidfd: FdSlot::from_option(pidfd) })
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
            let Some(id) = self.containers.process_exited(pid, status) else { continue };
            // The container ended with its init, as with runc: nothing of it may outlive it.
            let _ = self.containers.signal(&id, Signal::SIGKILL, true);
            self.peers.broadcast(&SandboxFrame::Event(SandboxEvent::Exited { id, status }));
        }
    }
}

/// Receives one detached mount from each of the gofer's io sockets, in order.
fn receive_mounts(sockets: &mut [FdSlot]) -> Result<Vec<OwnedFd>, ApiError> {
    let mut mounts = Vec::with_capacity(sockets.len());
    for (i, slot) in sockets.iter_mut().enumerate() {
        let socket =
            slot.take().ok_or_else(|| ApiError::new(ErrorKind::Protocol, format!("io socket {i} is missing")))?;
        let mut conn = Connection::new(UnixStream::from(socket), DEFAULT_MAX_FRAME);
        let GoferMessage::Mount { mut mount } = recv_gofer(&mut conn, GOFER_TIMEOUT)?;
        mounts.push(
            mount
                .take()
                .ok_or_else(|| ApiError::new(ErrorKind::Protocol, "the gofer sent a mount without its descriptor"))?,
        );
    }
    Ok(mounts)
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
            return Err(ApiError::invalid_spec(format!("domainname {domain:?}: {err}")));
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
        match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
            Ok(0) => return Err(ApiError::new(ErrorKind::Sandbox, "the gofer did not answer in time")),
            Ok(_) => {
                conn.fill()?;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ApiError::io("poll", e)),
        }
    }
}
