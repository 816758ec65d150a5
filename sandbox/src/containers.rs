//! The containers of this sandbox as the sandbox tracks them: their init processes, and their
//! exit statuses until paddockd has stored them.

use std::collections::BTreeMap;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use wire::sandbox_proto::{ProcessState, SandboxContainer};
use wire::{ApiError, ErrorKind, ExitStatus};

use crate::init::WaitingInit;

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

/// One container in the sandbox.
#[derive(Debug)]
pub struct Record {
    /// Its init's pid in the sandbox's namespace.
    pub pid: Pid,
    /// Where it stands.
    pub phase: Phase,
    /// The mounts the gofer handed over, as the sandbox holds them; a restarted gofer gets
    /// copies, so it sees the very same trees (an overlay's contents above all).
    pub staged: crate::sandbox_root::Staged,
    /// paddockd has stored the exit status; it is no longer reported.
    pub released: bool,
}

/// Every container of the sandbox, by id.
#[derive(Debug, Default)]
pub struct Containers {
    records: BTreeMap<String, Record>,
}

impl Containers {
    /// Whether `id` is known.
    pub fn contains(&self, id: &str) -> bool {
        self.records.contains_key(id)
    }

    /// Adds a container.
    pub fn insert(&mut self, id: String, record: Record) {
        self.records.insert(id, record);
    }

    /// The container `id`, or a clear error.
    pub fn get_mut(&mut self, id: &str) -> Result<&mut Record, ApiError> {
        self.records.get_mut(id).ok_or_else(|| ApiError::not_found(format!("container {id:?} is not in this sandbox")))
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

    /// Records that the process `pid` ended; returns the container whose init it was.
    pub fn process_exited(&mut self, pid: Pid, status: ExitStatus) -> Option<String> {
        let (id, record) =
            self.records.iter_mut().find(|(_, r)| r.pid == pid && !matches!(r.phase, Phase::Exited(_)))?;
        record.phase = Phase::Exited(status);
        Some(id.clone())
    }

    /// Sends `signal` to the container's init, or with `all` to every process of the
    /// container.
    pub fn signal(&mut self, id: &str, signal: Signal, all: bool) -> Result<(), ApiError> {
        let only_container = self.records.len() == 1;
        let record = self.get_mut(id)?;
        if all {
            // With one container per sandbox, the container's processes are every process in
            // the sandbox's PID namespace but the sandbox itself, which is what kill(-1) from
            // PID 1 reaches.
            if !only_container {
                return Err(ApiError::new(
                    ErrorKind::Unsupported,
                    "signalling all processes of one container among several is not supported yet",
                ));
            }
            return match nix::sys::signal::kill(Pid::from_raw(-1), signal) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                Err(e) => Err(ApiError::io(format!("signalling container {id:?}"), e)),
            };
        }
        match record.phase {
            Phase::Exited(_) => {
                Err(ApiError::new(ErrorKind::InvalidStatus, format!("container {id:?} is not running")))
            }
            _ => nix::sys::signal::kill(record.pid, signal)
                .map_err(|e| ApiError::io(format!("signalling container {id:?}"), e)),
        }
    }

    /// Fresh copies of a container's mounts, for its restarted gofer.
    pub fn clone_mounts(&mut self, id: &str) -> Result<Vec<std::os::fd::OwnedFd>, ApiError> {
        let record = self.get_mut(id)?;
        crate::sandbox_root::copies(&record.staged)
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
