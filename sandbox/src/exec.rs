//! Running another process in a container: the sandbox forks, and the child joins the
//! container's cgroup and namespaces before it takes on the process's attributes and execs.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Process;
use wire::ApiError;

use crate::containers::Namespaces;
use crate::{cgroup, process, seccomp, sync};

/// What an exec'd process needs.
pub struct ExecConfig<'a> {
    /// The container, for messages.
    pub what: String,
    /// The process to run.
    pub process: &'a Process,
    /// The container's cgroup directories.
    pub cgroups: &'a [OwnedFd],
    /// The container's namespaces.
    pub namespaces: &'a Namespaces,
    /// The container's seccomp filter.
    pub seccomp: Option<Arc<seccomp::Filter>>,
    /// The sandbox's procfs.
    pub proc: &'a OwnedFd,
    /// The caller's stdio.
    pub stdio: [Option<OwnedFd>; 3],
    /// The caller's console socket, for a process with a terminal.
    pub console: Option<OwnedFd>,
    /// Descriptors to become the process's 3, 4, … (`--preserve-fds`).
    pub extra: Vec<OwnedFd>,
}

/// Forks the process and returns once it has called `execve` (or failed, in which case it is
/// reaped before this returns).
///
/// The process runs under the container's seccomp filter, as with runc.
pub fn spawn(config: ExecConfig<'_>) -> Result<Pid, ApiError> {
    let seccomp = config.seccomp.clone();
    let (parent_end, child_end) = sync::pair()?;
    // SAFETY: the sandbox is single-threaded, so the child may do anything the parent could.
    match unsafe { nix::unistd::fork() }.map_err(|e| ApiError::io("fork", e))? {
        ForkResult::Child => {
            drop(parent_end);
            let code = match setup(&config, seccomp.as_ref()) {
                Ok(plan) => match sync::place_extra_fds(&config.extra, child_end) {
                    Ok(sync) => {
                        sync::send_error(&sync, &plan.exec());
                        127
                    }
                    Err((sync, err)) => {
                        sync::send_error(&sync, &err);
                        1
                    }
                },
                Err(err) => {
                    sync::send_error(&child_end, &err);
                    1
                }
            };
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            let ExecConfig { what, stdio, console, extra, .. } = config;
            drop((stdio, console, extra));
            match sync::read(parent_end.as_fd()) {
                Ok(None) => Ok(child),
                other => {
                    let err = sync::failure(&what, "starting the process", other);
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(err)
                }
            }
        }
    }
}

fn setup(config: &ExecConfig<'_>, seccomp: Option<&Arc<seccomp::Filter>>) -> Result<process::ExecPlan, ApiError> {
    sync::reset_process_state()?;
    cgroup::join(config.cgroups).map_err(|e| ApiError::io("joining the container's cgroup", e))?;
    let ns = config.namespaces;
    process::apply_limits(config.process, config.proc)?;
    // The cgroup namespace first: the init made it before it entered its user namespace, so
    // it belongs to the sandbox's, where we still hold our capabilities. Then the user
    // namespace: entering the mount namespace needs capabilities in it.
    if let Some(cgroup) = &ns.cgroup {
        nix::sched::setns(cgroup, CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| ApiError::io("entering the cgroup namespace", e))?;
    }
    if let Some(user) = &ns.user {
        nix::sched::setns(user, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| ApiError::io("entering the user namespace", e))?;
    }
    nix::sched::setns(&ns.mnt, CloneFlags::CLONE_NEWNS).map_err(|e| ApiError::io("entering the mount namespace", e))?;
    crate::console::connect(config.process, config.console.as_ref(), &config.stdio)?;
    process::apply(config.process, seccomp)
}
