//! The status machine: which transitions are legal, and which operations each status allows.
//!
//! The rules are runsc's (`changeStatus` and `requireStatus` in the reference), with its
//! defects fixed: a paused container can be stopped (runsc panics on Paused → Stopped), and
//! only a running container can be paused (runsc lets `pause` accept a created container and
//! then panics on Created → Paused). Illegal requests are errors for the caller, never panics.

use wire::{ApiError, ErrorKind, Status};

/// Decides whether a container may go from `from` to `to`.
///
/// `Creating → Created → Running ⇄ Paused`, and every status may become `Stopped`
/// (`Stopped → Stopped` too: destroying is idempotent).
pub fn can_transition(from: Status, to: Status) -> bool {
    use Status::*;
    matches!(
        (from, to),
        (Creating, Created) | (Created, Running) | (Running, Paused) | (Paused, Running) | (_, Stopped)
    )
}

/// Checks a transition, with an error that names the container.
pub fn transition(id: &str, from: Status, to: Status) -> Result<Status, ApiError> {
    if can_transition(from, to) {
        Ok(to)
    } else {
        Err(ApiError::new(
            ErrorKind::InvalidStatus,
            format!("container {}: cannot go from {from} to {to}", wire::ids::show_id(id)),
        ))
    }
}

/// Checks the one transition that is not the OCI lifecycle's but a restart policy's: a stopped
/// container whose policy starts its process again goes `Stopped → Running` (only from
/// Stopped: a container that was never started is started by `start`, not by a policy).
pub fn restart_transition(id: &str, from: Status) -> Result<Status, ApiError> {
    if from == Status::Stopped {
        Ok(Status::Running)
    } else {
        Err(ApiError::new(
            ErrorKind::InvalidStatus,
            format!(
                "container {}: a restart policy restarts only a stopped container, not a {from} one",
                wire::ids::show_id(id)
            ),
        ))
    }
}

/// An operation on a container, as far as its status matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Run the user's program.
    Start,
    /// Run another process in the container.
    Exec,
    /// Signal the container's init.
    Signal,
    /// Signal every process of the container.
    SignalAll,
    /// Signal one process of the container.
    SignalProcess,
    /// Freeze.
    Pause,
    /// Thaw.
    Resume,
    /// Save the container's state.
    Checkpoint,
    /// List the container's processes.
    Processes,
    /// Stream the container's statistics.
    Events,
    /// Delete without force.
    Delete,
    /// Delete, killing whatever still runs.
    ForceDelete,
    /// Copy files in or out through the gofer.
    Copy,
    /// Wait for the exit status.
    Wait,
    /// Report the state.
    State,
}

impl Operation {
    /// Every operation, for exhaustive tests.
    pub const ALL: [Operation; 15] = [
        Operation::Start,
        Operation::Exec,
        Operation::Signal,
        Operation::SignalAll,
        Operation::SignalProcess,
        Operation::Pause,
        Operation::Resume,
        Operation::Checkpoint,
        Operation::Processes,
        Operation::Events,
        Operation::Delete,
        Operation::ForceDelete,
        Operation::Copy,
        Operation::Wait,
        Operation::State,
    ];

    /// The statuses in which the operation is allowed.
    ///
    /// As runsc's `requireStatus`, except that signals reach created and paused containers too
    /// (runc allows both, and containerd relies on killing a created container), and a paused
    /// container is thawed after being signalled.
    pub fn allowed_in(self) -> &'static [Status] {
        use Status::*;
        match self {
            Operation::Start => &[Created],
            Operation::Exec => &[Created, Running],
            Operation::Signal => &[Created, Running, Paused],
            Operation::SignalAll => &[Created, Running, Paused, Stopped],
            Operation::SignalProcess => &[Running],
            Operation::Pause => &[Running],
            Operation::Resume => &[Paused],
            // CRIU dumps the user's processes: a created container has none yet (its init is
            // paddock's own code, waiting for start).
            Operation::Checkpoint => &[Running, Paused],
            Operation::Processes => &[Running, Paused],
            Operation::Events => &[Created, Running, Paused],
            Operation::Delete => &[Created, Stopped],
            Operation::ForceDelete => &[Creating, Created, Running, Paused, Stopped],
            Operation::Copy => &[Created, Running, Paused, Stopped],
            Operation::Wait | Operation::State => &[Creating, Created, Running, Paused, Stopped],
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Operation::Start => "start",
            Operation::Exec => "execute in",
            Operation::Signal => "signal",
            Operation::SignalAll => "signal all processes of",
            Operation::SignalProcess => "signal a process inside",
            Operation::Pause => "pause",
            Operation::Resume => "resume",
            Operation::Checkpoint => "checkpoint",
            Operation::Processes => "list the processes of",
            Operation::Events => "get events of",
            Operation::Delete => "delete",
            Operation::ForceDelete => "force-delete",
            Operation::Copy => "copy files of",
            Operation::Wait => "wait on",
            Operation::State => "get the state of",
        }
    }
}

/// Checks that `op` is allowed on container `id` in `status`.
pub fn require(id: &str, op: Operation, status: Status) -> Result<(), ApiError> {
    if op.allowed_in().contains(&status) {
        return Ok(());
    }
    let hint = match (op, status) {
        (Operation::Delete, Status::Running | Status::Paused) => "; stop it first or use --force",
        (Operation::Signal, Status::Stopped) => " (it is not running)",
        _ => "",
    };
    Err(ApiError::new(
        ErrorKind::InvalidStatus,
        format!("container {}: cannot {} it in status {status}{hint}", wire::ids::show_id(id), op.verb()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn every_pair_of_statuses() {
        // The full table: row = from, column = to, in Status::ALL order
        // (Creating, Created, Running, Paused, Stopped).
        let table: [[bool; 5]; 5] = [
            /* Creating */ [false, true, false, false, true],
            /* Created  */ [false, false, true, false, true],
            /* Running  */ [false, false, false, true, true],
            /* Paused   */ [false, false, true, false, true],
            /* Stopped  */ [false, false, false, false, true],
        ];
        for (i, from) in Status::ALL.into_iter().enumerate() {
            for (j, to) in Status::ALL.into_iter().enumerate() {
                assert_eq!(can_transition(from, to), table[i][j], "{from} -> {to}");
                let res = transition("c", from, to);
                assert_eq!(res.is_ok(), table[i][j]);
                if let Err(e) = res {
                    assert_eq!(e.kind, ErrorKind::InvalidStatus);
                    assert!(e.message.contains(&format!("from {from} to {to}")), "{}", e.message);
                }
            }
        }
    }

    #[test]
    fn reference_defects_are_fixed() {
        // runsc panics on Paused -> Stopped; here it is legal.
        assert!(can_transition(Paused, Stopped));
        // runsc's Pause() accepts Created and then panics; here pause is refused cleanly.
        assert!(require("c", Operation::Pause, Created).is_err());
        assert!(!can_transition(Created, Paused));
    }

    #[test]
    fn every_operation_in_every_status() {
        let expect = |op: Operation| -> Vec<Status> {
            match op {
                Operation::Start => vec![Created],
                Operation::Exec => vec![Created, Running],
                Operation::Signal => vec![Created, Running, Paused],
                Operation::SignalAll => vec![Created, Running, Paused, Stopped],
                Operation::SignalProcess => vec![Running],
                Operation::Pause => vec![Running],
                Operation::Resume => vec![Paused],
                Operation::Checkpoint => vec![Running, Paused],
                Operation::Processes => vec![Running, Paused],
                Operation::Events => vec![Created, Running, Paused],
                Operation::Delete => vec![Created, Stopped],
                Operation::Copy => vec![Created, Running, Paused, Stopped],
                Operation::ForceDelete | Operation::Wait | Operation::State => Status::ALL.to_vec(),
            }
        };
        for op in Operation::ALL {
            for status in Status::ALL {
                let res = require("web", op, status);
                assert_eq!(res.is_ok(), expect(op).contains(&status), "{op:?} in {status}");
                if let Err(e) = res {
                    assert!(e.message.starts_with("container \"web\": cannot "), "{}", e.message);
                    assert!(e.message.contains(&format!("in status {status}")), "{}", e.message);
                }
            }
        }
    }

    #[test]
    fn delete_of_running_container_suggests_force() {
        let e = require("web", Operation::Delete, Running).unwrap_err();
        assert!(e.message.contains("--force"), "{}", e.message);
    }

    #[test]
    fn only_a_stopped_container_is_restarted_by_a_policy() {
        for from in [Status::Creating, Status::Created, Status::Running, Status::Paused, Status::Stopped] {
            let res = restart_transition("c", from);
            assert_eq!(res.as_ref().ok(), (from == Status::Stopped).then_some(&Status::Running), "from {from}");
            if let Err(e) = res {
                assert_eq!(e.kind, ErrorKind::InvalidStatus);
            }
        }
    }
}
