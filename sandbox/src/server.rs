//! The sandbox's event loop: one `poll` over the control socket, the connected peers and a
//! signalfd for SIGCHLD. Most requests are answered at once; some are answered later, from
//! the reaper: `kill --all` with SIGKILL and `Destroy` once nothing of the container is left,
//! `WaitPid` once the process has exited.

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
use wire::peers::{PeerId, Peers};
use wire::sandbox_proto::{CreateContainer, ExecProcess, SandboxEvent, SandboxFrame, SandboxReply, SandboxRequest};
use wire::{ApiError, ErrorKind, ExitStatus, FdSlot};

use crate::containers::{Containers, Namespaces, Phase, Reaped, Record};
use crate::exec::{self, ExecConfig};
use crate::init::{self, InitConfig, WaitingInit};
use crate::{cgroup, sandbox_root, seccomp};

/// How long a gofer may take to hand over a mount.
const GOFER_TIMEOUT: Duration = Duration::from_secs(60);

/// What a request that is answered later waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    /// Nothing of the container is alive (then, with `destroy`, forget it).
    Gone { container: String, destroy: bool },
    /// The process exits.
    Exit { pid: Pid },
}

#[derive(Debug)]
struct Deferred {
    peer: PeerId,
    request: u64,
    waiting: Waiting,
}

enum Answer {
    Now(SandboxReply),
    Later(Waiting),
}

/// The sandbox's state and loop.
pub struct Server {
    id: String,
    peers: Peers,
    signals: SignalFd,
    /// The sandbox's own procfs (its PID namespace), never attached anywhere.
    proc: Option<OwnedFd>,
    containers: Containers,
    deferred: Vec<Deferred>,
}

impl Server {
    /// A server on `listener`, reaping on `signals`. A `setup_error` is reported to the first
    /// peer, and then the sandbox exits.
    pub fn new(
        id: String,
        listener: UnixListener,
        signals: SignalFd,
        proc: Option<OwnedFd>,
        setup_error: Option<String>,
    ) -> Self {
        let refusal = setup_error.map(|e| format!("sandbox {id:?} could not set itself up: {e}"));
        let peers = Peers::new(listener, format!("paddock-sandbox {}", env!("CARGO_PKG_VERSION")), refusal);
        Self { id, peers, signals, proc, containers: Containers::default(), deferred: Vec::new() }
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
                let Some(peer) = self.peers.id_at(i - 2) else { continue };
                let (requests, refused) = self.peers.read::<SandboxRequest>(i - 2);
                if refused {
                    return 1;
                }
                for envelope in requests {
                    let attach = matches!(envelope.request, SandboxRequest::Attach);
                    match self.handle(envelope.request) {
                        Ok(Answer::Now(reply)) => {
                            if attach {
                                self.peers.subscribe(peer);
                            }
                            self.peers.reply(peer, &SandboxFrame::Reply { id: envelope.id, result: Ok(reply) });
                        }
                        Ok(Answer::Later(waiting)) => {
                            self.deferred.push(Deferred { peer, request: envelope.id, waiting });
                        }
                        Err(e) => self.peers.reply(peer, &SandboxFrame::Reply { id: envelope.id, result: Err(e) }),
                    }
                }
            }
            self.settle();
            self.peers.prune();
        }
    }

    fn proc(&self) -> Result<&OwnedFd, ApiError> {
        self.proc.as_ref().ok_or_else(|| ApiError::new(ErrorKind::Sandbox, "the sandbox has no procfs"))
    }

    fn handle(&mut self, request: SandboxRequest) -> Result<Answer, ApiError> {
        Ok(match request {
            SandboxRequest::Attach => Answer::Now(SandboxReply::Attached(self.containers.snapshot())),
            SandboxRequest::Create(create) => Answer::Now(self.create(create)?),
            SandboxRequest::Start { id } => {
                let record = self.containers.get_mut(&id)?;
                let Phase::Created(waiting) = &record.phase else {
                    return Err(ApiError::new(
                        ErrorKind::InvalidStatus,
                        format!("container {id:?} is not waiting to be started"),
                    ));
                };
                init::start(&id, waiting)?;
                record.phase = Phase::Running;
                Answer::Now(SandboxReply::Done)
            }
            SandboxRequest::Signal { id, signal, all, pid } => {
                let signal = Signal::try_from(signal)
                    .map_err(|_| ApiError::invalid_argument(format!("{signal} is not a valid signal number")))?;
                if all {
                    self.containers.signal_all(&id, signal)?;
                    if signal == Signal::SIGKILL {
                        return Ok(Answer::Later(Waiting::Gone { container: id, destroy: false }));
                    }
                } else {
                    self.containers.signal(&id, signal, pid.map(Pid::from_raw))?;
                }
                Answer::Now(SandboxReply::Done)
            }
            SandboxRequest::Exec(exec) => Answer::Now(self.exec(exec)?),
            SandboxRequest::WaitPid { id, pid, any } => self.wait_pid(&id, Pid::from_raw(pid), any)?,
            SandboxRequest::Destroy { id } => {
                self.containers.signal_all(&id, Signal::SIGKILL)?;
                Answer::Later(Waiting::Gone { container: id, destroy: true })
            }
            SandboxRequest::Release { id } => {
                self.containers.release(&id)?;
                Answer::Now(SandboxReply::Done)
            }
            SandboxRequest::RunHooks { id, stage, hooks, state } => {
                let record = self.containers.get(&id)?;
                if matches!(record.phase, Phase::Exited(_)) {
                    return Err(ApiError::new(ErrorKind::InvalidStatus, format!("container {id:?} is not running")));
                }
                crate::hooks::run(&id, &stage, hooks, &state, &record.namespaces)?;
                Answer::Now(SandboxReply::Done)
            }
            SandboxRequest::CloneMounts { id } => Answer::Now(SandboxReply::Mounts(
                self.containers.clone_mounts(&id)?.into_iter().map(FdSlot::new).collect(),
            )),
        })
    }

    fn create(&mut self, mut create: CreateContainer) -> Result<SandboxReply, ApiError> {
        let id = create.id.clone();
        let proc = self.proc()?.try_clone().map_err(|e| ApiError::io("dup", e))?;
        let spec = create.spec.parse()?;
        let staged = if create.again {
            // A restart: the container's init has exited; it runs again on the very mounts
            // it had (an overlay keeps what the container wrote).
            match self.containers.get(&id).map(|r| &r.phase) {
                Ok(Phase::Exited(_)) => {}
                Ok(_) => {
                    return Err(ApiError::new(
                        ErrorKind::InvalidStatus,
                        format!("container {id:?} has not exited; it cannot run again"),
                    ))
                }
                Err(e) => return Err(e),
            }
            let Some(old) = self.containers.remove(&id) else {
                return Err(ApiError::internal(format!("container {id:?} vanished")));
            };
            old.staged
        } else {
            if self.containers.contains(&id) {
                return Err(ApiError::new(
                    ErrorKind::AlreadyExists,
                    format!("container {id:?} already exists in sandbox {:?}", self.id),
                ));
            }
            let mounts = receive_mounts(&mut create.mounts)?;
            if mounts.is_empty() {
                return Err(ApiError::new(ErrorKind::Protocol, "create without a rootfs from the gofer"));
            }
            sandbox_root::stage(&id, mounts)?
        };
        let cgroups: Vec<OwnedFd> = create.cgroups.iter_mut().filter_map(FdSlot::take).collect();
        let result = (|| {
            if create.root {
                set_identity(&spec)?;
            }
            set_sysctls(&proc, &spec)?;
            let stdio = [create.stdio.stdin.take(), create.stdio.stdout.take(), create.stdio.stderr.take()];
            if let Some(plan) = create.restore.take() {
                let pid = crate::restore::restore(crate::restore::RestoreConfig {
                    id: &id,
                    rootfs: &staged.rootfs,
                    binds: &staged.binds,
                    stdio,
                    console: create.stdio.console.take(),
                    proc: &proc,
                    plan: *plan,
                })?;
                let seccomp = seccomp::for_spec(&spec)?.map(std::sync::Arc::new);
                return match Namespaces::of(&proc, pid) {
                    Ok(ns) => Ok(Launched::Running(pid, ns, seccomp)),
                    Err(e) => {
                        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        Err(ApiError::io(format!("container {id:?}: opening its namespaces"), e))
                    }
                };
            }
            let console = create.stdio.console.take();
            let extra = extra_fds(&mut create.stdio)?;
            let waiting = init::spawn(InitConfig {
                id: &id,
                spec: &spec,
                rootfs: staged.rootfs.clone(),
                stdio,
                console,
                extra,
                binds: staged.binds.clone(),
                cgroups: &cgroups,
                proc: &proc,
            })?;
            match Namespaces::of(&proc, waiting.pid) {
                Ok(ns) => Ok(Launched::Waiting(waiting, ns)),
                Err(e) => {
                    let _ = nix::sys::signal::kill(waiting.pid, Signal::SIGKILL);
                    let _ = waitpid(waiting.pid, None);
                    Err(ApiError::io(format!("container {id:?}: opening its namespaces"), e))
                }
            }
        })();
        let (pid, namespaces, seccomp, phase) = match result {
            Ok(Launched::Waiting(waiting, ns)) => (waiting.pid, ns, waiting.seccomp.clone(), Phase::Created(waiting)),
            Ok(Launched::Running(pid, ns, seccomp)) => (pid, ns, seccomp, Phase::Running),
            Err(e) => {
                sandbox_root::unstage(&staged);
                return Err(e);
            }
        };
        let pidfd = pidfd_of(pid);
        self.containers.insert(id, Record { pid, phase, staged, released: false, cgroups, namespaces, seccomp });
        Ok(SandboxReply::Created { pid: pid.as_raw(), pidfd: FdSlot::from_option(pidfd) })
    }

    fn exec(&mut self, mut request: ExecProcess) -> Result<SandboxReply, ApiError> {
        let id = request.id.clone();
        let process: oci_spec::runtime::Process = serde_json::from_str(&request.process)
            .map_err(|e| ApiError::invalid_spec(format!("invalid OCI process for exec: {e}")))?;
        let proc = self.proc()?;
        let record = self.containers.get(&id)?;
        if matches!(record.phase, Phase::Exited(_)) {
            return Err(ApiError::new(ErrorKind::InvalidStatus, format!("container {id:?} is not running")));
        }
        let stdio = [request.stdio.stdin.take(), request.stdio.stdout.take(), request.stdio.stderr.take()];
        let console = request.stdio.console.take();
        let extra = extra_fds(&mut request.stdio)?;
        let pid = exec::spawn(ExecConfig {
            what: format!("exec in container {id:?}"),
            process: &process,
            cgroups: &record.cgroups,
            namespaces: &record.namespaces,
            seccomp: record.seccomp.clone(),
            proc,
            stdio,
            console,
            extra,
        })?;
        self.containers.add_exec(&id, pid);
        Ok(SandboxReply::Executed { pid: pid.as_raw(), pidfd: FdSlot::from_option(pidfd_of(pid)) })
    }

    fn wait_pid(&mut self, id: &str, pid: Pid, any: bool) -> Result<Answer, ApiError> {
        if !any && !self.containers.owns(id, pid) {
            return Err(ApiError::not_found(format!("container {id:?} has no process {pid}")));
        }
        match self.containers.collect(pid) {
            Some(Some(status)) => return Ok(Answer::Now(SandboxReply::ProcessExited(status))),
            Some(None) => return Ok(Answer::Later(Waiting::Exit { pid })),
            None => {}
        }
        let proc = self.proc()?;
        if cgroup::is_alive(proc.as_fd(), pid) {
            // Only the sandbox's own children (orphans it adopted) are reaped here.
            if cgroup::parent_of(proc.as_fd(), pid) == Some(Pid::from_raw(1)) {
                return Ok(Answer::Later(Waiting::Exit { pid }));
            }
            return Err(ApiError::invalid_argument(format!(
                "process {pid} is not a child of the sandbox: its exit status goes to its parent"
            )));
        }
        Err(ApiError::not_found(format!(
            "no exit status of process {pid} to collect (it was collected already, or never known)"
        )))
    }

    /// Reaps every exited child; reports the containers whose init ended and answers those
    /// waiting for a process.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitStatus::Signaled(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            };
            let what = self.containers.process_exited(pid, status);
            let waiters: Vec<Deferred> = {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.deferred).into_iter().partition(|d| d.waiting == Waiting::Exit { pid });
                self.deferred = rest;
                mine
            };
            if !waiters.is_empty() && what == Reaped::Exec {
                // Collected: the status is the waiters' now.
                let _ = self.containers.collect(pid);
            }
            for w in waiters {
                self.peers.reply(
                    w.peer,
                    &SandboxFrame::Reply { id: w.request, result: Ok(SandboxReply::ProcessExited(status)) },
                );
            }
            if let Reaped::Init(id) = what {
                // The container ends with its init, as with runc: nothing of it may outlive it.
                let _ = self.containers.signal_all(&id, Signal::SIGKILL);
                self.peers.broadcast(&SandboxFrame::Event(SandboxEvent::Exited { id, status }));
            }
        }
    }

    /// Answers the requests waiting for a container to be gone, where it now is.
    fn settle(&mut self) {
        let Some(proc) = self.proc.as_ref() else { return };
        let mut still = Vec::new();
        for d in std::mem::take(&mut self.deferred) {
            let Waiting::Gone { container, destroy } = &d.waiting else {
                still.push(d);
                continue;
            };
            if !self.containers.is_empty(container, proc) {
                still.push(d);
                continue;
            }
            if *destroy {
                if let Some(record) = self.containers.remove(container) {
                    sandbox_root::unstage(&record.staged);
                }
            }
            self.peers.reply(d.peer, &SandboxFrame::Reply { id: d.request, result: Ok(SandboxReply::Done) });
        }
        self.deferred = still;
    }
}

/// The descriptors to pass on as fds 3, 4, … (every one must have arrived).
fn extra_fds(stdio: &mut wire::Stdio) -> Result<Vec<OwnedFd>, ApiError> {
    stdio
        .extra
        .iter_mut()
        .enumerate()
        .map(|(i, slot)| {
            slot.take()
                .ok_or_else(|| ApiError::new(ErrorKind::Protocol, format!("extra descriptor {} is missing", 3 + i)))
        })
        .collect()
}

/// A container's first process, as create leaves it.
enum Launched {
    /// Its init, set up and waiting for start.
    Waiting(WaitingInit, Namespaces),
    /// Its processes restored from a checkpoint, running.
    Running(Pid, Namespaces, Option<std::sync::Arc<crate::seccomp::Filter>>),
}

fn pidfd_of(pid: Pid) -> Option<OwnedFd> {
    rustix::process::Pid::from_raw(pid.as_raw())
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
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

/// Writes the spec's `linux.sysctl` (paddockd checked that each belongs to a namespace of the
/// container's, which it shares with the sandbox) through the sandbox's procfs.
fn set_sysctls(proc: &OwnedFd, spec: &oci_spec::runtime::Spec) -> Result<(), ApiError> {
    let sysctls = spec.linux().as_ref().and_then(|l| l.sysctl().clone()).unwrap_or_default();
    for (key, value) in sysctls {
        let path = format!("sys/{}", key.replace('.', "/"));
        let file = rustix::fs::openat(
            proc,
            path.as_str(),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| ApiError::invalid_spec(format!("linux.sysctl {key:?}: {e}")))?;
        rustix::io::write(&file, value.as_bytes())
            .map_err(|e| ApiError::invalid_spec(format!("linux.sysctl {key:?} = {value:?}: {e}")))?;
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
