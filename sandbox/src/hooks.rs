//! OCI hooks that run in a container's namespaces: `createContainer` (its file opened by
//! paddockd in the runtime's mount namespace) and `startContainer` (its path resolved in the
//! container's). The sandbox forks them, as it forks exec'd processes, so they are in the
//! container's PID namespace too.

use std::path::Path;
use std::time::Duration;

use nix::sched::CloneFlags;
use wire::sandbox_proto::HookCall;
use wire::{ApiError, ErrorKind};

use crate::containers::Namespaces;

/// Runs `hooks` in order, each with `state` on its stdin; the first failure is the error.
pub fn run(id: &str, stage: &str, hooks: Vec<HookCall>, state: &str, ns: &Namespaces) -> Result<(), ApiError> {
    // In the order exec enters them (see crate::exec): cgroup, user, mount.
    let mut join = Vec::new();
    if let Some(cgroup) = &ns.cgroup {
        join.push((cgroup, CloneFlags::CLONE_NEWCGROUP.bits()));
    }
    if let Some(user) = &ns.user {
        join.push((user, CloneFlags::CLONE_NEWUSER.bits()));
    }
    join.push((&ns.mnt, CloneFlags::CLONE_NEWNS.bits()));
    let place = sys::hook::Place { join, cwd: Some(Path::new("/")) };
    for (i, mut call) in hooks.into_iter().enumerate() {
        let path = call.path.clone();
        let hook = sys::hook::Hook {
            path: call.path,
            exe: call.exe.take(),
            args: call.args,
            env: call.env,
            timeout: call.timeout.map(Duration::from_secs),
        };
        sys::hook::run(hook, state.as_bytes(), &place).map_err(|e| {
            ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: {stage} hook #{i} ({}): {e}", path.display()))
        })?;
    }
    Ok(())
}
