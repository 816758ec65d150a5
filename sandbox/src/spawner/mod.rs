//! The spawner: the sandbox's one privileged helper, and the only maker of the sandbox's
//! processes.
//!
//! The sandbox forks it first thing, before it confines itself, so that the spawner keeps
//! what the sandbox gives up: every capability, no seccomp filter, no `no_new_privs` — all of
//! which a container's processes must be able to start from, since a process can only lose
//! them. It does the privileged work of the sandbox (attaching mounts, writing id maps and
//! sysctls) and makes every process the sandbox runs: a container's init, a process exec'd
//! into it, a hook runner, CRIU.
//!
//! It makes them with `clone3(CLONE_PARENT)` (through [`sys::spawn::fork`]), so each is the *sandbox's* child, not the
//! spawner's: the sandbox reaps it and keeps its exit status, as for everything in its pod.
//! A clone is quick, so the spawner answers at once and never blocks the sandbox; what the
//! new process does (set itself up, run hooks, run CRIU) it does on its own, reporting to the
//! sandbox over a socket of its own.
//!
//! The spawner is invisible to containers (it is in the sandbox's PID namespace, of which a
//! container sees nothing), non-dumpable, holds only its socket to the sandbox, the
//! sandbox's procfs and its own PID namespace, and dies with the sandbox.

pub mod jobs;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use nix::unistd::Pid;
use rustix::fs::{Mode, OFlags};
use wire::conn::Connection;
use wire::frame::DEFAULT_MAX_FRAME;
use wire::rpc::{Answer, Envelope, NoEvent};
use wire::{ApiError, ErrorKind, FdSlot};

use self::jobs::{Done, Job, NamespaceFds, PidNamespace};
use crate::sandbox_root::{self, Staged};
use crate::seccomp::Filter;

/// The sandbox's end of the spawner.
pub struct Spawner {
    conn: Connection,
    next: u64,
    pid: Pid,
}

impl Spawner {
    /// Forks the spawner. `proc` is the sandbox's procfs, which the spawner keeps.
    pub fn start(proc: &OwnedFd) -> std::io::Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        let own_pid_ns = rustix::fs::openat(proc, "self/ns/pid", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let sandbox = Pid::this();
        // SAFETY: the sandbox is single-threaded, so the child may do anything the parent could.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                drop(ours);
                let code = run(theirs, proc, own_pid_ns, sandbox);
                // SAFETY: _exit ends the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                Ok(Self { conn: Connection::new(ours, DEFAULT_MAX_FRAME), next: 1, pid: child })
            }
        }
    }

    /// The spawner's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Has the spawner do `job`, and returns its answer. Quick: the spawner only forks, or
    /// does a few system calls.
    pub fn call(&mut self, job: Job) -> Result<Done, ApiError> {
        let id = self.next;
        self.next += 1;
        let gone = |e: wire::WireError| ApiError::new(ErrorKind::Sandbox, format!("the sandbox's spawner: {e}"));
        self.conn.send(&Envelope { id, request: job }).map_err(gone)?;
        match self.conn.recv::<Answer<Done, NoEvent>>().map_err(gone)? {
            Answer::Reply { id: got, result } if got == id => result,
            other => Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?} to request {id}"))),
        }
    }
}

/// What the spawner keeps between jobs.
struct State {
    proc: OwnedFd,
    own_pid_ns: OwnedFd,
    /// Each container's compiled seccomp filter (`None`: it has none), for the processes
    /// exec'd into it.
    filters: HashMap<String, Option<Arc<Filter>>>,
    /// Each container's staged mounts.
    staged: HashMap<String, Staged>,
    /// Each container's `linux.personality` and `linux.memoryPolicy` (in an otherwise empty
    /// `Linux`), which the processes exec'd into it take on as its init did.
    linux: HashMap<String, oci_spec::runtime::Linux>,
}

/// The spawner's life: answer the sandbox until it goes away.
fn run(socket: UnixStream, proc: &OwnedFd, own_pid_ns: OwnedFd, sandbox: Pid) -> i32 {
    // Die with the sandbox (checked after the request, in case it is gone already).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid() != sandbox {
        return 1;
    }
    let proc = match proc.try_clone() {
        Ok(p) => p,
        Err(_) => return 1,
    };
    // Nothing of the sandbox's (its control socket, its peers, its signalfd) stays here.
    let keep = [0, 1, 2, socket.as_raw_fd(), proc.as_raw_fd(), own_pid_ns.as_raw_fd()];
    if sys::close_all_except(&keep).is_err() {
        return 1;
    }
    if let Err(e) = sandbox_root::staging_area() {
        eprintln!("paddock-sandbox spawner: {e}");
        return 1;
    }
    let mut conn = Connection::new(socket, DEFAULT_MAX_FRAME);
    let mut state = State { proc, own_pid_ns, filters: HashMap::new(), staged: HashMap::new(), linux: HashMap::new() };
    loop {
        let envelope = match conn.recv::<Envelope<Job>>() {
            Ok(e) => e,
            Err(_) => return 0,
        };
        let result = handle(&mut state, envelope.request);
        if conn.send(&Answer::<Done, NoEvent>::Reply { id: envelope.id, result }).is_err() {
            return 0;
        }
    }
}

fn handle(state: &mut State, job: Job) -> Result<Done, ApiError> {
    match job {
        Job::Stage { id, mut mounts } => {
            let fds: Vec<OwnedFd> = mounts.iter_mut().filter_map(FdSlot::take).collect();
            if fds.is_empty() {
                return Err(ApiError::new(ErrorKind::Protocol, "nothing to stage"));
            }
            let staged = sandbox_root::stage(&id, fds)?;
            let done = Done::Staged { rootfs: staged.rootfs.clone(), binds: staged.binds.clone() };
            if let Some(old) = state.staged.insert(id, staged) {
                sandbox_root::unstage(&old);
            }
            Ok(done)
        }
        Job::Unstage { id } => {
            if let Some(staged) = state.staged.remove(&id) {
                sandbox_root::unstage(&staged);
            }
            state.filters.remove(&id);
            state.linux.remove(&id);
            Ok(Done::Finished)
        }
        Job::CopyMounts { id } => {
            let staged = state
                .staged
                .get(&id)
                .ok_or_else(|| ApiError::not_found(format!("container {id:?} has no mounts in this sandbox")))?;
            Ok(Done::Mounts(sandbox_root::copies(staged)?.into_iter().map(FdSlot::new).collect()))
        }
        Job::Configure { id, spec, root } => {
            let spec = spec.parse()?;
            if root {
                crate::retitle(&id);
                crate::server::set_identity(&spec)?;
            }
            crate::server::set_sysctls(&state.proc, &spec)?;
            Ok(Done::Finished)
        }
        Job::Init(mut job) => {
            let spec = job.spec.parse()?;
            let filter = remember_for_exec(state, &job.id, &spec)?;
            let pid_ns = std::mem::replace(&mut job.pid_ns, PidNamespace::Inherit);
            let cgroups: Vec<OwnedFd> = job.cgroups.iter_mut().filter_map(FdSlot::take).collect();
            let proc = &state.proc;
            let pid = clone_into_sandbox(&pid_ns, &state.own_pid_ns, || crate::init::child(*job, &spec, filter, proc))?;
            place(&cgroups, pid)?;
            Ok(Done::Spawned(pid.as_raw()))
        }
        Job::Exec(mut job) => {
            let filter = state.filters.get(&job.id).cloned().flatten();
            let process: oci_spec::runtime::Process = serde_json::from_str(&job.process)
                .map_err(|e| ApiError::invalid_spec(format!("invalid OCI process for exec: {e}")))?;
            let pid_ns = join_or_inherit(&mut job.namespaces.pid);
            let cgroups: Vec<OwnedFd> = job.cgroups.iter_mut().filter_map(FdSlot::take).collect();
            let linux = state.linux.get(&job.id).cloned();
            let pid = clone_into_sandbox(&pid_ns, &state.own_pid_ns, || crate::exec::child(*job, filter, linux))?;
            // From here, with the spawner's procfs and cgroup directories: the process itself
            // holds none of them. It waits for the sandbox's word meanwhile.
            // Its initial CPU affinity before it joins the cgroups (runc's order), so that
            // what it does there runs where the spec says.
            if let Err(e) = crate::attributes::initial_affinity(&process, pid) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(e);
            }
            place(&cgroups, pid)?;
            if let Err(e) = crate::process::set_oom_score_adj(&process, &state.proc, &pid.to_string()) {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return Err(e);
            }
            Ok(Done::Spawned(pid.as_raw()))
        }
        Job::Hooks(mut job) => {
            let pid_ns = join_or_inherit(&mut job.namespaces.pid);
            let pid = clone_into_sandbox(&pid_ns, &state.own_pid_ns, || crate::hooks::child(*job))?;
            Ok(Done::Spawned(pid.as_raw()))
        }
        Job::Restore(job) => {
            // CRIU restores its processes' own filters and attributes; those exec'd into it
            // later are forked here and need them as for a container created here.
            remember_for_exec(state, &job.id, &job.spec.parse()?)?;
            let proc = &state.proc;
            let pid =
                clone_into_sandbox(&PidNamespace::Inherit, &state.own_pid_ns, || crate::restore::child(*job, proc))?;
            Ok(Done::Spawned(pid.as_raw()))
        }
        Job::MapIds { pid, uid_map, gid_map } => {
            write_id_maps(&state.proc, Pid::from_raw(pid), &uid_map, &gid_map)
                .map_err(|e| ApiError::io(format!("mapping the user namespace of process {pid}"), e))?;
            Ok(Done::Finished)
        }
        Job::Namespaces { pid } => namespaces_of(state, Pid::from_raw(pid))
            .map(Done::Namespaces)
            .map_err(|e| ApiError::io(format!("opening the namespaces of process {pid}"), e)),
        Job::Forget { id } => {
            state.filters.remove(&id);
            state.linux.remove(&id);
            Ok(Done::Finished)
        }
    }
}

/// Compiles the seccomp filter of container `id` and keeps it with what else of its spec the
/// processes exec'd into it take on (see [`inherited_by_exec`]). Returns the filter.
fn remember_for_exec(
    state: &mut State,
    id: &str,
    spec: &oci_spec::runtime::Spec,
) -> Result<Option<Arc<Filter>>, ApiError> {
    let filter = crate::seccomp::for_spec(spec).map_err(|e| e.context(format!("container {id:?}")))?.map(Arc::new);
    state.filters.insert(id.to_string(), filter.clone());
    state.linux.insert(id.to_string(), inherited_by_exec(spec));
    Ok(filter)
}

/// What of a container's `linux` a process exec'd into it takes on: its personality and
/// memory policy (as runc applies them to both).
fn inherited_by_exec(spec: &oci_spec::runtime::Spec) -> oci_spec::runtime::Linux {
    let mut kept = oci_spec::runtime::Linux::default();
    kept.set_namespaces(None);
    if let Some(linux) = spec.linux() {
        kept.set_personality(linux.personality().clone()).set_memory_policy(linux.memory_policy().clone());
    }
    kept
}

/// Places a new child in its container's cgroups, from outside: the child never holds a
/// cgroup directory (through which `..` leads to the host's cgroupfs). Moving a process with
/// more capabilities than the mover into a cpuset takes CAP_SYS_NICE, which only the spawner
/// keeps. A child that cannot be placed is killed: it would run unaccounted.
fn place(cgroups: &[OwnedFd], pid: Pid) -> Result<(), ApiError> {
    crate::cgroup::place(cgroups, pid).map_err(|e| {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        ApiError::io("placing the process in the container's cgroups", e)
    })
}

/// A container's PID namespace to join, or (none given: it is the sandbox's) the spawner's.
fn join_or_inherit(pid: &mut FdSlot) -> PidNamespace {
    match pid.take() {
        Some(fd) => PidNamespace::Join(FdSlot::new(fd)),
        None => PidNamespace::Inherit,
    }
}

/// Forks a child of the sandbox (`clone3` with `CLONE_PARENT`, or `clone` where `clone3` is
/// refused: [`sys::spawn::fork`]) in the PID namespace `pid_ns` asks for, and runs `child`
/// there; the child never returns. Returns its pid in the sandbox's PID namespace.
///
/// Joining a PID namespace changes only where the caller's children go, so the spawner enters
/// it, forks, and goes back to its own.
///
/// Only the fork is [`sys::spawn`]'s, not its `Command`: these children are not a program to
/// execute after a few system calls but the sandbox's own code (a container's init sets up
/// mounts, pivots, confines itself and waits for the sandbox's word before its `execve`; a hook
/// runner or CRIU's parent waits on its children), which the spawner may run in the child
/// because it is single-threaded. They report to the sandbox over their own sockets, not an
/// errno pipe to the spawner, and are the sandbox's children (`CLONE_PARENT`), reaped and
/// watched by it by pid, so they need no pidfd here.
fn clone_into_sandbox(pid_ns: &PidNamespace, own: &OwnedFd, child: impl FnOnce() -> i32) -> Result<Pid, ApiError> {
    let mut flags = libc::CLONE_PARENT as u64;
    let joined = match pid_ns {
        PidNamespace::New => {
            flags |= libc::CLONE_NEWPID as u64;
            None
        }
        PidNamespace::Inherit => None,
        PidNamespace::Join(fd) => {
            let fd = fd.as_fd().ok_or_else(|| ApiError::new(ErrorKind::Protocol, "a PID namespace without its fd"))?;
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(|e| ApiError::io("entering the container's PID namespace", e))?;
            Some(fd)
        }
    };
    // SAFETY: the spawner is single-threaded, so the child may do anything the parent could;
    // it ends with _exit below, never returning into the spawner's loop.
    let cloned = match unsafe { sys::spawn::fork(flags, false) } {
        Ok(sys::spawn::Forked::Child) => {
            let code = child();
            // SAFETY: _exit ends the child without running the spawner's destructors.
            unsafe { libc::_exit(code) }
        }
        Ok(sys::spawn::Forked::Parent { pid, .. }) => Ok(Pid::from_raw(pid)),
        Err(e) => Err(e),
    };
    if joined.is_some() {
        if let Err(e) = nix::sched::setns(own, nix::sched::CloneFlags::CLONE_NEWPID) {
            // Its later children would land in a container's namespace: better none at all.
            eprintln!("paddock-sandbox spawner: cannot return to its own PID namespace ({e}); exiting");
            std::process::exit(1);
        }
    }
    cloned.map_err(|e| ApiError::io("forking", e))
}

/// Writes the id maps of `pid` (in one write each: the kernel takes a map whole or not at all).
fn write_id_maps(proc: &OwnedFd, pid: Pid, uid_map: &str, gid_map: &str) -> std::io::Result<()> {
    for (file, map) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        let fd = rustix::fs::openat(
            proc,
            format!("{pid}/{file}").as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::io::write(&fd, map.as_bytes()).map_err(|e| {
            std::io::Error::new(std::io::Error::from(e).kind(), format!("writing {file} {:?}: {e}", map.trim()))
        })?;
    }
    Ok(())
}

/// The namespaces of `pid` a process entering its container joins: its mount namespace, and
/// its PID, user, cgroup and time namespaces where they are not the sandbox's.
fn namespaces_of(state: &State, pid: Pid) -> std::io::Result<NamespaceFds> {
    let open = |who: &str, ns: &str| -> std::io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &state.proc,
            format!("{who}/ns/{ns}").as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    };
    let theirs = pid.to_string();
    let own = |ns: &str| -> std::io::Result<FdSlot> {
        let fd = open(&theirs, ns)?;
        let mine = open("self", ns)?;
        let same = rustix::fs::fstat(&fd)?.st_ino == rustix::fs::fstat(&mine)?.st_ino;
        Ok(if same { FdSlot::Empty } else { FdSlot::new(fd) })
    };
    Ok(NamespaceFds {
        mnt: FdSlot::new(open(&theirs, "mnt")?),
        pid: own("pid")?,
        user: own("user")?,
        cgroup: own("cgroup")?,
        root: FdSlot::new(rustix::fs::openat(
            &state.proc,
            format!("{theirs}/root").as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?),
        time: own("time")?,
    })
}

/// Where the staged mounts are kept, for the sandbox's record.
pub fn staged_paths(done: Done) -> Result<(PathBuf, Vec<PathBuf>), ApiError> {
    match done {
        Done::Staged { rootfs, binds } => Ok((rootfs, binds)),
        other => Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?} to a stage"))),
    }
}
