//! Taking a container over again when paddockd starts: its sandbox (connected once per
//! sandbox, by the supervisor) and its gofer are re-adopted if they still run, checked by pid
//! and start time; a container whose sandbox is gone is found stopped; one whose creation
//! never finished is cleaned away.

use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use tracing::info;
use wire::sandbox_proto::{ProcessState, SandboxContainer};
use wire::{ApiError, Status};

use super::{apply_notice, save, ActorParts, ContainerActor, GoferHandle, Parts};
use crate::blocking;
use crate::cgroups::{self, Cgroup};
use crate::config::SupervisorConfig;
use crate::events::EventBus;
use crate::gofer::DestroyGofer;
use crate::gofer::GoferActor;
use crate::meta::{Meta, MetaStore};
use crate::procfs::HelperScan;
use crate::restart::RestartPolicy;
use crate::sandbox::{SandboxActor, SandboxNotice};
use wire::events::EventKind;

/// A sandbox as the supervisor found it again.
pub(crate) struct Found {
    /// Its actor.
    pub addr: Addr<SandboxActor>,
    /// Its containers as it reported them.
    pub containers: Vec<SandboxContainer>,
}

/// Takes over one container of a sandbox that was `found` again (or not).
pub(crate) async fn recover(
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    events: EventBus,
    board: crate::board::StateBoard,
    mut meta: Meta,
    found: Option<&Found>,
    helpers: &HelperScan,
) -> Result<Option<Addr<ContainerActor>>, ApiError> {
    let id = meta.id.clone();
    let dir: PathBuf = store.dir(&id);
    // Helpers started for this container but never recorded (paddockd died in between).
    let keep: Vec<i32> = [meta.sandbox, meta.gofer].iter().flatten().map(|r| r.pid).collect();
    let strays = helpers.strays(&id, &dir, &keep);
    if !strays.is_empty() {
        let sid = id.clone();
        let _ = blocking(move || {
            crate::procfs::kill_stray_helpers(&sid, &strays);
            Ok(())
        })
        .await;
    }
    let gofer = match &meta.gofer {
        Some(record) => GoferActor::reconnect(&config, &id, record, &dir).await.ok().map(GoferHandle::from),
        None => None,
    };
    let cgroup = match meta.cgroup.clone() {
        Some(path) => blocking(move || Cgroup::open(&path)).await.ok().map(Arc::new),
        None => None,
    };
    if meta.status == Status::Creating {
        info!(container = %id, "removing a container whose creation never finished");
        let mut cgroups: Vec<Arc<Cgroup>> = cgroup.into_iter().collect();
        let sandbox = if meta.is_root() {
            let sid = id.clone();
            cgroups.extend(blocking(move || Cgroup::open(&cgroups::sandbox_path(&sid))).await.ok().map(Arc::new));
            found.map(|f| f.addr.clone())
        } else {
            None
        };
        Parts { sandbox, gofer, cgroups }.destroy().await;
        blocking(move || store.remove(&id)).await?;
        return Ok(None);
    }
    let mut pending_notice = None;
    let mut lost_while_down = false;
    match found {
        Some(found) => match found.containers.iter().find(|c| c.id == id).map(|c| c.state) {
            Some(ProcessState::Exited(status)) => pending_notice = Some(SandboxNotice::Exited(status)),
            Some(_) => {}
            // Never created in the sandbox (a subcontainer not started yet), or stopped.
            None if meta.init.is_some() && meta.status != Status::Stopped => pending_notice = Some(SandboxNotice::Lost),
            None => {}
        },
        None if meta.status != Status::Stopped => {
            // Settle it on disk before anyone can look.
            apply_notice(&mut meta, SandboxNotice::Lost);
            meta.restart.last_exit = meta.exit_status;
            meta.restart.pending = false;
            if RestartPolicy::of(&meta.spec).unwrap_or_default() != RestartPolicy::No {
                meta.restart.gave_up = Some("its sandbox is gone".into());
            }
            save(&store, &meta).await?;
            lost_while_down = true;
        }
        None => {}
    }
    // Without its sandbox, a gofer serves nobody.
    let gofer = match (found, gofer) {
        (None, Some(g)) => {
            let _ = g.addr.send(DestroyGofer).await;
            None
        }
        (_, g) => g,
    };
    // An OOM kill that happened while paddockd was down is reported with the exit.
    let oom_kills = match (&cgroup, &pending_notice) {
        (Some(cg), None) => {
            let cg = cg.clone();
            blocking(move || Ok(cg.oom_kills())).await.unwrap_or(0)
        }
        _ => 0,
    };
    if lost_while_down {
        events.publish(&meta.id, &meta.sandbox_id, EventKind::SandboxLost);
        if let Some(status) = meta.exit_status {
            events.publish(&meta.id, &meta.sandbox_id, EventKind::exited(status));
        }
        if let Some(reason) = meta.restart.gave_up.clone() {
            events.publish(
                &meta.id,
                &meta.sandbox_id,
                EventKind::RestartGaveUp { reason, restarts: meta.restart.count },
            );
        }
    }
    if let (Status::Running, Some(cg)) = (meta.status, &cgroup) {
        // A checkpoint cut short with paddockd (CRIU killed with it) leaves the freezer frozen
        // behind a running status: thaw it. Writing THAWED to a thawed cgroup changes nothing.
        let cg = cg.clone();
        let _ = blocking(move || cg.set_frozen(false)).await;
    }
    info!(container = %id, status = %meta.status, "container restored");
    let addr = ContainerActor {
        oom_kills,
        ..ContainerActor::new(ActorParts {
            meta,
            config,
            store,
            events,
            sandbox: found.map(|f| f.addr.clone()),
            gofer,
            cgroup,
            board,
        })
    }
    .start();
    // Taken in before the restore is over: the state board opens then (see `board`).
    if let Some(notice) = pending_notice {
        let _ = addr.send(notice).await;
    }
    Ok(Some(addr))
}
