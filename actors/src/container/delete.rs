//! Deleting a container. A subcontainer's processes are killed in the sandbox (which answers
//! once they are all gone); a root container takes its sandbox down, after the containers
//! that joined it have stopped and lost their gofers. The directory goes last.

use std::sync::Arc;

use actix::prelude::*;
use tracing::{info, warn};
use wire::sandbox_proto::SandboxRequest;
use wire::{ApiError, ExitStatus, GoferStatus, Status};

use super::{save, ContainerActor, Parts};
use crate::blocking;
use crate::cgroups::{self, Cgroup};
use crate::gofer::DestroyGofer;
use crate::hooks::Stage;
use crate::sandbox::Call;
use crate::status::{self, Operation};

/// Deletes a container: the supervisor's form of `wire::api::Delete`, which adds, for a root
/// container, the containers that joined its sandbox (they are stopped first).
#[derive(Message)]
#[rtype(result = "Result<(), ApiError>")]
pub struct DeleteContainer {
    /// Kill whatever still runs instead of refusing.
    pub force: bool,
    /// The containers that joined this one's sandbox.
    pub joined: Vec<Addr<ContainerActor>>,
}

/// The sandbox this container joined is going away with its root container.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SandboxGoingAway;

impl ContainerActor {
    /// Marks the container stopped by force, if it was not stopped already.
    fn stop_by_force(&mut self) {
        self.meta.restart.pending = false;
        if self.meta.status != Status::Stopped {
            self.meta.status = Status::Stopped;
            self.meta.exit_status = Some(ExitStatus::Signaled(libc::SIGKILL));
        }
        // Before anyone is answered: a subcontainer stopped with its sandbox is not asked
        // through the supervisor, which would refresh it after.
        self.refresh_board();
        self.wake_waiters();
    }
}

impl Handler<DeleteContainer> for ContainerActor {
    type Result = AtomicResponse<Self, Result<(), ApiError>>;

    fn handle(&mut self, msg: DeleteContainer, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        let op = if msg.force { Operation::ForceDelete } else { Operation::Delete };
        if let Err(e) = status::require(&id, op, self.meta.status) {
            return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e))));
        }
        let is_root = self.meta.is_root();
        let in_sandbox = self.meta.init.is_some();
        let sandbox = self.sandbox.take();
        let gofer = self.gofer.take();
        // Frozen processes cannot die: thaw them first.
        let thaw = if self.meta.status == Status::Paused { self.cgroup.clone() } else { None };
        let cgroup = self.cgroup.take();
        self.gofer_status = GoferStatus::Stopped;
        self.fail_gofer_waiters();
        let fut = async move {
            if let Some(cg) = thaw {
                let _ = blocking(move || cg.set_frozen(false)).await;
            }
            let mut cgroups: Vec<Arc<Cgroup>> = cgroup.into_iter().collect();
            if is_root {
                for joined in msg.joined {
                    let _ = joined.send(SandboxGoingAway).await;
                }
                // No system call once the hierarchies are known (and a read of them if not).
                cgroups.extend(Cgroup::open(&cgroups::sandbox_path(&id)).ok().map(Arc::new));
                Parts { sandbox, gofer, cgroups }.stop().await
            } else {
                if let (Some(sandbox), true) = (sandbox, in_sandbox) {
                    // Returns once nothing of the container is alive.
                    match sandbox.send(Call(SandboxRequest::Destroy { id: id.clone() })).await {
                        Ok(Err(e)) => warn!(container = %id, "destroying it in the sandbox: {e}"),
                        Err(_) => warn!(container = %id, "the sandbox went away while destroying it"),
                        Ok(Ok(_)) => {}
                    }
                }
                Parts { sandbox: None, gofer, cgroups }.stop().await
            }
        };
        AtomicResponse::new(Box::pin(
            fut.into_actor(self)
                .then(|cgroups, act, _| {
                    // Waiters first: a pid file's monitor in the cgroups leaves them once it
                    // has its answer, and the removal gives it a moment to.
                    act.stop_by_force();
                    let store = act.store.clone();
                    let id = act.meta.id.clone();
                    let host_root = act.meta.host_root_mount.map(|found| (act.meta.rootfs.clone(), found));
                    async move {
                        super::remove_cgroups(cgroups).await;
                        if let Some((path, found)) = host_root {
                            blocking(move || {
                                detach_host_root(&path, found);
                                Ok(())
                            })
                            .await?;
                        }
                        blocking(move || store.remove(&id)).await
                    }
                    .into_actor(act)
                })
                // The poststop hooks: after the container is gone, before delete returns, once
                // (the container cannot be deleted again).
                .then(|res, act, _| act.after_success_hooks(Stage::Poststop, res))
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

impl Handler<SandboxGoingAway> for ContainerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: SandboxGoingAway, _: &mut Context<Self>) -> Self::Result {
        self.sandbox = None;
        let gofer = self.gofer.take();
        self.gofer_status = GoferStatus::Stopped;
        self.fail_gofer_waiters();
        self.stop_by_force();
        info!(container = %self.meta.id, "stopped: its sandbox is going away");
        let (store, meta) = (self.store.clone(), self.meta.clone());
        AtomicResponse::new(Box::pin(
            async move {
                if let Some(g) = gofer {
                    let _ = g.addr.send(DestroyGofer).await;
                }
                if let Err(e) = save(&store, &meta).await {
                    warn!(container = %meta.id, "cannot save: {e}");
                }
            }
            .into_actor(self),
        ))
    }
}

/// Detaches the tree the init of a container without a mount namespace attached on its root
/// filesystem's path in the host's, if it is there: the mount on that path now, when it is not
/// the one that was there at create (`found`, which is the caller's own).
fn detach_host_root(path: &std::path::Path, found: u64) {
    match crate::procfs::mount_id(path) {
        Ok(now) if now != found => {
            if let Err(e) = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
                warn!(path = %path.display(), "detaching the container's tree from the host's root filesystem path: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => warn!(path = %path.display(), "the container's root filesystem: {e}"),
    }
}
