//! The shim's side of paddockd: finding (or starting) the daemon of a state root, calling it
//! off the async runtime, and following its event bus.
//!
//! The wire client is blocking, so every call runs on tokio's blocking pool over a connection
//! of its own: a long `wait` never holds up a `state`, and a connection paddockd closed (it
//! restarted, or timed an idle one out) costs one reconnect, not a broken shim.

use std::fs::OpenOptions;
use std::io::{BufRead, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wire::api::{Reply, Request};
use wire::client::{Client, ConnectError};
use wire::events::{Event, Events};
use wire::stateroot::{LOG_FILE, SOCKET_NAME, START_LOCK_FILE};
use wire::{ApiError, FdSlot};

/// The environment variable that names the paddockd binary to start (default: beside the
/// shim, then `paddockd` on `PATH`). The same name ctl reads.
pub const PADDOCKD_ENV: &str = "PADDOCKD";

/// `PATH` for an autostarted paddockd when the shim has none (it looks for `criu` there).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why the shim could not reach paddockd.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Connecting or the handshake failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The state root is not fit to hold a daemon's socket.
    #[error(transparent)]
    StateRoot(#[from] sys::trust::StateRootError),
    /// Starting paddockd failed.
    #[error("starting paddockd for {root}: {reason}")]
    Start {
        /// The state root.
        root: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A blocking call's thread went away.
    #[error("a call to paddockd was cancelled: {0}")]
    Cancelled(String),
}

/// Where paddockd is: the state root it serves.
#[derive(Debug, Clone)]
pub struct Daemon {
    root: PathBuf,
}

impl Daemon {
    /// The daemon of state root `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs `call` with a fresh connection on the blocking pool.
    pub async fn call<T, F>(&self, call: F) -> Result<T, DaemonError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Client) -> Result<T, ApiError> + Send + 'static,
    {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut client = connect_or_start(&root)?;
            call(&mut client).map_err(DaemonError::from)
        })
        .await
        .map_err(|e| DaemonError::Cancelled(e.to_string()))?
    }

    /// Runs a call that only reads (state, processes, stats): a connection that breaks under
    /// it (paddockd killed mid-call; it live-restores) is made again, up to three times.
    pub async fn read<T, F>(&self, call: F) -> Result<T, DaemonError>
    where
        T: Send + 'static,
        F: Fn(&mut Client) -> Result<T, ApiError> + Clone + Send + 'static,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.call(call.clone()).await {
                Err(DaemonError::Api(e)) if e.kind == wire::ErrorKind::Io && tries < 3 => {
                    log::warn!("paddockd went away during a call ({e}): calling again");
                }
                other => return other,
            }
        }
    }

    /// Follows paddockd's event bus on a thread of its own: every event (the retained history
    /// first, then each new one) goes to `sink` until paddockd stops or `sink` is closed.
    /// Returns once the subscription is in place, so that nothing that happens after is missed.
    pub fn follow_events(&self, sink: tokio::sync::mpsc::UnboundedSender<Event>) -> Result<(), DaemonError> {
        let mut client = connect_or_start(&self.root)?;
        let (reader, writer) = std::io::pipe().map_err(|e| DaemonError::Start {
            root: self.root.clone(),
            reason: format!("pipe for the event stream: {e}"),
        })?;
        let id = client.send_request(Request::Events(Events {
            ids: Vec::new(),
            follow: true,
            sink: FdSlot::new(writer),
        }))?;
        std::thread::Builder::new()
            .name("paddockd-events".into())
            .spawn(move || {
                // The reply comes when the stream ends; keeping the connection keeps the stream.
                let reader_thread = std::thread::spawn(move || {
                    for line in std::io::BufReader::new(reader).lines() {
                        let Ok(line) = line else { return };
                        match serde_json::from_str::<Event>(&line) {
                            Ok(event) => {
                                if sink.send(event).is_err() {
                                    return;
                                }
                            }
                            Err(e) => log::warn!("paddockd sent an event the shim cannot read ({e}): {line}"),
                        }
                    }
                });
                if let Err(e) = client.reply_to(id).map(|reply| matches!(reply, Reply::Done)) {
                    log::warn!("paddockd's event stream ended: {e}");
                }
                let _ = reader_thread.join();
            })
            .map_err(|e| DaemonError::Start { root: self.root.clone(), reason: format!("event thread: {e}") })?;
        Ok(())
    }
}

/// Connects to the daemon of `root`, starting one if none answers: as ctl does, under the
/// root's start lock so that concurrent shims (and ctl) start exactly one.
fn connect_or_start(root: &Path) -> Result<Client, DaemonError> {
    let socket = root.join(SOCKET_NAME);
    match Client::connect(&socket) {
        Ok(client) => return Ok(client),
        Err(e) if no_daemon(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let root = &sys::trust::prepare_state_root(root)?;
    let lock_path = root.join(START_LOCK_FILE);
    let start_error = |reason: String| DaemonError::Start { root: root.clone(), reason };
    let lock_file =
        sys::trust::open_lock_file(&lock_path).map_err(|e| start_error(format!("{}: {e}", lock_path.display())))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _held = lock.write().map_err(|e| start_error(format!("locking {}: {e}", lock_path.display())))?;
    if let Ok(client) = Client::connect(&socket) {
        return Ok(client);
    }
    start_daemon(root)?;
    Ok(Client::connect(&socket)?)
}

/// Whether nobody serves the socket (see ctl's autostart, which decides the same).
fn no_daemon(e: &ConnectError) -> bool {
    use wire::WireError;
    match e {
        ConnectError::NoDaemon { .. } => true,
        ConnectError::Handshake { source: WireError::Closed | WireError::Truncated { .. }, .. } => true,
        ConnectError::Handshake { source: WireError::Io(io), .. } => {
            matches!(io.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        }
        _ => false,
    }
}

/// The paddockd program: `$PADDOCKD`, else beside the shim, else `paddockd` on `PATH`.
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
/// returns once it accepts connections (it says so on a pipe: nothing polls).
fn start_daemon(root: &Path) -> Result<(), DaemonError> {
    let binary = paddockd_binary();
    let start_error = |reason: String| DaemonError::Start { root: root.to_path_buf(), reason };
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
    const READY_FD: i32 = 3;
    let mut command = Command::new(&binary);
    command
        .arg("--root")
        .arg(root)
        .arg("--ready-fd")
        .arg(READY_FD.to_string())
        .arg("--autostarted")
        // paddockd belongs to no shim: nothing of containerd's environment reaches it.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()))
        .stdin(Stdio::null())
        .stdout(log_too)
        .stderr(log);
    if let Some(filter) = std::env::var_os("RUST_LOG") {
        command.env("RUST_LOG", filter);
    }
    // SAFETY: the closure runs in the forked child and calls only async-signal-safe functions
    // (setsid, dup2, fcntl, close_range).
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            sys::inherit_only(ready_raw, READY_FD)
        });
    }
    let mut child = command.spawn().map_err(|e| start_error(format!("running {}: {e}", binary.display())))?;
    drop(ready_write);
    let mut answer = String::new();
    let _ = ready_read.read_to_string(&mut answer);
    if answer.starts_with("ready") {
        // paddockd outlives the shim's calls but is its child until the shim exits: collect it
        // when it ends, so that it never lingers as a zombie.
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
