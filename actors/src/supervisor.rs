//! The Supervisor actor: the registry of containers and the router of every operation.
//!
//! It resolves ids (a full id or an unambiguous prefix), refuses a second container with the
//! same id (the reservation is taken before any await, so of many concurrent creates exactly
//! one proceeds), places containers in sandboxes (a new one, or the pod's), and forwards each
//! operation to the container's own actor, which serializes operations on that container.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, warn};
use wire::api::{
    Checkpoint, CopyIn, CopyOut, Create, Delete, Exec, Executed, GetState, Kill, List, Monitor, Monitored, Pause,
    ProcessInfo, Ps, Resume, Start, Stats, Update, Wait, WaitProcess,
};
use wire::{ApiError, ContainerState, ErrorKind, ExitStatus};

use crate::board::StateBoard;
use crate::config::SupervisorConfig;
use crate::container::{self, ContainerActor, DeleteContainer, RefreshBoard, SandboxOf, Snapshot};
use crate::events::{EventBus, Subscription};
use crate::meta::{Meta, MetaStore};
use crate::monitors::{self, Monitors};
use crate::pool::{Pool, Taken};
use crate::procfs::HelperScan;
use crate::sandbox::SandboxActor;
use crate::spec::Placement;
use crate::{blocking, resolve};

mod refill;

enum Slot {
    /// A create is in progress.
    Creating,
    /// The container exists, in the sandbox of `sandbox_id`.
    Ready { addr: Addr<ContainerActor>, sandbox_id: String },
}

/// The registry and router.
pub struct Supervisor {
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    containers: BTreeMap<String, Slot>,
    events: EventBus,
    monitors: Monitors,
    board: StateBoard,
    pool: Pool,
    /// When the pool refills (see [`refill`]).
    refill: refill::RefillGate,
}

impl Supervisor {
    /// Starts the supervisor for `config.root` (created if missing) in the current actix
    /// system. Every container found under the root is restored before the first message is
    /// handled.
    pub fn start(config: SupervisorConfig) -> Result<Addr<Supervisor>, ApiError> {
        Self::start_with_board(config).map(|(addr, _)| addr)
    }

    /// [`Supervisor::start`], returning also the [`StateBoard`] its containers publish their
    /// state on, for a reader on another thread (paddockd's wire server answers `state` and
    /// `list` from it).
    pub fn start_with_board(config: SupervisorConfig) -> Result<(Addr<Supervisor>, StateBoard), ApiError> {
        std::fs::create_dir_all(&config.root)
            .map_err(|e| ApiError::io(format!("creating {}", config.root.display()), e))?;
        let store = MetaStore::new(config.root.clone());
        let events = EventBus::new(config.event_limits);
        let board = StateBoard::new();
        let pool = Pool::new(&config.root, config.pool_size);
        let addr = Supervisor {
            config: Arc::new(config),
            store,
            containers: BTreeMap::new(),
            events,
            monitors: Monitors::default(),
            board: board.clone(),
            pool,
            refill: refill::RefillGate::default(),
        }
        .start();
        Ok((addr, board))
    }

    fn resolve(&self, query: &str) -> Result<(String, Addr<ContainerActor>), ApiError> {
        let id = resolve::resolve(query, self.containers.keys().map(String::as_str))?;
        match &self.containers[id] {
            Slot::Ready { addr, .. } => Ok((id.to_string(), addr.clone())),
            Slot::Creating => Err(ApiError::new(
                ErrorKind::InvalidStatus,
                format!("container {} is still being created", wire::ids::show_id(id)),
            )),
        }
    }

    /// The containers that joined the sandbox of root container `id`.
    fn joined(&self, id: &str) -> Vec<Addr<ContainerActor>> {
        self.containers
            .iter()
            .filter_map(|(cid, slot)| match slot {
                Slot::Ready { addr, sandbox_id } if sandbox_id == id && cid != id => Some(addr.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Restores every container under the root, reconnecting to each live sandbox once.
async fn restore_all(
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    events: EventBus,
    board: StateBoard,
) -> Vec<(String, String, Addr<ContainerActor>)> {
    let (metas, errors, helpers) = {
        let store = store.clone();
        let pool_dir = crate::pool::dir(&config.root);
        blocking(move || {
            let (metas, errors) = store.load_all();
            let pool_left = pool_dir.exists();
            // Only worth a scan of /proc when there is something to take over.
            let helpers = if metas.is_empty() && !pool_left { HelperScan::default() } else { HelperScan::now() };
            if pool_left {
                // Before any container is taken over: one whose creation never finished may
                // have had these helpers handed over (moved into its cgroups, which its
                // cleanup removes).
                let keep: Vec<crate::meta::ProcessRecord> =
                    metas.iter().flat_map(|m| [m.sandbox, m.gofer]).flatten().collect();
                let strays = helpers.under(&pool_dir, &keep);
                crate::procfs::kill_stray_helpers(crate::pool::POOL_DIR, &strays);
                if let Err(e) = std::fs::remove_dir_all(&pool_dir) {
                    warn!("removing the helper pool {} an earlier paddockd left: {e}", pool_dir.display());
                }
            }
            Ok((metas, errors, helpers))
        })
        .await
        .unwrap_or_default()
    };
    for e in errors {
        match e.kind {
            wire::ErrorKind::NotFound => info!("{e}"),
            _ => warn!("skipping unreadable container metadata: {e}"),
        }
    }
    let mut by_sandbox: HashMap<String, Vec<Meta>> = HashMap::new();
    for meta in metas {
        by_sandbox.entry(meta.sandbox_id.clone()).or_default().push(meta);
    }
    let mut restored = Vec::new();
    for (sandbox_id, mut metas) in by_sandbox {
        // The root container first: it knows the sandbox process.
        metas.sort_by_key(|m| !m.is_root());
        let record = metas.iter().find(|m| m.is_root()).and_then(|m| m.sandbox).or(metas[0].sandbox);
        let found = match record {
            Some(record) => {
                let dir = store.dir(&sandbox_id);
                SandboxActor::reconnect(&config, &sandbox_id, &record, &dir)
                    .await
                    .ok()
                    .map(|c| container::recover::Found { addr: c.addr, containers: c.containers })
            }
            None => None,
        };
        for meta in metas {
            let id = meta.id.clone();
            let recovered = container::recover(
                config.clone(),
                store.clone(),
                events.clone(),
                board.clone(),
                meta,
                found.as_ref(),
                &helpers,
            )
            .await;
            match recovered {
                Ok(Some(addr)) => restored.push((id, sandbox_id.clone(), addr)),
                Ok(None) => {}
                Err(e) => warn!(container = %id, "cannot restore: {e}"),
            }
        }
    }
    restored
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Requests come from the wire server's thread: with a bounded mailbox a full one parks
        // each sender, and a parked sender whose request is dropped (its client hung up) is
        // kept. The wire server bounds what each client may have in flight instead.
        ctx.set_mailbox_capacity(usize::MAX);
        let (config, store, events) = (self.config.clone(), self.store.clone(), self.events.clone());
        let board = self.board.clone();
        // Restore before anything else is handled: ctx.wait holds the mailbox.
        ctx.wait(restore_all(config, store, events, board.clone()).into_actor(self).map(move |restored, act, _| {
            if !restored.is_empty() {
                info!(count = restored.len(), "containers restored");
            }
            for (id, sandbox_id, addr) in restored {
                act.containers.insert(id, Slot::Ready { addr, sandbox_id });
            }
            board.open();
            act.pool.refill(&act.config);
        }));
    }
}

fn gone(id: &str) -> ApiError {
    ApiError::not_found(format!("container {} does not exist", wire::ids::show_id(id)))
}

impl Handler<crate::Api<Create>> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerState, ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<Create>, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = wire::ids::validate_id(&msg.id) {
            return Box::pin(actix::fut::ready(Err(e)));
        }
        if self.containers.contains_key(&msg.id) {
            return Box::pin(actix::fut::ready(Err(ApiError::new(
                ErrorKind::AlreadyExists,
                format!("container {} already exists", wire::ids::show_id(&msg.id)),
            ))));
        }
        // A container that joins a pod: its sandbox's root container must be there, and live.
        let (placement, key) = match container::create::placement_and_pool_key(&msg.spec) {
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
            Ok(found) => found,
        };
        // A pooled sandbox for a restore would be made before the checkpoint's record is read.
        let key = key.filter(|_| msg.restore.is_none());
        let root = placement == Placement::NewSandbox;
        let sandbox = match placement {
            Placement::NewSandbox => None,
            Placement::Join(sandbox_id) => match self.containers.get(&sandbox_id) {
                Some(Slot::Ready { addr, .. }) => Some((sandbox_id, addr.clone())),
                _ => {
                    let e = ApiError::not_found(format!(
                        "container {}: its sandbox {} does not exist",
                        wire::ids::show_id(&msg.id),
                        wire::ids::show_id(&sandbox_id)
                    ));
                    return Box::pin(actix::fut::ready(Err(e)));
                }
            },
        };
        let id = msg.id.clone();
        let sandbox_id = sandbox.as_ref().map_or(id.clone(), |(s, _)| s.clone());
        let monitored = self.monitored_in(&msg.spec);
        self.containers.insert(id.clone(), Slot::Creating);
        let pooled = if root { self.pool.take(&id, key) } else { Taken::default() };
        // What the create needed and the pool did not have (a sandbox only when one fits).
        let missed = root && (pooled.gofer.is_none() || (key.is_some() && pooled.sandbox.is_none()));
        self.operation_begins(ctx);
        let (config, store, events) = (self.config.clone(), self.store.clone(), self.events.clone());
        let board = self.board.clone();
        Box::pin(
            async move {
                let mut msg = msg;
                if !monitored.is_empty() {
                    msg.spec = monitored_namespaces(msg.spec, monitored).await?;
                }
                let joined = match sandbox {
                    Some((sandbox_id, root)) => {
                        let (sandbox, record) = root.send(SandboxOf).await.map_err(|_| gone(&sandbox_id))??;
                        Some(container::create::Joined { sandbox, record, sandbox_id })
                    }
                    None => None,
                };
                let addr = container::create(config, store, events, board, msg, joined, pooled).await?;
                let state = addr.send(Snapshot).await.map_err(|_| ApiError::internal("container actor stopped"))?;
                Ok((addr, state))
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                // Once the create is over, never on its way.
                if root {
                    act.refill_pool(ctx, missed);
                }
                act.operation_ends(ctx);
                act.created(id, sandbox_id, res)
            }),
        )
    }
}

impl Supervisor {
    /// Registers a create's outcome.
    fn created(
        &mut self,
        id: String,
        sandbox_id: String,
        res: Result<(Addr<ContainerActor>, ContainerState), ApiError>,
    ) -> Result<ContainerState, ApiError> {
        match res {
            Ok((addr, state)) => {
                self.containers.insert(id.clone(), Slot::Ready { addr, sandbox_id: sandbox_id.clone() });
                self.events.publish(&id, &sandbox_id, wire::events::EventKind::Created);
                Ok(state)
            }
            Err(e) => {
                self.containers.remove(&id);
                Err(e)
            }
        }
    }
}

impl Supervisor {
    /// The monitors (and their containers) that `spec`'s namespace paths name.
    fn monitored_in(&self, spec: &wire::SpecJson) -> Vec<(i32, Addr<ContainerActor>)> {
        let Ok(spec) = spec.parse() else { return Vec::new() };
        monitors::named_pids(&spec)
            .into_iter()
            .filter_map(|pid| {
                let container = self.monitors.container_of(pid)?;
                match self.containers.get(container) {
                    Some(Slot::Ready { addr, .. }) => Some((pid, addr.clone())),
                    _ => None,
                }
            })
            .collect()
    }
}

/// `spec` with each namespace path that names a monitor naming its container's init instead
/// (see [`crate::monitors`]). A container that is not running has no namespaces to join.
async fn monitored_namespaces(
    spec: wire::SpecJson,
    monitored: Vec<(i32, Addr<ContainerActor>)>,
) -> Result<wire::SpecJson, ApiError> {
    let mut parsed = spec.parse()?;
    let mut replace = HashMap::new();
    for (monitor, addr) in monitored {
        let state = addr.send(Snapshot).await.map_err(|_| ApiError::internal("container actor stopped"))?;
        let init = state.init_pid.filter(|_| state.status != wire::Status::Stopped).ok_or_else(|| {
            ApiError::invalid_spec(format!(
                "a namespace path names /proc/{monitor}, the monitor of container {}, which is {}: it has no \
                 namespaces to join",
                wire::ids::show_id(&state.id),
                state.status
            ))
        })?;
        replace.insert(monitor, init);
    }
    monitors::rewrite(&mut parsed, &replace);
    wire::SpecJson::from_spec(&parsed)
}

impl Handler<crate::Api<Monitor>> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Monitored, ApiError>>;

    fn handle(&mut self, crate::Api(mut msg): crate::Api<Monitor>, _: &mut Context<Self>) -> Self::Result {
        let (id, addr) = match self.resolve(&msg.id) {
            Ok(found) => found,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        if msg.monitor_pid <= 0 {
            return Box::pin(actix::fut::ready(Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "monitor: the caller's pid is unknown (its connection carries no credentials)",
            ))));
        }
        msg.id = id.clone();
        let monitor = msg.monitor_pid;
        Box::pin(
            async move {
                let res = addr.send(crate::Api(msg)).await.map_err(|_| gone(&id))?;
                let _ = addr.send(RefreshBoard).await;
                res.map(|m| (id, m))
            }
            .into_actor(self)
            .map(move |res, act, _| {
                let (id, monitored) = res?;
                act.monitors.record(monitor, &id);
                Ok(monitored)
            }),
        )
    }
}

/// Forwards an operation to the container's actor. `counts`: it works on a container (not one
/// that reads or waits), so the pool does not refill while it is in progress (see [`refill`]).
macro_rules! forward {
    ($msg:ident => $reply:ty, counts: $counts:literal) => {
        impl Handler<crate::Api<$msg>> for Supervisor {
            type Result = ResponseActFuture<Self, Result<$reply, ApiError>>;

            fn handle(&mut self, crate::Api(mut msg): crate::Api<$msg>, ctx: &mut Context<Self>) -> Self::Result {
                let (id, addr) = match self.resolve(&msg.id) {
                    Ok(found) => found,
                    Err(e) => return Box::pin(actix::fut::ready(Err(e))),
                };
                msg.id = id.clone();
                if $counts {
                    self.operation_begins(ctx);
                }
                Box::pin(
                    async move {
                        let reply = addr.send(crate::Api(msg)).await.map_err(|_| gone(&id))?;
                        // Whoever gets the reply reads at least this state on the board.
                        let _ = addr.send(RefreshBoard).await;
                        reply
                    }
                    .into_actor(self)
                    .map(|reply, act, ctx| {
                        if $counts {
                            act.operation_ends(ctx);
                        }
                        reply
                    }),
                )
            }
        }
    };
}

forward!(Start => ContainerState, counts: true);
forward!(GetState => ContainerState, counts: false);
forward!(Kill => (), counts: true);
forward!(Wait => ExitStatus, counts: false);
forward!(CopyOut => (), counts: true);
forward!(CopyIn => (), counts: true);
forward!(Exec => Executed, counts: true);
forward!(WaitProcess => ExitStatus, counts: false);
forward!(Ps => Vec<ProcessInfo>, counts: false);
forward!(Pause => ContainerState, counts: true);
forward!(Resume => ContainerState, counts: true);
forward!(Update => ContainerState, counts: true);
forward!(Checkpoint => ContainerState, counts: true);
forward!(Stats => String, counts: false);

impl Handler<crate::Api<List>> for Supervisor {
    type Result = ResponseFuture<Result<Vec<ContainerState>, ApiError>>;

    fn handle(&mut self, crate::Api(_): crate::Api<List>, _: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<Addr<ContainerActor>> = self
            .containers
            .values()
            .filter_map(|s| match s {
                Slot::Ready { addr, .. } => Some(addr.clone()),
                Slot::Creating => None,
            })
            .collect();
        Box::pin(async move {
            let mut states = Vec::with_capacity(addrs.len());
            for addr in addrs {
                // A container deleted meanwhile is simply not listed.
                if let Ok(state) = addr.send(Snapshot).await {
                    states.push(state);
                }
            }
            Ok(states)
        })
    }
}

impl Handler<crate::Api<Delete>> for Supervisor {
    type Result = ResponseActFuture<Self, Result<(), ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<Delete>, ctx: &mut Context<Self>) -> Self::Result {
        let (id, addr) = match self.resolve(&msg.id) {
            Ok(found) => found,
            // Deleting what is already gone succeeds with --force, as runc's does.
            Err(e) if e.kind == ErrorKind::NotFound && msg.force => return Box::pin(actix::fut::ready(Ok(()))),
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let joined = self.joined(&id);
        let removed = id.clone();
        self.operation_begins(ctx);
        Box::pin(
            async move {
                let res = addr.send(DeleteContainer { force: msg.force, joined }).await.map_err(|_| gone(&id))?;
                if res.is_err() {
                    // Refused or failed part-way: the container is still there, maybe changed.
                    let _ = addr.send(RefreshBoard).await;
                }
                res
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.operation_ends(ctx);
                if res.is_ok() {
                    act.board.remove(&removed);
                    let sandbox_id = match act.containers.remove(&removed) {
                        Some(Slot::Ready { sandbox_id, .. }) => sandbox_id,
                        _ => removed.clone(),
                    };
                    act.events.publish(&removed, &sandbox_id, wire::events::EventKind::Deleted);
                    act.events.forget(&removed);
                }
                res
            }),
        )
    }
}

/// Subscribes to the event bus: the retained history of `ids` (full ids or unambiguous
/// prefixes of existing containers; a deleted container's id no longer resolves), or of every
/// container when empty, and with `follow` every later event.
#[derive(Message)]
#[rtype(result = "Result<Subscription, ApiError>")]
pub struct Subscribe {
    /// The containers; empty for all.
    pub ids: Vec<String>,
    /// Keep streaming.
    pub follow: bool,
}

impl Handler<Subscribe> for Supervisor {
    type Result = Result<Subscription, ApiError>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let filter = if msg.ids.is_empty() {
            None
        } else {
            let mut ids = std::collections::BTreeSet::new();
            for query in &msg.ids {
                match resolve::resolve(query, self.containers.keys().map(String::as_str)) {
                    Ok(id) => ids.insert(id.to_string()),
                    // A container that is gone, but whose history is still there.
                    Err(_) if self.events.knows(query) => ids.insert(query.clone()),
                    Err(e) => return Err(e),
                };
            }
            Some(ids)
        };
        Ok(self.events.subscribe(filter, msg.follow))
    }
}

/// Ends every following event subscription (paddockd is stopping).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseEvents;

impl Handler<CloseEvents> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: CloseEvents, _: &mut Context<Self>) {
        self.events.close();
    }
}

/// Closes the helper pool (see [`crate::pool`]): kills its members, waits until they are
/// gone and removes its directory. paddockd sends it when it stops; an embedding program
/// with a pool sends it before it exits.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClosePool;

impl Handler<ClosePool> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: ClosePool, _: &mut Context<Self>) -> Self::Result {
        let pool = self.pool.clone();
        Box::pin(async move { pool.close().await })
    }
}

/// Answers at once: the supervisor's mailbox is being served (for the systemd watchdog).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Ping;

impl Handler<Ping> for Supervisor {
    type Result = usize;

    fn handle(&mut self, _: Ping, _: &mut Context<Self>) -> usize {
        self.containers.len()
    }
}

/// How many containers need a paddockd now (see [`container::NeedsSupervision`]); those
/// being created count.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Supervising;

impl Handler<Supervising> for Supervisor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: Supervising, _: &mut Context<Self>) -> Self::Result {
        let mut creating = 0;
        let mut asks = Vec::new();
        for slot in self.containers.values() {
            match slot {
                Slot::Creating => creating += 1,
                Slot::Ready { addr, .. } => asks.push(addr.send(container::NeedsSupervision)),
            }
        }
        Box::pin(async move {
            let answers = futures_util::future::join_all(asks).await;
            // An actor that cannot answer is busy with something: count it.
            creating + answers.into_iter().filter(|a| a.as_ref().map_or(true, |needs| *needs)).count()
        })
    }
}

/// Settings that may change while paddockd runs (its configuration was reloaded): they apply
/// to containers created from now on.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Reconfigure {
    /// The default overlay.
    pub default_overlay: wire::gofer_proto::Overlay,
    /// The restart intensity limit.
    pub restart_limits: crate::restart::RestartLimits,
}

impl Handler<Reconfigure> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) {
        let mut config = (*self.config).clone();
        config.default_overlay = msg.default_overlay;
        config.restart_limits = msg.restart_limits;
        self.config = Arc::new(config);
        info!(?msg, "configuration reloaded");
    }
}

/// Stops every running container (paddockd's `shutdown = "stop"`): SIGTERM to each, then,
/// after `timeout`, SIGKILL to everything left. Returns how many were stopped.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StopAll {
    /// How long the containers get to exit after SIGTERM.
    pub timeout: std::time::Duration,
}

impl Handler<StopAll> for Supervisor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: StopAll, _: &mut Context<Self>) -> Self::Result {
        let containers: Vec<(String, Addr<ContainerActor>)> = self
            .containers
            .iter()
            .filter_map(|(id, s)| match s {
                Slot::Ready { addr, .. } => Some((id.clone(), addr.clone())),
                Slot::Creating => None,
            })
            .collect();
        Box::pin(async move {
            let mut running = Vec::new();
            for (id, addr) in containers {
                if let Ok(state) = addr.send(Snapshot).await {
                    if matches!(state.status, wire::Status::Running | wire::Status::Created | wire::Status::Paused) {
                        running.push((id, addr));
                    }
                }
            }
            let stop = running.iter().map(|(id, addr)| {
                let (id, addr) = (id.clone(), addr.clone());
                async move {
                    let _ = addr
                        .send(crate::Api(Kill { id: id.clone(), signal: libc::SIGTERM, all: false, pid: None }))
                        .await;
                    let waited = tokio::time::timeout(
                        msg.timeout,
                        addr.send(crate::Api(Wait { id: id.clone(), kill_on_hangup: false })),
                    )
                    .await;
                    if waited.is_err() {
                        warn!(container = %id, "did not stop within {:?}; killing it", msg.timeout);
                        let _ = addr.send(crate::Api(Kill { id, signal: libc::SIGKILL, all: true, pid: None })).await;
                    }
                }
            });
            let count = running.len();
            futures_util::future::join_all(stop).await;
            count
        })
    }
}
