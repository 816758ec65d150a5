//! Signalling a container: its init, one of its processes, or all of them (tracked by its
//! cgroup, so daemonized grandchildren are included; with SIGKILL the reply comes once every
//! one is gone).

use actix::prelude::*;
use wire::api::Kill;
use wire::sandbox_proto::SandboxRequest;
use wire::{ApiError, Status};

use super::ContainerActor;
use crate::status::{self, Operation};

impl Handler<crate::Api<Kill>> for ContainerActor {
    type Result = ResponseFuture<Result<(), ApiError>>;

    fn handle(&mut self, crate::Api(msg): crate::Api<Kill>, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.meta.id.clone();
        let op = match (msg.all, msg.pid) {
            (true, _) => Operation::SignalAll,
            (false, Some(_)) => Operation::SignalProcess,
            (false, None) => Operation::Signal,
        };
        if let Err(e) = status::require(&id, op, self.meta.status) {
            return Box::pin(async move { Err(e) });
        }
        if nix::sys::signal::Signal::try_from(msg.signal).is_err() {
            let e = ApiError::invalid_argument(format!("{} is not a valid signal number", msg.signal));
            return Box::pin(async move { Err(e) });
        }
        if msg.pid.is_none() && Self::is_stop_signal(msg.signal) {
            self.stopped_by_user(ctx);
        }
        // Nothing of a stopped container whose sandbox is gone (or that never ran) is left.
        if self.meta.status == Status::Stopped && (self.sandbox.is_none() || self.meta.init.is_none()) {
            return Box::pin(async move { Ok(()) });
        }
        if self.meta.init.is_none() {
            // A subcontainer that was created but never started has no process yet.
            let e = ApiError::new(
                wire::ErrorKind::InvalidStatus,
                format!("container {id:?} has not been started; it has no process to signal"),
            );
            return Box::pin(async move { Err(e) });
        }
        // Not atomic: `kill --all -9` waits for the processes to be gone, which needs the
        // exit notices this actor handles meanwhile.
        let call = self.sandbox_call(SandboxRequest::Signal { id, signal: msg.signal, all: msg.all, pid: msg.pid });
        // A frozen process does not die of SIGKILL until it is thawed (cgroup v1): thaw it,
        // as runc does, once the signal is on its way.
        let thaw = match (self.meta.status, msg.signal) {
            (Status::Paused, libc::SIGKILL) => self.cgroup.clone(),
            _ => None,
        };
        Box::pin(async move {
            let Some(cgroup) = thaw else { return call.await.map(drop) };
            // Polled in order: the signal request is sent before the thaw starts.
            let thaw = async move {
                let _ = crate::blocking(move || cgroup.set_frozen(false)).await;
            };
            futures_util::future::join(call, thaw).await.0.map(drop)
        })
    }
}
