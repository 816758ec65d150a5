//! Running another process in a container, and waiting for one process.

use actix::prelude::*;
use wire::api::{Exec, Executed, WaitProcess};
use wire::sandbox_proto::{ExecProcess, SandboxReply, SandboxRequest};
use wire::{ApiError, ErrorKind, ExitStatus, FdSlot};

use super::ContainerActor;
use crate::status::{self, Operation};
use crate::{procfs, spec};

impl Handler<crate::Api<Exec>> for ContainerActor {
    type Result = ResponseFuture<Result<Executed, ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<Exec>, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        let prepared = (|| {
            // As runc's --ignore-paused: the process joins the frozen cgroup and runs once the
            // container is resumed.
            let frozen = msg.spec.ignore_paused && self.meta.status == wire::Status::Paused;
            if !frozen {
                status::require(&id, Operation::Exec, self.meta.status)?;
            }
            if self.meta.init.is_none() {
                return Err(ApiError::new(
                    ErrorKind::InvalidStatus,
                    format!("container {id:?} has not been started; it has no namespaces to run a process in"),
                ));
            }
            let process = spec::exec_process(&self.meta.spec, &msg.spec)?;
            spec::require_console(&process, &msg.stdio)?;
            let cgroups = match (&self.cgroup, msg.spec.sub_cgroups.is_empty()) {
                (_, true) => Vec::new(),
                (Some(cgroup), false) => cgroup.open_sub_dirs(&msg.spec.sub_cgroups)?,
                (None, false) => return Err(ApiError::internal(format!("container {id:?} has no cgroup"))),
            };
            let process = serde_json::to_string(&process)
                .map_err(|e| ApiError::internal(format!("encoding the process: {e}")))?;
            // The process gets the container's filter; one that notifies an agent is handed
            // to it for this process too, as runc does.
            let relay = match crate::seccomp_agent::Listener::of(&self.meta.spec) {
                Some(listener) => {
                    let mut delivery = crate::seccomp_agent::Delivery::new(
                        listener,
                        &id,
                        self.meta.bundle.clone(),
                        &self.meta.spec,
                        "running",
                    );
                    delivery.init_pid = self.meta.init.as_ref().map(|r| r.pid);
                    FdSlot::new(crate::seccomp_agent::relay(delivery)?)
                }
                None => FdSlot::Empty,
            };
            Ok((process, cgroups, relay, frozen))
        })();
        let (process, cgroups, seccomp_relay, frozen) = match prepared {
            Ok(p) => p,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let cgroups = cgroups.into_iter().map(wire::FdSlot::new).collect();
        let call = self.sandbox_call(SandboxRequest::Exec(ExecProcess {
            id: id.clone(),
            process,
            stdio: msg.stdio,
            cgroups,
            seccomp_relay,
            frozen,
        }));
        Box::pin(async move {
            match call.await? {
                SandboxReply::Executed { container_pid, pidfd, .. } => {
                    let pidfd = pidfd
                        .as_fd()
                        .ok_or_else(|| ApiError::new(ErrorKind::Protocol, "exec reply without a pidfd"))?;
                    // The process may already have exited and been reaped: then its host pid
                    // is unknown, which the caller does not need to wait for it.
                    let host = procfs::pidfd_pid(pidfd).unwrap_or(-1);
                    Ok(Executed { pid: host, ns_pid: container_pid })
                }
                other => Err(ApiError::new(ErrorKind::Protocol, format!("exec in {id:?}: unexpected {other:?}"))),
            }
        })
    }
}

impl Handler<crate::Api<WaitProcess>> for ContainerActor {
    type Result = ResponseFuture<Result<ExitStatus, ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<WaitProcess>, _: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        let call = self.sandbox_call(SandboxRequest::WaitPid { id: id.clone(), pid: msg.pid, any: msg.root });
        Box::pin(async move {
            match call.await? {
                SandboxReply::ProcessExited(status) => Ok(status),
                other => Err(ApiError::new(ErrorKind::Protocol, format!("wait in {id:?}: unexpected {other:?}"))),
            }
        })
    }
}
