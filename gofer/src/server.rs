//! The gofer's loop: one `poll` over its control socket and the connected peers (paddockd,
//! and paddockd again after a restart). Requests are answered in order.

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use wire::gofer_proto::{GoferFrame, GoferReply, GoferRequest};
use wire::peers::Peers;
use wire::{ApiError, ErrorKind};

use crate::setup::{self, View};

/// The gofer's state and loop.
pub struct Server {
    id: String,
    peers: Peers,
    view: Option<View>,
    /// The command line, rewritten when the setup names another container than `--id`
    /// (a gofer started ahead of need by paddockd's pool).
    title: Option<sys::proctitle::Title>,
    control_fd: i32,
}

impl Server {
    /// A gofer for container `id` (or for the one its setup names), serving `listener` (its
    /// descriptor `control_fd`); `title` is where its command line is.
    pub fn new(id: String, listener: UnixListener, title: Option<sys::proctitle::Title>, control_fd: i32) -> Self {
        let peers = Peers::new(listener, format!("paddock-gofer {}", env!("CARGO_PKG_VERSION")), None);
        Self { id, peers, view: None, title, control_fd }
    }

    /// Takes the setup's container id as its own, in its messages and its command line.
    fn take_id(&mut self, id: &str) {
        if self.id == id {
            return;
        }
        self.id = id.to_string();
        let fd = self.control_fd.to_string();
        let set = self.title.as_ref().map(|t| t.set(&sys::helper_args::HelperArgs::for_container(id, &fd)));
        if let Some(Err(e)) = set {
            eprintln!("paddock-gofer {id}: rewriting its command line: {e}");
        }
    }

    /// Runs until the gofer is killed.
    pub fn run(mut self) -> i32 {
        loop {
            let ready: Vec<bool> = {
                let fds = self.peers.fds();
                let mut pollfds: Vec<PollFd<'_>> =
                    fds.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
                match poll(&mut pollfds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("paddock-gofer {}: poll: {e}", self.id);
                        return 1;
                    }
                }
                pollfds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect()
            };
            if ready[0] {
                self.peers.accept();
            }
            for (i, _) in ready.iter().enumerate().skip(1).filter(|(_, r)| **r) {
                let Some(peer) = self.peers.id_at(i - 1) else { continue };
                let (requests, _) = self.peers.read::<GoferRequest>(i - 1);
                for envelope in requests {
                    let result = self.handle(envelope.request);
                    self.peers.reply(peer, &GoferFrame::Reply { id: envelope.id, result });
                }
            }
            self.peers.prune();
        }
    }

    fn handle(&mut self, request: GoferRequest) -> Result<GoferReply, ApiError> {
        match request {
            GoferRequest::Setup(s) => {
                if self.view.is_some() {
                    return Err(ApiError::new(ErrorKind::InvalidStatus, "the gofer is set up already"));
                }
                self.take_id(&s.id);
                self.view =
                    Some(setup::setup(s).map_err(|e| e.context(format!("gofer of {}", wire::ids::show_id(&self.id))))?);
                // From here it only copies files in and out of its own view of the container.
                crate::confine().map_err(|e| {
                    ApiError::new(ErrorKind::Internal, format!("gofer of {}: confining itself: {e}", self.id))
                })?;
                Ok(GoferReply::Ready)
            }
            GoferRequest::CopyOut { path, mut sink } => {
                let view = self.view()?;
                reachable(view, &path)?;
                let sink = sink.take().ok_or_else(|| ApiError::new(ErrorKind::Protocol, "copy-out without a sink"))?;
                crate::archive::copy_out(view.root.as_fd(), &path, sink)?;
                Ok(GoferReply::Done)
            }
            GoferRequest::CopyIn { path, contents, mut source } => {
                let view = self.view()?;
                reachable(view, &path)?;
                let source =
                    source.take().ok_or_else(|| ApiError::new(ErrorKind::Protocol, "copy-in without a source"))?;
                crate::archive::copy_in(view.root.as_fd(), &path, contents, source, |target| reachable(view, target))?;
                Ok(GoferReply::Done)
            }
        }
    }

    fn view(&self) -> Result<&View, ApiError> {
        self.view.as_ref().ok_or_else(|| ApiError::new(ErrorKind::InvalidStatus, "the gofer has not been set up"))
    }
}

/// Refuses paths at or below a filesystem the container mounts itself (tmpfs, proc, ...):
/// the gofer sees the root filesystem and the bind mounts only, as `docker cp` cannot reach
/// tmpfs mounts either.
pub(crate) fn reachable(view: &View, path: &std::path::Path) -> Result<(), ApiError> {
    let cleaned = crate::archive::clean(path);
    match view.unreachable.iter().find(|m| cleaned.starts_with(crate::archive::clean(m))) {
        Some(mount) => Err(ApiError::new(
            ErrorKind::Unsupported,
            format!(
                "{} is inside {}, a filesystem the container mounts itself, which copies cannot reach",
                path.display(),
                mount.display()
            ),
        )),
        None => Ok(()),
    }
}
