//! paddockd under systemd: the listening socket from socket activation (`LISTEN_FDS`), and
//! the notifications of a `Type=notify` service on `NOTIFY_SOCKET`: `READY=1` once it serves,
//! `STATUS=` with the container count, `RELOADING=1`/`STOPPING=1`, and `WATCHDOG=1` pings
//! while the supervisor actor answers. Without systemd, all of it is a no-op.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use actix::Addr;
use actors::supervisor::{Ping, Subscribe};
use actors::Supervisor;
use anyhow::Context as _;
use sd_notify::NotifyState;
use tracing::{info, warn};
use wire::api::List;
use wire::events::EventKind;
use wire::Status;

/// The listening socket: the one systemd passed (socket activation), or a new one bound at
/// `path`. Returns whether it came from systemd.
pub fn listener(path: &Path) -> anyhow::Result<(UnixListener, bool)> {
    let mut fds = sd_notify::listen_fds().context("reading LISTEN_FDS")?;
    if let Some(fd) = fds.next() {
        if fds.len() > 0 {
            warn!("systemd passed {} sockets; using the first", fds.len() + 1);
        }
        // SAFETY: LISTEN_PID names us, so this descriptor was passed to us, for us alone.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        check_listening_unix_socket(&owned)?;
        info!(fd, "listening on the socket systemd passed");
        return Ok((UnixListener::from(owned), true));
    }
    let _ = std::fs::remove_file(path);
    let listener = wire::sockpath::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok((listener, false))
}

/// A socket unit with the wrong `ListenStream=` (or a datagram socket) is a configuration
/// error to name, not something to discover at the first accept.
fn check_listening_unix_socket(fd: &OwnedFd) -> anyhow::Result<()> {
    use rustix::net::sockopt;
    let kind = sockopt::socket_type(fd).context("the socket systemd passed is not a socket")?;
    let listening = sockopt::socket_acceptconn(fd).unwrap_or(false);
    let local = rustix::net::getsockname(fd).context("reading the passed socket's address")?;
    anyhow::ensure!(
        kind == rustix::net::SocketType::STREAM
            && listening
            && local.address_family() == rustix::net::AddressFamily::UNIX,
        "the socket systemd passed is not a listening Unix stream socket (check ListenStream= in paddockd.socket)"
    );
    Ok(())
}

/// Sends notifications to systemd, if it is listening (a failure is logged).
pub fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("notifying systemd: {e}");
    }
}

/// `RELOADING=1`, with the monotonic time systemd wants beside it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// `READY=1` with a first status line.
pub async fn ready(supervisor: &Addr<Supervisor>) {
    let status = status_line(supervisor).await;
    notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

async fn status_line(supervisor: &Addr<Supervisor>) -> String {
    match supervisor.send(actors::Api(List)).await {
        Ok(Ok(states)) => {
            let running = states.iter().filter(|s| s.status == Status::Running).count();
            format!("{} containers, {running} running", states.len())
        }
        _ => "the supervisor does not answer".to_string(),
    }
}

/// Keeps `STATUS=` current: a new line whenever a container is created, starts, exits or is
/// deleted (the event bus says when).
pub fn start_status_updates(supervisor: Addr<Supervisor>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    actix::spawn(async move {
        let Ok(Ok(subscription)) = supervisor.send(Subscribe { ids: Vec::new(), follow: true }).await else {
            return;
        };
        let Some(mut live) = subscription.live else { return };
        while let Some(event) = live.recv().await {
            if matches!(
                event.kind,
                EventKind::Created
                    | EventKind::Started { .. }
                    | EventKind::Exited { .. }
                    | EventKind::Deleted
                    | EventKind::Lagged { .. }
            ) {
                let status = status_line(&supervisor).await;
                notify(&[NotifyState::Status(&status)]);
            }
        }
    });
}

/// With `WatchdogSec=`: pings systemd at half the interval, but only while the supervisor
/// actor answers within that time; a hung supervisor is killed and restarted by systemd (and
/// the containers, which do not depend on paddockd, keep running).
pub fn start_watchdog(supervisor: Addr<Supervisor>) {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    let period = (interval / 2).max(Duration::from_millis(10));
    info!(?interval, "systemd watchdog on");
    actix::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            match tokio::time::timeout(period, supervisor.send(Ping)).await {
                Ok(Ok(_)) => notify(&[NotifyState::Watchdog]),
                _ => warn!("the supervisor did not answer within {period:?}; not pinging the watchdog"),
            }
        }
    });
}
