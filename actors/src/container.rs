//! The Container actor: one container's status machine, its metadata on disk, and the
//! supervision of its gofer.
//!
//! Operations that change the container (start, kill, delete, the sandbox's notices, a gofer
//! restart) are atomic: the actor handles nothing else until one is finished and saved.
//! `wait` only registers a waiter and copies go straight to the gofer, so they never hold up
//! the others.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{info, warn};
use wire::api::{CopyIn, CopyOut, Create, Delete, GetState, Kill, Start, Wait};
use wire::gofer_proto::{GoferReply, GoferRequest, GoferSetup};
use wire::sandbox_proto::{CreateContainer, ProcessState, SandboxReply, SandboxRequest};
use wire::{ApiError, ContainerState, ErrorKind, ExitStatus, FdSlot, GoferStatus, Status};

use crate::config::SupervisorConfig;
use crate::gofer::{DestroyGofer, GoferActor, GoferCall, GoferDied, WatchGofer};
use crate::meta::{Meta, MetaStore, FORMAT_VERSION};
use crate::process::ChildProcess;
use crate::restart::RestartBudget;
use crate::sandbox::{Call, Connected, DestroySandbox, Listen, SandboxActor, SandboxNotice};
use crate::spec;
use crate::status::{self, Operation};
use crate::{blocking, procfs};

/// Owns one container.
pub struct ContainerActor {
    meta: Meta,
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    sandbox: Option<Addr<SandboxActor>>,
    gofer: Option<GoferHandle>,
    gofer_status: GoferStatus,
    gofer_budget: RestartBudget,
    /// Copies waiting for a gofer that is being restarted.
    gofer_waiters: Vec<oneshot::Sender<Result<Addr<GoferActor>, ApiError>>>,
    waiters: Vec<oneshot::Sender<ExitStatus>>,
}

impl Actor for ContainerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(gofer) = &self.gofer {
            gofer.addr.do_send(WatchGofer(ctx.address().recipient()));
            self.gofer_budget.started(Instant::now());
        }
        if let Some(sandbox) = &self.sandbox {
            sandbox.do_send(Listen { id: self.meta.id.clone(), recipient: ctx.address().recipient() });
        }
    }
}

/// A running gofer: its actor, and its process for a direct look at whether it still runs.
struct GoferHandle {
    addr: Addr<GoferActor>,
    process: ChildProcess,
}

impl From<crate::gofer::Launched> for GoferHandle {
    fn from(l: crate::gofer::Launched) -> Self {
        Self { addr: l.addr, process: l.process }
    }
}

/// What exists of a container while it is being created, so a failure can undo it.
#[derive(Default)]
struct Parts {
    sandbox: Option<Addr<SandboxActor>>,
    gofer: Option<GoferHandle>,
}

impl Parts {
    /// Kills the sandbox and the gofer, concurrently, and waits until both are gone.
    async fn destroy(self) {
        let sandbox = async {
            if let Some(s) = self.sandbox {
                let _ = s.send(DestroySandbox).await;
            }
        };
        let gofer = async {
            if let Some(g) = self.gofer {
                let _ = g.addr.send(DestroyGofer).await;
            }
        };
        tokio::join!(sandbox, gofer);
    }
}

/// Asks a container actor for its state (the supervisor's own query, for create and list).
#[derive(Message)]
#[rtype(result = "ContainerState")]
pub struct Snapshot;

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

async fn save(store: &MetaStore, meta: &Meta) -> Result<(), ApiError> {
    let (store, meta) = (store.clone(), meta.clone());
    blocking(move || store.save(&meta)).await
}

/// The gofer's setup for a container: its rootfs, overlay and bind mounts, with `io` sockets
/// to the sandbox (a fresh gofer) or `adopted` mounts (a restarted one).
fn gofer_setup(
    config: &SupervisorConfig,
    meta: &Meta,
    io: Vec<FdSlot>,
    adopted: Vec<FdSlot>,
) -> Result<GoferSetup, ApiError> {
    Ok(GoferSetup {
        id: meta.id.clone(),
        bundle: meta.bundle.clone(),
        rootfs: meta.rootfs.clone(),
        readonly_root: meta.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
        overlay: spec::overlay_of(&meta.spec, config.default_overlay)?,
        binds: wire::mounts::bind_mounts(meta.spec.mounts().as_deref().unwrap_or_default()),
        unreachable: wire::mounts::own_mount_destinations(meta.spec.mounts().as_deref().unwrap_or_default()),
        io,
        adopted,
    })
}

/// Creates a container: metadata, gofer, sandbox, and the container's init waiting for
/// start. Anything made is undone on failure.
pub(crate) async fn create(
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    msg: Create,
) -> Result<Addr<ContainerActor>, ApiError> {
    let Create { id, bundle, spec: spec_json, stdio } = msg;
    let spec = spec_json.parse()?;
    spec::validate(&spec)?;
    if !bundle.as_os_str().is_empty() && !bundle.is_absolute() {
        return Err(ApiError::invalid_argument(format!("bundle {} is not an absolute path", bundle.display())));
    }
    let rootfs = spec::rootfs_path(&bundle, &spec)?;
    spec::overlay_of(&spec, config.default_overlay)?;
    let mut meta = Meta {
        format: FORMAT_VERSION,
        id: id.clone(),
        sandbox_id: id.clone(),
        bundle,
        rootfs,
        spec,
        status: Status::Creating,
        created: now_rfc3339(),
        owner: String::new(),
        sandbox: None,
        gofer: None,
        init: None,
        exit_status: None,
        sandbox_lost: false,
        gofer_restarts: 0,
    };
    {
        let (store, meta) = (store.clone(), meta.clone());
        blocking(move || store.create(&meta)).await?;
    }
    let mut parts = Parts::default();
    match build(&config, &store, &mut meta, &mut parts, spec_json, stdio).await {
        Ok(()) => Ok(ContainerActor {
            meta,
            config,
            store,
            sandbox: parts.sandbox,
            gofer: parts.gofer,
            gofer_status: GoferStatus::Running,
            gofer_budget: RestartBudget::gofer(),
            gofer_waiters: Vec::new(),
            waiters: Vec::new(),
        }
        .start()),
        Err(e) => {
            warn!(container = %id, "create failed: {e}");
            parts.destroy().await;
            let _ = blocking(move || store.remove(&id)).await;
            Err(e)
        }
    }
}

async fn build(
    config: &SupervisorConfig,
    store: &MetaStore,
    meta: &mut Meta,
    parts: &mut Parts,
    spec_json: wire::SpecJson,
    stdio: wire::Stdio,
) -> Result<(), ApiError> {
    let id = meta.id.clone();
    // One io socket per mount: the rootfs, then each bind mount in spec order.
    let mounts = 1 + wire::mounts::bind_mounts(meta.spec.mounts().as_deref().unwrap_or_default()).len();
    let mut gofer_ends = Vec::with_capacity(mounts);
    let mut sandbox_ends = Vec::with_capacity(mounts);
    for _ in 0..mounts {
        let (s, g) = UnixStream::pair().map_err(|e| ApiError::io("socketpair", e))?;
        sandbox_ends.push(FdSlot::new(OwnedFd::from(s)));
        gofer_ends.push(FdSlot::new(OwnedFd::from(g)));
    }
    let setup = gofer_setup(config, meta, gofer_ends, Vec::new())?;
    // The gofer and the sandbox do not need each other until the container is created in
    // the sandbox, so they start side by side.
    let state_dir = store.dir(&id);
    let (gofer, sandbox) =
        tokio::join!(GoferActor::launch(config, &id, &state_dir, setup), SandboxActor::launch(config, &id, &state_dir));
    let gofer = gofer.map(|launched| {
        meta.gofer = Some(launched.record);
        parts.gofer = Some(launched.into());
    });
    if let Ok((Connected { addr, .. }, record)) = &sandbox {
        parts.sandbox = Some(addr.clone());
        meta.sandbox = Some(*record);
    }
    gofer?;
    let (Connected { addr: sandbox, .. }, _) = sandbox?;
    // Record the processes before the container exists, so a crash from here on leaves
    // enough on disk to find and stop them.
    save(store, meta).await?;

    let reply = sandbox
        .send(Call(SandboxRequest::Create(CreateContainer {
            id: id.clone(),
            bundle: meta.bundle.clone(),
            spec: spec_json,
            root: true,
            stdio,
            mounts: sandbox_ends,
        })))
        .await
        .map_err(|_| ApiError::new(ErrorKind::Sandbox, format!("sandbox {id:?} went away")))??;
    let SandboxReply::Created { pidfd, .. } = reply else {
        return Err(ApiError::new(ErrorKind::Protocol, format!("sandbox {id:?}: unexpected reply {reply:?}")));
    };
    let pidfd = pidfd.as_fd().ok_or_else(|| {
        ApiError::new(ErrorKind::Protocol, format!("sandbox {id:?}: no pidfd for the container's process"))
    })?;
    let host_pid = procfs::pidfd_pid(pidfd).map_err(|e| ApiError::io("reading the container's pid", e))?;
    meta.init = Some(procfs::record(host_pid).map_err(|e| ApiError::io("reading the container's start time", e))?);
    meta.status = status::transition(&id, meta.status, Status::Created)?;
    save(store, meta).await?;
    info!(container = %id, pid = host_pid, "container created");
    Ok(())
}

/// Restores a container found on disk when paddockd starts: reconnects to its sandbox and
/// its gofer if they still run, and finds it stopped if its sandbox is gone. Returns `None`
/// for a container whose creation never finished (it is cleaned away).
pub(crate) async fn restore(
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    mut meta: Meta,
) -> Result<Option<Addr<ContainerActor>>, ApiError> {
    let id = meta.id.clone();
    let dir: PathBuf = store.dir(&id);
    let gofer = match &meta.gofer {
        Some(record) => GoferActor::reconnect(&config, &id, record, &dir).await.ok().map(GoferHandle::from),
        None => None,
    };
    let sandbox = match &meta.sandbox {
        Some(record) => SandboxActor::reconnect(&config, &meta.sandbox_id, record, &dir).await.ok(),
        None => None,
    };
    if meta.status == Status::Creating {
        info!(container = %id, "removing a container whose creation never finished");
        Parts { sandbox: sandbox.map(|c| c.addr), gofer }.destroy().await;
        blocking(move || store.remove(&id)).await?;
        return Ok(None);
    }
    let mut pending_notice = None;
    let sandbox_addr = match sandbox {
        Some(Connected { addr, containers }) => {
            match containers.iter().find(|c| c.id == id).map(|c| c.state) {
                Some(ProcessState::Exited(status)) => pending_notice = Some(SandboxNotice::Exited(status)),
                Some(_) => {}
                None if meta.status != Status::Stopped => pending_notice = Some(SandboxNotice::Lost),
                None => {}
            }
            Some(addr)
        }
        None => None,
    };
    if sandbox_addr.is_none() && meta.status != Status::Stopped {
        // Settle it on disk before anyone can look.
        apply_notice(&mut meta, SandboxNotice::Lost);
        save(&store, &meta).await?;
    }
    info!(container = %id, status = %meta.status, "container restored");
    let gofer_status = if gofer.is_some() { GoferStatus::Running } else { GoferStatus::Stopped };
    let addr = ContainerActor {
        meta,
        config,
        store,
        sandbox: sandbox_addr,
        gofer,
        gofer_status,
        gofer_budget: RestartBudget::gofer(),
        gofer_waiters: Vec::new(),
        waiters: Vec::new(),
    }
    .start();
    if let Some(notice) = pending_notice {
        addr.do_send(notice);
    }
    Ok(Some(addr))
}

/// Applies a sandbox notice to the metadata; returns whether anything changed.
fn apply_notice(meta: &mut Meta, notice: SandboxNotice) -> bool {
    if meta.status == Status::Stopped {
        return false;
    }
    let (status, lost) = match notice {
        SandboxNotice::Exited(status) => (status, false),
        // The sandbox was killed, and its PID namespace with it: the init died of SIGKILL.
        SandboxNotice::Lost => (ExitStatus::Signaled(libc::SIGKILL), true),
    };
    meta.status = Status::Stopped;
    meta.exit_status = Some(status);
    meta.sandbox_lost = lost;
    true
}

impl ContainerActor {
    fn wake_waiters(&mut self) {
        if let Some(status) = self.meta.exit_status {
            for w in self.waiters.drain(..) {
                let _ = w.send(status);
            }
        }
    }

    fn state(&self) -> ContainerState {
        self.meta.state(self.gofer_status.clone())
    }

    fn sandbox_call(
        &self,
        request: SandboxRequest,
    ) -> impl std::future::Future<Output = Result<SandboxReply, ApiError>> + 'static {
        let sandbox = self.sandbox.clone();
        let id = self.meta.id.clone();
        async move {
            let sandbox =
                sandbox.ok_or_else(|| ApiError::new(ErrorKind::Sandbox, format!("container {id:?} has no sandbox")))?;
            sandbox
                .send(Call(request))
                .await
                .map_err(|_| ApiError::new(ErrorKind::Sandbox, format!("the sandbox of container {id:?} went away")))?
        }
    }

    /// The gofer to hand a copy to: the running one, or (while one is being restarted) the
    /// next one. A gofer that has just died is noticed here, ahead of its watcher.
    fn gofer_for_copy(&mut self, ctx: &mut Context<Self>) -> ResponseFuture<Result<Addr<GoferActor>, ApiError>> {
        if let Some(g) = &self.gofer {
            if !g.process.exited_now() {
                let addr = g.addr.clone();
                return Box::pin(async move { Ok(addr) });
            }
            let pid = g.process.pid();
            self.gofer_died(ctx, pid);
        }
        let id = self.meta.id.clone();
        match &self.gofer_status {
            GoferStatus::Restarting => {
                let (tx, rx) = oneshot::channel();
                self.gofer_waiters.push(tx);
                Box::pin(async move {
                    rx.await.unwrap_or_else(|_| Err(ApiError::not_found(format!("container {id:?} was deleted"))))
                })
            }
            other => {
                let e = ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: its gofer is {other}"));
                Box::pin(async move { Err(e) })
            }
        }
    }

    /// Hands a request to the gofer (waiting for a restarting one).
    fn gofer_call(
        &mut self,
        ctx: &mut Context<Self>,
        op: Operation,
        request: GoferRequest,
    ) -> ResponseFuture<Result<(), ApiError>> {
        let id = self.meta.id.clone();
        if let Err(e) = status::require(&id, op, self.meta.status) {
            return Box::pin(async move { Err(e) });
        }
        let gofer = self.gofer_for_copy(ctx);
        Box::pin(async move {
            match gofer.await?.send(GoferCall(request)).await {
                Ok(Ok(GoferReply::Done)) => Ok(()),
                Ok(Ok(other)) => {
                    Err(ApiError::new(ErrorKind::Protocol, format!("gofer of {id:?}: unexpected {other:?}")))
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ApiError::new(ErrorKind::Sandbox, format!("the gofer of container {id:?} went away"))),
            }
        })
    }

    /// Starts a new gofer on the mounts the sandbox kept, so it sees the very same trees.
    fn restart_gofer(&mut self, ctx: &mut Context<Self>) {
        let Some(sandbox) = self.sandbox.clone() else {
            self.gofer_status = GoferStatus::Failed("the sandbox is gone".into());
            return;
        };
        let config = self.config.clone();
        let meta = self.meta.clone();
        let dir = self.store.dir(&meta.id);
        let fut = async move {
            let reply = sandbox
                .send(Call(SandboxRequest::CloneMounts { id: meta.id.clone() }))
                .await
                .map_err(|_| ApiError::new(ErrorKind::Sandbox, "the sandbox went away"))??;
            let SandboxReply::Mounts(mounts) = reply else {
                return Err(ApiError::new(ErrorKind::Protocol, format!("unexpected {reply:?}")));
            };
            let setup = gofer_setup(&config, &meta, Vec::new(), mounts)?;
            GoferActor::launch(&config, &meta.id, &dir, setup).await
        };
        // Atomic: a delete meanwhile waits, and then finds the new gofer to kill.
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| match res {
            Ok(launched) => {
                let record = launched.record;
                launched.addr.do_send(WatchGofer(ctx.address().recipient()));
                for w in act.gofer_waiters.drain(..) {
                    let _ = w.send(Ok(launched.addr.clone()));
                }
                act.gofer = Some(launched.into());
                act.gofer_status = GoferStatus::Running;
                act.gofer_budget.started(Instant::now());
                act.meta.gofer = Some(record);
                act.meta.gofer_restarts += 1;
                info!(container = %act.meta.id, pid = record.pid, restarts = act.meta.gofer_restarts, "gofer restarted");
                let (store, meta) = (act.store.clone(), act.meta.clone());
                ctx.spawn(
                    async move {
                        if let Err(e) = save(&store, &meta).await {
                            warn!(container = %meta.id, "cannot save after restarting the gofer: {e}");
                        }
                    }
                    .into_actor(act),
                );
            }
            Err(e) => {
                warn!(container = %act.meta.id, "restarting the gofer failed: {e}");
                act.gofer_failed_again(ctx);
            }
        }));
    }

    /// The gofer with `pid` died: schedule a restart within its budget, or give up.
    fn gofer_died(&mut self, ctx: &mut Context<Self>, pid: i32) {
        // Each death is handled once: by whoever notices first.
        if self.gofer.as_ref().is_none_or(|g| g.process.pid() != pid) {
            return;
        }
        self.gofer = None;
        self.gofer_failed_again(ctx);
    }

    fn gofer_failed_again(&mut self, ctx: &mut Context<Self>) {
        if self.sandbox.is_none() {
            self.gofer_status = GoferStatus::Stopped;
            self.fail_gofer_waiters();
            return;
        }
        match self.gofer_budget.next_delay(Instant::now()) {
            Some(delay) => {
                self.gofer_status = GoferStatus::Restarting;
                ctx.run_later(delay, |act, ctx| act.restart_gofer(ctx));
            }
            None => {
                let why = format!(
                    "it died {} times within {:?}; no more restarts",
                    self.gofer_budget.recent() + 1,
                    self.gofer_budget.period
                );
                warn!(container = %self.meta.id, "gofer: {why}");
                self.gofer_status = GoferStatus::Failed(why);
                self.fail_gofer_waiters();
            }
        }
    }

    fn fail_gofer_waiters(&mut self) {
        let why = format!("container {:?}: its gofer is {}", self.meta.id, self.gofer_status);
        for w in self.gofer_waiters.drain(..) {
            let _ = w.send(Err(ApiError::new(ErrorKind::Sandbox, why.clone())));
        }
    }
}

impl Handler<Snapshot> for ContainerActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state())
    }
}

impl Handler<GetState> for ContainerActor {
    type Result = Result<ContainerState, ApiError>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        Ok(self.state())
    }
}

impl Handler<GoferDied> for ContainerActor {
    type Result = ();

    fn handle(&mut self, GoferDied(pid): GoferDied, ctx: &mut Context<Self>) {
        self.gofer_died(ctx, pid);
    }
}

impl Handler<CopyOut> for ContainerActor {
    type Result = ResponseFuture<Result<(), ApiError>>;

    fn handle(&mut self, msg: CopyOut, ctx: &mut Context<Self>) -> Self::Result {
        self.gofer_call(ctx, Operation::Copy, GoferRequest::CopyOut { path: msg.path, sink: msg.sink })
    }
}

impl Handler<CopyIn> for ContainerActor {
    type Result = ResponseFuture<Result<(), ApiError>>;

    fn handle(&mut self, msg: CopyIn, ctx: &mut Context<Self>) -> Self::Result {
        self.gofer_call(
            ctx,
            Operation::Copy,
            GoferRequest::CopyIn { path: msg.path, contents: msg.contents, source: msg.source },
        )
    }
}

impl Handler<Start> for ContainerActor {
    type Result = AtomicResponse<Self, Result<ContainerState, ApiError>>;

    fn handle(&mut self, _: Start, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        if let Err(e) = status::require(&id, Operation::Start, self.meta.status) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        }
        let call = self.sandbox_call(SandboxRequest::Start { id });
        AtomicResponse::new(Box::pin(
            call.into_actor(self)
                .map(|res, act, _| {
                    res?;
                    // The process may have exited already (its notice is queued behind us);
                    // the start itself succeeded.
                    act.meta.status = status::transition(&act.meta.id, act.meta.status, Status::Running)?;
                    info!(container = %act.meta.id, "container started");
                    Ok(act.meta.clone())
                })
                .then(|res: Result<Meta, ApiError>, act, _| {
                    let store = act.store.clone();
                    let gofer = act.gofer_status.clone();
                    async move {
                        let meta = res?;
                        save(&store, &meta).await?;
                        Ok(meta.state(gofer))
                    }
                    .into_actor(act)
                }),
        ))
    }
}

impl Handler<Kill> for ContainerActor {
    type Result = AtomicResponse<Self, Result<(), ApiError>>;

    fn handle(&mut self, msg: Kill, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        let op = if msg.all { Operation::SignalAll } else { Operation::Signal };
        if let Err(e) = status::require(&id, op, self.meta.status) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        }
        if nix::sys::signal::Signal::try_from(msg.signal).is_err() {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(ApiError::invalid_argument(format!(
                "{} is not a valid signal number",
                msg.signal
            ))))));
        }
        if self.meta.status == Status::Stopped && self.sandbox.is_none() {
            // Nothing of the container is left to signal.
            return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(()))));
        }
        let call = self.sandbox_call(SandboxRequest::Signal { id, signal: msg.signal, all: msg.all });
        AtomicResponse::new(Box::pin(call.into_actor(self).map(|res, _, _| res.map(drop))))
    }
}

impl Handler<Wait> for ContainerActor {
    type Result = ResponseFuture<Result<ExitStatus, ApiError>>;

    fn handle(&mut self, _: Wait, _: &mut Context<Self>) -> Self::Result {
        if let (Status::Stopped, Some(status)) = (self.meta.status, self.meta.exit_status) {
            return Box::pin(async move { Ok(status) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.push(tx);
        let id = self.meta.id.clone();
        Box::pin(async move {
            rx.await.map_err(|_| ApiError::not_found(format!("container {id:?} was deleted before it exited")))
        })
    }
}

impl Handler<SandboxNotice> for ContainerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, notice: SandboxNotice, _: &mut Context<Self>) -> Self::Result {
        if !apply_notice(&mut self.meta, notice) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        if notice == SandboxNotice::Lost {
            warn!(container = %self.meta.id, "the sandbox vanished; the container is stopped");
        }
        let store = self.store.clone();
        let meta = self.meta.clone();
        let release = self.sandbox_call(SandboxRequest::Release { id: meta.id.clone() });
        AtomicResponse::new(Box::pin(
            async move {
                if let Err(e) = save(&store, &meta).await {
                    warn!(container = %meta.id, "cannot save the exit status: {e}");
                    return;
                }
                // Stored: the sandbox may forget it now.
                if notice != SandboxNotice::Lost {
                    let _ = release.await;
                }
            }
            .into_actor(self)
            .map(|(), act, _| act.wake_waiters()),
        ))
    }
}

impl Handler<Delete> for ContainerActor {
    type Result = AtomicResponse<Self, Result<(), ApiError>>;

    fn handle(&mut self, msg: Delete, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        let op = if msg.force { Operation::ForceDelete } else { Operation::Delete };
        if let Err(e) = status::require(&id, op, self.meta.status) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        }
        let parts = Parts { sandbox: self.sandbox.take(), gofer: self.gofer.take() };
        self.gofer_status = GoferStatus::Stopped;
        self.fail_gofer_waiters();
        AtomicResponse::new(Box::pin(
            parts
                .destroy()
                .into_actor(self)
                .then(|(), act, _| {
                    if act.meta.status != Status::Stopped {
                        act.meta.status = Status::Stopped;
                        act.meta.exit_status = Some(ExitStatus::Signaled(libc::SIGKILL));
                    }
                    act.wake_waiters();
                    let store = act.store.clone();
                    let id = act.meta.id.clone();
                    async move { blocking(move || store.remove(&id)).await }.into_actor(act)
                })
                .map(|res, act, ctx| {
                    if res.is_ok() {
                        info!(container = %act.meta.id, "container deleted");
                        ctx.stop();
                    }
                    res
                }),
        ))
    }
}
