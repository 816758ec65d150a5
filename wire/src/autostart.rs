//! Finding the daemon of a state root, and starting one when none answers: what every client
//! program (ctl, the containerd shim) does before its first call.
//!
//! The starter takes `<root>/paddockd.start.lock` while it starts a daemon, so concurrent
//! clients start exactly one; the others find it answering once they get the lock. The new
//! daemon reports readiness by writing to a pipe, so nothing here polls or sleeps.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::client::{Client, ConnectError};
use crate::stateroot::{LOG_FILE, SOCKET_NAME, START_LOCK_FILE};
use crate::WireError;

/// The environment variable that names the paddockd binary to start (default: beside the
/// client's own binary, then `paddockd` on `PATH`).
pub const PADDOCKD_ENV: &str = "PADDOCKD";

/// The environment variable that sets an autostarted paddockd's `--idle-exit` (seconds).
pub const IDLE_EXIT_ENV: &str = "PADDOCKD_IDLE_EXIT";

/// `PATH` for an autostarted paddockd when the client has none (it looks for `criu` there).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The descriptor on which the new daemon finds its readiness pipe.
const READY_FD: i32 = 3;

/// Why no daemon could be reached or started.
#[derive(Debug, thiserror::Error)]
pub enum AutostartError {
    /// Connecting or the handshake failed for another reason than nobody listening.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The state root is not fit to hold a daemon's socket.
    #[error(transparent)]
    StateRoot(#[from] sys::trust::StateRootError),
    /// Starting paddockd failed.
    #[error("starting paddockd for {}: {reason}", root.display())]
    Start {
        /// The state root.
        root: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Connects to the daemon of `root`, starting one if none answers.
pub fn connect_or_start(root: &Path) -> Result<Client, AutostartError> {
    let socket = root.join(SOCKET_NAME);
    match Client::connect(&socket) {
        Ok(client) => return Ok(client),
        Err(e) if no_daemon(&e) => {}
        Err(e) => return Err(e.into()),
    }
    // Nothing is made in a root that someone else could have prepared.
    let root = &sys::trust::prepare_state_root(root)?;
    let start_error = |reason: String| AutostartError::Start { root: root.clone(), reason };
    let lock_path = root.join(START_LOCK_FILE);
    let lock_file =
        sys::trust::open_lock_file(&lock_path).map_err(|e| start_error(format!("{}: {e}", lock_path.display())))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _held = lock.write().map_err(|e| start_error(format!("locking {}: {e}", lock_path.display())))?;
    // Someone may have started it while we waited for the lock.
    if let Ok(client) = Client::connect(&socket) {
        return Ok(client);
    }
    start_daemon(root)?;
    Ok(Client::connect(&socket)?)
}

/// Whether nobody serves the socket: no listener, or a daemon that left (idle) between our
/// connect and its hello. Either way, the start lock decides who starts the next one.
fn no_daemon(e: &ConnectError) -> bool {
    match e {
        ConnectError::NoDaemon { .. } => true,
        ConnectError::Handshake { source: WireError::Closed | WireError::Truncated { .. }, .. } => true,
        ConnectError::Handshake { source: WireError::Io(io), .. } => {
            matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        }
        _ => false,
    }
}

/// The paddockd program: `$PADDOCKD`, else the one beside this program, else `paddockd` on
/// `PATH`.
fn paddockd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(PADDOCKD_ENV) {
        return PathBuf::from(p);
    }
    match std::env::current_exe() {
        Ok(exe) if exe.with_file_name("paddockd").is_file() => exe.with_file_name("paddockd"),
        _ => PathBuf::from("paddockd"),
    }
}

/// Starts a daemon for `root` in its own session, logging to `<root>/paddockd.log`, and
/// returns once it accepts connections.
fn start_daemon(root: &Path) -> Result<(), AutostartError> {
    let start_error = |reason: String| AutostartError::Start { root: root.to_path_buf(), reason };
    let binary = paddockd_binary();
    let log_path = root.join(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&log_path)
        .map_err(|e| start_error(format!("opening {}: {e}", log_path.display())))?;
    let log_too = log.try_clone().map_err(|e| start_error(format!("{}: {e}", log_path.display())))?;
    let (mut ready_read, ready_write) = std::io::pipe().map_err(|e| start_error(format!("pipe: {e}")))?;
    let ready_write = OwnedFd::from(ready_write);
    let ready_raw = ready_write.as_raw_fd();
    let mut command = Command::new(&binary);
    command
        .arg("--root")
        .arg(root)
        .arg("--ready-fd")
        .arg(READY_FD.to_string())
        .arg("--autostarted")
        // paddockd belongs to no caller: nothing of the caller's environment (a NOTIFY_SOCKET
        // meant for the caller would get paddockd's READY=1; LISTEN_FDS would be taken for
        // sockets it was handed; containerd's variables are the shim's) reaches it, only what
        // paddockd itself reads.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()))
        .stdin(Stdio::null())
        .stdout(log_too)
        .stderr(log);
    if let Some(filter) = std::env::var_os("RUST_LOG") {
        command.env("RUST_LOG", filter);
    }
    if let Some(seconds) = std::env::var(IDLE_EXIT_ENV).ok().filter(|s| !s.is_empty()) {
        let seconds: u64 = seconds
            .parse()
            .map_err(|_| start_error(format!("{IDLE_EXIT_ENV}={seconds:?} is not a number of seconds")))?;
        command.arg("--idle-exit").arg(seconds.to_string());
    }
    // SAFETY: the closure runs in the forked child and calls only async-signal-safe functions
    // (setsid, dup2, fcntl, close_range).
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            // paddockd gets only its readiness pipe of the caller's descriptors: it outlives
            // the caller, and passes nothing on to containers that it did not mean to.
            sys::inherit_only(ready_raw, READY_FD)
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| start_error(format!("running {} (set {PADDOCKD_ENV} to name it): {e}", binary.display())))?;
    drop(ready_write);
    let mut answer = String::new();
    let _ = ready_read.read_to_string(&mut answer);
    if answer.starts_with("ready") {
        // paddockd is this process's child until it exits: a long-lived client (the shim)
        // collects it when it ends, so that it never lingers as a zombie. A short-lived one
        // (ctl) exits first, and paddockd is reparented.
        let _ = std::thread::Builder::new().name("paddockd-reaper".into()).spawn(move || {
            let _ = child.wait();
        });
        return Ok(());
    }
    let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
    let log_tail = std::fs::read_to_string(&log_path)
        .map(|t| t.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    Err(start_error(format!(
        "paddockd did not start ({status}); its log {} ends with:\n{log_tail}",
        log_path.display()
    )))
}
