//! The Container actor: one container's status machine and its metadata on disk.
//!
//! Operations that change the container (start, kill, delete, the sandbox's notices) are
//! atomic: the actor handles nothing else until one is finished and saved. `wait` only
//! registers a waiter, so any number of waiters can wait while other operations proceed.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{info, warn};
use wire::api::{Create, Delete, GetState, Kill, Start, Wait};
use wire::sandbox_proto::{CreateContainer, ProcessState, SandboxReply, SandboxRequest};
use wire::{ApiError, ContainerState, ErrorKind, ExitStatus, Status};

use crate::config::SupervisorConfig;
use crate::gofer::{DestroyGofer, GoferActor, GoferPlan};
use crate::meta::{Meta, MetaStore, FORMAT_VERSION};
use crate::sandbox::{Call, Connected, DestroySandbox, Listen, SandboxActor, SandboxNotice};
use crate::spec::{self, Overlay};
use crate::status::{self, Operation};
use crate::{blocking, procfs};

/// Owns one container.
pub struct ContainerActor {
    meta: Meta,
    store: MetaStore,
    sandbox: Option<Addr<SandboxActor>>,
    gofer: Option<Addr<GoferActor>>,
    waiters: Vec<oneshot::Sender<ExitStatus>>,
}

impl Actor for ContainerActor {
    type Context = Context<Self>;
}

/// What exists of a container while it is being created, so a failure can undo it.
#[derive(Default)]
struct Parts {
    sandbox: Option<Addr<SandboxActor>>,
    gofer: Option<Addr<GoferActor>>,
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
                let _ = g.send(DestroyGofer).await;
            }
        };
        tokio::join!(sandbox, gofer);
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

async fn save(store: &MetaStore, meta: &Meta) -> Result<(), ApiError> {
    let (store, meta) = (store.clone(), meta.clone());
    blocking(move || store.save(&meta)).await
}

/// Creates a container: metadata, gofer, sandbox, and the container's init waiting for
/// start. Anything made is undone on failure.
pub(crate) async fn create(
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    msg: Create,
) -> Result<Addr<ContainerActor>, ApiError> {
    let Create {
        id,
        bundle,
        spec: spec_json,
        stdio,
    } = msg;
    let spec = spec_json.parse()?;
    spec::validate(&spec)?;
    if !bundle.as_os_str().is_empty() && !bundle.is_absolute() {
        return Err(ApiError::invalid_argument(format!(
            "bundle {} is not an absolute path",
            bundle.display()
        )));
    }
    let rootfs = spec::rootfs_path(&bundle, &spec)?;
    let plan = GoferPlan {
        rootfs: rootfs.clone(),
        overlay: Overlay::of(&spec)?,
    };
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
    };
    {
        let (store, meta) = (store.clone(), meta.clone());
        blocking(move || store.create(&meta)).await?;
    }
    let mut parts = Parts::default();
    let built = build(
        &config, &store, &mut meta, &mut parts, spec_json, stdio, plan,
    )
    .await;
    match built {
        Ok(()) => {
            let sandbox = parts.sandbox.clone();
            let addr = ContainerActor {
                meta,
                store,
                sandbox: parts.sandbox,
                gofer: parts.gofer,
                waiters: Vec::new(),
            }
            .start();
            if let Some(sandbox) = sandbox {
                sandbox.do_send(Listen {
                    id,
                    recipient: addr.clone().recipient(),
                });
            }
            Ok(addr)
        }
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
    plan: GoferPlan,
) -> Result<(), ApiError> {
    let id = meta.id.clone();
    let (gofer, gofer_end, gofer_record) = GoferActor::launch(config, &id, plan).await?;
    parts.gofer = Some(gofer);
    meta.gofer = Some(gofer_record);
    let (Connected { addr: sandbox, .. }, sandbox_record) =
        SandboxActor::launch(config, &id, &store.dir(&id)).await?;
    parts.sandbox = Some(sandbox.clone());
    meta.sandbox = Some(sandbox_record);
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
            gofer: wire::FdSlot::new(gofer_end),
        })))
        .await
        .map_err(|_| ApiError::new(ErrorKind::Sandbox, format!("sandbox {id:?} went away")))??;
    let SandboxReply::Created { pidfd, .. } = reply else {
        return Err(ApiError::new(
            ErrorKind::Protocol,
            format!("sandbox {id:?}: unexpected reply {reply:?}"),
        ));
    };
    let pidfd = pidfd.as_fd().ok_or_else(|| {
        ApiError::new(
            ErrorKind::Protocol,
            format!("sandbox {id:?}: no pidfd for the container's process"),
        )
    })?;
    let host_pid =
        procfs::pidfd_pid(pidfd).map_err(|e| ApiError::io("reading the container's pid", e))?;
    meta.init = Some(
        procfs::record(host_pid)
            .map_err(|e| ApiError::io("reading the container's start time", e))?,
    );
    meta.status = status::transition(&id, meta.status, Status::Created)?;
    save(store, meta).await?;
    info!(container = %id, pid = host_pid, "container created");
    Ok(())
}

/// Restores a container found on disk when paddockd starts: reconnects to its sandbox and
/// re-adopts its gofer if they still run, and finds it stopped if its sandbox is gone.
/// Returns `None` for a container whose creation never finished (it is cleaned away).
pub(crate) async fn restore(
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    mut meta: Meta,
) -> Result<Option<Addr<ContainerActor>>, ApiError> {
    let id = meta.id.clone();
    let dir: PathBuf = store.dir(&id);
    let gofer = meta.gofer.as_ref().and_then(|r| GoferActor::adopt(&id, r));
    let sandbox = match &meta.sandbox {
        Some(record) => SandboxActor::reconnect(&config, &meta.sandbox_id, record, &dir)
            .await
            .ok(),
        None => None,
    };
    if meta.status == Status::Creating {
        info!(container = %id, "removing a container whose creation never finished");
        Parts {
            sandbox: sandbox.map(|c| c.addr),
            gofer,
        }
        .destroy()
        .await;
        blocking(move || store.remove(&id)).await?;
        return Ok(None);
    }
    let mut pending_notice = None;
    let sandbox_addr = match sandbox {
        Some(Connected { addr, containers }) => {
            match containers.iter().find(|c| c.id == id).map(|c| c.state) {
                Some(ProcessState::Exited(status)) => {
                    pending_notice = Some(SandboxNotice::Exited(status))
                }
                Some(_) => {}
                None if meta.status != Status::Stopped => {
                    pending_notice = Some(SandboxNotice::Lost)
                }
                None => {}
            }
            Some(addr)
        }
        None => {
            if meta.status != Status::Stopped {
                pending_notice = Some(SandboxNotice::Lost);
            }
            None
        }
    };
    if sandbox_addr.is_none() && meta.status != Status::Stopped {
        // Settle it on disk before anyone can look.
        apply_notice(&mut meta, SandboxNotice::Lost);
        save(&store, &meta).await?;
        pending_notice = None;
    }
    info!(container = %id, status = %meta.status, "container restored");
    let addr = ContainerActor {
        meta,
        store,
        sandbox: sandbox_addr.clone(),
        gofer,
        waiters: Vec::new(),
    }
    .start();
    if let Some(sandbox) = sandbox_addr {
        sandbox.do_send(Listen {
            id: id.clone(),
            recipient: addr.clone().recipient(),
        });
    }
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

    fn sandbox_call(
        &self,
        request: SandboxRequest,
    ) -> impl std::future::Future<Output = Result<SandboxReply, ApiError>> + 'static {
        let sandbox = self.sandbox.clone();
        let id = self.meta.id.clone();
        async move {
            let sandbox = sandbox.ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Sandbox,
                    format!("container {id:?} has no sandbox"),
                )
            })?;
            sandbox.send(Call(request)).await.map_err(|_| {
                ApiError::new(
                    ErrorKind::Sandbox,
                    format!("the sandbox of container {id:?} went away"),
                )
            })?
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.store.dir(&self.meta.id)
    }
}

/// Asks a container actor for its state (the supervisor's own query, for create and list).
#[derive(Message)]
#[rtype(result = "ContainerState")]
pub struct Snapshot;

impl Handler<Snapshot> for ContainerActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.meta.state())
    }
}

impl Handler<GetState> for ContainerActor {
    type Result = Result<ContainerState, ApiError>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        Ok(self.meta.state())
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
                    act.meta.status =
                        status::transition(&act.meta.id, act.meta.status, Status::Running)?;
                    info!(container = %act.meta.id, "container started");
                    Ok(act.meta.clone())
                })
                .then(|res: Result<Meta, ApiError>, act, _| {
                    let store = act.store.clone();
                    async move {
                        let meta = res?;
                        save(&store, &meta).await?;
                        Ok(meta.state())
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
        let op = if msg.all {
            Operation::SignalAll
        } else {
            Operation::Signal
        };
        if let Err(e) = status::require(&id, op, self.meta.status) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        }
        if nix::sys::signal::Signal::try_from(msg.signal).is_err() {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(
                ApiError::invalid_argument(format!("{} is not a valid signal number", msg.signal)),
            ))));
        }
        if self.meta.status == Status::Stopped && self.sandbox.is_none() {
            // Nothing of the container is left to signal.
            return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(()))));
        }
        let call = self.sandbox_call(SandboxRequest::Signal {
            id,
            signal: msg.signal,
            all: msg.all,
        });
        AtomicResponse::new(Box::pin(
            call.into_actor(self).map(|res, _, _| res.map(drop)),
        ))
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
            rx.await.map_err(|_| {
                ApiError::not_found(format!("container {id:?} was deleted before it exited"))
            })
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
        let release = self.sandbox_call(SandboxRequest::Release {
            id: meta.id.clone(),
        });
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
        let op = if msg.force {
            Operation::ForceDelete
        } else {
            Operation::Delete
        };
        if let Err(e) = status::require(&id, op, self.meta.status) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        }
        let parts = Parts {
            sandbox: self.sandbox.take(),
            gofer: self.gofer.take(),
        };
        let dir = self.state_dir();
        AtomicResponse::new(Box::pin(
            async move {
                parts.destroy().await;
                // Nothing of the container is left running; the socket file goes with the
                // directory.
                let _ = std::fs::remove_file(dir.join(crate::sandbox::SOCKET_NAME));
            }
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
