//! What the sandbox asks its spawner to do, and what the spawner answers.
//!
//! Both ends are this binary: the types travel as wire frames over the socket pair between
//! the two processes, descriptors beside them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wire::sandbox_proto::{HookCall, RestoreInSandbox};
use wire::{FdSlot, SpecJson, Stdio};

/// Where a new process's PID namespace comes from.
#[derive(Debug, Serialize, Deserialize)]
pub enum PidNamespace {
    /// A new one, whose PID 1 the process is (the container's own, as with runc).
    New,
    /// The spawner's own (the sandbox's): a sandbox in the host's PID namespace runs a
    /// container without a PID namespace (`hostPID`) there.
    Inherit,
    /// An existing one (the pod's, or one named by the spec), entered before the fork.
    Join(FdSlot),
}

/// A container's init: set up, then waiting for start (see [`crate::init`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct InitJob {
    /// The container's id.
    pub id: String,
    /// Its spec.
    pub spec: SpecJson,
    /// Where its root filesystem is staged in the sandbox.
    pub rootfs: PathBuf,
    /// Where its bind mounts are staged, in spec order.
    pub binds: Vec<PathBuf>,
    /// Its PID namespace.
    pub pid_ns: PidNamespace,
    /// The existing namespaces it enters instead of making its own.
    pub joins: Joins,
    /// Its root filesystem's path on the host (for a container without a mount namespace).
    #[serde(default)]
    pub host_root: PathBuf,
    /// Its cgroup, one directory per hierarchy, where the spawner places the child.
    pub cgroups: Vec<FdSlot>,
    /// The child's end of its sync socket with the sandbox.
    pub sync: FdSlot,
    /// The caller's stdio.
    pub stdio: Stdio,
    /// Stop once the mounts are set up, before the pivot, until the create hooks ran.
    pub stop_before_pivot: bool,
    /// paddockd's seccomp relay, when the container's filter notifies an agent (see
    /// [`crate::seccomp::hand_off`]).
    #[serde(default)]
    pub seccomp_relay: FdSlot,
}

/// The existing namespaces a container's init enters (see `CreateContainer::mount_ns` and
/// the fields after it); each empty one it makes anew (or, for a type its spec does not list,
/// keeps the sandbox's).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Joins {
    /// The mount namespace its spec names, or the host's when it lists none.
    pub mount: FdSlot,
    /// The cgroup namespace its spec names.
    pub cgroup: FdSlot,
    /// The user namespace its spec names.
    pub user: FdSlot,
    /// The time namespace its spec names.
    #[serde(default)]
    pub time: FdSlot,
}

/// The namespaces of a container that a process entering it joins (those it shares with the
/// sandbox are left out).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct NamespaceFds {
    /// Its mount namespace.
    pub mnt: FdSlot,
    /// Its PID namespace, unless it is the sandbox's.
    pub pid: FdSlot,
    /// Its user namespace, if it has one.
    pub user: FdSlot,
    /// Its cgroup namespace, if it has one.
    pub cgroup: FdSlot,
    /// Its root directory: entering a mount namespace puts a process at that namespace's root,
    /// which is not the container's when it chrooted (it has no mount namespace of its own).
    #[serde(default)]
    pub root: FdSlot,
    /// Its time namespace, if it has one.
    #[serde(default)]
    pub time: FdSlot,
}

/// Another process in a running container (see [`crate::exec`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct ExecJob {
    /// The container's id.
    pub id: String,
    /// The OCI process, as JSON.
    pub process: String,
    /// The container's namespaces.
    pub namespaces: NamespaceFds,
    /// The container's cgroup, one directory per hierarchy, where the spawner places the
    /// child.
    pub cgroups: Vec<FdSlot>,
    /// The child's end of its sync socket with the sandbox.
    pub sync: FdSlot,
    /// The caller's stdio.
    pub stdio: Stdio,
    /// paddockd's seccomp relay, when the container's filter notifies an agent.
    #[serde(default)]
    pub seccomp_relay: FdSlot,
}

/// OCI hooks run one after the other in a container's namespaces, by one process (see
/// [`crate::hooks`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct HooksJob {
    /// The container's id.
    pub id: String,
    /// The hooks' kind, for messages.
    pub stage: String,
    /// The hooks.
    pub hooks: Vec<HookCall>,
    /// The container's state, on every hook's stdin.
    pub state: String,
    /// The container's namespaces.
    pub namespaces: NamespaceFds,
    /// Where the runner writes why it failed.
    pub report: FdSlot,
}

/// CRIU restoring a container's processes (see [`crate::restore`]).
#[derive(Debug, Serialize, Deserialize)]
pub struct RestoreJob {
    /// The container's id.
    pub id: String,
    /// Where its root filesystem is staged in the sandbox.
    pub rootfs: PathBuf,
    /// Where its bind mounts are staged, in spec order.
    pub binds: Vec<PathBuf>,
    /// Its spec: the processes exec'd into the restored container take on its seccomp
    /// filter, personality and memory policy, as those of a container created here do.
    pub spec: SpecJson,
    /// paddockd's plan.
    pub plan: RestoreInSandbox,
    /// The caller's stdio (and console socket).
    pub stdio: Stdio,
    /// Where CRIU's process writes why it failed before CRIU ran.
    pub report: FdSlot,
}

/// A job.
#[derive(Debug, Serialize, Deserialize)]
pub enum Job {
    /// Attach a container's mounts from its gofer in the sandbox's tree.
    Stage {
        /// The container's id.
        id: String,
        /// The detached mounts: the rootfs, then the bind mounts in spec order.
        mounts: Vec<FdSlot>,
    },
    /// Detach a container's staged mounts.
    Unstage {
        /// The container's id.
        id: String,
    },
    /// Fresh detached copies of a container's staged mounts, for its restarted gofer.
    CopyMounts {
        /// The container's id.
        id: String,
    },
    /// The sandbox's hostname (for its root container) and the container's sysctls.
    Configure {
        /// The container's id (a root container's names the sandbox, and so the spawner's
        /// command line).
        id: String,
        /// The container's spec.
        spec: SpecJson,
        /// It is the sandbox's root container.
        root: bool,
    },
    /// Fork a container's init.
    Init(Box<InitJob>),
    /// Fork a process in a container.
    Exec(Box<ExecJob>),
    /// Fork a process that runs hooks.
    Hooks(Box<HooksJob>),
    /// Fork CRIU to restore a container.
    Restore(Box<RestoreJob>),
    /// Write the id maps of a process that entered a new user namespace.
    MapIds {
        /// The process, in the sandbox's PID namespace.
        pid: i32,
        /// `uid_map`'s contents.
        uid_map: String,
        /// `gid_map`'s contents.
        gid_map: String,
    },
    /// The namespaces of a container's init.
    Namespaces {
        /// The init, in the sandbox's PID namespace.
        pid: i32,
    },
    /// Forget what is kept for a container (its compiled seccomp filter).
    Forget {
        /// The container's id.
        id: String,
    },
}

/// The spawner's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Done {
    /// Done.
    Finished,
    /// A child of the sandbox now exists: its pid in the sandbox's PID namespace.
    Spawned(i32),
    /// Answer to [`Job::Stage`]: where the mounts are (the rootfs, then the bind mounts).
    Staged {
        /// The staged rootfs.
        rootfs: PathBuf,
        /// The staged bind mounts.
        binds: Vec<PathBuf>,
    },
    /// Answer to [`Job::CopyMounts`].
    Mounts(Vec<FdSlot>),
    /// Answer to [`Job::Namespaces`].
    Namespaces(NamespaceFds),
}
