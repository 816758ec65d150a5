//! Freezing and thawing a container (its freezer cgroup, as runc does), and changing its
//! cgroup limits while it runs (`runc update`).

use std::sync::Arc;

use actix::prelude::*;
use tracing::info;
use wire::api::{Pause, Resume, Update};
use wire::events::EventKind;
use wire::{ApiError, ContainerState, ErrorKind, Status};

use super::{save, ContainerActor};
use crate::blocking;
use crate::cgroups::Cgroup;
use crate::status::{self, Operation};

impl ContainerActor {
    /// The container's cgroup, or an error naming the operation that needs it.
    fn cgroup_for(&self, what: &str) -> Result<Arc<Cgroup>, ApiError> {
        self.cgroup.clone().ok_or_else(|| {
            ApiError::new(ErrorKind::Unsupported, format!("container {:?} has no cgroup to {what}", self.meta.id))
        })
    }

    /// Freezes (`true`) or thaws the container and records the new status.
    fn freeze(&mut self, frozen: bool) -> AtomicResponse<Self, Result<ContainerState, ApiError>> {
        let (op, to, event) = if frozen {
            (Operation::Pause, Status::Paused, EventKind::Paused)
        } else {
            (Operation::Resume, Status::Running, EventKind::Resumed)
        };
        let checked = self
            .refuse_while_checkpointing()
            .and_then(|()| status::require(&self.meta.id, op, self.meta.status))
            .and_then(|()| self.cgroup_for(if frozen { "freeze" } else { "thaw" }));
        let cgroup = match checked {
            Ok(cgroup) => cgroup,
            Err(e) => return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e)))),
        };
        AtomicResponse::new(Box::pin(
            async move { blocking(move || cgroup.set_frozen(frozen)).await }.into_actor(self).then(
                move |res, act, _| {
                    let changed = res.and_then(|()| status::transition(&act.meta.id, act.meta.status, to));
                    if let Ok(to) = changed {
                        act.meta.status = to;
                        act.publish(event);
                        info!(container = %act.meta.id, status = %to, "container frozen or thawed");
                    }
                    let (store, meta) = (act.store.clone(), act.meta.clone());
                    let state = act.state();
                    async move {
                        changed?;
                        save(&store, &meta).await?;
                        Ok(state)
                    }
                    .into_actor(act)
                },
            ),
        ))
    }
}

impl Handler<crate::Api<Pause>> for ContainerActor {
    type Result = AtomicResponse<Self, Result<ContainerState, ApiError>>;

    fn handle(&mut self, crate::Api(_): crate::Api<Pause>, _: &mut Context<Self>) -> Self::Result {
        self.freeze(true)
    }
}

impl Handler<crate::Api<Resume>> for ContainerActor {
    type Result = AtomicResponse<Self, Result<ContainerState, ApiError>>;

    fn handle(&mut self, crate::Api(_): crate::Api<Resume>, _: &mut Context<Self>) -> Self::Result {
        self.freeze(false)
    }
}

impl Handler<crate::Api<Update>> for ContainerActor {
    type Result = AtomicResponse<Self, Result<ContainerState, ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<Update>, _: &mut Context<Self>) -> Self::Result {
        // Only the fields given are written (zero means "not given", as for runc): see
        // `crate::resources`. Device rules are not updated, as by runc: the update's rules
        // alone would replace the container's (the defaults every container needs included).
        let parsed = serde_json::from_str::<oci_spec::runtime::LinuxResources>(&msg.resources)
            .map(|mut r| {
                r.set_devices(None);
                r
            })
            .map_err(|e| ApiError::invalid_argument(format!("the resources are not valid OCI linux.resources: {e}")));
        let checked = parsed.and_then(|r| {
            self.refuse_while_checkpointing()?;
            if !matches!(self.meta.status, Status::Created | Status::Running | Status::Paused) {
                return Err(ApiError::new(
                    ErrorKind::InvalidStatus,
                    format!(
                        "container {:?} is {}; only a live container can be updated",
                        self.meta.id, self.meta.status
                    ),
                ));
            }
            Ok((r, self.cgroup_for("update")?))
        });
        let (resources, cgroup) = match checked {
            Ok(found) => found,
            Err(e) => return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e)))),
        };
        let apply = resources.clone();
        AtomicResponse::new(Box::pin(
            async move { blocking(move || cgroup.apply(&apply)).await }.into_actor(self).then(move |res, act, _| {
                if res.is_ok() {
                    crate::spec::merge_resources(&mut act.meta.spec, &resources);
                }
                let (store, meta) = (act.store.clone(), act.meta.clone());
                let state = act.state();
                async move {
                    res?;
                    save(&store, &meta).await?;
                    Ok(state)
                }
                .into_actor(act)
            }),
        ))
    }
}
