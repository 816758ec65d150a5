//! Long work of the sandbox, which its loop follows without waiting for it: receiving a
//! gofer's mounts, a hook runner, CRIU.
//!
//! The sandbox is PID 1 of its pod and single-threaded: while its loop waits for one thing,
//! nothing in the pod is reaped and every other request waits. So whatever may take long
//! runs as a child of the sandbox (hooks, CRIU), reaped as any other, or arrives on a socket
//! the loop polls (the gofer's mounts); the request is answered when the work completes,
//! and other requests are served meanwhile.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;
use wire::conn::Connection;
use wire::frame::DEFAULT_MAX_FRAME;
use wire::gofer_proto::GoferMessage;
use wire::peers::PeerId;
use wire::sandbox_proto::{CreateContainer, RestoreInSandbox};
use wire::{ApiError, ErrorKind};

use crate::containers::Staged;
use crate::hooks::Runner;
use crate::restore::Criu;
use crate::spawner::jobs::PidNamespace;

/// How long a gofer may take to hand over a mount.
pub const GOFER_TIMEOUT: Duration = Duration::from_secs(60);

/// How a container's first process comes to be.
#[derive(Debug)]
pub enum CreateMode {
    /// Its init runs for the first time, on the mounts its gofer hands over.
    Fresh,
    /// Its init runs again, after it exited, on the very mounts it had (an overlay keeps
    /// what the container wrote).
    Again,
    /// Its processes are restored from a checkpoint, on the mounts its gofer hands over.
    Restore(Box<RestoreInSandbox>),
}

impl CreateMode {
    /// The mode `create` asks for (its restore plan is taken).
    pub fn of(create: &mut CreateContainer) -> Result<Self, ApiError> {
        match (create.again, create.restore.take()) {
            (false, None) => Ok(Self::Fresh),
            (true, None) => Ok(Self::Again),
            (false, Some(plan)) => Ok(Self::Restore(plan)),
            (true, Some(_)) => Err(ApiError::new(ErrorKind::Protocol, "a create that both restarts and restores")),
        }
    }
}

/// A create waiting for its gofer's mounts: one detached mount from each io socket, in order.
#[derive(Debug)]
pub struct Handover {
    /// The request, its io sockets taken.
    pub create: CreateContainer,
    /// A fresh create or a restore.
    pub mode: CreateMode,
    /// Where the container's init goes.
    pub pid_ns: PidNamespace,
    sockets: Vec<Connection>,
    received: Vec<OwnedFd>,
    /// When the gofer's time is up.
    pub deadline: Instant,
}

impl Handover {
    /// Starts waiting for the mounts on `create`'s io sockets.
    pub fn new(mut create: CreateContainer, mode: CreateMode, pid_ns: PidNamespace) -> Result<Self, ApiError> {
        let mut sockets = Vec::with_capacity(create.mounts.len());
        for (i, slot) in create.mounts.iter_mut().enumerate() {
            let socket =
                slot.take().ok_or_else(|| ApiError::new(ErrorKind::Protocol, format!("io socket {i} is missing")))?;
            // Read only when poll says so, but never block the loop if it lied. (fcntl, not
            // std's ioctl: the sandbox's seccomp filter allows only the former.)
            rustix::fs::fcntl_setfl(&socket, rustix::fs::OFlags::NONBLOCK)
                .map_err(|e| ApiError::io(format!("io socket {i}"), e))?;
            sockets.push(Connection::new(UnixStream::from(socket), DEFAULT_MAX_FRAME));
        }
        if sockets.is_empty() {
            return Err(ApiError::new(ErrorKind::Protocol, "create without a rootfs from the gofer"));
        }
        Ok(Self { create, mode, pid_ns, sockets, received: Vec::new(), deadline: Instant::now() + GOFER_TIMEOUT })
    }

    /// The socket the next mount comes on, for the loop's poll.
    pub fn waiting_on(&self) -> Option<BorrowedFd<'_>> {
        self.sockets.get(self.received.len()).map(|c| c.as_fd())
    }

    /// Takes what has arrived; `Some` with every mount once the last one is in.
    pub fn advance(&mut self) -> Result<Option<Vec<OwnedFd>>, ApiError> {
        while let Some(conn) = self.sockets.get_mut(self.received.len()) {
            let i = self.received.len();
            if let Some(GoferMessage::Mount { mut mount }) = conn.try_next::<GoferMessage>()? {
                let mount = mount.take().ok_or_else(|| {
                    ApiError::new(ErrorKind::Protocol, "the gofer sent a mount without its descriptor")
                })?;
                self.received.push(mount);
                continue;
            }
            if conn.is_closed() {
                return Err(ApiError::new(
                    ErrorKind::Sandbox,
                    format!("the gofer closed io socket {i}: {}", conn.end_error()),
                ));
            }
            let mut fds = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::ZERO) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
                Ok(_) => match conn.fill() {
                    Ok(_) => {}
                    Err(wire::WireError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e.into()),
                },
                Err(e) => return Err(ApiError::io("poll", e)),
            }
        }
        self.sockets.clear();
        Ok(Some(std::mem::take(&mut self.received)))
    }

    /// The error for a gofer that did not hand over in time.
    pub fn timed_out(&self) -> ApiError {
        ApiError::new(
            ErrorKind::Timeout,
            format!(
                "container {:?}: the gofer did not hand over mount {} within {} s",
                self.create.id,
                self.received.len(),
                GOFER_TIMEOUT.as_secs()
            ),
        )
    }
}

/// A restore whose CRIU runs.
#[derive(Debug)]
pub struct Restoring {
    /// The container.
    pub id: String,
    /// CRIU's process.
    pub criu: Criu,
    /// When CRIU is killed.
    pub deadline: Instant,
    /// The loop killed CRIU at its deadline.
    pub timed_out: bool,
    /// The container's staged mounts.
    pub staged: Staged,
    /// Its cgroup directories.
    pub cgroups: Vec<OwnedFd>,
}

/// What is being waited for.
#[derive(Debug)]
pub enum Work {
    /// The gofer's mounts for a create.
    Handover(Box<Handover>),
    /// A container's hooks.
    Hooks {
        /// The container.
        id: String,
        /// Its runner.
        runner: Runner,
    },
    /// CRIU.
    Restore(Box<Restoring>),
}

impl Work {
    /// The container the work is for.
    pub fn container(&self) -> &str {
        match self {
            Work::Handover(h) => &h.create.id,
            Work::Hooks { id, .. } => id,
            Work::Restore(r) => &r.id,
        }
    }

    /// The child process the work waits for, if it is one.
    pub fn child(&self) -> Option<Pid> {
        match self {
            Work::Handover(_) => None,
            Work::Hooks { runner, .. } => Some(runner.pid),
            Work::Restore(r) => Some(r.criu.pid),
        }
    }

    /// Whether the container does not exist yet (its create is this work).
    pub fn creates(&self) -> bool {
        !matches!(self, Work::Hooks { .. })
    }

    /// When the loop must act on it (kill it, fail it), if ever; hooks have the runner's
    /// own timeouts.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Work::Handover(h) => Some(h.deadline),
            Work::Hooks { .. } => None,
            Work::Restore(r) => (!r.timed_out).then_some(r.deadline),
        }
    }

    /// What the container is doing, for errors about requests that must wait.
    pub fn doing(&self) -> String {
        match self {
            Work::Handover(_) => "being created (waiting for its gofer's mounts)".into(),
            Work::Hooks { runner, .. } => format!("running its {} hooks", runner.stage),
            Work::Restore(_) => "being restored by CRIU".into(),
        }
    }
}

/// Work and the request it answers.
#[derive(Debug)]
pub struct InFlight {
    /// Who asked.
    pub peer: PeerId,
    /// The request's id.
    pub request: u64,
    /// What is being waited for.
    pub work: Work,
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::FdSlot;

    /// A create with `sockets` as its io sockets.
    fn create_on(sockets: Vec<OwnedFd>) -> CreateContainer {
        CreateContainer {
            id: "c".into(),
            bundle: "/nonexistent".into(),
            spec: wire::SpecJson::from_json("{}"),
            root: true,
            stdio: wire::Stdio::default(),
            mounts: sockets.into_iter().map(FdSlot::new).collect(),
            cgroups: Vec::new(),
            pid_ns: FdSlot::Empty,
            mount_ns: FdSlot::Empty,
            cgroup_ns: FdSlot::Empty,
            user_ns: FdSlot::Empty,
            time_ns: FdSlot::Empty,
            again: false,
            restore: None,
            stop_before_pivot: false,
            seccomp_relay: FdSlot::Empty,
        }
    }

    /// A gofer's end that sends a mount (any descriptor stands for one here).
    fn send_mount(gofer: UnixStream) -> Connection {
        let mut conn = Connection::new(gofer, DEFAULT_MAX_FRAME);
        let mount = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        conn.send(&GoferMessage::Mount { mount: FdSlot::new(mount) }).unwrap();
        conn
    }

    #[test]
    fn a_handover_completes_only_once_every_socket_has_sent_its_mount_in_order() {
        let (ours0, gofer0) = UnixStream::pair().unwrap();
        let (ours1, gofer1) = UnixStream::pair().unwrap();
        let mut handover =
            Handover::new(create_on(vec![ours0.into(), ours1.into()]), CreateMode::Fresh, PidNamespace::Inherit)
                .unwrap();
        // The second socket's mount alone does not complete it, nor block.
        let _second = send_mount(gofer1);
        assert!(handover.advance().unwrap().is_none());
        assert!(handover.waiting_on().is_some());
        let _first = send_mount(gofer0);
        let mounts = handover.advance().unwrap().expect("both mounts are in");
        assert_eq!(mounts.len(), 2);
        assert!(handover.waiting_on().is_none());
    }

    #[test]
    fn a_gofer_that_closes_its_socket_fails_the_handover_naming_the_socket() {
        let (ours, gofer) = UnixStream::pair().unwrap();
        let mut handover =
            Handover::new(create_on(vec![ours.into()]), CreateMode::Fresh, PidNamespace::Inherit).unwrap();
        drop(gofer);
        let err = handover.advance().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Sandbox);
        assert!(err.message.contains("io socket 0"), "{err}");
        assert_eq!(handover.timed_out().kind, ErrorKind::Timeout);
    }

    #[test]
    fn the_mode_follows_the_request_and_a_create_without_io_sockets_is_refused() {
        let mut create = create_on(Vec::new());
        assert!(matches!(CreateMode::of(&mut create), Ok(CreateMode::Fresh)));
        create.again = true;
        assert!(matches!(CreateMode::of(&mut create), Ok(CreateMode::Again)));
        assert!(Handover::new(create_on(Vec::new()), CreateMode::Fresh, PidNamespace::Inherit).is_err());
    }
}
