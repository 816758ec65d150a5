//! The wire server: accepts connections on paddockd's socket, checks the peer, performs the
//! handshake, and turns each request frame into the supervisor actor's message. Requests on
//! one connection run concurrently; replies carry their request's id.

use std::time::Duration;

use actix::Addr;
use actors::Supervisor;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};
use wire::api::{Reply, Request, RequestFrame, ServerFrame};
use wire::async_conn::split;
use wire::handshake::{check_hello, Hello, Welcome};
use wire::{ApiError, ErrorKind, WireError};

/// How long a client may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    supervisor: Addr<Supervisor>,
    max_frame: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    actix::spawn(handle_connection(stream, supervisor.clone(), max_frame));
                }
                Err(e) => warn!("accept: {e}"),
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// Whether the peer may use the daemon: root, or the user paddockd runs as.
fn peer_allowed(stream: &UnixStream) -> Result<(), String> {
    let cred = stream.peer_cred().map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(format!("uid {} may not use this paddockd", cred.uid()))
    }
}

async fn handle_connection(stream: UnixStream, supervisor: Addr<Supervisor>, max_frame: usize) {
    let allowed = peer_allowed(&stream);
    let (mut reader, mut writer) = split(stream, max_frame);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, reader.recv::<Hello>()).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            debug!("connection closed before hello: {e}");
            return;
        }
        Err(_) => {
            debug!("client did not say hello in time");
            return;
        }
    };
    let mut welcome = check_hello(&hello, &format!("paddockd {}", env!("CARGO_PKG_VERSION")));
    if let Err(reason) = allowed {
        welcome = Welcome::Refused { reason };
    }
    let refused = matches!(welcome, Welcome::Refused { .. });
    if writer.send(&welcome).await.is_err() || refused {
        return;
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<ServerFrame>();
    actix::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let fatal = matches!(frame, ServerFrame::Fatal(_));
            if writer.send(&frame).await.is_err() || fatal {
                return;
            }
        }
    });
    loop {
        match reader.recv::<RequestFrame>().await {
            Ok(frame) => {
                let tx = tx.clone();
                let supervisor = supervisor.clone();
                actix::spawn(async move {
                    let name = frame.request.name();
                    let result = route(&supervisor, frame.request).await;
                    if let Err(e) = &result {
                        debug!(request = name, "failed: {e}");
                    }
                    let _ = tx.send(ServerFrame::Reply { id: frame.id, result });
                });
            }
            Err(WireError::Closed) => return,
            Err(e) => {
                // A broken frame: say why and hang up, since the stream cannot be trusted.
                let _ = tx.send(ServerFrame::Fatal(ApiError::new(ErrorKind::Protocol, e.to_string())));
                return;
            }
        }
    }
}

/// Sends a request to the supervisor actor and wraps its answer for the wire.
pub async fn route(supervisor: &Addr<Supervisor>, request: Request) -> Result<Reply, ApiError> {
    let stopped = |_| ApiError::internal("the supervisor is not running");
    match request {
        Request::Create(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::Start(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::State(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::State),
        Request::List(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::List),
        Request::Kill(m) => supervisor.send(m).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::Wait(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::Exit),
        Request::Delete(m) => supervisor.send(m).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::CopyOut(m) => supervisor.send(m).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::CopyIn(m) => supervisor.send(m).await.map_err(stopped)?.map(|()| Reply::Done),
        Request::Exec(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::Executed),
        Request::WaitProcess(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::Exit),
        Request::Ps(m) => supervisor.send(m).await.map_err(stopped)?.map(Reply::Processes),
    }
}
