//! Starting a container: a root container's init (waiting in the sandbox) runs its program; a
//! subcontainer first gets its gofer and its init, as in runsc's start.

use actix::prelude::*;
use tracing::info;
use wire::api::Start;
use wire::sandbox_proto::SandboxRequest;
use wire::{ApiError, ContainerState, ErrorKind, GoferStatus, Status};

use super::create::{create_hooks, create_in_sandbox, gofer_setup, io_sockets, Launch};
use super::{save, ContainerActor, GoferHandle};
use crate::cgroups::{self, Cgroup};
use crate::gofer::{DestroyGofer, GoferActor, WatchGofer};
use crate::hooks::{self, Stage};
use crate::meta::Meta;
use crate::sandbox::Call;
use crate::status::{self, Operation};
use crate::{blocking, procfs};

impl Handler<crate::Api<Start>> for ContainerActor {
    type Result = AtomicResponse<Self, Result<ContainerState, ApiError>>;

    fn handle(&mut self, crate::Api(_): crate::Api<Start>, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        if let Err(e) = status::require(&id, Operation::Start, self.meta.status) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        }
        if self.meta.init.is_none() {
            return self.start_subcontainer();
        }
        let sandbox = self.sandbox.clone();
        let meta = self.meta.clone();
        let start = async move {
            let sandbox = sandbox
                .ok_or_else(|| ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: its sandbox is gone")))?;
            if let Err(e) = hooks::run_in_container(&sandbox, &meta, Stage::StartContainer).await {
                // As the spec says: the container is stopped (its exit comes as usual).
                let kill = SandboxRequest::Signal { id: id.clone(), signal: libc::SIGKILL, all: true, pid: None };
                let _ = sandbox.send(Call(kill)).await;
                return Err(e);
            }
            sandbox
                .send(Call(SandboxRequest::Start { id: id.clone() }))
                .await
                .map_err(|_| ApiError::new(ErrorKind::Sandbox, format!("the sandbox of container {id:?} went away")))?
                .map(drop)
        };
        AtomicResponse::new(Box::pin(
            start
                .into_actor(self)
                .then(|res, act, _| act.mark_running(res))
                .then(|res, act, _| act.after_success_hooks(Stage::Poststart, res)),
        ))
    }
}

impl ContainerActor {
    /// After the sandbox started the process: Running, saved.
    fn mark_running(
        &mut self,
        started: Result<(), ApiError>,
    ) -> impl ActorFuture<Self, Output = Result<ContainerState, ApiError>> {
        let res = started.and_then(|()| {
            // The process may have exited already (its notice is queued behind us); the
            // start itself succeeded.
            self.meta.status = status::transition(&self.meta.id, self.meta.status, Status::Running)?;
            info!(container = %self.meta.id, "container started");
            self.restart_budget.started(std::time::Instant::now());
            if let Some(init) = self.meta.init {
                self.publish(wire::events::EventKind::Started { pid: init.pid, restarts: self.meta.restart.count });
            }
            Ok(self.meta.clone())
        });
        let store = self.store.clone();
        let gofer = self.gofer_status.clone();
        async move {
            let meta: Meta = res?;
            save(&store, &meta).await?;
            Ok(meta.state(gofer))
        }
        .into_actor(self)
    }

    /// A subcontainer's first start: its gofer (in the sandbox's cgroup), its init in the
    /// sandbox, then the start itself.
    fn start_subcontainer(&mut self) -> AtomicResponse<Self, Result<ContainerState, ApiError>> {
        let config = self.config.clone();
        let meta = self.meta.clone();
        let dir = self.store.dir(&meta.id);
        let sandbox = self.sandbox.clone();
        let cgroup = self.cgroup.clone();
        let stdio = self.pending_stdio.take().unwrap_or_default();
        let fut = async move {
            let id = meta.id.clone();
            let sandbox = sandbox
                .ok_or_else(|| ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: its sandbox is gone")))?;
            let cgroup = cgroup.ok_or_else(|| ApiError::internal(format!("container {id:?} has no cgroup")))?;
            let (gofer_ends, sandbox_ends) = io_sockets(&meta)?;
            let launched =
                GoferActor::launch(&config, &id, &dir, gofer_setup(&config, &meta, gofer_ends, Vec::new())?).await?;
            let gofer_pid = launched.record.pid;
            let sandbox_id = meta.sandbox_id.clone();
            let cg = cgroup.clone();
            let started = async {
                let dirs = blocking(move || {
                    Cgroup::open(&cgroups::sandbox_path(&sandbox_id))?.add(gofer_pid)?;
                    cg.open_dirs()
                })
                .await?;
                let host_pid = create_in_sandbox(&sandbox, &meta, stdio, sandbox_ends, dirs, Launch::First).await?;
                let hooked = async {
                    let record =
                        procfs::record(host_pid).map_err(|e| ApiError::io("reading the container's start time", e))?;
                    // A subcontainer's create hooks come now, when its init exists (as in
                    // runsc, create only registered it).
                    let meta = Meta { init: Some(record), ..meta.clone() };
                    create_hooks(&sandbox, &meta).await?;
                    hooks::run_in_container(&sandbox, &meta, Stage::StartContainer).await?;
                    sandbox
                        .send(Call(SandboxRequest::Start { id: id.clone() }))
                        .await
                        .map_err(|_| ApiError::new(ErrorKind::Sandbox, "the sandbox went away"))??;
                    Ok(record)
                }
                .await;
                if hooked.is_err() {
                    // Its init goes, so that a later start begins afresh; then, as after a
                    // failed create, the poststop hooks.
                    let _ = sandbox.send(Call(SandboxRequest::Destroy { id: id.clone() })).await;
                    hooks::run_here_warning_only(&meta, Stage::Poststop).await;
                }
                hooked
            }
            .await;
            match started {
                Ok(record) => Ok((launched, record)),
                Err(e) => {
                    let _ = launched.addr.send(DestroyGofer).await;
                    Err(e)
                }
            }
        };
        AtomicResponse::new(Box::pin(
            fut.into_actor(self)
                .then(|res, act, ctx| {
                    let res = res.map(|(launched, record)| {
                        launched.addr.do_send(WatchGofer(ctx.address().recipient()));
                        act.meta.gofer = Some(launched.record);
                        act.meta.init = Some(record);
                        act.gofer = Some(GoferHandle::from(launched));
                        act.gofer_status = GoferStatus::Running;
                        act.gofer_budget.started(std::time::Instant::now());
                    });
                    act.mark_running(res)
                })
                .then(|res, act, _| act.after_success_hooks(Stage::Poststart, res)),
        ))
    }
}
