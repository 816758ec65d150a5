//! The sandbox's event loop: one `poll` over the control socket, the connected peers, a
//! signalfd for SIGCHLD and the sockets on which gofers hand over mounts.
//!
//! Nothing in the loop waits long: it is the pod's PID 1, and while it waits nothing in the
//! pod is reaped and every other container's request waits too. Most requests are answered
//! at once; the others later: from the reaper (`kill --all` with SIGKILL and `Destroy` once
//! nothing of the container is left, `WaitPid` once the process has exited, hooks and a
//! restore once their process has ended), or once a gofer's mounts are in (see
//! [`crate::work`]). A container whose create or hooks are under way refuses what must wait
//! for them (a start, a second create), naming what it is doing.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use wire::peers::{PeerId, Peers};
use wire::sandbox_proto::{
    CreateContainer, ExecProcess, RestoreInSandbox, SandboxEvent, SandboxFrame, SandboxReply, SandboxRequest,
};
use wire::{ApiError, ErrorKind, ExitStatus, FdSlot};

use crate::containers::{Containers, Namespaces, Phase, Reaped, Record, Staged};
use crate::init::{self, WaitingInit};
use crate::spawner::jobs::{Done, ExecJob, HooksJob, InitJob, Job, Joins, PidNamespace, RestoreJob};
use crate::spawner::Spawner;
use crate::work::{CreateMode, Handover, InFlight, Restoring, Work};
use crate::{cgroup, exec, restore};

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
    /// Once this work completes.
    Working(Work),
}

/// What comes of a gofer's handover: the create's reply, or more work (CRIU).
enum Next {
    Reply(SandboxReply),
    Work(Work),
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
    /// Long work under way, each answering a request when it completes.
    work: Vec<InFlight>,
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
        Self {
            id,
            peers,
            signals,
            proc,
            spawner,
            containers: Containers::default(),
            deferred: Vec::new(),
            work: Vec::new(),
        }
    }

    /// A sandbox is named after its root container: a pooled one learns it from the first
    /// root container created in it, and takes it as its own, in its messages, in finding
    /// the pod's namespaces, and in its command line.
    fn take_root_id(&mut self, id: &str) {
        if self.id == id || !self.containers.none() || !self.work.is_empty() {
            return;
        }
        self.id = id.to_string();
        // The spawner's at the root container's Configure.
        crate::retitle(id);
    }

    /// Runs until the sandbox is killed (or its setup failed and was reported).
    pub fn run(mut self) -> i32 {
        loop {
            let timeout = self.poll_timeout();
            let ready: Vec<bool> = {
                let mut pollfds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
                pollfds.extend(self.peers.fds().into_iter().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
                let served = pollfds.len();
                // The gofers' sockets only wake the loop; advance_work reads what came.
                pollfds.extend(
                    self.work
                        .iter()
                        .filter_map(|w| match &w.work {
                            Work::Handover(h) => h.waiting_on(),
                            _ => None,
                        })
                        .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
                );
                match poll(&mut pollfds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("paddock-sandbox {}: poll: {e}", self.id);
                        return 1;
                    }
                }
                pollfds.iter().take(served).map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect()
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
                        Ok(Answer::Working(work)) => self.work.push(InFlight { peer, request: envelope.id, work }),
                        Err(e) => self.peers.reply(peer, &SandboxFrame::Reply { id: envelope.id, result: Err(e) }),
                    }
                }
            }
            self.advance_work();
            self.settle();
            self.peers.prune();
        }
    }

    /// Until the nearest deadline of the work under way (forever if none has one).
    fn poll_timeout(&self) -> PollTimeout {
        let Some(next) = self.work.iter().filter_map(|w| w.work.deadline()).min() else { return PollTimeout::NONE };
        // A millisecond more: poll rounds down, and waking just before the deadline would
        // only spin.
        let left = next.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
        PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
    }

    fn proc(&self) -> Result<&OwnedFd, ApiError> {
        self.proc.as_ref().ok_or_else(|| ApiError::new(ErrorKind::Sandbox, "the sandbox has no procfs"))
    }

    fn spawner(&mut self) -> Result<&mut Spawner, ApiError> {
        self.spawner.as_mut().ok_or_else(|| ApiError::new(ErrorKind::Sandbox, "the sandbox has no spawner"))
    }

    /// Refuses a request that must wait for work under way on its container: anything but a
    /// destroy while the container is still being created, and another create, setup step,
    /// start or hooks while its hooks run.
    fn refuse_while_busy(&self, request: &SandboxRequest) -> Result<(), ApiError> {
        let (id, op) = match request {
            SandboxRequest::Create(c) => (&c.id, "created"),
            SandboxRequest::FinishCreate { id } => (id, "set up further"),
            SandboxRequest::Start { id } => (id, "started"),
            SandboxRequest::RunHooks { id, .. } => (id, "given more hooks to run"),
            SandboxRequest::Signal { id, .. } => (id, "signalled"),
            SandboxRequest::Exec(e) => (&e.id, "exec'd into"),
            SandboxRequest::WaitPid { id, any: false, .. } => (id, "waited for"),
            SandboxRequest::Release { id } => (id, "released"),
            SandboxRequest::CloneMounts { id } => (id, "copied"),
            SandboxRequest::Attach | SandboxRequest::WaitPid { any: true, .. } | SandboxRequest::Destroy { .. } => {
                return Ok(())
            }
        };
        let ordered = matches!(
            request,
            SandboxRequest::Create(_)
                | SandboxRequest::FinishCreate { .. }
                | SandboxRequest::Start { .. }
                | SandboxRequest::RunHooks { .. }
        );
        match self.work.iter().find(|w| w.work.container() == id.as_str()) {
            Some(w) if ordered || w.work.creates() => Err(ApiError::new(
                ErrorKind::InvalidStatus,
                format!("container {id:?} is {}: it cannot be {op} until that completes", w.work.doing()),
            )),
            _ => Ok(()),
        }
    }

    fn handle(&mut self, request: SandboxRequest) -> Result<Answer, ApiError> {
        self.refuse_while_busy(&request)?;
        Ok(match request {
            SandboxRequest::Attach => Answer::Now(SandboxReply::Attached(self.containers.snapshot())),
            SandboxRequest::Create(create) => self.create(create)?,
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
                let namespaces = self.namespaces_of(pid)?;
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
                if self.cancel_create(&id) {
                    return Ok(Answer::Now(SandboxReply::Done));
                }
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
                let job = HooksJob { id: id.clone(), stage, hooks, state, namespaces, report: FdSlot::Empty };
                let runner = crate::hooks::spawn(self.spawner()?, job)?;
                Answer::Working(Work::Hooks { id, runner })
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

    /// Ends the create of `id` that is under way, if one is: a handover is dropped, CRIU
    /// killed (its end is reported to the create's caller as a failure, as usual).
    fn cancel_create(&mut self, id: &str) -> bool {
        let Some(i) = self.work.iter().position(|w| w.work.creates() && w.work.container() == id) else {
            return false;
        };
        match &self.work[i].work {
            Work::Restore(r) => {
                let _ = nix::sys::signal::kill(r.criu.pid, Signal::SIGKILL);
            }
            _ => {
                let cancelled = self.work.remove(i);
                let e = ApiError::new(
                    ErrorKind::Sandbox,
                    format!("container {id:?}: its create was cancelled by a destroy"),
                );
                self.peers.reply(cancelled.peer, &SandboxFrame::Reply { id: cancelled.request, result: Err(e) });
            }
        }
        true
    }

    /// A create, by its mode: a restart runs the init again at once; a fresh create and a
    /// restore first wait (in the loop) for the gofer's mounts.
    fn create(&mut self, mut create: CreateContainer) -> Result<Answer, ApiError> {
        if create.root {
            self.take_root_id(&create.id);
        }
        let mode = CreateMode::of(&mut create)?;
        let spec = create.spec.parse()?;
        let pid_ns = self.pid_namespace(&create, &spec)?;
        if let CreateMode::Again = mode {
            return self.create_again(create, &spec, pid_ns).map(Answer::Now);
        }
        if self.containers.contains(&create.id) {
            return Err(ApiError::new(
                ErrorKind::AlreadyExists,
                format!("container {:?} already exists in sandbox {:?}", create.id, self.id),
            ));
        }
        Ok(Answer::Working(Work::Handover(Box::new(Handover::new(create, mode, pid_ns)?))))
    }

    /// A restart: the container's init has exited; it runs again on the very mounts it had
    /// (an overlay keeps what the container wrote).
    fn create_again(
        &mut self,
        create: CreateContainer,
        spec: &oci_spec::runtime::Spec,
        pid_ns: PidNamespace,
    ) -> Result<SandboxReply, ApiError> {
        let id = create.id.clone();
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
        self.create_init(create, spec, old.staged, pid_ns)
    }

    /// The gofer has handed over the mounts of a fresh create or a restore: they are staged,
    /// and the init forked (answered now) or CRIU started (answered when it ends).
    fn handed_over(&mut self, handover: Handover, mounts: Vec<OwnedFd>) -> Result<Next, ApiError> {
        let Handover { create, mode, pid_ns, .. } = handover;
        let id = create.id.clone();
        let done = self.spawner()?.call(Job::Stage { id, mounts: mounts.into_iter().map(FdSlot::new).collect() })?;
        let (rootfs, binds) = crate::spawner::staged_paths(done)?;
        let staged = Staged { rootfs, binds };
        match mode {
            CreateMode::Fresh => {
                let spec = create.spec.parse()?;
                self.create_init(create, &spec, staged, pid_ns).map(Next::Reply)
            }
            CreateMode::Restore(plan) => self.begin_restore(create, *plan, staged).map(Next::Work),
            CreateMode::Again => Err(ApiError::internal("a restart waited for a gofer's mounts")),
        }
    }

    /// Forks the container's init on `staged` and waits until it is set up; on failure the
    /// mounts are unstaged.
    fn create_init(
        &mut self,
        mut create: CreateContainer,
        spec: &oci_spec::runtime::Spec,
        staged: Staged,
        pid_ns: PidNamespace,
    ) -> Result<SandboxReply, ApiError> {
        let id = create.id.clone();
        let cgroups: Vec<OwnedFd> = create.cgroups.iter_mut().filter_map(FdSlot::take).collect();
        let created = self
            .configure(&create)
            .and_then(|()| self.launch_init(spec, &mut create, &staged, &cgroups, pid_ns))
            .and_then(|waiting| self.admit(&id, waiting.pid, Some(waiting), staged, cgroups));
        if created.is_err() {
            self.unstage(&id);
        }
        created
    }

    /// Applies the container's spec to the sandbox (its identity, its sysctls).
    fn configure(&mut self, create: &CreateContainer) -> Result<(), ApiError> {
        let (id, spec, root) = (create.id.clone(), create.spec.clone(), create.root);
        self.spawner()?.call(Job::Configure { id, spec, root }).map(drop)
    }

    fn unstage(&mut self, id: &str) {
        let _ = self.spawner().and_then(|s| s.call(Job::Unstage { id: id.to_string() }));
    }

    /// The container's init, set up and waiting for start.
    fn launch_init(
        &mut self,
        spec: &oci_spec::runtime::Spec,
        create: &mut CreateContainer,
        staged: &Staged,
        cgroups: &[OwnedFd],
        pid_ns: PidNamespace,
    ) -> Result<WaitingInit, ApiError> {
        let job = InitJob {
            id: create.id.clone(),
            spec: create.spec.clone(),
            rootfs: staged.rootfs.clone(),
            binds: staged.binds.clone(),
            pid_ns,
            joins: Joins {
                mount: FdSlot::from_option(create.mount_ns.take()),
                cgroup: FdSlot::from_option(create.cgroup_ns.take()),
                user: FdSlot::from_option(create.user_ns.take()),
                time: FdSlot::from_option(create.time_ns.take()),
            },
            host_root: host_root(&create.bundle, spec),
            cgroups: dup_all(cgroups)?,
            sync: FdSlot::Empty,
            stdio: std::mem::take(&mut create.stdio),
            stop_before_pivot: create.stop_before_pivot,
            seccomp_relay: FdSlot::from_option(create.seccomp_relay.take()),
        };
        init::create(self.spawner()?, job)
    }

    /// Starts CRIU on the staged mounts; the restore is answered when CRIU ends (see
    /// [`Self::restored`]). On failure the mounts are unstaged.
    fn begin_restore(
        &mut self,
        mut create: CreateContainer,
        plan: RestoreInSandbox,
        staged: Staged,
    ) -> Result<Work, ApiError> {
        let id = create.id.clone();
        let cgroups: Vec<OwnedFd> = create.cgroups.iter_mut().filter_map(FdSlot::take).collect();
        let job = RestoreJob {
            id: id.clone(),
            spec: create.spec.clone(),
            rootfs: staged.rootfs.clone(),
            binds: staged.binds.clone(),
            plan,
            stdio: std::mem::take(&mut create.stdio),
            report: FdSlot::Empty,
        };
        let spawned = self.configure(&create).and_then(|()| restore::spawn(self.spawner()?, job));
        match spawned {
            Ok(criu) => Ok(Work::Restore(Box::new(Restoring {
                id,
                criu,
                deadline: Instant::now() + restore::CRIU_TIMEOUT,
                timed_out: false,
                staged,
                cgroups,
            }))),
            Err(e) => {
                self.unstage(&id);
                Err(e)
            }
        }
    }

    /// CRIU ended (reaped with `status`): the container is admitted with the init it
    /// restored, or the restore fails and its mounts are unstaged.
    fn restored(&mut self, restoring: Restoring, status: ExitStatus) -> Result<SandboxReply, ApiError> {
        let Restoring { id, criu, timed_out, staged, cgroups, .. } = restoring;
        let children = match self.proc.as_ref() {
            Some(proc) => restore::children_of(proc, Pid::this()),
            None => Vec::new(),
        };
        let spawner = self.spawner.as_ref().map(Spawner::pid);
        // What CRIU left is the one child that is none of the sandbox's known processes.
        let unknown = children
            .into_iter()
            .filter(|c| Some(*c) != spawner && !self.containers.knows(*c))
            .filter(|c| !self.work.iter().any(|w| w.work.child() == Some(*c)))
            .collect();
        let admitted =
            criu.outcome(status, timed_out, unknown).and_then(|pid| self.admit(&id, pid, None, staged, cgroups));
        if admitted.is_err() {
            self.unstage(&id);
        }
        admitted
    }

    /// Records the container whose first process is `pid` (an init waiting for start, or
    /// restored processes, running), with the namespaces that process has.
    fn admit(
        &mut self,
        id: &str,
        pid: Pid,
        waiting: Option<WaitingInit>,
        staged: Staged,
        cgroups: Vec<OwnedFd>,
    ) -> Result<SandboxReply, ApiError> {
        let namespaces = match self.namespaces_of(pid) {
            Ok(ns) => ns,
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(e.context(format!("container {id:?}: opening its namespaces")));
            }
        };
        let phase = waiting.map_or(Phase::Running, Phase::Created);
        let pidfd = pidfd_of(pid);
        self.containers.insert(id.to_string(), Record { pid, phase, staged, released: false, cgroups, namespaces });
        Ok(SandboxReply::Created { pid: pid.as_raw(), pidfd: FdSlot::from_option(pidfd) })
    }

    /// The namespaces of process `pid`, as the spawner opens them.
    fn namespaces_of(&mut self, pid: Pid) -> Result<Namespaces, ApiError> {
        match self.spawner()?.call(Job::Namespaces { pid: pid.as_raw() })? {
            Done::Namespaces(fds) => Namespaces::from_fds(fds),
            other => Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?}"))),
        }
    }

    /// Moves the gofers' handovers on (and fails those past their deadline), and kills CRIU
    /// past its own.
    fn advance_work(&mut self) {
        enum Step {
            Wait,
            Fail(ApiError),
            Mounts(Vec<OwnedFd>),
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.work.len() {
            let step = match &mut self.work[i].work {
                Work::Handover(h) => match h.advance() {
                    Ok(Some(mounts)) => Step::Mounts(mounts),
                    Ok(None) if h.deadline <= now => Step::Fail(h.timed_out()),
                    Ok(None) => Step::Wait,
                    Err(e) => Step::Fail(e.context(format!("container {:?}: receiving its mounts", h.create.id))),
                },
                Work::Restore(r) if !r.timed_out && r.deadline <= now => {
                    // Its end, reaped, answers the restore.
                    let _ = nix::sys::signal::kill(r.criu.pid, Signal::SIGKILL);
                    r.timed_out = true;
                    Step::Wait
                }
                _ => Step::Wait,
            };
            match step {
                Step::Wait => i += 1,
                Step::Fail(e) => {
                    let failed = self.work.remove(i);
                    self.peers.reply(failed.peer, &SandboxFrame::Reply { id: failed.request, result: Err(e) });
                }
                Step::Mounts(mounts) => {
                    let InFlight { peer, request, work } = self.work.remove(i);
                    let Work::Handover(handover) = work else { continue };
                    match self.handed_over(*handover, mounts) {
                        Ok(Next::Reply(reply)) => {
                            self.peers.reply(peer, &SandboxFrame::Reply { id: request, result: Ok(reply) })
                        }
                        Ok(Next::Work(work)) => self.work.push(InFlight { peer, request, work }),
                        Err(e) => self.peers.reply(peer, &SandboxFrame::Reply { id: request, result: Err(e) }),
                    }
                }
            }
        }
    }

    /// Answers the request of the work whose process `pid` ended; `false` if none was.
    fn work_ended(&mut self, pid: Pid, status: ExitStatus) -> bool {
        let Some(i) = self.work.iter().position(|w| w.work.child() == Some(pid)) else { return false };
        let InFlight { peer, request, work } = self.work.remove(i);
        let result = match work {
            Work::Hooks { runner, .. } => runner.outcome(status).map(|()| SandboxReply::Done),
            Work::Restore(restoring) => self.restored(*restoring, status),
            Work::Handover(_) => return false,
        };
        self.peers.reply(peer, &SandboxFrame::Reply { id: request, result });
        true
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
        let pid = exec::spawn(self.spawner()?, job, request.frozen)?;
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

    /// Reaps every exited child; answers the work whose process ended, reports the
    /// containers whose init ended and answers those waiting for a process.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        // The work's own processes first: the init a restore left must still be a child
        // (perhaps a zombie) when CRIU's end is handled, not reaped as an unknown process.
        let children: Vec<Pid> = self.work.iter().filter_map(|w| w.work.child()).collect();
        for pid in children {
            if let Some((pid, status)) = exit_of(waitpid(pid, Some(WaitPidFlag::WNOHANG))) {
                self.work_ended(pid, status);
            }
        }
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                reaped => match exit_of(reaped) {
                    Some(exited) => exited,
                    None => continue,
                },
            };
            if self.work_ended(pid, status) {
                continue;
            }
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

/// The pid and exit status of a reaped process (`None`: it did not end, only stopped or
/// continued, or nothing was reaped).
fn exit_of(reaped: nix::Result<WaitStatus>) -> Option<(Pid, ExitStatus)> {
    match reaped {
        Ok(WaitStatus::Exited(pid, code)) => Some((pid, ExitStatus::Exited(code))),
        Ok(WaitStatus::Signaled(pid, sig, _)) => Some((pid, ExitStatus::Signaled(sig as i32))),
        _ => None,
    }
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
