//! Finding the daemon of a state root, and starting one when none answers.
//!
//! ctl takes `<root>/paddockd.start.lock` while it starts a daemon, so concurrent calls start
//! exactly one; the others find it answering once they get the lock. The new daemon reports
//! readiness by writing to a pipe, so nothing here polls or sleeps.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use wire::client::{Client, ConnectError};
use wire::stateroot::{LOG_FILE, SOCKET_NAME, START_LOCK_FILE};

/// The environment variable that names the paddockd binary to start (default: beside ctl).
pub const PADDOCKD_ENV: &str = "PADDOCKD";

/// The environment variable that sets an autostarted paddockd's `--idle-exit` (seconds).
pub const IDLE_EXIT_ENV: &str = "PADDOCKD_IDLE_EXIT";

/// `PATH` for an autostarted paddockd when the caller has none (it looks for `criu` there).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Connects to the daemon of `root`, starting one if none answers.
pub fn connect_or_start(root: &Path) -> anyhow::Result<Client> {
    let socket = root.join(SOCKET_NAME);
    match Client::connect(&socket) {
        Ok(client) => return Ok(client),
        Err(e) if no_daemon(&e) => {}
        Err(e) => return Err(e.into()),
    }
    // Nothing is made in a root that someone else could have prepared.
    let root = &sys::trust::prepare_state_root(root)?;
    let lock_path = root.join(START_LOCK_FILE);
    let lock_file =
        sys::trust::open_lock_file(&lock_path).with_context(|| format!("opening {}", lock_path.display()))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _held = lock.write().with_context(|| format!("locking {}", lock_path.display()))?;
    // Someone may have started it while we waited for the lock.
    if let Ok(client) = Client::connect(&socket) {
        return Ok(client);
    }
    start_daemon(root)?;
    Client::connect(&socket).map_err(Into::into)
}

/// Whether nobody serves the socket: no listener, or a daemon that left (idle) between our
/// connect and its hello. Either way, the start lock decides who starts the next one.
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

fn paddockd_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(PADDOCKD_ENV) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("finding ctl's own path")?;
    let beside = exe.with_file_name("paddockd");
    anyhow::ensure!(
        beside.is_file(),
        "no paddockd answers and none was found at {} (set {PADDOCKD_ENV})",
        beside.display()
    );
    Ok(beside)
}

/// Starts a daemon for `root` in its own session, logging to `<root>/paddockd.log`, and
/// returns once it accepts connections.
fn start_daemon(root: &Path) -> anyhow::Result<()> {
    let binary = paddockd_binary()?;
    let log_path = root.join(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let (mut ready_read, ready_write) = std::io::pipe().context("pipe")?;
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
        // paddockd belongs to no caller: nothing of the caller's environment (a NOTIFY_SOCKET
        // meant for the caller would get paddockd's READY=1; LISTEN_FDS would be taken for
        // sockets it was handed) reaches it, only what paddockd itself reads.
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(filter) = std::env::var_os("RUST_LOG") {
        command.env("RUST_LOG", filter);
    }
    if let Some(seconds) = std::env::var(IDLE_EXIT_ENV).ok().filter(|s| !s.is_empty()) {
        let seconds: u64 =
            seconds.parse().map_err(|_| anyhow::anyhow!("{IDLE_EXIT_ENV}={seconds:?} is not a number of seconds"))?;
        command.arg("--idle-exit").arg(seconds.to_string());
    }
    // SAFETY: ctl is single-threaded here; the closure only calls async-signal-safe
    // functions (setsid, dup2, fcntl, close_range).
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            // paddockd gets only its readiness pipe of the caller's descriptors: it outlives
            // the caller, and passes nothing on to containers that it did not mean to.
            sys::inherit_only(ready_raw, READY_FD)
        });
    }
    let mut child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
    drop(ready_write);
    let mut answer = String::new();
    let _ = ready_read.read_to_string(&mut answer);
    if answer.starts_with("ready") {
        return Ok(());
    }
    let status = child.wait().ok();
    let log_tail = std::fs::read_to_string(&log_path)
        .map(|t| t.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    anyhow::bail!(
        "paddockd for {} did not start ({}); its log {} ends with:\n{log_tail}",
        root.display(),
        status.map_or("unknown status".to_string(), |s| s.to_string()),
        log_path.display()
    )
}
