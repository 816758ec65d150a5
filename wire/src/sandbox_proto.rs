//! What paddockd says to a sandbox process over the sandbox's control socket, and what the
//! sandbox answers and reports.
//!
//! The sandbox keeps every exit status until paddockd has stored it and sent
//! [`SandboxRequest::Release`], so a status is never lost when paddockd restarts in between.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::api::{ExitStatus, Stdio};
use crate::fds::FdSlot;
use crate::rpc::{Answer, Envelope};
use crate::spec::SpecJson;

/// Creates a container in the sandbox; its process is set up and waits for `Start`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateContainer {
    /// The container's id.
    pub id: String,
    /// The bundle directory, only for the hooks' state and messages.
    pub bundle: PathBuf,
    /// The container's spec.
    pub spec: SpecJson,
    /// True for the sandbox's first (root) container, which sets the hostname.
    pub root: bool,
    /// The caller's stdio.
    pub stdio: Stdio,
    /// The sandbox's ends of the container's gofer io sockets: the rootfs first, then one
    /// per bind mount of the spec, in spec order.
    pub mounts: Vec<FdSlot>,
    /// The container's cgroup, one directory per hierarchy: the sandbox places its processes
    /// in it, and finds them there.
    pub cgroups: Vec<FdSlot>,
    /// The PID namespace the container's spec names by path, opened by paddockd on the host
    /// (a root container joining another's, as `--pid container:X` asks). A pod member
    /// whose spec names one shares its pod's; one without a PID namespace runs in the
    /// sandbox's, which is then the host's; any other gets a namespace of its own.
    #[serde(default)]
    pub pid_ns: FdSlot,
    /// The mount namespace the container's init enters, opened by paddockd on the host: the
    /// one its spec names by path (the container is set up and pivots there, as runc's does),
    /// or paddockd's own when its spec has no mount namespace (the container then runs in the
    /// host's, chrooted into its root). Empty: a new one of its own.
    #[serde(default)]
    pub mount_ns: FdSlot,
    /// The cgroup namespace its spec names by path, opened by paddockd on the host.
    #[serde(default)]
    pub cgroup_ns: FdSlot,
    /// The user namespace its spec names by path, opened by paddockd on the host: the
    /// container's process enters it (whose id maps are already written) instead of a new one.
    #[serde(default)]
    pub user_ns: FdSlot,
    /// The time namespace its spec names by path, opened by paddockd on the host: the
    /// container's init enters it (with the offsets it has) instead of making a new one.
    #[serde(default)]
    pub time_ns: FdSlot,
    /// Run a container whose init exited again (its restart policy), on the mounts the
    /// sandbox kept for it; `mounts` is then empty.
    pub again: bool,
    /// Restore the container's processes with CRIU instead of forking its init.
    pub restore: Option<Box<RestoreInSandbox>>,
    /// The init stops once its mounts are set up, before it pivots into its root, so that
    /// paddockd runs the create hooks (`prestart`, `createRuntime`, `createContainer`) there,
    /// as runc does; [`SandboxRequest::FinishCreate`] lets it go on.
    #[serde(default)]
    pub stop_before_pivot: bool,
    /// When the container's seccomp filter notifies an agent (`SCMP_ACT_NOTIFY`): the process's
    /// end of paddockd's relay, over which it hands paddockd the filter's notification
    /// descriptor for the agent at `linux.seccomp.listenerPath`, which only paddockd reaches.
    #[serde(default)]
    pub seccomp_relay: FdSlot,
}

/// The key of the sandbox's network namespace in a checkpoint (runc's name for it).
pub const NET_NS_KEY: &str = "extRootNetNS";

/// How the sandbox runs CRIU to restore a container's processes into itself.
///
/// CRIU runs as a child of the sandbox, in the sandbox's PID, network, UTS and IPC
/// namespaces (which the restored processes share) but in a private copy of the host's mount
/// namespace (where CRIU, the images and the logs are) and the host's cgroup namespace. With
/// `--restore-sibling` the restored init becomes the sandbox's own child.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestoreInSandbox {
    /// The CRIU program, a host path.
    pub criu: PathBuf,
    /// CRIU's arguments (`restore`, the image, work and log options, ...); the sandbox adds
    /// the root, the namespaces and the inherited descriptors.
    pub args: Vec<String>,
    /// A directory in the host's tree (empty, paddockd's) where the container's root is
    /// attached for CRIU's `--root`.
    pub root_mountpoint: PathBuf,
    /// A directory in the host's tree (empty, paddockd's) under which the container's bind
    /// mounts, as the sandbox holds them from the gofer, are attached for CRIU.
    pub binds_mountpoint: PathBuf,
    /// The destinations of the container's bind mounts, in spec order: CRIU's keys for them.
    pub bind_keys: Vec<String>,
    /// For each of stdin, stdout and stderr: CRIU's key for the descriptor the checkpoint
    /// had there, which the caller's descriptor replaces (`None`: nothing to replace).
    pub stdio_keys: Vec<Option<String>>,
    /// CRIU's key of the terminal's bind mount on `/dev/console`, marked external at the
    /// checkpoint: the sandbox binds the restored process's new terminal there (`None`: the
    /// checkpoint has none).
    pub console_key: Option<String>,
    /// paddockd's mount namespace (the host's).
    pub host_mnt: FdSlot,
    /// paddockd's cgroup namespace (the host's).
    pub host_cgroup: FdSlot,
}

/// Runs another process in a container.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExecProcess {
    /// The container's id.
    pub id: String,
    /// The OCI process to run, as JSON.
    pub process: String,
    /// The caller's stdio.
    pub stdio: Stdio,
    /// Sub-cgroups of the container's to place the process in, one directory per hierarchy
    /// (runc's `exec --cgroup`); empty: the container's own.
    #[serde(default)]
    pub cgroups: Vec<FdSlot>,
    /// As [`CreateContainer::seccomp_relay`], for this process.
    #[serde(default)]
    pub seccomp_relay: FdSlot,
    /// The container is paused (`exec --ignore-paused`): the process freezes as soon as it is
    /// placed in the container's cgroups and goes on only once the container is resumed, so
    /// the sandbox answers once it is placed instead of waiting for its `execve`.
    #[serde(default)]
    pub frozen: bool,
}

/// An OCI hook to run in a container's namespaces (`createContainer`, `startContainer`).
#[derive(Debug, Serialize, Deserialize)]
pub struct HookCall {
    /// Its path, absolute.
    pub path: PathBuf,
    /// The file opened in paddockd's mount namespace, for a hook whose path resolves there
    /// (`createContainer`); empty when the path resolves in the container's.
    pub exe: FdSlot,
    /// Its argv, `args[0]` included (empty: the path alone).
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Vec<String>,
    /// How long it may run, in seconds.
    pub timeout: Option<u64>,
}

/// A request from paddockd.
#[derive(Debug, Serialize, Deserialize)]
pub enum SandboxRequest {
    /// Subscribe this connection to events; the reply lists the sandbox's containers.
    Attach,
    /// See [`CreateContainer`].
    Create(CreateContainer),
    /// Let an init stopped before its pivot (see [`CreateContainer::stop_before_pivot`]) finish
    /// its setup; the reply comes once it waits for start. Nothing to do for an init that did
    /// not stop.
    FinishCreate {
        /// The container's id.
        id: String,
    },
    /// Let a created container's process run the user's program.
    Start {
        /// The container's id.
        id: String,
    },
    /// Send a signal to a container's init, one of its processes, or all of them. With `all`
    /// and SIGKILL, the reply comes once every process of the container is gone.
    Signal {
        /// The container's id.
        id: String,
        /// The signal number.
        signal: i32,
        /// Every process of the container, not only its init.
        all: bool,
        /// One process (a pid in the container's PID namespace, as the container sees it)
        /// instead of the init.
        pid: Option<i32>,
    },
    /// See [`ExecProcess`].
    Exec(ExecProcess),
    /// Wait for a process to exit and collect its exit status: once collected, it is gone.
    WaitPid {
        /// The container it must belong to, unless `any` is set.
        id: String,
        /// The pid: as the container sees it, or (with `any`) in the sandbox's PID namespace.
        pid: i32,
        /// Any process of the sandbox, named by its pid in the sandbox's PID namespace.
        any: bool,
    },
    /// Remove a container that is not the sandbox's root: kill all its processes, wait until
    /// they are gone, and forget it.
    Destroy {
        /// The container's id.
        id: String,
    },
    /// paddockd has stored this container's exit status: the sandbox may forget it.
    Release {
        /// The container's id.
        id: String,
    },
    /// Run hooks, one after the other, in the namespaces of a container whose init is set up;
    /// the first that fails ends the request with its error.
    RunHooks {
        /// The container's id.
        id: String,
        /// The hooks' kind (`createContainer`, `startContainer`), for messages.
        stage: String,
        /// The hooks, in spec order.
        hooks: Vec<HookCall>,
        /// The container's state, as JSON, given to every hook on its stdin.
        state: String,
    },
    /// Fresh copies of the container's mounts as its gofer handed them over (the rootfs
    /// first, then the bind mounts), for a restarted gofer.
    CloneMounts {
        /// The container's id.
        id: String,
    },
}

/// Where a container stands inside its sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessState {
    /// Set up, waiting for start.
    Created,
    /// Running the user's program.
    Running,
    /// Exited; the status is kept until released.
    Exited(ExitStatus),
}

/// One container as the sandbox sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxContainer {
    /// The container's id.
    pub id: String,
    /// Its init's pid in the sandbox's PID namespace.
    pub pid: i32,
    /// Where it stands.
    pub state: ProcessState,
}

/// A successful answer from the sandbox.
#[derive(Debug, Serialize, Deserialize)]
pub enum SandboxReply {
    /// Answer to `Attach`.
    Attached(Vec<SandboxContainer>),
    /// Answer to `Create`: the init's pid inside the sandbox and a pidfd for it, from which
    /// paddockd learns the host pid.
    Created {
        /// The pid in the sandbox's namespace.
        pid: i32,
        /// A pidfd of the container's init.
        pidfd: FdSlot,
    },
    /// Answer to `CloneMounts`.
    Mounts(Vec<FdSlot>),
    /// Answer to `Exec`: the new process's pid in the sandbox and a pidfd for it.
    Executed {
        /// The pid in the sandbox's namespace.
        pid: i32,
        /// The pid as the container sees it (in its own PID namespace).
        container_pid: i32,
        /// A pidfd of the process.
        pidfd: FdSlot,
    },
    /// Answer to `WaitPid`.
    ProcessExited(ExitStatus),
    /// Done.
    Done,
}

/// Something that happened in the sandbox, sent to every attached connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxEvent {
    /// A container's init exited; the sandbox killed what was left of the container.
    Exited {
        /// The container's id.
        id: String,
        /// How its init ended.
        status: ExitStatus,
    },
}

/// A request to a sandbox with its id.
pub type SandboxRequestFrame = Envelope<SandboxRequest>;
/// What a sandbox sends.
pub type SandboxFrame = Answer<SandboxReply, SandboxEvent>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Connection;
    use crate::error::ApiError;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn create_carries_stdio_and_mounts_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut tx = Connection::new(a, 1 << 20);
        let mut rx = Connection::new(b, 1 << 20);
        let (r1, w1) = std::io::pipe().unwrap();
        let (g1, _g2) = UnixStream::pair().unwrap();
        let (g3, _g4) = UnixStream::pair().unwrap();
        let req = SandboxRequestFrame {
            id: 3,
            request: SandboxRequest::Create(CreateContainer {
                id: "c".into(),
                bundle: "/b".into(),
                spec: SpecJson::from_json("{}"),
                root: true,
                stdio: Stdio {
                    stdin: FdSlot::new(OwnedFd::from(r1)),
                    stdout: FdSlot::Empty,
                    stderr: FdSlot::new(OwnedFd::from(w1)),
                    console: FdSlot::Empty,
                    extra: Vec::new(),
                },
                mounts: vec![FdSlot::new(OwnedFd::from(g1)), FdSlot::new(OwnedFd::from(g3))],
                cgroups: vec![],
                pid_ns: FdSlot::Empty,
                mount_ns: FdSlot::Empty,
                cgroup_ns: FdSlot::Empty,
                user_ns: FdSlot::Empty,
                time_ns: FdSlot::Empty,
                seccomp_relay: FdSlot::Empty,
                again: false,
                restore: None,
                stop_before_pivot: false,
            }),
        };
        tx.send(&req).unwrap();
        let got: SandboxRequestFrame = rx.recv().unwrap();
        let SandboxRequest::Create(c) = got.request else { panic!() };
        assert!(c.stdio.stdin.is_some() && !c.stdio.stdout.is_some() && c.stdio.stderr.is_some());
        assert_eq!(c.mounts.len(), 2);
        // The mount slots hold sockets, the stdin slot a pipe: order was kept.
        let kind = |fd: &FdSlot| nix::sys::stat::fstat(fd.as_fd().unwrap()).unwrap().st_mode & libc::S_IFMT;
        assert!(c.mounts.iter().all(|m| kind(m) == libc::S_IFSOCK));
        assert_eq!(kind(&c.stdio.stdin), libc::S_IFIFO);

        for frame in [
            SandboxFrame::Event(SandboxEvent::Exited { id: "c".into(), status: ExitStatus::Exited(1) }),
            SandboxFrame::Reply { id: 1, result: Ok(SandboxReply::Done) },
            SandboxFrame::Reply {
                id: 2,
                result: Ok(SandboxReply::Attached(vec![SandboxContainer {
                    id: "c".into(),
                    pid: 2,
                    state: ProcessState::Running,
                }])),
            },
            SandboxFrame::Reply { id: 4, result: Err(ApiError::internal("x")) },
        ] {
            tx.send(&frame).unwrap();
            let back: SandboxFrame = rx.recv().unwrap();
            assert_eq!(format!("{back:?}"), format!("{frame:?}"));
        }
        let (m1, _m2) = UnixStream::pair().unwrap();
        let (m3, _m4) = UnixStream::pair().unwrap();
        let mounts = SandboxReply::Mounts(vec![FdSlot::new(OwnedFd::from(m1)), FdSlot::new(OwnedFd::from(m3))]);
        tx.send(&SandboxFrame::Reply { id: 5, result: Ok(mounts) }).unwrap();
        match rx.recv::<SandboxFrame>().unwrap() {
            SandboxFrame::Reply { id: 5, result: Ok(SandboxReply::Mounts(m)) } => {
                assert_eq!(m.len(), 2);
                assert!(m.iter().all(|f| matches!(f, FdSlot::Present(_))));
            }
            other => panic!("{other:?}"),
        }
    }
}
