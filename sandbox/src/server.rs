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

use crate::containers::{Containers, Namespaces, Phase, Reaped, Record, Staged};
use crate::init;
use crate::spawner::jobs::{Done, ExecJob, HooksJob, InitJob, Job, Joins, PidNamespace, RestoreJob};
use crate::spawner::Spawner;
use crate::{cgroup, exec};

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
    /// The maker of every process of the sandbox (see [`crate::spawner`]).
    spawner: Option<Spawner>,
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
        spawner: Option<Spawner>,
        setup_error: Option<String>,
    ) -> Self {
        let refusal = setup_error.map(|e| format!("sandbox {id:?} could not set itself up: {e}"));
        let peers = Peers::new(listener, format!("paddock-sandbox {}", env!("CARGO_PKG_VERSION")), refusal);
        Self { id, peers, signals, proc, spawner, containers: Containers::default(), deferred: Vec::new() }
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

    fn spawner(&mut self) -> Result<&mut Spawner, ApiError> {
        self.spawner.as_mut().ok_or_else(|| ApiError::new(ErrorKind::Sandbox, "the sandbox has no spawner"))
    }

    fn handle(&mut self, request: SandboxRequest) -> Result<Answer, ApiError> {
        Ok(match request {
            SandboxRequest::Attach => Answer::Now(SandboxReply::Attached(self.containers.snapshot())),
            SandboxRequest::Create(create) => Answer::Now(self.create(create)?),
            SandboxRequest::FinishCreate { id } => {
                let record = self.containers.get_mut(&id)?;
                let Phase::Created(waiting) = &mut record.phase else {
                    return Err(ApiError::new(
                        ErrorKind::InvalidStatus,
                        format!("container {id:?} is not being created"),
                    ));
                };
                let Some(maps) = waiting.before_pivot.take() else { return Ok(Answer::Now(SandboxReply::Done)) };
                let (pid, sync) = (waiting.pid, waiting.sync.try_clone().map_err(|e| ApiError::io("dup", e))?);
                init::finish(self.spawner()?, &id, pid, &sync, &maps)?;
                // It entered its final namespaces (a user namespace, a new mount namespace)
                // after the pivot: those are the ones exec and the hooks join.
                let namespaces = match self.spawner()?.call(Job::Namespaces { pid: pid.as_raw() })? {
                    Done::Namespaces(fds) => Namespaces::from_fds(fds)?,
                    other => return Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?}"))),
                };
                self.containers.get_mut(&id)?.namespaces = namespaces;
                Answer::Now(SandboxReply::Done)
            }
            SandboxRequest::Start { id } => {
                let record = self.containers.get_mut(&id)?;
                let Phase::Created(waiting) = &record.phase else {
                    return Err(ApiError::new(
                        ErrorKind::InvalidStatus,
                        format!("container {id:?} is not waiting to be started"),
                    ));
                };
                if waiting.before_pivot.is_some() {
                    return Err(ApiError::new(
                        ErrorKind::InvalidStatus,
                        format!("container {id:?}: its create hooks have not run"),
                    ));
                }
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
                    let target = match pid {
                        Some(pid) => {
                            Some(self.containers.sandbox_pid(&id, Pid::from_raw(pid), self.proc()?.as_fd())?)
                        }
                        None => None,
                    };
                    self.containers.signal(&id, signal, target)?;
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
                let namespaces = record.namespaces.to_fds()?;
                let job = HooksJob { id, stage, hooks, state, namespaces, report: FdSlot::Empty };
                crate::hooks::run(self.spawner()?, job)?;
                Answer::Now(SandboxReply::Done)
            }
            SandboxRequest::CloneMounts { id } => {
                self.containers.get(&id)?;
                match self.spawner()?.call(Job::CopyMounts { id })? {
                    Done::Mounts(mounts) => Answer::Now(SandboxReply::Mounts(mounts)),
                    other => return Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?}"))),
                }
            }
        })
    }

    fn create(&mut self, mut create: CreateContainer) -> Result<SandboxReply, ApiError> {
        let id = create.id.clone();
        let spec = create.spec.parse()?;
        let pid_ns = self.pid_namespace(&create, &spec)?;
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
            let done = self
                .spawner()?
                .call(Job::Stage { id: id.clone(), mounts: mounts.into_iter().map(FdSlot::new).collect() })?;
            let (rootfs, binds) = crate::spawner::staged_paths(done)?;
            Staged { rootfs, binds }
        };
        let cgroups: Vec<OwnedFd> = create.cgroups.iter_mut().filter_map(FdSlot::take).collect();
        let result = self.launch(&id, &spec, &mut create, &staged, &cgroups, pid_ns);
        let (pid, namespaces, phase) = match result {
            Ok(launched) => launched,
            Err(e) => {
                let _ = self.spawner().and_then(|s| s.call(Job::Unstage { id: id.clone() }));
                return Err(e);
            }
        };
        let pidfd = pidfd_of(pid);
        self.containers.insert(id, Record { pid, phase, staged, released: false, cgroups, namespaces });
        Ok(SandboxReply::Created { pid: pid.as_raw(), pidfd: FdSlot::from_option(pidfd) })
    }

    /// The container's first process: its init, set up and waiting for start, or its
    /// processes restored from a checkpoint, running. Returns its pid, its namespaces and
    /// its phase.
    fn launch(
        &mut self,
        id: &str,
        spec: &oci_spec::runtime::Spec,
        create: &mut CreateContainer,
        staged: &Staged,
        cgroups: &[OwnedFd],
        pid_ns: PidNamespace,
    ) -> Result<(Pid, Namespaces, Phase), ApiError> {
        self.spawner()?.call(Job::Configure { spec: create.spec.clone(), root: create.root })?;
        let stdio = std::mem::take(&mut create.stdio);
        let (pid, phase) = if let Some(plan) = create.restore.take() {
            let proc = self.proc()?.try_clone().map_err(|e| ApiError::io("dup", e))?;
            let spawner_pid = self.spawner()?.pid();
            let job = RestoreJob {
                id: id.to_string(),
                rootfs: staged.rootfs.clone(),
                binds: staged.binds.clone(),
                plan: *plan,
                stdio,
                report: FdSlot::Empty,
            };
            (crate::restore::restore(self.spawner()?, job, &proc, spawner_pid)?, None)
        } else {
            let job = InitJob {
                id: id.to_string(),
                spec: create.spec.clone(),
                rootfs: staged.rootfs.clone(),
                binds: staged.binds.clone(),
                pid_ns,
                joins: Joins {
                    mount: FdSlot::from_option(create.mount_ns.take()),
                    cgroup: FdSlot::from_option(create.cgroup_ns.take()),
                    user: FdSlot::from_option(create.user_ns.take()),
                },
                host_root: host_root(&create.bundle, spec),
                cgroups: dup_all(cgroups)?,
                sync: FdSlot::Empty,
                stdio,
                stop_before_pivot: create.stop_before_pivot,
                seccomp_relay: FdSlot::from_option(create.seccomp_relay.take()),
            };
            let waiting = init::create(self.spawner()?, job)?;
            (waiting.pid, Some(waiting))
        };
        let _ = spec;
        let namespaces = match self.spawner()?.call(Job::Namespaces { pid: pid.as_raw() }) {
            Ok(Done::Namespaces(fds)) => Namespaces::from_fds(fds),
            Ok(other) => Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?}"))),
            Err(e) => Err(e),
        };
        match namespaces {
            Ok(ns) => Ok((pid, ns, phase.map_or(Phase::Running, Phase::Created))),
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                Err(e.context(format!("container {id:?}: opening its namespaces")))
            }
        }
    }

    /// Where a new container's init goes (see [`CreateContainer::pid_ns`]).
    fn pid_namespace(
        &mut self,
        create: &CreateContainer,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<PidNamespace, ApiError> {
        let listed = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|n| n.iter().find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid).cloned());
        let in_host = nix::unistd::getpid() != Pid::from_raw(1);
        match listed {
            None if in_host => Ok(PidNamespace::Inherit),
            None => Err(ApiError::invalid_spec(format!(
                "container {:?} has no PID namespace, but its sandbox has one of its own: a container of a pod without \
                 a PID namespace needs its pod's first container without one too (hostPID)",
                create.id
            ))),
            Some(ns) if ns.path().is_some() && !create.root => {
                // A pod member: its spec names the pod's, which is the root container's.
                let root = self.containers.get(&self.id).map(|r| &r.namespaces).map_err(|_| {
                    ApiError::new(
                        ErrorKind::InvalidStatus,
                        "the pod's first container is gone: no PID namespace to share",
                    )
                })?;
                match &root.pid {
                    Some(pid) => {
                        Ok(PidNamespace::Join(FdSlot::new(pid.try_clone().map_err(|e| ApiError::io("dup", e))?)))
                    }
                    None => Ok(PidNamespace::Inherit),
                }
            }
            Some(ns) if ns.path().is_some() => {
                let fd = create.pid_ns.as_fd().ok_or_else(|| {
                    ApiError::new(ErrorKind::Protocol, "a PID namespace path without the namespace's descriptor")
                })?;
                Ok(PidNamespace::Join(FdSlot::new(fd.try_clone_to_owned().map_err(|e| ApiError::io("dup", e))?)))
            }
            Some(_) => Ok(PidNamespace::New),
        }
    }

    fn exec(&mut self, mut request: ExecProcess) -> Result<SandboxReply, ApiError> {
        let id = request.id.clone();
        let record = self.containers.get(&id)?;
        if matches!(record.phase, Phase::Exited(_)) {
            return Err(ApiError::new(ErrorKind::InvalidStatus, format!("container {id:?} is not running")));
        }
        let namespaces = record.namespaces.to_fds()?;
        let cgroups =
            if request.cgroups.is_empty() { dup_all(&record.cgroups)? } else { std::mem::take(&mut request.cgroups) };
        let job = ExecJob {
            id: id.clone(),
            process: std::mem::take(&mut request.process),
            namespaces,
            cgroups,
            sync: FdSlot::Empty,
            stdio: std::mem::take(&mut request.stdio),
            seccomp_relay: FdSlot::from_option(request.seccomp_relay.take()),
        };
        let pid = exec::spawn(self.spawner()?, job)?;
        let container_pid = crate::containers::container_pid_of(self.proc()?.as_fd(), pid).unwrap_or(pid);
        self.containers.add_exec(&id, pid, container_pid);
        Ok(SandboxReply::Executed {
            pid: pid.as_raw(),
            container_pid: container_pid.as_raw(),
            pidfd: FdSlot::from_option(pidfd_of(pid)),
        })
    }

    fn wait_pid(&mut self, id: &str, pid: Pid, any: bool) -> Result<Answer, ApiError> {
        let pid = if any { pid } else { self.sandbox_pid_or_collected(id, pid)? };
        match self.containers.collect(pid) {
            Some(Some(status)) => return Ok(Answer::Now(SandboxReply::ProcessExited(status))),
            Some(None) => return Ok(Answer::Later(Waiting::Exit { pid })),
            None => {}
        }
        let proc = self.proc()?;
        if cgroup::is_alive(proc.as_fd(), pid) {
            // Only the sandbox's own children (orphans it adopted) are reaped here.
            if cgroup::parent_of(proc.as_fd(), pid) == Some(nix::unistd::getpid()) {
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

    /// The sandbox's pid of container `id`'s process `pid` (as the container knows it); an
    /// exec'd process that has exited (no longer in `/proc`) is found by the pid it had.
    fn sandbox_pid_or_collected(&self, id: &str, pid: Pid) -> Result<Pid, ApiError> {
        match self.containers.sandbox_pid(id, pid, self.proc()?.as_fd()) {
            Ok(found) => Ok(found),
            Err(e) => self.containers.exited_exec(id, pid).ok_or(e),
        }
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
            if *destroy && self.containers.remove(container).is_some() {
                if let Some(spawner) = self.spawner.as_mut() {
                    let _ = spawner.call(Job::Unstage { id: container.clone() });
                }
            }
            self.peers.reply(d.peer, &SandboxFrame::Reply { id: d.request, result: Ok(SandboxReply::Done) });
        }
        self.deferred = still;
    }
}

/// Copies of `fds`, for a job.
fn dup_all(fds: &[OwnedFd]) -> Result<Vec<FdSlot>, ApiError> {
    fds.iter().map(|fd| fd.try_clone().map(FdSlot::new).map_err(|e| ApiError::io("dup", e))).collect()
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
pub fn set_identity(spec: &oci_spec::runtime::Spec) -> Result<(), ApiError> {
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
pub fn set_sysctls(proc: &OwnedFd, spec: &oci_spec::runtime::Spec) -> Result<(), ApiError> {
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

/// A container's root filesystem as the host names it: the spec's `root.path`, relative to
/// the bundle unless absolute.
fn host_root(bundle: &std::path::Path, spec: &oci_spec::runtime::Spec) -> std::path::PathBuf {
    let path = spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
    if path.is_absolute() {
        path
    } else {
        bundle.join(path)
    }
}
