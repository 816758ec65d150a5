//! paddockd's life: configuration, the root's lock, the pid file, the socket (its own, or
//! systemd's), readiness, signals: SIGTERM (or SIGINT) shuts down gracefully, SIGHUP reloads
//! the configuration.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actors::supervisor::{CloseEvents, ClosePool, Ping, Reconfigure, StopAll};
use actors::{Supervisor, SupervisorConfig};
use anyhow::Context as _;
use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{debug, error, info, warn};
use wire::stateroot::{DEFAULT_ROOT, LOCK_FILE, PID_FILE, SOCKET_NAME, START_LOCK_FILE};

use crate::config::{DaemonConfig, ShutdownMode};
use crate::server::{Phase, ServerControl};
use crate::{logging, server, systemd};

/// The nice value of the wire server's thread: ahead of the containers' work (helpers starting,
/// the actors' blocking work), so that `state` and `list`, answered there, and the hand-off of
/// every other request stay prompt while creates keep every CPU busy. In a burst of 100 creates
/// by 8 clients on 2 CPUs, this thread's delay before it runs went from 3.2 ms to 1.1 ms at
/// p99 (`perf sched timehist`). It reads the state board and forwards; the work it forwards
/// runs on other threads, at paddockd's own priority. A thread it starts inherits the value:
/// only the writers of `events` streams.
const SERVER_NICE: i32 = -10;

/// How long an autostarted daemon waits for a dying predecessor to release the root's lock.
const PREDECESSOR_WAIT: Duration = Duration::from_secs(10);

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
    /// Check the configuration file and exit.
    #[arg(long)]
    pub check: bool,
    /// Started on demand by ctl: leave the caller's cgroup for one of paddock's own, and exit
    /// once idle (see `idle_exit` in the configuration).
    #[arg(long, hide = true)]
    pub autostarted: bool,
    /// Seconds of having no container and no client after which paddockd exits (0: never);
    /// overrides `idle_exit` of the configuration.
    #[arg(long, value_name = "SECONDS")]
    pub idle_exit: Option<u64>,
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
    if args.check {
        println!("configuration OK");
        return 0;
    }
    let log = logging::init(config.log.as_deref());
    match run(args, config, log) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e:#}");
            1
        }
    }
}

fn run(args: DaemonArgs, config: DaemonConfig, log: logging::LogControl) -> anyhow::Result<()> {
    if args.autostarted {
        // ctl started us for whoever called it (a shell, conmon, containerd's shim): we and
        // every sandbox we start must not be charged to that caller's cgroup, nor killed with it.
        match crate::own_cgroup::enter() {
            Ok(places) => info!(cgroups = ?places, "left the caller's cgroup"),
            Err(e) => warn!("staying in the caller's cgroup: {e:#}"),
        }
    }
    // The cgroup hierarchies, read once for the daemon's life (and again only if one is found
    // gone), here rather than in the first create; after the move above, which the layout
    // notes (the base directory the daemon is in is never tried for removal).
    if let Err(e) = actors::cgroups::Layout::current() {
        warn!("cannot read the cgroup hierarchies (read again at the first container): {e}");
    }
    let root = args.root.clone().or(config.root.clone()).unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    let root = sys::trust::prepare_state_root(&root)?;

    // One daemon per root: hold its lock for our whole life.
    let lock_path = root.join(LOCK_FILE);
    let lock_file =
        sys::trust::open_lock_file(&lock_path).with_context(|| format!("opening {}", lock_path.display()))?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    // ctl starts a daemon only when none answers on the socket (under the start lock), so an
    // autostarted daemon that finds the lock held finds a predecessor that is dying: killed,
    // its socket already closed, but the lock not yet released by all that shares it (a
    // helper it was starting holds a copy of its descriptors until that helper executes). It
    // waits for it, a while; one started by hand or by systemd refuses at once.
    let waits_until = Instant::now() + if args.autostarted { PREDECESSOR_WAIT } else { Duration::ZERO };
    let mut told = false;
    let _held = loop {
        match lock.try_write() {
            Ok(held) => break held,
            Err(_) if Instant::now() < waits_until => {
                if !std::mem::replace(&mut told, true) {
                    info!("waiting for the previous paddockd to release {}", lock_path.display());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => anyhow::bail!("another paddockd already serves {}", root.display()),
        }
    };
    // With the lock held, so that two daemons starting at once on nested roots cannot both
    // miss each other.
    crate::stateroot::refuse_nested(&root)?;

    let pid_path = root.join(PID_FILE);
    sys::durable::write_atomically(&pid_path, format!("{}\n", std::process::id()).as_bytes(), 0o644)?;

    actors::process::become_subreaper().context("becoming child subreaper")?;
    start_orphan_reaper()?;

    let supervisor_config = SupervisorConfig {
        root: root.clone(),
        helper_dir: config.helper_dir.clone(),
        max_frame: config.max_frame.unwrap_or(wire::frame::DEFAULT_MAX_FRAME),
        default_overlay: config.default_overlay(),
        restart_limits: config.restart_limits(),
        event_limits: config.event_limits(),
        pool_size: config.pool_size(),
    };
    let socket_path = root.join(SOCKET_NAME);
    let (listener, activated) = systemd::listener(&socket_path)?;
    let mut config = config;
    if args.idle_exit.is_some() {
        config.idle_exit = args.idle_exit;
    }
    let idle_exit = config.idle_exit(args.autostarted).map(|after| server::IdleExit {
        after,
        start_lock: root.join(START_LOCK_FILE),
        // A socket systemd made is systemd's to keep (and to activate us on again).
        socket: (!activated).then(|| socket_path.clone()),
    });
    let life = Life { config, config_path: args.config.clone(), log, ready_fd: args.ready_fd, idle_exit };
    // The wire server's own runtime, apart from the actors' thread (see `server`).
    // One thread drives it; what `serve` spawns there runs until that thread is told to end.
    let server_runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the server's runtime")?;
    let server_handle = server_runtime.handle().clone();
    let (end_server, server_ends) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::Builder::new()
        .name("paddockd-server".into())
        .spawn(move || {
            // This thread's own nice value (Linux keeps one per thread); without CAP_SYS_NICE
            // it stays at paddockd's.
            if let Err(e) = rustix::process::setpriority_process(None, SERVER_NICE) {
                debug!("the server's thread keeps its priority: {e}");
            }
            server_runtime.block_on(async move { drop(server_ends.await) })
        })
        .context("starting the server's thread")?;
    let result = actix::System::new().block_on(serve(supervisor_config, listener, server_handle, life));
    // Requests still in flight are left (as after the drain timeout).
    let _ = end_server.send(());
    let _ = server_thread.join();
    // A socket systemd made is systemd's to keep.
    if !activated {
        let _ = std::fs::remove_file(&socket_path);
    }
    let _ = std::fs::remove_file(&pid_path);
    result
}

/// What paddockd's main loop needs besides the supervisor's configuration.
struct Life {
    config: DaemonConfig,
    config_path: Option<PathBuf>,
    log: logging::LogControl,
    ready_fd: Option<i32>,
    idle_exit: Option<server::IdleExit>,
}

async fn serve(
    config: SupervisorConfig,
    listener: std::os::unix::net::UnixListener,
    server_runtime: tokio::runtime::Handle,
    mut life: Life,
) -> anyhow::Result<()> {
    let root = config.root.clone();
    let (supervisor, board) = Supervisor::start_with_board(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    listener.set_nonblocking(true)?;
    let listener = {
        // Registered with the server runtime's reactor, which polls it.
        let _entered = server_runtime.enter();
        tokio::net::UnixListener::from_std(listener)?
    };
    let control = ServerControl::default();
    let limits = life.config.limits();
    let mut server = server_runtime.spawn(server::serve(
        listener,
        supervisor.clone(),
        board,
        limits,
        control.clone(),
        life.idle_exit.take(),
    ));
    let mut server_stopped = false;
    // The supervisor restores every container before it answers: ready means ready.
    let count = supervisor.send(Ping).await.map_err(|_| anyhow::anyhow!("the supervisor stopped"))?;
    info!(root = %root.display(), pid = std::process::id(), containers = count, "paddockd serving");
    if let Some(fd) = life.ready_fd {
        // SAFETY: ctl passes the write end of its readiness pipe as this descriptor, for us
        // alone.
        let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut pipe = std::fs::File::from(pipe);
        let _ = pipe.write_all(b"ready\n");
    }
    systemd::ready(&supervisor).await;
    systemd::start_status_updates(supervisor.clone());
    systemd::start_watchdog(supervisor.clone());

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => reload(&mut life, &supervisor).await,
            stopped = &mut server, if !server_stopped => {
                server_stopped = true;
                if matches!(stopped, Ok(server::Stopped::Idle)) {
                    info!("no container and no client for a while: exiting (the next ctl starts paddockd again)");
                }
                break;
            }
        }
    }
    systemd::notify(&[sd_notify::NotifyState::Stopping]);
    control.enter(Phase::Draining);
    if !server_stopped {
        let _ = server.await;
    }
    if life.config.shutdown_mode() == ShutdownMode::Stop {
        let stopped = supervisor.send(StopAll { timeout: life.config.stop_timeout() }).await.unwrap_or(0);
        info!(containers = stopped, "containers stopped");
    }
    control.enter(Phase::Cancelling);
    let _ = supervisor.send(CloseEvents).await;
    // Nothing of the pool outlives paddockd: only containers may stay.
    let _ = supervisor.send(ClosePool).await;
    let left = control.finished(life.config.drain_timeout()).await;
    if left > 0 {
        warn!(requests = left, "requests still in flight after {:?}; leaving them", life.config.drain_timeout());
    }
    match life.config.shutdown_mode() {
        ShutdownMode::Leave => info!("paddockd stopped; running containers were left alone"),
        ShutdownMode::Stop => info!("paddockd stopped"),
    }
    Ok(())
}

/// SIGHUP: reads the configuration file again and applies what can change while running.
async fn reload(life: &mut Life, supervisor: &actix::Addr<Supervisor>) {
    let Some(path) = life.config_path.clone() else {
        info!("SIGHUP: no configuration file to reload");
        return;
    };
    systemd::reloading();
    match DaemonConfig::load(&path) {
        Ok(new) => {
            let ignored = life.config.unreloadable_changes(&new);
            if !ignored.is_empty() {
                warn!("SIGHUP: {} changed; that takes a restart of paddockd", ignored.join(", "));
            }
            life.log.set_filter(new.log.as_deref());
            let _ = supervisor
                .send(Reconfigure { default_overlay: new.default_overlay(), restart_limits: new.restart_limits() })
                .await;
            info!(file = %path.display(), "SIGHUP: configuration reloaded");
            life.config = new;
        }
        Err(e) => error!("SIGHUP: keeping the configuration in use: {e:#}"),
    }
    systemd::notify(&[sd_notify::NotifyState::Ready]);
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
