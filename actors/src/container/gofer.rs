//! Keeping a container's gofer alive: a gofer that dies is restarted (with backoff, within a
//! budget) on copies of the mounts the sandbox holds, so it sees the very same trees.

use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::{info, warn};
use wire::gofer_proto::{GoferReply, GoferRequest};
use wire::sandbox_proto::{SandboxReply, SandboxRequest};
use wire::{ApiError, ErrorKind, GoferStatus, Object};

use super::create::gofer_setup;
use super::ContainerActor;
use crate::gofer::{GoferActor, GoferCall, GoferDied, WatchGofer};
use crate::sandbox::Call;
use crate::status::{self, Operation};

impl ContainerActor {
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
                let e = ApiError::new(ErrorKind::Sandbox, format!("its gofer is {other}"))
                    .on(Object::Container(id.clone()));
                Box::pin(async move { Err(e) })
            }
        }
    }

    /// Hands a request to the gofer (waiting for a restarting one).
    pub(super) fn gofer_call(
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
            self.refresh_board();
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
                act.publish(wire::events::EventKind::GoferRestarted { restarts: act.meta.gofer_restarts });
                act.save_later(ctx);
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
        self.gofer_failed_status(ctx);
        self.refresh_board();
    }

    fn gofer_failed_status(&mut self, ctx: &mut Context<Self>) {
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
                self.publish(wire::events::EventKind::GoferFailed { reason: why.clone() });
                self.gofer_status = GoferStatus::Failed(why);
                self.fail_gofer_waiters();
            }
        }
    }

    pub(super) fn fail_gofer_waiters(&mut self) {
        let why = format!("container {:?}: its gofer is {}", self.meta.id, self.gofer_status);
        for w in self.gofer_waiters.drain(..) {
            let _ = w.send(Err(ApiError::new(ErrorKind::Sandbox, why.clone())));
        }
    }
}

impl Handler<GoferDied> for ContainerActor {
    type Result = ();

    fn handle(&mut self, GoferDied(pid): GoferDied, ctx: &mut Context<Self>) {
        self.gofer_died(ctx, pid);
    }
}
