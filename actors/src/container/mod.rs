//! The Container actor: one container's status machine, its metadata on disk, its cgroup, and
//! the supervision of its gofer. One file per operation:
//!
//! - `create`: a root container (with a sandbox of its own) or a subcontainer (joining one);
//! - `start`, `kill`, `exec` (and waiting for a process), `ps`, `copy`, `delete`;
//! - `pause`: pause, resume and update (the container's cgroup);
//! - `checkpoint`: dumping its processes with CRIU;
//! - `gofer`: restarting a gofer that died;
//! - `recover`: taking a container over again after paddockd restarted;
//! - `relaunch`: its restart policy: running it again after an exit, with backoff.
//!
//! Every change is published on the event bus.
//!
//! Operations that change the container (start, kill, delete, the sandbox's notices, a gofer
//! restart) are atomic: the actor handles nothing else until one is finished and saved.
//! Waits, copies and execs only register or forward, so they never hold up the others.

mod checkpoint;
mod copy;
pub(crate) mod create;
mod delete;
mod exec;
mod gofer;
mod kill;
mod monitor;
mod pause;
mod ps;
pub(crate) mod recover;
mod relaunch;
mod start;

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;
use tracing::warn;
use wire::api::{GetState, Wait};
use wire::sandbox_proto::{SandboxReply, SandboxRequest};
use wire::{ApiError, ContainerState, ErrorKind, ExitStatus, GoferStatus, Status, Stdio};

pub(crate) use create::create;
pub use delete::{DeleteContainer, SandboxGoingAway};

pub(crate) use recover::recover;

use crate::blocking;
use crate::board::{BoardKey, StateBoard};
use crate::cgroups::Cgroup;
use crate::config::SupervisorConfig;
use crate::events::EventBus;
use crate::gofer::{DestroyGofer, GoferActor, WatchGofer};
use crate::meta::{Meta, MetaStore};
use crate::process::ChildProcess;
use crate::restart::RestartBudget;
use crate::sandbox::{Call, DestroySandbox, Listen, SandboxActor, SandboxNotice};

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
    cgroup: Option<Arc<Cgroup>>,
    /// A subcontainer's stdio, held from create until start.
    pending_stdio: Option<Stdio>,
    events: EventBus,
    restart_budget: RestartBudget,
    /// Copies of the caller's stdio for restarts (kept only under a restart policy).
    restart_stdio: Option<Stdio>,
    /// OOM kills counted in its cgroup so far.
    oom_kills: u64,
    /// A checkpoint is being taken: the exit it causes is no reason to restart, and pause,
    /// resume, update and another checkpoint wait their turn (they are refused).
    checkpointing: bool,
    /// The pid files' processes that joined its cgroups (see [`monitor`]): not the
    /// container's, so `ps` and checkpoint leave them out.
    monitors: Vec<crate::meta::ProcessRecord>,
    /// Where its state is published for readers on other threads (see [`crate::board`]).
    board: StateBoard,
    /// Its right to its entry on the board.
    board_key: BoardKey,
}

/// What a container's actor is made from, when created or taken over after a restart of
/// paddockd; everything else starts empty.
struct ActorParts {
    meta: Meta,
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    events: EventBus,
    sandbox: Option<Addr<SandboxActor>>,
    gofer: Option<GoferHandle>,
    cgroup: Option<Arc<Cgroup>>,
    board: StateBoard,
}

impl ContainerActor {
    /// The actor for `parts`, not started, with no waiter, budget spent or stdio held.
    fn new(parts: ActorParts) -> Self {
        let ActorParts { meta, config, store, events, sandbox, gofer, cgroup, board } = parts;
        let restart_budget = RestartBudget::container(config.restart_limits);
        ContainerActor {
            meta,
            gofer_status: if gofer.is_some() { GoferStatus::Running } else { GoferStatus::Stopped },
            config,
            store,
            sandbox,
            gofer,
            gofer_budget: RestartBudget::gofer(),
            gofer_waiters: Vec::new(),
            waiters: Vec::new(),
            cgroup,
            pending_stdio: None,
            events,
            restart_budget,
            restart_stdio: None,
            oom_kills: 0,
            checkpointing: false,
            monitors: Vec::new(),
            board,
            board_key: BoardKey::new(),
        }
    }
}

impl Actor for ContainerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.board.put(self.board_key, self.state(), self.meta.monitor);
        if let Some(gofer) = &self.gofer {
            gofer.addr.do_send(WatchGofer(ctx.address().recipient()));
            self.gofer_budget.started(std::time::Instant::now());
        }
        if let Some(sandbox) = &self.sandbox {
            sandbox.do_send(Listen { id: self.meta.id.clone(), recipient: ctx.address().recipient() });
        }
        if let Some(watch) = self.cgroup.as_ref().and_then(|cg| crate::oom::watch(&cg.memory_dirs())) {
            ctx.add_stream(futures_util::StreamExt::map(watch, OomNotice));
        }
        self.resume_restarts(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.board.remove_own(self.board_key, &self.meta.id);
    }
}

/// The kernel's OOM killer acted in the container's memory cgroup (see [`crate::oom`]).
struct OomNotice(crate::oom::OomSignal);

impl StreamHandler<OomNotice> for ContainerActor {
    fn handle(&mut self, OomNotice(signal): OomNotice, ctx: &mut Context<Self>) {
        if signal == crate::oom::OomSignal::Invoked {
            // Counted here; the kill's own count comes a moment later.
            self.oom_kills += 1;
            self.publish(wire::events::EventKind::Oom);
            return;
        }
        let Some(cgroup) = self.cgroup.clone() else { return };
        let count = async move { blocking(move || Ok(cgroup.oom_kills())).await.unwrap_or(0) };
        ctx.spawn(count.into_actor(self).map(|count, act, _| {
            if count > act.oom_kills {
                act.oom_kills = count;
                act.publish(wire::events::EventKind::Oom);
            }
        }));
    }

    /// The cgroup is gone: nothing more to watch (the actor lives on).
    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// A running gofer: its actor, and its process for a direct look at whether it still runs.
struct GoferHandle {
    addr: Addr<GoferActor>,
    process: ChildProcess,
}

impl From<crate::gofer::RunningGofer> for GoferHandle {
    fn from(l: crate::gofer::RunningGofer) -> Self {
        Self { addr: l.addr, process: l.process }
    }
}

/// What exists of a container's processes and cgroups, so that they can be undone together.
#[derive(Default)]
struct Parts {
    sandbox: Option<Addr<SandboxActor>>,
    gofer: Option<GoferHandle>,
    cgroups: Vec<Arc<Cgroup>>,
}

impl Parts {
    /// Kills the sandbox and the gofer, concurrently, waits until both are gone, and then
    /// removes the cgroups.
    async fn destroy(self) {
        remove_cgroups(self.stop().await).await;
    }

    /// Kills the sandbox and the gofer, concurrently, and waits until both are gone; returns
    /// the cgroups, for the caller to remove once it has told the container's waiters (a pid
    /// file's monitor is one, and leaves the cgroups when it has its answer).
    async fn stop(self) -> Vec<Arc<Cgroup>> {
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
        self.cgroups
    }
}

/// Removes cgroups whose processes are gone (a failure is logged: it never undoes a delete).
pub(super) async fn remove_cgroups(cgroups: Vec<Arc<Cgroup>>) {
    if cgroups.is_empty() {
        return;
    }
    let _ = blocking(move || {
        let mut owned = Vec::with_capacity(cgroups.len());
        for cg in cgroups {
            match Arc::try_unwrap(cg) {
                Ok(cg) => owned.push(cg),
                Err(cg) => warn!(cgroup = %cg.relative(), "still in use; not removed"),
            }
        }
        // Together: every leaf first, then the parents they share, once.
        for (relative, e) in Cgroup::remove_all(owned) {
            warn!(cgroup = %relative, "cannot remove: {e}");
        }
        Ok(())
    })
    .await;
}

/// Asks a container actor for its state (the supervisor's own query, for create and list).
#[derive(Message)]
#[rtype(result = "ContainerState")]
pub struct Snapshot;

/// Asks a root container for its sandbox, for a subcontainer that joins it.
#[derive(Message)]
#[rtype(result = "Result<(Addr<SandboxActor>, crate::meta::ProcessRecord), ApiError>")]
pub struct SandboxOf;

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

async fn save(store: &MetaStore, meta: &Meta) -> Result<(), ApiError> {
    let (store, meta) = (store.clone(), meta.clone());
    blocking(move || store.save(&meta)).await
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
    /// Publishes an event about this container.
    fn publish(&self, kind: wire::events::EventKind) {
        self.refresh_board();
        self.events.publish(&self.meta.id, &self.meta.sandbox_id, kind);
    }

    /// Rewrites its entry on the state board from its current state (see [`crate::board`]).
    fn refresh_board(&self) {
        self.board.update(self.board_key, self.state(), self.meta.monitor);
    }

    /// Gives the exit status to everyone waiting, once the container stopped for good (no
    /// restart pending).
    fn wake_waiters(&mut self) {
        if self.meta.restart.pending {
            return;
        }
        if let Some(status) = self.meta.exit_status {
            // A waiter that asks for the state next reads the stopped one.
            if !self.waiters.is_empty() {
                self.refresh_board();
            }
            for w in self.waiters.drain(..) {
                let _ = w.send(status);
            }
        }
    }

    fn state(&self) -> ContainerState {
        self.meta.state(self.gofer_status.clone())
    }

    /// Once `result` is in: when it succeeded, the warning-only hooks of `stage` (poststart,
    /// poststop) run before it is handed back.
    fn after_success_hooks<T: 'static>(
        &self,
        stage: crate::hooks::Stage,
        result: Result<T, ApiError>,
    ) -> impl ActorFuture<Self, Output = Result<T, ApiError>> {
        let meta = result.is_ok().then(|| self.meta.clone());
        async move {
            if let Some(meta) = meta {
                crate::hooks::run_here_warning_only(&meta, stage).await;
            }
            result
        }
        .into_actor(self)
    }

    fn sandbox_call(
        &self,
        request: SandboxRequest,
    ) -> impl std::future::Future<Output = Result<SandboxReply, ApiError>> + 'static {
        let sandbox = self.sandbox.clone();
        let id = self.meta.id.clone();
        async move {
            let sandbox = sandbox
                .ok_or_else(|| ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: its sandbox is gone")))?;
            sandbox
                .send(Call(request))
                .await
                .map_err(|_| ApiError::new(ErrorKind::Sandbox, format!("the sandbox of container {id:?} went away")))?
        }
    }
}

/// Asks a container actor to rewrite its entry on the state board from its current state:
/// the supervisor sends it after each operation it forwarded, before it passes the reply on,
/// so that whoever got the reply reads at least that state on the board.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RefreshBoard;

impl Handler<RefreshBoard> for ContainerActor {
    type Result = ();

    fn handle(&mut self, _: RefreshBoard, _: &mut Context<Self>) {
        self.refresh_board();
    }
}

impl Handler<Snapshot> for ContainerActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.state())
    }
}

/// Whether the container needs a paddockd now: it has processes to watch, a restart to run,
/// or an operation under way. A stopped container needs none: its record is on disk, and a
/// later paddockd serves it as well.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct NeedsSupervision;

impl Handler<NeedsSupervision> for ContainerActor {
    type Result = bool;

    fn handle(&mut self, _: NeedsSupervision, _: &mut Context<Self>) -> bool {
        self.meta.status != Status::Stopped || self.meta.restart.pending || self.checkpointing
    }
}

impl Handler<crate::Api<GetState>> for ContainerActor {
    type Result = Result<ContainerState, ApiError>;

    fn handle(&mut self, crate::Api(_): crate::Api<GetState>, _: &mut Context<Self>) -> Self::Result {
        Ok(self.state())
    }
}

impl Handler<SandboxOf> for ContainerActor {
    type Result = Result<(Addr<SandboxActor>, crate::meta::ProcessRecord), ApiError>;

    fn handle(&mut self, _: SandboxOf, _: &mut Context<Self>) -> Self::Result {
        let id = &self.meta.id;
        let unusable = |why: &str| ApiError::new(ErrorKind::InvalidStatus, format!("sandbox {id:?} {why}"));
        if !self.meta.is_root() {
            return Err(unusable("is not a sandbox: its container joined another one"));
        }
        if self.meta.status == Status::Stopped {
            return Err(unusable("is stopped"));
        }
        match (&self.sandbox, self.meta.sandbox) {
            (Some(addr), Some(record)) => Ok((addr.clone(), record)),
            _ => Err(unusable("is gone")),
        }
    }
}

impl Handler<crate::Api<Wait>> for ContainerActor {
    type Result = ResponseFuture<Result<ExitStatus, ApiError>>;

    fn handle(&mut self, crate::Api(_): crate::Api<Wait>, _: &mut Context<Self>) -> Self::Result {
        if let (Status::Stopped, Some(status), false) =
            (self.meta.status, self.meta.exit_status, self.meta.restart.pending)
        {
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
        let lost = notice == SandboxNotice::Lost;
        let gofer = if lost {
            warn!(container = %self.meta.id, "the sandbox vanished; the container is stopped");
            self.sandbox = None;
            self.gofer_status = GoferStatus::Stopped;
            self.gofer.take()
        } else {
            None
        };
        // Decided before the save, so that the exit and what follows it are stored together.
        let next = self.plan_restart(lost);
        let store = self.store.clone();
        let meta = self.meta.clone();
        let cgroup = self.cgroup.clone();
        let release = self.sandbox_call(SandboxRequest::Release { id: meta.id.clone() });
        AtomicResponse::new(Box::pin(
            async move {
                if let Some(g) = gofer {
                    let _ = g.addr.send(DestroyGofer).await;
                }
                let oom_kills = match cgroup {
                    Some(cg) => blocking(move || Ok(cg.oom_kills())).await.unwrap_or(0),
                    None => 0,
                };
                if let Err(e) = save(&store, &meta).await {
                    warn!(container = %meta.id, "cannot save the exit status: {e}");
                    return oom_kills;
                }
                // Stored: the sandbox may forget it now.
                if !lost {
                    let _ = release.await;
                }
                oom_kills
            }
            .into_actor(self)
            .map(move |oom_kills, act, ctx| {
                if oom_kills > act.oom_kills {
                    act.oom_kills = oom_kills;
                    act.publish(wire::events::EventKind::Oom);
                }
                if lost {
                    act.publish(wire::events::EventKind::SandboxLost);
                }
                if let Some(status) = act.meta.exit_status {
                    act.publish(wire::events::EventKind::exited(status));
                }
                act.follow_plan(next, ctx);
                act.refresh_board();
                act.wake_waiters();
            }),
        ))
    }
}
