//! Checkpointing a container with CRIU (`ctl checkpoint`, runc's `checkpoint`): see
//! [`crate::criu`] for how the sandbox's layout is dumped.

use actix::prelude::*;
use tracing::info;
use wire::api::{Checkpoint, GetState, Wait};
use wire::{ApiError, ContainerState, ErrorKind, Status};

use super::ContainerActor;
use crate::criu::{self, Dump};
use crate::status::{self, Operation};

impl Handler<crate::Api<Checkpoint>> for ContainerActor {
    type Result = ResponseActFuture<Self, Result<ContainerState, ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<Checkpoint>, ctx: &mut Context<Self>) -> Self::Result {
        let dump = match self.plan_dump(&msg) {
            Ok(dump) => dump,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        self.checkpointing = true;
        let thaw = (self.meta.status == Status::Paused && !msg.leave_running).then(|| self.cgroup.clone()).flatten();
        let addr = ctx.address();
        let id = self.meta.id.clone();
        // Not atomic: the container's exit, which a dump without --leave-running causes, is
        // a notice this actor handles meanwhile (the flag keeps the restart policy out of it).
        let taken = {
            let dump = dump.clone();
            async move {
                let taken = crate::blocking(move || criu::dump(&dump)).await;
                if let (Ok(_), Some(cgroup)) = (&taken, thaw) {
                    // A frozen process dies of CRIU's SIGKILL only once thawed (cgroup v1).
                    let _ = crate::blocking(move || cgroup.set_frozen(false)).await;
                }
                taken
            }
        };
        Box::pin(taken.into_actor(self).then(move |taken, act, ctx| {
            act.checkpointing = false;
            if taken.is_ok() && !dump.leave_running {
                // Its processes are gone for good: no restart policy brings them back.
                act.stopped_by_user(ctx);
            }
            async move {
                taken?;
                info!(container = %id, image = %dump.image.display(), leave_running = dump.leave_running, "checkpointed");
                if !dump.leave_running {
                    // As runc: the container is stopped once checkpoint returns.
                    let gone = || ApiError::not_found(format!("container {id:?} is gone"));
                    let _ = addr.send(crate::Api(Wait { id: id.clone(), kill_on_hangup: false })).await.map_err(|_| gone())?;
                }
                addr.send(crate::Api(GetState { id: id.clone() })).await.map_err(|_| ApiError::not_found(id.clone()))?
            }
            .into_actor(act)
        }))
    }
}

impl ContainerActor {
    /// An error while a checkpoint is being taken, for the operations that would change what
    /// it dumps.
    pub(super) fn refuse_while_checkpointing(&self) -> Result<(), ApiError> {
        if self.checkpointing {
            return Err(ApiError::new(
                ErrorKind::InvalidStatus,
                format!("container {:?} is being checkpointed; try again when that is done", self.meta.id),
            ));
        }
        Ok(())
    }

    /// What to dump, once the container is found fit for it.
    fn plan_dump(&self, msg: &Checkpoint) -> Result<Dump, ApiError> {
        let id = &self.meta.id;
        self.refuse_while_checkpointing()?;
        status::require(id, Operation::Checkpoint, self.meta.status)?;
        criu::check_options(&msg.criu_options)?;
        criu::refuse_seccomp_listener(id, &self.meta.spec, "checkpoint")?;
        for path in [Some(&msg.image_path), msg.work_path.as_ref()].into_iter().flatten() {
            if !path.is_absolute() {
                return Err(ApiError::invalid_argument(format!("{} is not an absolute path", path.display())));
            }
        }
        let init = self.meta.init.ok_or_else(|| {
            ApiError::new(ErrorKind::InvalidStatus, format!("container {id:?} has no process to checkpoint"))
        })?;
        let cgroup = self.cgroup.as_ref();
        if let Some(stray) = cgroup
            .map(|c| c.procs())
            .unwrap_or_default()
            .into_iter()
            .find(|p| !descends_from(*p, init.pid) && !self.is_monitor(*p))
        {
            return Err(ApiError::new(
                ErrorKind::InvalidStatus,
                format!(
                    "container {id:?} has process {stray} outside its init's tree (an exec'd process): CRIU dumps one \
                     process tree; wait for it to end first"
                ),
            ));
        }
        Ok(Dump {
            criu: criu::program(msg.criu.as_deref())?,
            id: id.clone(),
            init,
            image: msg.image_path.clone(),
            work: msg.work_path.clone().unwrap_or_else(|| msg.image_path.clone()),
            leave_running: msg.leave_running,
            freezer: cgroup.and_then(|c| c.freezer_dir()),
            binds: wire::mounts::bind_mounts(&self.meta.spec).into_iter().map(|b| b.destination).collect(),
            cgroup_namespace: self
                .meta
                .spec
                .linux()
                .as_ref()
                .and_then(|l| l.namespaces().as_ref())
                .is_some_and(|ns| ns.iter().any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Cgroup)),
            options: msg.criu_options.clone(),
        })
    }
}

/// Whether host process `pid` is `ancestor` or one of its descendants.
fn descends_from(mut pid: i32, ancestor: i32) -> bool {
    for _ in 0..4096 {
        if pid == ancestor {
            return true;
        }
        match crate::procfs::parent(pid) {
            Some(parent) if parent > 0 => pid = parent,
            _ => return false,
        }
    }
    false
}
