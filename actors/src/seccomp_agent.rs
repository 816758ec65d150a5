//! Seccomp user notification agents: `linux.seccomp.listenerPath` of the OCI spec.
//!
//! A container whose seccomp profile has a rule with `SCMP_ACT_NOTIFY` loads its filter with
//! `SECCOMP_FILTER_FLAG_NEW_LISTENER` and gets the filter's notification descriptor. As runc
//! does, the runtime then connects to the agent's Unix socket at `listenerPath` and sends it one
//! message: the descriptor (`SCM_RIGHTS`) with the container's state as JSON (the
//! runtime-spec's "container process state": `ociVersion`, `fds: ["seccompFd"]`, `pid`,
//! `metadata` (`listenerMetadata`) and `state`, the OCI state).
//!
//! `listenerPath` is a host path, and only paddockd sees the host's filesystem (the sandbox
//! never resolves a host path), so paddockd is the one that connects. The process gets the
//! descriptor deep in the sandbox, so paddockd gives it, through the create (or exec) request,
//! the end of a socket pair of its own: the relay. The process hands the descriptor over the
//! relay right after loading its filter (see `sandbox::seccomp::hand_off`) and waits;
//! a thread of paddockd ([`relay`]) receives it, learns the process's pid as paddockd sees it
//! from the kernel (`SO_PASSCRED`: the credentials of a Unix socket message are translated
//! into the receiver's PID namespace, which the sandbox, in its own, could not do), sends the
//! agent its message, and only then answers the process, which goes on. So the agent has the
//! descriptor before any system call the filter notifies can wait for it, whatever the process
//! does afterwards; and a failure to reach the agent fails the create (or exec) with the
//! process, as the runtime-spec asks.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixCredentials,
};
use oci_spec::runtime::{LinuxSeccompAction, Spec};
use tracing::{info, warn};
use wire::api::OCI_VERSION;
use wire::ApiError;

/// The agent a container's seccomp filter notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `listenerPath`: the agent's Unix socket, on the host.
    pub path: PathBuf,
    /// `listenerMetadata`: passed to the agent as it is.
    pub metadata: Option<String>,
}

impl Listener {
    /// The agent of `spec`'s seccomp profile, when a rule of it notifies one (`SCMP_ACT_NOTIFY`)
    /// and it names one. Without a notifying rule `listenerPath` is ignored, as the
    /// runtime-spec says; a notifying rule without `listenerPath` the sandbox refuses.
    pub fn of(spec: &Spec) -> Option<Self> {
        let profile = spec.linux().as_ref()?.seccomp().as_ref()?;
        let notifies = profile.default_action() == LinuxSeccompAction::ScmpActNotify
            || profile.syscalls().iter().flatten().any(|c| c.action() == LinuxSeccompAction::ScmpActNotify);
        let path = profile.listener_path().clone()?;
        notifies.then(|| Self { path, metadata: profile.listener_metadata().clone() })
    }
}

/// What the agent is told about the container, besides the process's pid.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where to send it.
    pub listener: Listener,
    /// The container's id.
    pub id: String,
    /// Its bundle.
    pub bundle: PathBuf,
    /// Its spec's annotations.
    pub annotations: HashMap<String, String>,
    /// The status to report: `creating` for the container's init, `running` for a process
    /// exec'd into it (as runc reports them).
    pub status: &'static str,
    /// The init's pid (paddockd's view) when the process is another one, exec'd into the
    /// container; `None` when it is the init itself.
    pub init_pid: Option<i32>,
}

impl Delivery {
    /// The container's state for `spec`, to report with `status`.
    pub fn new(listener: Listener, id: &str, bundle: PathBuf, spec: &Spec, status: &'static str) -> Self {
        Self {
            listener,
            id: id.to_string(),
            bundle,
            annotations: spec.annotations().clone().unwrap_or_default(),
            status,
            init_pid: None,
        }
    }

    /// The container process state for process `pid`, as runc sends it.
    pub fn message(&self, pid: i32) -> serde_json::Value {
        let init_pid = self.init_pid.unwrap_or(pid);
        let mut state = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": self.status,
            "pid": init_pid,
            "bundle": self.bundle,
        });
        if !self.annotations.is_empty() {
            state["annotations"] = serde_json::json!(self.annotations);
        }
        let mut message = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "fds": ["seccompFd"],
            "pid": pid,
            "state": state,
        });
        if let Some(metadata) = self.listener.metadata.as_deref().filter(|m| !m.is_empty()) {
            message["metadata"] = serde_json::json!(metadata);
        }
        message
    }
}

/// Makes a relay for one process: returns the process's end, to send to the sandbox with the
/// request, and serves paddockd's end on a thread of its own until the process hands over its
/// notification descriptor (or closes its end: it failed or exec'd without).
///
/// The thread waits as long as the process may take: an init loads a filter with
/// `noNewPrivileges` only at start, which may come much later than create.
pub fn relay(delivery: Delivery) -> Result<OwnedFd, ApiError> {
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| ApiError::io("socketpair for the seccomp relay", e))?;
    setsockopt(&ours, sockopt::PassCred, &true).map_err(|e| ApiError::io("SO_PASSCRED on the seccomp relay", e))?;
    std::thread::Builder::new()
        .name(format!("seccomp-relay {}", delivery.id))
        .spawn(move || serve(ours, delivery))
        .map_err(|e| ApiError::io("starting the seccomp relay's thread", e))?;
    Ok(theirs)
}

/// paddockd's end of one relay.
fn serve(ours: OwnedFd, delivery: Delivery) {
    let received = match receive(&ours) {
        Ok(Some(received)) => received,
        // The process is gone, or exec'd without notifying (it failed before its filter).
        Ok(None) => return,
        Err(e) => {
            warn!(container = %delivery.id, "seccomp relay: {e}");
            answer(&ours, Err(ApiError::io("paddockd's seccomp relay", e)));
            return;
        }
    };
    let (notify, pid) = received;
    let path = &delivery.listener.path;
    let sent = send_to_agent(&delivery, notify, pid).map_err(|e| {
        ApiError::io(
            format!("linux.seccomp.listenerPath {}: sending the seccomp descriptor to the agent", path.display()),
            e,
        )
    });
    match &sent {
        Ok(()) => info!(container = %delivery.id, pid, agent = %path.display(), "seccomp descriptor sent to the agent"),
        Err(e) => warn!(container = %delivery.id, pid, "{e}"),
    }
    answer(&ours, sent);
}

/// Tells the process how it went: `K`, or `E` and why not.
fn answer(ours: &OwnedFd, result: Result<(), ApiError>) {
    let message = match result {
        Ok(()) => b"K".to_vec(),
        Err(e) => [b"E".as_slice(), e.to_string().as_bytes()].concat(),
    };
    let _ = nix::sys::socket::send(ours.as_raw_fd(), &message, MsgFlags::MSG_NOSIGNAL);
}

/// The notification descriptor and the sender's pid; `None` at end-of-file.
fn receive(ours: &OwnedFd) -> std::io::Result<Option<(OwnedFd, i32)>> {
    let mut byte = [0u8; 1];
    let mut cmsg = nix::cmsg_space!([RawFd; 1], UnixCredentials);
    loop {
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let msg = match recvmsg::<()>(ours.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut notify = None;
        let mut pid = None;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            match c {
                ControlMessageOwned::ScmRights(fds) => {
                    for fd in fds {
                        // SAFETY: the kernel just installed these descriptors for us; nothing
                        // else owns them.
                        let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                        notify.get_or_insert(owned);
                    }
                }
                ControlMessageOwned::ScmCredentials(creds) => pid = Some(creds.pid()),
                _ => {}
            }
        }
        if msg.bytes == 0 && notify.is_none() {
            return Ok(None);
        }
        return match (notify, pid) {
            (Some(notify), Some(pid)) if pid > 0 => Ok(Some((notify, pid))),
            (None, _) => Err(std::io::Error::other("the process sent no descriptor")),
            _ => Err(std::io::Error::other("the kernel gave no pid for the process")),
        };
    }
}

/// Connects to the agent and sends it the descriptor and the state, on a connection of its
/// own that is closed afterwards (the runtime-spec wants exactly one state per connection).
fn send_to_agent(delivery: &Delivery, notify: OwnedFd, pid: i32) -> std::io::Result<()> {
    let message = serde_json::to_vec(&delivery.message(pid)).map_err(std::io::Error::other)?;
    let stream = UnixStream::connect(&delivery.listener.path)?;
    let fds = [notify.as_raw_fd()];
    let mut sent = 0;
    while sent < message.len() {
        let iov = [IoSlice::new(&message[sent..])];
        // The descriptor goes with the first bytes only.
        let cmsgs = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 { &cmsgs } else { &[] };
        match sendmsg::<()>(stream.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seccomp: serde_json::Value) -> Spec {
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_seccomp(Some(serde_json::from_value(seccomp).expect("a valid profile")));
        spec.set_linux(Some(linux));
        spec
    }

    #[test]
    fn a_listener_only_for_a_profile_that_notifies() {
        let notifying = spec(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "meta",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert_eq!(
            Listener::of(&notifying),
            Some(Listener { path: "/run/agent.sock".into(), metadata: Some("meta".into()) })
        );
        let quiet = spec(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}));
        assert_eq!(Listener::of(&quiet), None);
        assert_eq!(Listener::of(&Spec::default()), None);
    }

    #[test]
    fn the_message_is_runcs_container_process_state() {
        let listener = Listener { path: "/a".into(), metadata: Some("m".into()) };
        let mut spec = Spec::default();
        spec.set_annotations(Some([("k".to_string(), "v".to_string())].into()));
        let mut delivery = Delivery::new(listener, "c1", "/bundle".into(), &spec, "creating");
        assert_eq!(
            delivery.message(42),
            serde_json::json!({
                "ociVersion": OCI_VERSION,
                "fds": ["seccompFd"],
                "pid": 42,
                "metadata": "m",
                "state": {"ociVersion": OCI_VERSION, "id": "c1", "status": "creating", "pid": 42,
                          "bundle": "/bundle", "annotations": {"k": "v"}}
            })
        );
        delivery.init_pid = Some(7);
        delivery.status = "running";
        delivery.listener.metadata = None;
        delivery.annotations.clear();
        assert_eq!(
            delivery.message(43),
            serde_json::json!({
                "ociVersion": OCI_VERSION,
                "fds": ["seccompFd"],
                "pid": 43,
                "state": {"ociVersion": OCI_VERSION, "id": "c1", "status": "running", "pid": 7, "bundle": "/bundle"}
            })
        );
    }
}
