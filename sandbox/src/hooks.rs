//! OCI hooks that run in a container's namespaces and mount tree: `startContainer` (its path
//! resolved in the container's). (`createContainer` hooks, whose paths resolve in the
//! runtime's mount namespace, are run by paddockd.)
//!
//! The spawner forks a runner, the sandbox's child, in the container's PID namespace; the
//! runner runs the hooks one after the other (each in the container's cgroup, user and mount
//! namespaces, with its own timeout) and exits 0 when all succeeded, or writes why one failed
//! to its report pipe and exits 1. The sandbox does not wait for it: its loop goes on serving
//! the pod, and answers the request when it reaps the runner.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use wire::{ApiError, ErrorKind, ExitStatus, FdSlot};

use crate::spawner::jobs::{Done, HooksJob, Job};
use crate::spawner::Spawner;

/// A runner at work: the sandbox's child, which the loop reaps like any other.
#[derive(Debug)]
pub struct Runner {
    /// The runner's pid in the sandbox's PID namespace.
    pub pid: Pid,
    /// The hooks' stage (`startContainer`).
    pub stage: String,
    /// The container and the hooks' stage, for messages (`container "a": startContainer hooks`).
    pub what: String,
    /// Where the runner writes why a hook failed.
    report: OwnedFd,
}

/// Has the spawner fork a runner for the job's hooks; returns at once. The loop collects the
/// outcome with [`Runner::outcome`] once it has reaped the runner: each hook has a timeout
/// the runner enforces, so the runner ends.
pub fn spawn(spawner: &mut Spawner, mut job: HooksJob) -> Result<Runner, ApiError> {
    let what = format!("container {:?}: {} hooks", job.id, job.stage);
    let stage = job.stage.clone();
    let (report, report_write) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| ApiError::io("pipe", e))?;
    job.report = FdSlot::new(report_write);
    match spawner.call(Job::Hooks(Box::new(job)))? {
        Done::Spawned(pid) => Ok(Runner { pid: Pid::from_raw(pid), stage, what, report }),
        other => Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?}"))),
    }
}

impl Runner {
    /// The hooks' result, from the runner's exit `status` and its report: the first failure
    /// is the error.
    pub fn outcome(self, status: ExitStatus) -> Result<(), ApiError> {
        let message = crate::sync::read_report(&self.report);
        match status {
            ExitStatus::Exited(0) => Ok(()),
            _ if !message.is_empty() => Err(ApiError::new(ErrorKind::Sandbox, message)),
            other => Err(ApiError::new(ErrorKind::Sandbox, format!("{}: the runner ended with {other:?}", self.what))),
        }
    }
}

/// The runner, forked by the spawner: returns its exit code.
pub fn child(mut job: HooksJob) -> i32 {
    let Some(report) = job.report.take() else { return 1 };
    let (mnt, user, cgroup) = (job.namespaces.mnt.take(), job.namespaces.user.take(), job.namespaces.cgroup.take());
    let time = job.namespaces.time.take();
    let exes: Vec<Option<OwnedFd>> = job.hooks.iter_mut().map(|h| h.exe.take()).collect();
    let mut keep = vec![report.as_raw_fd()];
    keep.extend([&mnt, &user, &cgroup, &time].into_iter().flatten().map(|f| f.as_raw_fd()));
    keep.extend(exes.iter().flatten().map(|f| f.as_raw_fd()));
    if sys::close_all_except(&keep).is_err() {
        return 1;
    }
    if let Err(e) = crate::sync::reset_process_state() {
        let _ = rustix::io::write(&report, e.to_string().as_bytes());
        return 1;
    }
    let Some(mnt) = mnt else { return 1 };
    // In the order exec enters them (see crate::exec): cgroup, time, user, mount.
    let mut join = Vec::new();
    if let Some(cgroup) = &cgroup {
        join.push((cgroup, CloneFlags::CLONE_NEWCGROUP.bits()));
    }
    if let Some(time) = &time {
        join.push((time, crate::init::time::CLONE_NEWTIME));
    }
    if let Some(user) = &user {
        join.push((user, CloneFlags::CLONE_NEWUSER.bits()));
    }
    join.push((&mnt, CloneFlags::CLONE_NEWNS.bits()));
    let place = sys::hook::Place { join, cwd: Some(Path::new("/")), ..Default::default() };
    for (i, (call, exe)) in job.hooks.into_iter().zip(exes).enumerate() {
        let path = call.path.clone();
        let hook = sys::hook::Hook {
            path: call.path,
            exe,
            args: call.args,
            env: call.env,
            timeout: call.timeout.map(Duration::from_secs),
        };
        if let Err(e) = sys::hook::run(hook, job.state.as_bytes(), &place) {
            let message = format!("container {:?}: {} hook #{i} ({}): {e}", job.id, job.stage, path.display());
            let _ = rustix::io::write(&report, message.as_bytes());
            return 1;
        }
    }
    0
}
