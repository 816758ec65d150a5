//! Running another process in a container.
//!
//! The spawner forks it as the sandbox's child, already in the container's PID namespace. It
//! is visible to the container from its first instant, so before anything else it drops every
//! descriptor it was not given (it is non-dumpable, as everything of the sandbox is until
//! `execve`, so nothing can be taken from it meanwhile either); the sandbox places it in the
//! container's cgroups from outside; then it enters the container's cgroup, user and mount
//! namespaces, takes on the process's attributes and executes.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::Process;
use wire::{ApiError, ErrorKind, FdSlot};

use crate::spawner::jobs::{Done, ExecJob, Job};
use crate::spawner::Spawner;
use crate::{process, seccomp, sync};

/// Has the spawner fork the process (and place it in the container's cgroups), and returns
/// once it has called `execve` (or failed, in which case it is reaped before this returns).
///
/// In a `frozen` (paused) container the process freezes as soon as it is placed, before it
/// has set itself up: this returns once it is placed and told to go on, which it does when
/// the container is resumed. What fails after that is its exit status (1, or 127 for the
/// `execve`), as nobody is left to read the reason.
pub fn spawn(spawner: &mut Spawner, mut job: ExecJob, frozen: bool) -> Result<Pid, ApiError> {
    let what = format!("exec in container {:?}", job.id);
    let (parent_end, child_end) = sync::pair()?;
    job.sync = FdSlot::new(child_end);
    let pid = match spawner.call(Job::Exec(Box::new(job)))? {
        Done::Spawned(pid) => Pid::from_raw(pid),
        other => return Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?}"))),
    };
    // The spawner placed it in the container's cgroups before it answered. A message sent on
    // a socket stays to be read after the sender has closed its end.
    let outcome = sync::send(&parent_end, sync::PLACED).map_err(|e| ApiError::io("sync", e)).and_then(|()| {
        if frozen {
            return Ok(());
        }
        match sync::read(parent_end.as_fd()) {
            Ok(None) => Ok(()),
            other => Err(sync::failure(&what, "starting the process", other)),
        }
    });
    match outcome {
        Ok(()) => Ok(pid),
        Err(err) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(err)
        }
    }
}

/// The child, forked by the spawner: returns the exit code when it cannot exec.
///
/// `linux` is what the process takes of its container's `linux` (see
/// [`crate::attributes::apply`]).
pub fn child(mut job: ExecJob, seccomp: Option<Arc<seccomp::Filter>>, linux: Option<oci_spec::runtime::Linux>) -> i32 {
    let Some(sync) = job.sync.take() else { return 1 };
    let stdio = [job.stdio.stdin.take(), job.stdio.stdout.take(), job.stdio.stderr.take()];
    let console = job.stdio.console.take();
    let extra: Vec<OwnedFd> = job.stdio.extra.iter_mut().filter_map(FdSlot::take).collect();
    let (mnt, user, cgroup) = (job.namespaces.mnt.take(), job.namespaces.user.take(), job.namespaces.cgroup.take());
    let root = job.namespaces.root.take();
    let time = job.namespaces.time.take();
    let relay = job.seccomp_relay.take();
    let mut keep = vec![sync.as_raw_fd()];
    keep.extend(relay.iter().map(|f| f.as_raw_fd()));
    for fd in stdio.iter().flatten().chain(console.iter()).chain(extra.iter()) {
        keep.push(fd.as_raw_fd());
    }
    for fd in [&mnt, &user, &cgroup, &root, &time].into_iter().flatten() {
        keep.push(fd.as_raw_fd());
    }
    if sys::close_all_except(&keep).is_err() {
        return 1;
    }
    let result = (|| {
        let process: Process = serde_json::from_str(&job.process)
            .map_err(|e| ApiError::invalid_spec(format!("invalid OCI process for exec: {e}")))?;
        sync::reset_process_state()?;
        if !sync::expect(&sync, sync::PLACED) {
            return Err(ApiError::new(ErrorKind::Sandbox, "the sandbox did not place the process in its cgroups"));
        }
        process::set_rlimits(&process)?;
        crate::attributes::apply(&process, linux.as_ref())?;
        let final_affinity = crate::attributes::final_affinity(&process)?;
        // The cgroup namespace first: the init made it before it entered its user namespace,
        // so it belongs to the sandbox's, where we still hold our capabilities. Then the user
        // namespace: entering the mount namespace needs capabilities in it.
        if let Some(cgroup) = &cgroup {
            nix::sched::setns(cgroup, CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| ApiError::io("entering the cgroup namespace", e))?;
        }
        // The time namespace belongs to the sandbox's user namespace too (the init made it
        // before it entered its own); a single-threaded process's clocks change at once.
        if let Some(time) = &time {
            crate::init::time::enter(time).map_err(|e| ApiError::io("entering the time namespace", e))?;
        }
        if let Some(user) = &user {
            nix::sched::setns(user, CloneFlags::CLONE_NEWUSER)
                .map_err(|e| ApiError::io("entering the user namespace", e))?;
        }
        let mnt = mnt.as_ref().ok_or_else(|| ApiError::new(ErrorKind::Protocol, "no mount namespace to enter"))?;
        nix::sched::setns(mnt, CloneFlags::CLONE_NEWNS).map_err(|e| ApiError::io("entering the mount namespace", e))?;
        // The init's root, which is not the namespace's when it chrooted.
        if let Some(root) = &root {
            nix::unistd::fchdir(root).map_err(|e| ApiError::io("chdir into the container's root", e))?;
            nix::unistd::chroot(".").map_err(|e| ApiError::io("chroot into the container's root", e))?;
            nix::unistd::chdir("/").map_err(|e| ApiError::io("chdir /", e))?;
        }
        crate::console::connect(&process, console.as_ref(), &stdio, crate::console::Console::Leave)?;
        let plan = process::apply(&process, seccomp.as_ref(), relay)?.with_affinity(final_affinity);
        Ok((plan, process))
    })();
    let (plan, _process) = match result {
        Ok(done) => done,
        Err(err) => {
            sync::send_error(&sync, &err);
            return 1;
        }
    };
    // Its stdio is on 0, 1, 2 now; the namespaces are entered: only the sync socket and the
    // descriptors passed on stay.
    let mut keep = vec![0, 1, 2, sync.as_raw_fd()];
    keep.extend(extra.iter().map(|f| f.as_raw_fd()));
    let closed = sys::close_all_except(&keep);
    std::mem::forget((stdio, console, mnt, user, cgroup, time));
    if let Err(e) = closed {
        sync::send_error(&sync, &ApiError::io("closing descriptors", e));
        return 1;
    }
    match sync::place_extra_fds(&extra, sync) {
        Ok(sync) => {
            sync::send_error(&sync, &plan.exec());
            127
        }
        Err((sync, err)) => {
            sync::send_error(&sync, &err);
            1
        }
    }
}
