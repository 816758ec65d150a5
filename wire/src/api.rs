//! The supervisor's API: one struct per operation, and the enums that carry them on the wire.
//!
//! Every operation is an [`ApiCall`], whose `Reply` is the operation's answer; the actors take
//! each as a message (`actors::Api`), so an embedding program sends exactly these to the
//! supervisor actor:
//!
//! ```ignore
//! let state = supervisor.send(actors::Api(wire::api::Start { id: "web".into() })).await??;
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::fds::FdSlot;
use crate::spec::SpecJson;

/// The OCI runtime-spec version paddock reports in states.
pub const OCI_VERSION: &str = "1.2.0";

/// A container's status. Which transitions are legal is decided in the actors crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// Being set up: the gofer and the sandbox are starting.
    Creating,
    /// Set up and waiting for `start`; the process exists but has not run the user's program.
    Created,
    /// The user's program is running.
    Running,
    /// Frozen.
    Paused,
    /// The container's process has exited (or was never started and was stopped).
    Stopped,
}

impl Status {
    /// Every status, for exhaustive tests.
    pub const ALL: [Status; 5] = [Status::Creating, Status::Created, Status::Running, Status::Paused, Status::Stopped];

    /// The lowercase name the OCI state uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| ApiError::invalid_argument(format!("unknown status {s:?}")))
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// It called `exit` with this code.
    Exited(i32),
    /// A signal of this number killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => 128 + sig,
        }
    }

    /// Decodes a raw `wait` status as returned by `waitpid`.
    pub fn from_wait_status(raw: i32) -> Self {
        if libc::WIFSIGNALED(raw) {
            ExitStatus::Signaled(libc::WTERMSIG(raw))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(raw))
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// How a container's gofer is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoferStatus {
    /// Serving.
    Running,
    /// It died and is being restarted.
    Restarting,
    /// It died too often; no more restarts. The reason says so.
    Failed(String),
    /// There is none (the container was deleted, or its sandbox is gone).
    Stopped,
}

impl fmt::Display for GoferStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoferStatus::Running => f.write_str("running"),
            GoferStatus::Restarting => f.write_str("restarting"),
            GoferStatus::Failed(why) => write!(f, "failed: {why}"),
            GoferStatus::Stopped => f.write_str("stopped"),
        }
    }
}

/// What paddock knows about a container; rendered as the OCI state by `ctl state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// The full id.
    pub id: String,
    /// The current status.
    pub status: Status,
    /// The host pid that stands for the container while it has processes: its pid file's
    /// process (a monitor, when a detached create left one), else its init.
    pub pid: Option<i32>,
    /// The host pid of the process in the container's namespaces, while it has processes: its
    /// init, or for a subcontainer created but not started, its sandbox (as runsc reports).
    #[serde(default)]
    pub init_pid: Option<i32>,
    /// The bundle directory (empty for the embedded default, which has none).
    pub bundle: PathBuf,
    /// The root filesystem on the host, as the spec names it.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Who created it (a user name, or empty).
    pub owner: String,
    /// The spec's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The sandbox the container runs in (its root container's id).
    pub sandbox_id: String,
    /// How the container's process ended, once it has.
    pub exit_status: Option<ExitStatus>,
    /// How its gofer is doing.
    pub gofer: GoferStatus,
    /// How often its gofer was restarted.
    pub gofer_restarts: u32,
    /// Its restart policy and what it did.
    pub restart: RestartInfo,
}

/// A container's restart policy and its record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartInfo {
    /// The policy, as given: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub policy: String,
    /// How often the container was restarted.
    pub count: u32,
    /// How its process last exited.
    pub last_exit: Option<ExitStatus>,
    /// The policy gave up; the reason.
    pub gave_up: Option<String>,
}

impl ContainerState {
    /// The state as JSON, in the shape `runc state` prints (the OCI state plus runc's
    /// `rootfs`, `created` and `owner`, plus paddock's `sandboxId`, `initPid` and
    /// `exitStatus`).
    pub fn to_oci_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": self.pid.unwrap_or(0),
            "status": self.status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "sandboxId": self.sandbox_id,
        });
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::json!(self.annotations);
        }
        if let Some(exit) = self.exit_status {
            v["exitStatus"] = serde_json::json!(exit.code());
        }
        if let Some(init) = self.init_pid {
            v["initPid"] = serde_json::json!(init);
        }
        v["gofer"] = serde_json::json!({ "status": self.gofer.to_string(), "restarts": self.gofer_restarts });
        let mut restart = serde_json::json!({ "policy": self.restart.policy, "count": self.restart.count });
        if let Some(exit) = self.restart.last_exit {
            restart["lastExit"] = serde_json::json!(exit.code());
        }
        if let Some(why) = &self.restart.gave_up {
            restart["gaveUp"] = serde_json::json!(why);
        }
        v["restart"] = restart;
        v
    }
}

/// The standard streams a caller hands to a container's process.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stdio {
    /// Becomes the process's fd 0 (else `/dev/null`).
    pub stdin: FdSlot,
    /// Becomes fd 1 (else `/dev/null`).
    pub stdout: FdSlot,
    /// Becomes fd 2 (else `/dev/null`).
    pub stderr: FdSlot,
    /// For a process with a terminal: a connected Unix socket (runc's `--console-socket`)
    /// over which the pty's master is sent. The three streams are then unused: the process's
    /// stdio is the pty.
    #[serde(default)]
    pub console: FdSlot,
    /// More descriptors, to become fds 3, 4, … of the process (runc's `--preserve-fds`).
    #[serde(default)]
    pub extra: Vec<FdSlot>,
}

impl Stdio {
    /// Duplicates every descriptor (to give a restarted process the same streams).
    pub fn try_clone(&self) -> std::io::Result<Stdio> {
        let dup = |slot: &FdSlot| -> std::io::Result<FdSlot> {
            Ok(FdSlot::from_option(slot.as_fd().map(|fd| fd.try_clone_to_owned()).transpose()?))
        };
        Ok(Stdio {
            stdin: dup(&self.stdin)?,
            stdout: dup(&self.stdout)?,
            stderr: dup(&self.stderr)?,
            console: dup(&self.console)?,
            extra: self.extra.iter().map(dup).collect::<std::io::Result<_>>()?,
        })
    }
}

/// Creates a container: the gofer prepares its filesystem, a new sandbox is started, and the
/// container's process is set up and left waiting for [`Start`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Create {
    /// The new container's id.
    pub id: String,
    /// The bundle directory: absolute, or empty when the spec has no bundle.
    pub bundle: PathBuf,
    /// The OCI runtime spec, already read from the bundle and adjusted by the caller.
    pub spec: SpecJson,
    /// The caller's stdio for the container's process.
    pub stdio: Stdio,
    /// Restore the container's processes from a checkpoint instead of starting its process:
    /// it is running once create returns.
    #[serde(default)]
    pub restore: Option<RestoreFrom>,
}

/// Where a restored container's checkpoint is, and how to read it (`ctl restore`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestoreFrom {
    /// The checkpoint's image directory (absolute).
    pub image_path: PathBuf,
    /// Where CRIU writes its log and work files (absolute); the image directory if `None`.
    pub work_path: Option<PathBuf>,
    /// CRIU options the caller asked for (`--tcp-established`, `--file-locks`, ...).
    pub criu_options: Vec<String>,
    /// The CRIU program (`criu` from paddockd's `PATH` if `None`).
    pub criu: Option<PathBuf>,
}

/// Checkpoints a running container's processes with CRIU (`ctl checkpoint`): they are
/// dumped to `image_path` and, unless `leave_running`, killed, so the container stops.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// The image directory (absolute); created if missing, and must not hold a checkpoint.
    pub image_path: PathBuf,
    /// Where CRIU writes its log and work files (absolute); the image directory if `None`.
    pub work_path: Option<PathBuf>,
    /// Keep the container running after the dump.
    pub leave_running: bool,
    /// CRIU options the caller asked for (`--tcp-established`, `--file-locks`, ...).
    pub criu_options: Vec<String>,
    /// The CRIU program (`criu` from paddockd's `PATH` if `None`).
    pub criu: Option<PathBuf>,
}

/// Starts the user's program in a created container.
#[derive(Debug, Serialize, Deserialize)]
pub struct Start {
    /// A full id or an unambiguous prefix.
    pub id: String,
}

/// Reports a container's state.
#[derive(Debug, Serialize, Deserialize)]
pub struct GetState {
    /// A full id or an unambiguous prefix.
    pub id: String,
}

/// Lists every container.
#[derive(Debug, Serialize, Deserialize)]
pub struct List;

/// Sends a signal to a container's init process, to one of its processes (`pid`), or to all
/// of them (`all`; with SIGKILL, it returns once every one is gone).
#[derive(Debug, Serialize, Deserialize)]
pub struct Kill {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// The signal number.
    pub signal: i32,
    /// Signal every process of the container, not only its init.
    pub all: bool,
    /// Signal this process (a pid in the container's PID namespace) instead of the init.
    pub pid: Option<i32>,
}

/// What to run with [`Exec`]: a whole OCI process (`runc exec --process`), or the container's
/// own process with these changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// A complete OCI process as JSON; when given, the fields below are ignored.
    pub process: Option<String>,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` variables added to (or replacing those of) the container's environment.
    pub env: Vec<String>,
    /// The working directory (default: the container's).
    pub cwd: Option<PathBuf>,
    /// `UID[:GID]` to run as (default: the container's user).
    pub user: Option<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// The terminal's size, `(rows, columns)`, set before the process runs (its
    /// `process.consoleSize`, unless the process already has one): a foreground ctl passes
    /// its own, so that the process never sees a terminal of size 0.
    pub console_size: Option<(u32, u32)>,
    /// Capabilities added to every set of the process (runc's `exec --cap`), as `CAP_NAME`.
    #[serde(default)]
    pub add_caps: Vec<String>,
    /// Groups added to the process's additional groups (`--additional-gids`).
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    /// Set `noNewPrivileges` (`--no-new-privs`).
    #[serde(default)]
    pub no_new_privs: bool,
    /// The process's AppArmor profile (`--apparmor`).
    #[serde(default)]
    pub apparmor_profile: Option<String>,
    /// The process's SELinux label (`--process-label`).
    #[serde(default)]
    pub selinux_label: Option<String>,
    /// runc's `--ignore-paused`: exec in a paused container too. The process joins the
    /// container's frozen cgroup, so it runs only once the container is resumed.
    #[serde(default)]
    pub ignore_paused: bool,
    /// A sub-cgroup of the container's to run the process in (`--cgroup`): `PATH` for every
    /// hierarchy, or `CONTROLLER[,CONTROLLER]:PATH` for some; it must exist.
    #[serde(default)]
    pub sub_cgroups: Vec<String>,
}

/// Runs another process in a container (created or running).
#[derive(Debug, Serialize, Deserialize)]
pub struct Exec {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// What to run.
    pub spec: ExecSpec,
    /// The caller's stdio for the process.
    pub stdio: Stdio,
}

/// A process started by [`Exec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executed {
    /// Its pid on the host.
    pub pid: i32,
    /// Its pid in the container's PID namespace (what [`WaitProcess`] and `kill --pid` take).
    pub ns_pid: i32,
}

/// Waits for one process to exit and collects its exit status; a status is collected once.
#[derive(Debug, Serialize, Deserialize)]
pub struct WaitProcess {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// The pid, in the container's PID namespace (or the sandbox's, with `root`).
    pub pid: i32,
    /// Any process of the container's sandbox, not only of the container.
    pub root: bool,
    /// Kill the process (SIGKILL) if the caller hangs up before it has exited: the caller
    /// stands for it (a pid file's monitor, which cannot pass SIGKILL on).
    #[serde(default)]
    pub kill_on_hangup: bool,
}

/// One process of a container, as `ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Host pid.
    pub pid: i32,
    /// Host pid of its parent.
    pub ppid: i32,
    /// Real user id.
    pub uid: u32,
    /// When it started, RFC 3339.
    pub started: String,
    /// Its command line.
    pub command: String,
}

/// Lists a container's processes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ps {
    /// A full id or an unambiguous prefix.
    pub id: String,
}

/// Freezes every process of a running container (its freezer cgroup); the status becomes
/// `paused`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pause {
    /// A full id or an unambiguous prefix.
    pub id: String,
}

/// Thaws a paused container; the status becomes `running` again.
#[derive(Debug, Serialize, Deserialize)]
pub struct Resume {
    /// A full id or an unambiguous prefix.
    pub id: String,
}

/// Changes a container's cgroup limits, as `runc update`: the fields of the OCI
/// `linux.resources` that are set replace the container's; the others stay.
#[derive(Debug, Serialize, Deserialize)]
pub struct Update {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// The OCI `LinuxResources` object, as JSON.
    pub resources: String,
}

/// Waits until the container's process has exited and returns how it ended. Answers at once
/// for a stopped container, as often as asked.
#[derive(Debug, Serialize, Deserialize)]
pub struct Wait {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// Kill the container's process (SIGKILL) if the caller hangs up before it has exited:
    /// the caller stands for it (a pid file's monitor, which cannot pass SIGKILL on).
    #[serde(default)]
    pub kill_on_hangup: bool,
}

/// The key of [`Stats`]' reply under which a cgroup v2 host's figures are, in the shape of
/// [`sys::cgroup2_stats::Cgroup2Stats`]; not part of runc's output (ctl leaves it out).
pub const STATS_CGROUP2: &str = "cgroup2";

/// A container's resource usage read from its cgroups, as runc's `events --stats` reports it:
/// a JSON object with `cpu`, `memory`, `pids`, `blkio` and `hugetlb` (those the host has). On a
/// cgroup v2 host it also has [`STATS_CGROUP2`]: the v2 files' own figures
/// ([`sys::cgroup2_stats::Cgroup2Stats`]), which runc's shape folds into v1's fields or
/// drops (memory events, swap apart from memory, limits, PSI) and containerd's v2 metrics
/// carry.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stats {
    /// A full id or an unambiguous prefix.
    pub id: String,
}

/// Makes the caller the monitor of a container (or of one of its processes): the process a
/// pid file names, which the caller's caller (containerd's shim, conmon) waits for and reads
/// the container's cgroups and namespaces from. paddockd moves the caller into every cgroup of
/// the container and answers with the process whose network, IPC and UTS namespaces the
/// caller then joins itself; it remembers the caller, so that a namespace path naming it
/// (`/proc/<monitor>/ns/pid`, what Docker and podman build from the pid file) means the
/// container's.
#[derive(Debug, Serialize, Deserialize)]
pub struct Monitor {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// The process it stands for, a pid in the container's PID namespace (`None`: the
    /// container's init).
    pub pid: Option<i32>,
    /// The caller's pid, as paddockd sees it. Set by the server from the connection's peer
    /// credentials: whatever a client puts here is replaced.
    #[serde(default)]
    pub monitor_pid: i32,
}

/// The answer to [`Monitor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Monitored {
    /// The process (host pid and start time, from `/proc/<pid>/stat`) whose network, IPC and
    /// UTS namespaces the monitor joins: the container's init, or for a pod member that has
    /// not started yet its sandbox's process; `None` once the container has stopped.
    pub namespaces_of: Option<(i32, u64)>,
}

/// Deletes a container: stops what is left of it, frees its resources and removes its state.
#[derive(Debug, Serialize, Deserialize)]
pub struct Delete {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// Kill a container that is still running instead of refusing.
    pub force: bool,
}

/// Copies `path` out of the container: a tar stream of it is written to `sink`
/// (`docker cp`'s format). Works while the container exists, until it is deleted.
#[derive(Debug, Serialize, Deserialize)]
pub struct CopyOut {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// The path inside the container (resolved beneath its root).
    pub path: PathBuf,
    /// Where the tar stream goes (a pipe, a file, a socket).
    pub sink: FdSlot,
}

/// Copies a tar stream from `source` into the container at `path`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CopyIn {
    /// A full id or an unambiguous prefix.
    pub id: String,
    /// The destination inside the container (resolved beneath its root).
    pub path: PathBuf,
    /// `true`: unpack the entries into `path` as a directory (created if missing). `false`:
    /// as `docker cp` — into `path` if it is a directory, else the stream's top entry
    /// becomes `path`.
    pub contents: bool,
    /// Where the tar stream comes from.
    pub source: FdSlot,
}

/// Any operation, as it travels on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// See [`Create`].
    Create(Create),
    /// See [`Start`].
    Start(Start),
    /// See [`GetState`].
    State(GetState),
    /// See [`List`].
    List(List),
    /// See [`Kill`].
    Kill(Kill),
    /// See [`Wait`].
    Wait(Wait),
    /// See [`Delete`].
    Delete(Delete),
    /// See [`CopyOut`].
    CopyOut(CopyOut),
    /// See [`CopyIn`].
    CopyIn(CopyIn),
    /// See [`Exec`].
    Exec(Exec),
    /// See [`WaitProcess`].
    WaitProcess(WaitProcess),
    /// See [`Ps`].
    Ps(Ps),
    /// See [`crate::events::Events`].
    Events(crate::events::Events),
    /// See [`Pause`].
    Pause(Pause),
    /// See [`Resume`].
    Resume(Resume),
    /// See [`Update`].
    Update(Update),
    /// See [`Checkpoint`].
    Checkpoint(Checkpoint),
    /// See [`Monitor`].
    Monitor(Monitor),
    /// See [`Stats`].
    Stats(Stats),
}

impl Request {
    /// The operation's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Create(_) => "create",
            Request::Start(_) => "start",
            Request::State(_) => "state",
            Request::List(_) => "list",
            Request::Kill(_) => "kill",
            Request::Wait(_) => "wait",
            Request::Delete(_) => "delete",
            Request::CopyOut(_) => "copy-out",
            Request::CopyIn(_) => "copy-in",
            Request::Exec(_) => "exec",
            Request::WaitProcess(_) => "wait-process",
            Request::Ps(_) => "ps",
            Request::Events(_) => "events",
            Request::Pause(_) => "pause",
            Request::Resume(_) => "resume",
            Request::Update(_) => "update",
            Request::Checkpoint(_) => "checkpoint",
            Request::Monitor(_) => "monitor",
            Request::Stats(_) => "stats",
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// A reply lives for one request; boxing the state would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// A container's state (create, start, state).
    State(ContainerState),
    /// Every container's state (list).
    List(Vec<ContainerState>),
    /// How a process ended (wait).
    Exit(ExitStatus),
    /// Done, nothing to report (kill, delete).
    Done,
    /// A process was started (exec).
    Executed(Executed),
    /// The processes of a container (ps).
    Processes(Vec<ProcessInfo>),
    /// The caller monitors a container (see [`Monitor`]).
    Monitored(Monitored),
    /// A container's resource usage, JSON (see [`Stats`]).
    Stats(String),
}

/// A request with the id its reply will carry, so one connection can have several in flight.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client; echoed in the reply.
    pub id: u64,
    /// The operation.
    pub request: Request,
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum ServerFrame {
    /// The answer to the request with this id.
    Reply {
        /// The request's id.
        id: u64,
        /// Its outcome.
        result: Result<Reply, ApiError>,
    },
    /// The server is closing the connection because the client broke the protocol.
    Fatal(ApiError),
}

/// A request of paddockd's API, and what it answers when it succeeds. The actors take each
/// as a message (`actors::Api<T>`); the wire carries it inside [`Request`].
pub trait ApiCall {
    /// The answer.
    type Reply;
}

impl ApiCall for Create {
    type Reply = ContainerState;
}
impl ApiCall for Checkpoint {
    type Reply = ContainerState;
}
impl ApiCall for Start {
    type Reply = ContainerState;
}
impl ApiCall for GetState {
    type Reply = ContainerState;
}
impl ApiCall for List {
    type Reply = Vec<ContainerState>;
}
impl ApiCall for Kill {
    type Reply = ();
}
impl ApiCall for Exec {
    type Reply = Executed;
}
impl ApiCall for WaitProcess {
    type Reply = ExitStatus;
}
impl ApiCall for Ps {
    type Reply = Vec<ProcessInfo>;
}
impl ApiCall for Pause {
    type Reply = ContainerState;
}
impl ApiCall for Resume {
    type Reply = ContainerState;
}
impl ApiCall for Update {
    type Reply = ContainerState;
}
impl ApiCall for Wait {
    type Reply = ExitStatus;
}
impl ApiCall for Delete {
    type Reply = ();
}
impl ApiCall for CopyOut {
    type Reply = ();
}
impl ApiCall for CopyIn {
    type Reply = ();
}
impl ApiCall for Monitor {
    type Reply = Monitored;
}
impl ApiCall for Stats {
    type Reply = String;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode_payload, encode_frame};
    use std::os::fd::OwnedFd;

    fn roundtrip_request(req: Request) -> Request {
        let frame = RequestFrame { id: 7, request: req };
        let bytes = encode_frame(&frame, 1 << 20).unwrap();
        let back: RequestFrame = decode_payload(&bytes[4..]).unwrap();
        assert_eq!(back.id, 7);
        back.request
    }

    #[test]
    fn every_request_roundtrips() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let spec = SpecJson::from_spec(&oci_spec::runtime::Spec::default()).unwrap();
        let create = Request::Create(Create {
            id: "c1".into(),
            bundle: "/b".into(),
            spec: spec.clone(),
            stdio: Stdio {
                stdin: FdSlot::Empty,
                stdout: FdSlot::new(OwnedFd::from(a)),
                stderr: FdSlot::Empty,
                console: FdSlot::Empty,
                extra: Vec::new(),
            },
            restore: Some(RestoreFrom { image_path: "/img".into(), ..Default::default() }),
        });
        match roundtrip_request(create) {
            Request::Create(c) => {
                assert_eq!((c.id.as_str(), c.bundle.to_str()), ("c1", Some("/b")));
                assert_eq!(c.spec, spec);
                assert!(matches!(c.stdio.stdout, FdSlot::Pending));
                assert!(matches!(c.stdio.stdin, FdSlot::Empty));
                assert_eq!(c.restore.unwrap().image_path, PathBuf::from("/img"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(roundtrip_request(Request::Start(Start { id: "s".into() })), Request::Start(s) if s.id == "s")
        );
        assert!(
            matches!(roundtrip_request(Request::State(GetState { id: "g".into() })), Request::State(s) if s.id == "g")
        );
        assert!(matches!(roundtrip_request(Request::List(List)), Request::List(_)));
        assert!(matches!(
            roundtrip_request(Request::Kill(Kill { id: "k".into(), signal: 9, all: true, pid: Some(4) })),
            Request::Kill(Kill { signal: 9, all: true, pid: Some(4), .. })
        ));
        assert!(
            matches!(roundtrip_request(Request::Wait(Wait { id: "w".into(), kill_on_hangup: false })), Request::Wait(w) if w.id == "w")
        );
        assert!(matches!(
            roundtrip_request(Request::Delete(Delete { id: "d".into(), force: true })),
            Request::Delete(Delete { force: true, .. })
        ));
        let (p1, p2) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(matches!(
            roundtrip_request(Request::CopyOut(CopyOut {
                id: "o".into(),
                path: "/etc".into(),
                sink: FdSlot::new(OwnedFd::from(p1))
            })),
            Request::CopyOut(CopyOut { sink: FdSlot::Pending, .. })
        ));
        assert!(matches!(
            roundtrip_request(Request::CopyIn(CopyIn {
                id: "i".into(),
                path: "/x".into(),
                contents: true,
                source: FdSlot::new(OwnedFd::from(p2))
            })),
            Request::CopyIn(CopyIn { contents: true, source: FdSlot::Pending, .. })
        ));
        let spec = ExecSpec {
            args: vec!["ls".into()],
            env: vec!["A=b".into()],
            user: Some("1:2".into()),
            ..Default::default()
        };
        match roundtrip_request(Request::Exec(Exec { id: "e".into(), spec: spec.clone(), stdio: Stdio::default() })) {
            Request::Exec(e) => assert_eq!(e.spec, spec),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            roundtrip_request(Request::WaitProcess(WaitProcess {
                id: "w".into(),
                pid: 7,
                root: true,
                kill_on_hangup: true
            })),
            Request::WaitProcess(WaitProcess { pid: 7, root: true, .. })
        ));
        assert!(matches!(roundtrip_request(Request::Ps(Ps { id: "p".into() })), Request::Ps(p) if p.id == "p"));
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let events = Request::Events(crate::events::Events {
            ids: vec!["e".into()],
            follow: true,
            sink: FdSlot::new(OwnedFd::from(a)),
        });
        assert!(matches!(
            roundtrip_request(events),
            Request::Events(e) if e.follow && e.ids == ["e"] && matches!(e.sink, FdSlot::Pending)
        ));
    }

    #[test]
    fn every_reply_roundtrips() {
        let state = ContainerState {
            id: "x".into(),
            status: Status::Running,
            pid: Some(42),
            init_pid: Some(41),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2026-01-01T00:00:00Z".into(),
            owner: "root".into(),
            annotations: [("k".to_string(), "v".to_string())].into(),
            sandbox_id: "x".into(),
            exit_status: Some(ExitStatus::Signaled(9)),
            gofer: GoferStatus::Failed("too many restarts".into()),
            gofer_restarts: 5,
            restart: RestartInfo {
                policy: "on-failure:3".into(),
                count: 2,
                last_exit: Some(ExitStatus::Exited(1)),
                gave_up: None,
            },
        };
        let replies = vec![
            Ok(Reply::State(state.clone())),
            Ok(Reply::List(vec![state.clone(), state])),
            Ok(Reply::Exit(ExitStatus::Exited(3))),
            Ok(Reply::Done),
            Ok(Reply::Executed(Executed { pid: 100, ns_pid: 3 })),
            Ok(Reply::Processes(vec![ProcessInfo {
                pid: 1,
                ppid: 0,
                uid: 0,
                started: "t".into(),
                command: "sh".into(),
            }])),
            Err(ApiError::not_found("container \"x\" does not exist")),
        ];
        for (i, result) in replies.into_iter().enumerate() {
            let frame = ServerFrame::Reply { id: i as u64, result };
            let bytes = encode_frame(&frame, 1 << 20).unwrap();
            assert_eq!(decode_payload::<ServerFrame>(&bytes[4..]).unwrap(), frame);
        }
        let fatal = ServerFrame::Fatal(ApiError::new(crate::ErrorKind::Protocol, "bad"));
        let bytes = encode_frame(&fatal, 1 << 20).unwrap();
        assert_eq!(decode_payload::<ServerFrame>(&bytes[4..]).unwrap(), fatal);
    }

    #[test]
    fn garbage_and_truncated_frames_never_panic() {
        // Every prefix of a valid frame, and every single-byte corruption of it, decodes to an
        // error or to some message, but never panics or allocates without bound.
        let frame = RequestFrame {
            id: 1,
            request: Request::Kill(Kill { id: "abc".into(), signal: 15, all: false, pid: None }),
        };
        let bytes = encode_frame(&frame, 1 << 20).unwrap();
        let payload = &bytes[4..];
        for cut in 0..payload.len() {
            assert!(decode_payload::<RequestFrame>(&payload[..cut]).is_err());
        }
        for i in 0..payload.len() {
            for v in [0u8, 0x7f, 0xfb, 0xfc, 0xfd, 0xfe, 0xff] {
                let mut bad = payload.to_vec();
                bad[i] = v;
                let _ = decode_payload::<RequestFrame>(&bad);
            }
        }
        // Pseudo-random garbage of many lengths.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for len in 0..512 {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            let _ = decode_payload::<RequestFrame>(&garbage);
            let _ = decode_payload::<ServerFrame>(&garbage);
        }
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        assert_eq!(ExitStatus::from_wait_status(3 << 8), ExitStatus::Exited(3));
        assert_eq!(ExitStatus::from_wait_status(9), ExitStatus::Signaled(9));
    }

    #[test]
    fn status_names() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>().unwrap(), s);
        }
        assert!("bogus".parse::<Status>().is_err());
    }
}
