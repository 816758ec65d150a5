//! How long paddockd waits for each request to a helper (a sandbox or a gofer) before it
//! gives up with [`ErrorKind::Timeout`](wire::ErrorKind::Timeout).
//!
//! A helper that is stuck (stopped, or looping) must not hold its callers forever: a quick
//! request gets a few seconds, a long one (hooks, a restore, a create that waits for the
//! gofer) the helper's own bound for that work plus a margin, so that the helper's own,
//! more precise error normally arrives first. Only a wait for a process to exit has no
//! deadline: it lasts as long as the process does.

use std::time::Duration;

use wire::gofer_proto::GoferRequest;
use wire::sandbox_proto::SandboxRequest;

/// A request that is quick for a healthy helper: a few system calls.
pub const QUICK: Duration = Duration::from_secs(10);

/// What the caller adds to a helper's own bound, so that the helper's error (which says
/// more) comes first.
pub const MARGIN: Duration = Duration::from_secs(30);

/// How long the sandbox waits for a gofer's mounts (see the sandbox's `GOFER_TIMEOUT`).
const GOFER_HANDOVER: Duration = Duration::from_secs(60);

/// How long a container's init may take to set itself up or to exec (the sandbox's
/// handshake timeout).
const SETUP: Duration = Duration::from_secs(60);

/// How long CRIU may take to restore a container (the sandbox kills it then).
pub const RESTORE: Duration = Duration::from_secs(300);

/// How long a gofer may take to prepare a container's filesystem.
const GOFER_SETUP: Duration = Duration::from_secs(120);

/// How long a copy into or out of a container may take.
const COPY: Duration = Duration::from_secs(3600);

/// How long a hook without a timeout of its own may run.
const HOOK_DEFAULT: Duration = crate::hooks::DEFAULT_TIMEOUT;

/// A request with a deadline and a name for messages.
pub trait Deadline {
    /// How long the caller waits for the reply; `None`: as long as it takes.
    fn deadline(&self) -> Option<Duration>;
    /// The operation and its object, for the timeout's message (`start of container "web"`).
    fn operation(&self) -> String;
}

impl Deadline for SandboxRequest {
    fn deadline(&self) -> Option<Duration> {
        Some(match self {
            SandboxRequest::Attach | SandboxRequest::Release { .. } | SandboxRequest::CloneMounts { .. } => QUICK,
            SandboxRequest::Signal { all: false, .. } => QUICK,
            // Answered once every process of the container is gone.
            SandboxRequest::Signal { all: true, .. } | SandboxRequest::Destroy { .. } => QUICK + MARGIN,
            SandboxRequest::Create(create) => {
                let restore = if create.restore.is_some() { RESTORE } else { Duration::ZERO };
                GOFER_HANDOVER + SETUP + restore + MARGIN
            }
            SandboxRequest::FinishCreate { .. } | SandboxRequest::Start { .. } | SandboxRequest::Exec(_) => {
                SETUP + MARGIN
            }
            SandboxRequest::RunHooks { hooks, .. } => {
                hooks.iter().map(|h| h.timeout.map_or(HOOK_DEFAULT, Duration::from_secs)).sum::<Duration>() + MARGIN
            }
            SandboxRequest::WaitPid { .. } => return None,
        })
    }

    fn operation(&self) -> String {
        match self {
            SandboxRequest::Attach => "attach".into(),
            SandboxRequest::Create(c) if c.restore.is_some() => format!("restore of container {:?}", c.id),
            SandboxRequest::Create(c) => format!("create of container {:?}", c.id),
            SandboxRequest::FinishCreate { id } => format!("finishing the create of container {id:?}"),
            SandboxRequest::Start { id } => format!("start of container {id:?}"),
            SandboxRequest::Signal { id, signal, .. } => format!("signal {signal} to container {id:?}"),
            SandboxRequest::Exec(e) => format!("exec in container {:?}", e.id),
            SandboxRequest::WaitPid { id, pid, .. } => format!("wait for process {pid} of container {id:?}"),
            SandboxRequest::Destroy { id } => format!("destroy of container {id:?}"),
            SandboxRequest::Release { id } => format!("release of container {id:?}"),
            SandboxRequest::RunHooks { id, stage, .. } => format!("{stage} hooks of container {id:?}"),
            SandboxRequest::CloneMounts { id } => format!("copying the mounts of container {id:?}"),
        }
    }
}

impl Deadline for GoferRequest {
    fn deadline(&self) -> Option<Duration> {
        Some(match self {
            GoferRequest::Setup(_) => GOFER_SETUP + MARGIN,
            GoferRequest::CopyOut { .. } | GoferRequest::CopyIn { .. } => COPY,
        })
    }

    fn operation(&self) -> String {
        match self {
            GoferRequest::Setup(_) => "setup".into(),
            GoferRequest::CopyOut { path, .. } => format!("copy out of {}", path.display()),
            GoferRequest::CopyIn { path, .. } => format!("copy into {}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::sandbox_proto::HookCall;

    fn hook(timeout: Option<u64>) -> HookCall {
        HookCall { path: "/bin/true".into(), exe: wire::FdSlot::Empty, args: vec![], env: vec![], timeout }
    }

    #[test]
    fn hooks_get_their_timeouts_plus_a_margin_and_waits_none() {
        let run = SandboxRequest::RunHooks {
            id: "a".into(),
            stage: "startContainer".into(),
            hooks: vec![hook(Some(5)), hook(None)],
            state: String::new(),
        };
        assert_eq!(run.deadline(), Some(Duration::from_secs(5) + HOOK_DEFAULT + MARGIN));
        assert_eq!(SandboxRequest::WaitPid { id: "a".into(), pid: 1, any: false }.deadline(), None);
        let signal = SandboxRequest::Signal { id: "a".into(), signal: 15, all: false, pid: None };
        assert_eq!(signal.deadline(), Some(QUICK));
        assert_eq!(signal.operation(), "signal 15 to container \"a\"");
    }
}
