//! paddockd's life: configuration, the root's lock, the pid file, the socket, signals.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use actors::{Supervisor, SupervisorConfig};
use anyhow::Context as _;
use clap::Parser;
use tracing::{error, info};

use crate::config::DaemonConfig;
use crate::{server, DEFAULT_ROOT, LOCK_FILE, PID_FILE, SOCKET_NAME};

/// paddockd: paddock's supervisor daemon. One serves each state root.
#[derive(Debug, Parser)]
#[command(name = "paddockd", version)]
pub struct DaemonArgs {
    /// The state root (overrides the configuration file).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// A TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write "ready" to this descriptor once the socket accepts connections (used by ctl
    /// when it starts a daemon).
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
}

/// Runs paddockd; returns the process exit code.
pub fn main() -> i32 {
    let args = DaemonArgs::parse();
    let config = match &args.config {
        Some(path) => match DaemonConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("paddockd: {e:#}");
                return 2;
            }
        },
        None => DaemonConfig::default(),
    };
    init_logging(config.log.as_deref());
    match run(args, config) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e:#}");
            1
        }
    }
}

/// Logs to stderr; without timestamps and colours under systemd, whose journal adds its own.
fn init_logging(default: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default.unwrap_or("info")));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false);
    if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn run(args: DaemonArgs, config: DaemonConfig) -> anyhow::Result<()> {
    let default_overlay = config.default_overlay();
    let root = args.root.or(config.root).unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&root)
        .with_context(|| format!("creating {}", root.display()))?;
    let root = std::fs::canonicalize(&root).with_context(|| format!("resolving {}", root.display()))?;

    // One daemon per root: hold its lock for our whole life.
    let lock_path = root.join(LOCK_FILE);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _held = lock.try_write().map_err(|_| anyhow::anyhow!("another paddockd already serves {}", root.display()))?;

    let pid_path = root.join(PID_FILE);
    write_atomically(&pid_path, format!("{}\n", std::process::id()).as_bytes())?;

    actors::process::become_subreaper().context("becoming child subreaper")?;
    start_orphan_reaper()?;

    let supervisor_config = SupervisorConfig {
        root: root.clone(),
        helper_dir: config.helper_dir.clone(),
        max_frame: config.max_frame.unwrap_or(wire::frame::DEFAULT_MAX_FRAME),
        default_overlay,
    };
    let socket_path = root.join(SOCKET_NAME);
    let result = actix::System::new().block_on(serve(supervisor_config, &socket_path, args.ready_fd));
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(&pid_path);
    info!("paddockd stopped; running containers were left alone");
    result
}

async fn serve(config: SupervisorConfig, socket_path: &Path, ready_fd: Option<i32>) -> anyhow::Result<()> {
    let max_frame = config.max_frame;
    let root = config.root.clone();
    let supervisor = Supervisor::start(config).map_err(|e| anyhow::anyhow!("{e}"))?;

    let _ = std::fs::remove_file(socket_path);
    let std_listener =
        wire::sockpath::bind(socket_path).with_context(|| format!("binding {}", socket_path.display()))?;
    std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", socket_path.display()))?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(std_listener)?;
    info!(root = %root.display(), pid = std::process::id(), "paddockd serving {}", socket_path.display());
    if let Some(fd) = ready_fd {
        // SAFETY: ctl passes the write end of its readiness pipe as this descriptor, for us
        // alone.
        let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut pipe = std::fs::File::from(pipe);
        let _ = pipe.write_all(b"ready\n");
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    actix::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        let mut int =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
        let _ = stop_tx.send(true);
    });
    server::serve(listener, supervisor, max_frame, stop_rx).await;
    Ok(())
}

/// Reaps orphans (processes reparented to us as subreaper) on every SIGCHLD, in a thread of
/// its own so it never waits on the actors.
fn start_orphan_reaper() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGCHLD]).context("SIGCHLD handler")?;
    std::thread::Builder::new()
        .name("orphan-reaper".into())
        .spawn(move || {
            for _ in signals.forever() {
                actors::process::reap_orphans();
            }
        })
        .context("starting the orphan reaper")?;
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
