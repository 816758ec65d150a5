//! Starting the helper binaries (sandbox, gofer) in new namespaces, through
//! [`sys::spawn`]: the child is PID 1 of its new PID namespace from the start (std's `Command`
//! cannot ask for that), and its pidfd arrives atomically with it, so it can never name a
//! recycled pid. Its pid is on the orphan reaper's watch list from the moment it exists
//! ([`WatchedPid`]).

use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use wire::ApiError;

use crate::meta::ProcessRecord;
use crate::process::{ChildProcess, WatchedPid};
use crate::{blocking, procfs};

/// A helper process to start.
#[derive(Debug)]
pub struct LaunchSpec<'a> {
    /// The executable.
    pub program: &'a Path,
    /// Its arguments (without the program name).
    pub args: Vec<String>,
    /// Descriptors to hand over: `(descriptor, number in the child)`; numbers are 3 or above.
    pub fds: Vec<(OwnedFd, RawFd)>,
    /// `CLONE_NEW*` flags.
    pub namespaces: u64,
    /// Existing namespaces the child enters before it executes: `(descriptor, CLONE_NEW*)`.
    pub join: Vec<(OwnedFd, i32)>,
    /// The container's state directory, given to the helper as `PADDOCK_STATE_DIR`: with its
    /// `--id`, it tells a later paddockd whose helper a process is.
    pub state_dir: &'a Path,
}

/// The environment variable that names a helper's state directory.
pub const STATE_DIR_ENV: &str = "PADDOCK_STATE_DIR";

/// A started helper process.
#[derive(Debug)]
pub struct HelperProcess {
    /// Its pid in our namespace, on the watch list.
    pub pid: WatchedPid,
    /// Its pidfd.
    pub pidfd: OwnedFd,
}

/// The environment variables through which systemd talks to the service it started.
const SYSTEMD_VARIABLES: &[&str] =
    &["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// paddockd's environment as a program it starts gets it (`KEY=value` entries): without
/// systemd's variables, which are paddockd's alone (a helper or CRIU must never notify or
/// listen in its place).
pub(crate) fn inherited_environment() -> Vec<OsString> {
    std::env::vars_os()
        .filter(|(k, _)| !SYSTEMD_VARIABLES.iter().any(|s| k.as_bytes() == s.as_bytes()))
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect()
}

/// Starts `spec.program`. Blocks briefly (until the child has called `execve`); call it from a
/// blocking thread. The child's stdin is `/dev/null`; stdout and stderr are ours.
pub fn launch(spec: LaunchSpec<'_>) -> std::io::Result<HelperProcess> {
    let mut state_dir = OsString::from(format!("{STATE_DIR_ENV}="));
    state_dir.push(spec.state_dir);
    let prefix = format!("{STATE_DIR_ENV}=");
    let env = inherited_environment()
        .into_iter()
        .filter(|kv| !kv.as_bytes().starts_with(prefix.as_bytes()))
        .chain(std::iter::once(state_dir));
    let devnull = std::fs::File::options().read(true).write(true).open("/dev/null")?;
    let mut command = sys::spawn::Command::new(spec.program)
        .args(spec.args)
        .environment(env)
        .new_session()
        .new_namespaces(spec.namespaces)
        .fd(devnull, 0)
        .fd(rustix::io::dup(std::io::stdout())?, 1)
        .fd(rustix::io::dup(std::io::stderr())?, 2);
    for (fd, target) in spec.fds {
        command = command.fd(fd, target);
    }
    for (fd, nstype) in spec.join {
        command = command.join_namespace(fd, nstype);
    }
    let (spawned, pid) = WatchedPid::spawn(|| command.spawn(), |s| s.pid())?;
    // A child that could not execute is reaped by `executed`; `pid` then leaves the list.
    let child = spawned.executed()?;
    Ok(HelperProcess { pid, pidfd: child.into_pidfd() })
}

/// A helper started by [`start_helper`] or found again by [`reattach_helper`]: watched, and
/// connected to its control socket (its handshake still to come).
pub struct AttachedHelper {
    /// The process, on the orphan reaper's watch list.
    pub process: ChildProcess,
    /// Its identity for the metadata.
    pub record: ProcessRecord,
    /// The connection to its control socket.
    pub stream: UnixStream,
}

/// Starts the helper `program` (its name in `what`, for errors: "the gofer") for container
/// `id`: binds its control socket `socket` (listening at its descriptor 3, so the connection
/// made here waits for it however late it accepts), launches it in new `namespaces` and in
/// those named by `join` (`(path, CLONE_NEW*)`), and watches it. `room`: padding on its
/// command line (see [`sys::helper_args::HelperArgs::room`]), for a pooled helper.
pub async fn start_helper(
    program: PathBuf,
    id: &str,
    socket: PathBuf,
    (namespaces, join): (u64, Vec<(PathBuf, i32)>),
    room: usize,
    nice: Option<i32>,
    what: &'static str,
) -> Result<AttachedHelper, ApiError> {
    let id = id.to_string();
    let work = move || {
        let mut joined = Vec::with_capacity(join.len());
        for (path, nstype) in join {
            let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ApiError::invalid_spec(format!("namespace path {}: {e}", path.display())))?;
            joined.push((fd, nstype));
        }
        let _ = std::fs::remove_file(&socket);
        let listener =
            wire::sockpath::bind(&socket).map_err(|e| ApiError::io(format!("binding {}", socket.display()), e))?;
        let state_dir = socket.parent().unwrap_or(Path::new("/"));
        let launched = launch(LaunchSpec {
            program: &program,
            args: sys::helper_args::HelperArgs { id, control_fd: 3, room }.to_args(),
            fds: vec![(OwnedFd::from(listener), 3)],
            namespaces,
            join: joined,
            state_dir,
        })
        .map_err(|e| ApiError::io(format!("starting {}", program.display()), e))?;
        let stream = wire::sockpath::connect(&socket)
            .map_err(|e| ApiError::io(format!("connecting to {}", socket.display()), e))?;
        Ok((launched, stream))
    };
    // A background start (a pool member) runs and forks on a thread at its own low priority,
    // which the child, and what it executes, inherit.
    let (launched, stream) = match nice {
        Some(nice) => crate::blocking_niced(nice, work).await?,
        None => blocking(work).await?,
    };
    let record =
        procfs::record(launched.pid.pid()).map_err(|e| ApiError::io(format!("reading {what}'s start time"), e))?;
    let process =
        ChildProcess::watch(launched.pid, launched.pidfd).map_err(|e| ApiError::io(format!("watching {what}"), e))?;
    Ok(AttachedHelper { process, record, stream })
}

/// Finds the helper `record` names (started by an earlier paddockd) again, if that very
/// process still runs, and connects to its control socket `socket`; `gone` is the error when
/// it does not.
pub async fn reattach_helper(
    record: &ProcessRecord,
    socket: PathBuf,
    what: &'static str,
    gone: impl FnOnce() -> ApiError,
) -> Result<AttachedHelper, ApiError> {
    let pidfd = procfs::open_verified(record).ok_or_else(gone)?;
    let process = ChildProcess::watch(WatchedPid::adopt(record.pid), pidfd)
        .map_err(|e| ApiError::io(format!("watching {what}"), e))?;
    let stream = blocking(move || {
        wire::sockpath::connect(&socket).map_err(|e| ApiError::io(format!("connecting to {}", socket.display()), e))
    })
    .await?;
    Ok(AttachedHelper { process, record: *record, stream })
}

/// The namespaces of a gofer: IPC, mount, network, PID, UTS (not cgroup: it is placed in the
/// sandbox's cgroup from outside, as runsc does).
pub const GOFER_NAMESPACES: u64 =
    (libc::CLONE_NEWIPC | libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID | libc::CLONE_NEWUTS) as u64;
