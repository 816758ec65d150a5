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
    CopyIn, CopyOut, Create, Delete, Exec, Executed, GetState, Kill, List, ProcessInfo, Ps, Start, Wait, WaitProcess,
};
use wire::{ApiError, ContainerState, ErrorKind, ExitStatus};

use crate::config::SupervisorConfig;
use crate::container::{self, ContainerActor, DeleteContainer, SandboxOf, Snapshot};
use crate::meta::{Meta, MetaStore};
use crate::sandbox::SandboxActor;
use crate::spec::Placement;
use crate::{blocking, resolve};

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
}

impl Supervisor {
    /// Starts the supervisor for `config.root` (created if missing) in the current actix
    /// system. Every container found under the root is restored before the first message is
    /// handled.
    pub fn start(config: SupervisorConfig) -> Result<Addr<Supervisor>, ApiError> {
        std::fs::create_dir_all(&config.root)
            .map_err(|e| ApiError::io(format!("creating {}", config.root.display()), e))?;
        let store = MetaStore::new(config.root.clone());
        Ok(Supervisor { config: Arc::new(config), store, containers: BTreeMap::new() }.start())
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
async fn restore_all(config: Arc<SupervisorConfig>, store: MetaStore) -> Vec<(String, String, Addr<ContainerActor>)> {
    let (metas, errors) = {
        let store = store.clone();
        blocking(move || Ok(store.load_all())).await.unwrap_or_default()
    };
    for e in errors {
        warn!("skipping unreadable container metadata: {e}");
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
                    .map(|c| container::restore::Found { addr: c.addr, containers: c.containers })
            }
            None => None,
        };
        for meta in metas {
            let id = meta.id.clone();
            match container::restore(config.clone(), store.clone(), meta, found.as_ref()).await {
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
        let (config, store) = (self.config.clone(), self.store.clone());
        // Restore before anything else is handled: ctx.wait holds the mailbox.
        ctx.wait(restore_all(config, store).into_actor(self).map(|restored, act, _| {
            if !restored.is_empty() {
                info!(count = restored.len(), "containers restored");
            }
            for (id, sandbox_id, addr) in restored {
                act.containers.insert(id, Slot::Ready { addr, sandbox_id });
            }
        }));
    }
}

fn gone(id: &str) -> ApiError {
    ApiError::not_found(format!("container {} does not exist", wire::ids::show_id(id)))
}

impl Handler<Create> for Supervisor {
    type Result = ResponseActFuture<Self, Result<ContainerState, ApiError>>;

    fn handle(&mut self, msg: Create, _: &mut Context<Self>) -> Self::Result {
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
        let sandbox = match container::create::placement(&msg.spec) {
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
            Ok(Placement::NewSandbox) => None,
            Ok(Placement::Join(sandbox_id)) => match self.containers.get(&sandbox_id) {
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
        self.containers.insert(id.clone(), Slot::Creating);
        let (config, store) = (self.config.clone(), self.store.clone());
        Box::pin(
            async move {
                let joined = match sandbox {
                    Some((sandbox_id, root)) => {
                        let (sandbox, record) = root.send(SandboxOf).await.map_err(|_| gone(&sandbox_id))??;
                        Some(container::create::Joined { sandbox, record, sandbox_id })
                    }
                    None => None,
                };
                let addr = container::create(config, store, msg, joined).await?;
                let state = addr.send(Snapshot).await.map_err(|_| ApiError::internal("container actor stopped"))?;
                Ok((addr, state))
            }
            .into_actor(self)
            .map(move |res, act, _| match res {
                Ok((addr, state)) => {
                    act.containers.insert(id, Slot::Ready { addr, sandbox_id });
                    Ok(state)
                }
                Err(e) => {
                    act.containers.remove(&id);
                    Err(e)
                }
            }),
        )
    }
}

macro_rules! forward {
    ($msg:ident => $reply:ty) => {
        impl Handler<$msg> for Supervisor {
            type Result = ResponseFuture<Result<$reply, ApiError>>;

            fn handle(&mut self, mut msg: $msg, _: &mut Context<Self>) -> Self::Result {
                let (id, addr) = match self.resolve(&msg.id) {
                    Ok(found) => found,
                    Err(e) => return Box::pin(async move { Err(e) }),
                };
                msg.id = id.clone();
                Box::pin(async move { addr.send(msg).await.map_err(|_| gone(&id))? })
            }
        }
    };
}

forward!(Start => ContainerState);
forward!(GetState => ContainerState);
forward!(Kill => ());
forward!(Wait => ExitStatus);
forward!(CopyOut => ());
forward!(CopyIn => ());
forward!(Exec => Executed);
forward!(WaitProcess => ExitStatus);
forward!(Ps => Vec<ProcessInfo>);

impl Handler<List> for Supervisor {
    type Result = ResponseFuture<Result<Vec<ContainerState>, ApiError>>;

    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
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

impl Handler<Delete> for Supervisor {
    type Result = ResponseActFuture<Self, Result<(), ApiError>>;

    fn handle(&mut self, msg: Delete, _: &mut Context<Self>) -> Self::Result {
        let (id, addr) = match self.resolve(&msg.id) {
            Ok(found) => found,
            // Deleting what is already gone succeeds with --force, as runc's does.
            Err(e) if e.kind == ErrorKind::NotFound && msg.force => return Box::pin(actix::fut::ready(Ok(()))),
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        let joined = self.joined(&id);
        let removed = id.clone();
        Box::pin(
            async move { addr.send(DeleteContainer { force: msg.force, joined }).await.map_err(|_| gone(&id))? }
                .into_actor(self)
                .map(move |res, act, _| {
                    if res.is_ok() {
                        act.containers.remove(&removed);
                    }
                    res
                }),
        )
    }
}
