//! A pid file's process joining its container.
//!
//! Clients read a container's cgroups and namespaces through the pid in its pid file:
//! containerd's shim loads the task's cgroups from `/proc/<pid>/cgroup` for metrics and its OOM
//! watch, conmon watches OOM there, Docker and podman join `/proc/<pid>/ns/*`. paddock's pid
//! file names a monitor (see `ctl`'s `monitor-process`), so the monitor is moved here into
//! the container's cgroups, and told which process's network, IPC and UTS namespaces to join.
//!
//! Every hierarchy but the v1 freezer: the freezer is how pause and checkpoint stop exactly
//! the container's processes (CRIU seizes every task of the freezer cgroup it is given), and
//! no client reads a freezer from the pid. On cgroup v2 there is one hierarchy; there a
//! paused container's monitor is frozen too, as runc's init would be.

use actix::prelude::*;
use wire::api::{Monitor, Monitored};
use wire::{ApiError, Status};

use super::ContainerActor;
use crate::blocking;

impl Handler<crate::Api<Monitor>> for ContainerActor {
    type Result = AtomicResponse<Self, Result<Monitored, ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<Monitor>, _: &mut Context<Self>) -> Self::Result {
        let ready = |r: Result<Monitored, ApiError>| AtomicResponse::new(Box::pin(actix::fut::ready(r)));
        if self.meta.status == Status::Stopped {
            // Nothing to join: the monitor's wait answers at once.
            return ready(Ok(Monitored { namespaces_of: None }));
        }
        // The namespaces are the init's; a pod member has none until it starts, but its
        // network, IPC and UTS namespaces are its sandbox's, which the sandbox process is in.
        let Some(init) = self.meta.init.or(self.meta.sandbox) else {
            return ready(Ok(Monitored { namespaces_of: None }));
        };
        let monitor = msg.monitor_pid;
        let record = match crate::procfs::record(monitor) {
            Ok(r) => r,
            Err(e) => return ready(Err(ApiError::io(format!("monitor process {monitor}"), e))),
        };
        self.monitors.retain(|m| crate::procfs::start_time(m.pid).is_ok_and(|t| t == m.start_time));
        if !self.monitors.contains(&record) {
            self.monitors.push(record);
        }
        // The container's own monitor (not an exec'd process's) is the pid its state reports,
        // as it is the pid in its pid file; kept with the metadata, so a restarted paddockd
        // reports it too.
        let store_it = msg.pid.is_none() && self.meta.monitor != Some(record);
        if store_it {
            self.meta.monitor = Some(record);
        }
        let (store, meta) = (self.store.clone(), self.meta.clone());
        let cgroup = self.cgroup.clone();
        AtomicResponse::new(Box::pin(
            async move {
                if let Some(cgroup) = cgroup {
                    blocking(move || join_cgroups(&cgroup, monitor)).await?;
                }
                if store_it {
                    super::save(&store, &meta).await?;
                }
                Ok(Monitored { namespaces_of: Some((init.pid, init.start_time)) })
            }
            .into_actor(self),
        ))
    }
}

/// Moves `pid` into every directory of `cgroup` but a v1 freezer's.
fn join_cgroups(cgroup: &crate::cgroups::Cgroup, pid: i32) -> Result<(), ApiError> {
    for dir in cgroup.dirs().into_iter().filter(|d| !d.join("freezer.state").exists()) {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| ApiError::io(format!("moving the monitor {pid} into {}", dir.display()), e))?;
    }
    Ok(())
}

impl ContainerActor {
    /// Whether host pid `pid` is one of the container's monitors.
    pub(super) fn is_monitor(&self, pid: i32) -> bool {
        self.monitors.iter().any(|m| m.pid == pid && crate::procfs::start_time(pid).is_ok_and(|t| t == m.start_time))
    }
}
