//! A container's restart policy at work.
//!
//! When the container's init exits, the policy (`dev.paddock.restart`) and the restart budget
//! decide: no restart, a restart after a backoff (100 ms doubling to 30 s, reset after 10 s
//! of healthy running), or giving up (the policy's count is spent, or the intensity limit:
//! too many restarts within the period). The decision is stored with the exit status, so a
//! paddockd that restarts meanwhile carries on with it. The container is `stopped` during the
//! backoff, and then runs again in its sandbox on the very mounts it had; waiters get its exit
//! status only once it stopped for good.

use std::time::{Duration, Instant};

use actix::prelude::*;
use tracing::{info, warn};
use wire::events::EventKind;
use wire::sandbox_proto::SandboxRequest;
use wire::{ApiError, ErrorKind, Status, Stdio};

use super::create::{create_in_sandbox, Launch};
use super::{save, ContainerActor};
use crate::restart::{NoRestart, RestartPolicy};
use crate::sandbox::Call;
use crate::{blocking, procfs};

/// What follows an exit.
pub(super) enum Plan {
    /// Nothing: the container stays stopped.
    Stay,
    /// The policy gives up, for this reason.
    GiveUp(String),
    /// A restart after this delay.
    After(Duration),
}

/// Time to run the container again.
#[derive(Message)]
#[rtype(result = "()")]
struct RestartNow;

impl ContainerActor {
    fn policy(&self) -> RestartPolicy {
        // Checked at create; an unreadable annotation means no policy.
        RestartPolicy::of(&self.meta.spec).unwrap_or_default()
    }

    /// Whether a user's signal stops the container for its policy: the signals that end a
    /// process by default (docker's `stop` and `kill` count as a user's stop).
    pub(super) fn is_stop_signal(signal: i32) -> bool {
        [libc::SIGKILL, libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP].contains(&signal)
    }

    fn budget_plan(&mut self) -> Plan {
        match self.restart_budget.next_delay(Instant::now()) {
            Some(delay) => Plan::After(delay),
            None => Plan::GiveUp(format!(
                "more than {} restarts within {:?}: the intensity limit",
                self.restart_budget.max_restarts, self.restart_budget.period
            )),
        }
    }

    /// After an exit (already in `meta`): decides what follows and records the decision in
    /// the metadata, to be saved with the exit status.
    pub(super) fn plan_restart(&mut self, lost: bool) -> Plan {
        let Some(status) = self.meta.exit_status else { return Plan::Stay };
        self.meta.restart.last_exit = Some(status);
        let policy = self.policy();
        let decision = match policy {
            RestartPolicy::No => Err(NoRestart::NotWanted),
            _ if lost => Err(NoRestart::GaveUp("its sandbox is gone".into())),
            _ => policy.after_exit(
                status,
                self.meta.restart.stopped_by_user || self.checkpointing,
                self.meta.restart.count,
            ),
        };
        let plan = match decision {
            Ok(()) => self.budget_plan(),
            Err(NoRestart::NotWanted) => Plan::Stay,
            Err(NoRestart::GaveUp(why)) => Plan::GiveUp(why),
        };
        self.record_plan(&plan);
        plan
    }

    fn record_plan(&mut self, plan: &Plan) {
        let record = &mut self.meta.restart;
        match plan {
            Plan::Stay => record.pending = false,
            Plan::GiveUp(why) => {
                record.pending = false;
                record.gave_up = Some(why.clone());
            }
            Plan::After(_) => record.pending = true,
        }
    }

    /// Carries out a decision (once it is stored): the events, and the timer.
    pub(super) fn follow_plan(&mut self, plan: Plan, ctx: &mut Context<Self>) {
        match plan {
            Plan::Stay => {}
            Plan::GiveUp(reason) => {
                warn!(container = %self.meta.id, "restart policy gave up: {reason}");
                self.publish(EventKind::RestartGaveUp { reason, restarts: self.meta.restart.count });
            }
            Plan::After(delay) => {
                let attempt = self.meta.restart.count + 1;
                info!(container = %self.meta.id, attempt, ?delay, "restart scheduled");
                self.publish(EventKind::RestartScheduled {
                    attempt,
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                });
                ctx.run_later(delay, |_, ctx| ctx.address().do_send(RestartNow));
            }
        }
    }

    /// When the actor starts (after create, or when paddockd restored it): a restart that was
    /// pending when paddockd stopped is scheduled again, and an `always` container that was
    /// stopped (even by a user) runs again, as docker's daemon does when it starts.
    pub(super) fn resume_restarts(&mut self, ctx: &mut Context<Self>) {
        let record = &self.meta.restart;
        if self.meta.status != Status::Stopped
            || self.sandbox.is_none()
            || self.meta.init.is_none()
            || record.gave_up.is_some()
            || !(record.pending || self.policy() == RestartPolicy::Always)
        {
            return;
        }
        self.meta.restart.stopped_by_user = false;
        let plan = self.budget_plan();
        self.record_plan(&plan);
        self.save_later(ctx);
        self.follow_plan(plan, ctx);
    }

    /// A user stopped the container (a stop signal to its init or to all its processes): no
    /// policy restarts it, and a pending restart is called off.
    pub(super) fn stopped_by_user(&mut self, ctx: &mut Context<Self>) {
        self.meta.restart.stopped_by_user = true;
        if self.meta.restart.pending {
            self.meta.restart.pending = false;
            info!(container = %self.meta.id, "pending restart called off by a user's stop");
            self.publish(EventKind::RestartGaveUp {
                reason: "stopped by a user".into(),
                restarts: self.meta.restart.count,
            });
            self.wake_waiters();
        }
        self.save_later(ctx);
    }

    /// Saves the metadata in the background (a failure is logged).
    pub(super) fn save_later(&mut self, ctx: &mut Context<Self>) {
        let (store, meta) = (self.store.clone(), self.meta.clone());
        ctx.spawn(
            async move {
                if let Err(e) = save(&store, &meta).await {
                    warn!(container = %meta.id, "cannot save: {e}");
                }
            }
            .into_actor(self),
        );
    }

    /// The copies of the caller's stdio to keep for restarts, if the policy may restart.
    pub(super) fn keep_stdio_for_restarts(spec: &oci_spec::runtime::Spec, stdio: &Stdio) -> Option<Stdio> {
        match RestartPolicy::of(spec) {
            Ok(RestartPolicy::No) | Err(_) => None,
            Ok(_) => stdio.try_clone().ok(),
        }
    }
}

impl Handler<RestartNow> for ContainerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: RestartNow, _: &mut Context<Self>) -> Self::Result {
        // Called off (a user's stop, a delete) or already done.
        if self.meta.status != Status::Stopped || !self.meta.restart.pending {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let id = self.meta.id.clone();
        let sandbox = self.sandbox.clone();
        let cgroup = self.cgroup.clone();
        let stdio = self.restart_stdio.as_ref().and_then(|s| s.try_clone().ok()).unwrap_or_default();
        let meta = self.meta.clone();
        let fut = async move {
            let gone = || ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: its sandbox is gone"));
            let sandbox = sandbox.ok_or_else(gone)?;
            let cgroup = cgroup.ok_or_else(|| ApiError::internal(format!("container {id:?} has no cgroup")))?;
            let dirs = blocking(move || cgroup.open_dirs()).await?;
            let host_pid = create_in_sandbox(&sandbox, &meta, stdio, Vec::new(), dirs, Launch::Again).await?;
            let record = procfs::record(host_pid).map_err(|e| ApiError::io("reading the container's start time", e))?;
            sandbox.send(Call(SandboxRequest::Start { id: id.clone() })).await.map_err(|_| gone())??;
            Ok::<_, ApiError>(record)
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self).then(|res, act, _| {
            // A delete or start may have moved it meanwhile: the table decides.
            let res = res.and_then(|record| {
                crate::status::restart_transition(&act.meta.id, act.meta.status).map(|to| (record, to))
            });
            match res {
                Ok((record, to)) => {
                    let restart = &mut act.meta.restart;
                    restart.count += 1;
                    restart.pending = false;
                    restart.stopped_by_user = false;
                    act.meta.status = to;
                    act.meta.exit_status = None;
                    act.meta.init = Some(record);
                    act.restart_budget.started(Instant::now());
                    info!(container = %act.meta.id, pid = record.pid, restarts = act.meta.restart.count, "restarted");
                    act.publish(EventKind::Started { pid: record.pid, restarts: act.meta.restart.count });
                }
                Err(e) => {
                    let reason = format!("restarting failed: {e}");
                    act.record_plan(&Plan::GiveUp(reason.clone()));
                    warn!(container = %act.meta.id, "{reason}");
                    act.publish(EventKind::RestartGaveUp { reason, restarts: act.meta.restart.count });
                    act.wake_waiters();
                }
            }
            let (store, meta) = (act.store.clone(), act.meta.clone());
            async move {
                if let Err(e) = save(&store, &meta).await {
                    warn!(container = %meta.id, "cannot save after a restart: {e}");
                }
            }
            .into_actor(act)
        })))
    }
}
