//! The containers of this sandbox as the sandbox tracks them: their init processes, their
//! exec'd processes, and exit statuses until they are collected.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rustix::fs::{Mode, OFlags};
use wire::sandbox_proto::{ProcessState, SandboxContainer};
use wire::{ApiError, ErrorKind, ExitStatus, FdSlot};

use crate::cgroup;
use crate::init::WaitingInit;
use crate::spawner::jobs::NamespaceFds;

/// Where one container stands.
#[derive(Debug)]
pub enum Phase {
    /// Set up; its init waits for start on this sync channel.
    Created(WaitingInit),
    /// Running the user's program.
    Running,
    /// Its init exited; kept until released.
    Exited(ExitStatus),
}

/// A container's namespaces, held open to run processes in them (those it shares with the
/// sandbox are left out).
#[derive(Debug)]
pub struct Namespaces {
    /// Its mount namespace.
    pub mnt: OwnedFd,
    /// Its PID namespace, unless it is the sandbox's.
    pub pid: Option<OwnedFd>,
    /// Its user namespace, if it has one of its own.
    pub user: Option<OwnedFd>,
    /// Its cgroup namespace, if it has one of its own.
    pub cgroup: Option<OwnedFd>,
    /// Its init's root directory.
    pub root: Option<OwnedFd>,
    /// Its time namespace, if it has one of its own.
    pub time: Option<OwnedFd>,
}

impl Namespaces {
    /// Takes the namespaces the spawner opened.
    pub fn from_fds(mut fds: NamespaceFds) -> Result<Self, ApiError> {
        Ok(Self {
            mnt: fds.mnt.take().ok_or_else(|| ApiError::new(ErrorKind::Protocol, "no mount namespace"))?,
            pid: fds.pid.take(),
            user: fds.user.take(),
            cgroup: fds.cgroup.take(),
            root: fds.root.take(),
            time: fds.time.take(),
        })
    }

    /// Copies, for a process that enters them.
    pub fn to_fds(&self) -> Result<NamespaceFds, ApiError> {
        let dup = |fd: &OwnedFd| fd.try_clone().map(FdSlot::new).map_err(|e| ApiError::io("dup", e));
        let dup_opt = |fd: &Option<OwnedFd>| fd.as_ref().map(dup).transpose().map(|s| s.unwrap_or_default());
        Ok(NamespaceFds {
            mnt: dup(&self.mnt)?,
            pid: dup_opt(&self.pid)?,
            user: dup_opt(&self.user)?,
            cgroup: dup_opt(&self.cgroup)?,
            root: dup_opt(&self.root)?,
            time: dup_opt(&self.time)?,
        })
    }
}

/// Where a container's mounts are staged in the sandbox.
#[derive(Debug, Clone)]
pub struct Staged {
    /// The root filesystem.
    pub rootfs: std::path::PathBuf,
    /// The bind mounts, in spec order.
    pub binds: Vec<std::path::PathBuf>,
}

/// One container in the sandbox.
#[derive(Debug)]
pub struct Record {
    /// Its init's pid in the sandbox's namespace.
    pub pid: Pid,
    /// Where it stands.
    pub phase: Phase,
    /// The mounts the gofer handed over, as the sandbox holds them; a restarted gofer gets
    /// copies, so it sees the very same trees (an overlay's contents above all).
    pub staged: Staged,
    /// paddockd has stored the exit status; it is no longer reported.
    pub released: bool,
    /// Its cgroup directories.
    pub cgroups: Vec<OwnedFd>,
    /// Its namespaces (taken once its init was set up).
    pub namespaces: Namespaces,
}

/// A process started by exec, and its exit status once it has one.
#[derive(Debug)]
struct Exec {
    container: String,
    /// Its pid as the container sees it.
    container_pid: Pid,
    status: Option<ExitStatus>,
}

/// Every container of the sandbox, by id, and the exec'd processes.
#[derive(Debug, Default)]
pub struct Containers {
    records: BTreeMap<String, Record>,
    execs: HashMap<Pid, Exec>,
}

/// What happened to a process the sandbox reaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaped {
    /// A container's init: the container ended.
    Init(String),
    /// An exec'd process.
    Exec,
    /// Some other process of the sandbox (an orphan it adopted).
    Other,
}

/// The pid that process `pid` (of the sandbox's PID namespace) has in its innermost PID
/// namespace: the last of the `NSpid:` pids in its status, read through the sandbox's procfs.
pub fn container_pid_of(proc: BorrowedFd<'_>, pid: Pid) -> Option<Pid> {
    let fd =
        rustix::fs::openat(proc, format!("{pid}/status").as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .ok()?;
    let mut status = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut status).ok()?;
    status.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?.parse().ok().map(Pid::from_raw)
}

fn not_running(id: &str) -> ApiError {
    ApiError::new(ErrorKind::InvalidStatus, format!("container {id:?} is not running"))
}

impl Containers {
    /// Whether `id` is known.
    pub fn contains(&self, id: &str) -> bool {
        self.records.contains_key(id)
    }

    /// Whether it has no container at all.
    pub fn none(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds a container.
    pub fn insert(&mut self, id: String, record: Record) {
        self.records.insert(id, record);
    }

    /// The container `id`, or a clear error.
    pub fn get(&self, id: &str) -> Result<&Record, ApiError> {
        self.records.get(id).ok_or_else(|| ApiError::not_found(format!("container {id:?} is not in this sandbox")))
    }

    /// The container `id`, or a clear error.
    pub fn get_mut(&mut self, id: &str) -> Result<&mut Record, ApiError> {
        self.records.get_mut(id).ok_or_else(|| ApiError::not_found(format!("container {id:?} is not in this sandbox")))
    }

    /// Forgets a container (after it was destroyed).
    pub fn remove(&mut self, id: &str) -> Option<Record> {
        self.execs.retain(|_, e| e.container != id);
        self.records.remove(id)
    }

    /// Every container, as reported to paddockd.
    pub fn snapshot(&self) -> Vec<SandboxContainer> {
        self.records
            .iter()
            .filter(|(_, r)| !r.released)
            .map(|(id, r)| SandboxContainer {
                id: id.clone(),
                pid: r.pid.as_raw(),
                state: match &r.phase {
                    Phase::Created(_) => ProcessState::Created,
                    Phase::Running => ProcessState::Running,
                    Phase::Exited(status) => ProcessState::Exited(*status),
                },
            })
            .collect()
    }

    /// Records an exec'd process of container `id`: `pid` in the sandbox's PID namespace,
    /// `container_pid` in the container's.
    pub fn add_exec(&mut self, id: &str, pid: Pid, container_pid: Pid) {
        self.execs.insert(pid, Exec { container: id.to_string(), container_pid, status: None });
    }

    /// The sandbox's pid of container `id`'s exec'd process that the container knew as
    /// `container_pid`, once it has exited (and so is gone from `/proc`).
    pub fn exited_exec(&self, id: &str, container_pid: Pid) -> Option<Pid> {
        self.execs
            .iter()
            .find(|(_, e)| e.container == id && e.container_pid == container_pid && e.status.is_some())
            .map(|(pid, _)| *pid)
    }

    /// Whether `pid` is a process the sandbox tracks: a container's init or an exec'd
    /// process.
    pub fn knows(&self, pid: Pid) -> bool {
        self.execs.contains_key(&pid) || self.records.values().any(|r| r.pid == pid)
    }

    /// Records that the process `pid` ended and says what it was.
    pub fn process_exited(&mut self, pid: Pid, status: ExitStatus) -> Reaped {
        if let Some(exec) = self.execs.get_mut(&pid) {
            exec.status = Some(status);
            return Reaped::Exec;
        }
        match self.records.iter_mut().find(|(_, r)| r.pid == pid && !matches!(r.phase, Phase::Exited(_))) {
            Some((id, record)) => {
                record.phase = Phase::Exited(status);
                Reaped::Init(id.clone())
            }
            None => Reaped::Other,
        }
    }

    /// Whether process `pid` is container `id`'s: its init, one it exec'd, or one in its
    /// cgroup.
    pub fn owns(&self, id: &str, pid: Pid) -> bool {
        let Ok(record) = self.get(id) else { return false };
        record.pid == pid
            || self.execs.get(&pid).is_some_and(|e| e.container == id)
            || cgroup::procs(&record.cgroups).contains(&pid)
    }

    /// Sends `signal` to container `id`'s init, or to one of its processes.
    pub fn signal(&self, id: &str, signal: Signal, pid: Option<Pid>) -> Result<(), ApiError> {
        let record = self.get(id)?;
        let target = match pid {
            Some(pid) => {
                if !self.owns(id, pid) {
                    return Err(ApiError::not_found(format!("container {id:?} has no process {pid}")));
                }
                pid
            }
            None => {
                if matches!(record.phase, Phase::Exited(_)) {
                    return Err(not_running(id));
                }
                record.pid
            }
        };
        nix::sys::signal::kill(target, signal).map_err(|e| match e {
            nix::errno::Errno::ESRCH => ApiError::not_found(format!("process {target} of container {id:?} is gone")),
            other => ApiError::io(format!("signalling process {target} of container {id:?}"), other),
        })
    }

    /// Sends `signal` to every process of container `id`.
    pub fn signal_all(&self, id: &str, signal: Signal) -> Result<(), ApiError> {
        let record = self.get(id)?;
        cgroup::signal_all(&record.cgroups, signal);
        if !matches!(record.phase, Phase::Exited(_)) {
            let _ = nix::sys::signal::kill(record.pid, signal);
        }
        Ok(())
    }

    /// Whether nothing of container `id` is alive any more.
    pub fn is_empty(&self, id: &str, proc: &OwnedFd) -> bool {
        match self.get(id) {
            Ok(record) => {
                matches!(record.phase, Phase::Exited(_)) && cgroup::live_procs(&record.cgroups, proc.as_fd()).is_empty()
            }
            Err(_) => true,
        }
    }

    /// Takes the exit status of process `pid` if it has one to collect (an exec'd process that
    /// ended, or a container's init); `Ok(None)` while it runs.
    pub fn collect(&mut self, pid: Pid) -> Option<Option<ExitStatus>> {
        if let Some(exec) = self.execs.get(&pid) {
            return match exec.status {
                Some(status) => {
                    self.execs.remove(&pid);
                    Some(Some(status))
                }
                None => Some(None),
            };
        }
        let record = self.records.values().find(|r| r.pid == pid)?;
        Some(match record.phase {
            Phase::Exited(status) => Some(status),
            _ => None,
        })
    }

    /// The pid in the sandbox's PID namespace of the process of container `id` that the
    /// container knows as `container_pid` (in its own PID namespace). Only the container's
    /// own processes are looked at: another's may have the same pid in its namespace.
    pub fn sandbox_pid(&self, id: &str, container_pid: Pid, proc: BorrowedFd<'_>) -> Result<Pid, ApiError> {
        let record = self.get(id)?;
        if let Some((pid, _)) =
            self.execs.iter().find(|(_, e)| e.container == id && e.container_pid == container_pid && e.status.is_none())
        {
            return Ok(*pid);
        }
        let candidates = std::iter::once(record.pid)
            .chain(self.execs.iter().filter(|(_, e)| e.container == id).map(|(pid, _)| *pid))
            .chain(cgroup::procs(&record.cgroups));
        for pid in candidates {
            if container_pid_of(proc, pid) == Some(container_pid) {
                return Ok(pid);
            }
        }
        Err(ApiError::not_found(format!("container {id:?} has no process {container_pid}")))
    }

    /// Forgets a container whose exit status paddockd has stored.
    pub fn release(&mut self, id: &str) -> Result<(), ApiError> {
        let record = self.get_mut(id)?;
        if !matches!(record.phase, Phase::Exited(_)) {
            return Err(ApiError::new(
                ErrorKind::InvalidStatus,
                format!("container {id:?} has not exited; nothing to release"),
            ));
        }
        record.released = true;
        Ok(())
    }
}
