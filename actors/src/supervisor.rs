//! The Supervisor actor: the registry of containers and the router of every operation.
//!
//! It resolves ids (a full id or an unambiguous prefix), refuses a second container with the
//! same id (the reservation is taken before any await, so of many concurrent creates exactly
//! one proceeds), and forwards each operation to the container's own actor, which serializes
//! operations on that container.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, warn};
use wire::api::{CopyIn, CopyOut, Create, Delete, GetState, Kill, List, Start, Wait};
use wire::{ApiError, ContainerState, ErrorKind, ExitStatus};

use crate::config::SupervisorConfig;
use crate::container::{self, ContainerActor, Snapshot};
use crate::meta::MetaStore;
use crate::{blocking, resolve};

enum Slot {
    /// A create is in progress.
    Creating,
    /// The container exists.
    Ready(Addr<ContainerActor>),
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
            Slot::Ready(addr) => Ok((id.to_string(), addr.clone())),
            Slot::Creating => Err(ApiError::new(
                ErrorKind::InvalidStatus,
                format!("container {} is still being created", wire::ids::show_id(id)),
            )),
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let config = self.config.clone();
        let store = self.store.clone();
        // Restore before anything else is handled: ctx.wait holds the mailbox.
        ctx.wait(
            async move {
                let (metas, errors) = {
                    let store = store.clone();
                    blocking(move || Ok(store.load_all())).await.unwrap_or_default()
                };
                for e in errors {
                    warn!("skipping unreadable container metadata: {e}");
                }
                let mut restored = Vec::new();
                for meta in metas {
                    let id = meta.id.clone();
                    match container::restore(config.clone(), store.clone(), meta).await {
                        Ok(Some(addr)) => restored.push((id, addr)),
                        Ok(None) => {}
                        Err(e) => warn!(container = %id, "cannot restore: {e}"),
                    }
                }
                restored
            }
            .into_actor(self)
            .map(|restored, act, _| {
                if !restored.is_empty() {
                    info!(count = restored.len(), "containers restored");
                }
                for (id, addr) in restored {
                    act.containers.insert(id, Slot::Ready(addr));
                }
            }),
        );
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
        let id = msg.id.clone();
        self.containers.insert(id.clone(), Slot::Creating);
        let created = container::create(self.config.clone(), self.store.clone(), msg);
        Box::pin(
            async move {
                let addr = created.await?;
                let state = addr
                    .send(GetState { id: String::new() })
                    .await
                    .map_err(|_| ApiError::internal("container actor stopped"))??;
                Ok((addr, state))
            }
            .into_actor(self)
            .map(move |res, act, _| match res {
                Ok((addr, state)) => {
                    act.containers.insert(id, Slot::Ready(addr));
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

impl Handler<List> for Supervisor {
    type Result = ResponseFuture<Result<Vec<ContainerState>, ApiError>>;

    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        let addrs: Vec<Addr<ContainerActor>> = self
            .containers
            .values()
            .filter_map(|s| match s {
                Slot::Ready(a) => Some(a.clone()),
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

    fn handle(&mut self, mut msg: Delete, _: &mut Context<Self>) -> Self::Result {
        let (id, addr) = match self.resolve(&msg.id) {
            Ok(found) => found,
            // Deleting what is already gone succeeds with --force, as runc's does.
            Err(e) if e.kind == ErrorKind::NotFound && msg.force => return Box::pin(actix::fut::ready(Ok(()))),
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        msg.id = id.clone();
        let id_for_removal = id.clone();
        Box::pin(async move { addr.send(msg).await.map_err(|_| gone(&id))? }.into_actor(self).map(
            move |res, act, _| {
                if res.is_ok() {
                    act.containers.remove(&id_for_removal);
                }
                res
            },
        ))
    }
}
