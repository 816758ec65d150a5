//! paddockd's side of a conversation with a helper (sandbox or gofer): requests multiplexed
//! by id over one connection, replies routed to their callers, events handed to the owner.
//!
//! A writer task sends, a reader task receives; when the connection breaks, every pending
//! call fails with a clear error and the event channel closes, which tells the owner. Every
//! call has its request's deadline (see [`crate::deadline`]): a stuck helper fails its own
//! callers with [`ErrorKind::Timeout`] and holds nothing else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::async_conn::split;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use wire::handshake::{Hello, Welcome};
use wire::rpc::{Answer, Envelope};
use wire::{ApiError, ErrorKind};

use crate::deadline::Deadline;
use crate::process::ChildProcess;

type Waiter<Rep> = oneshot::Sender<Result<Rep, ApiError>>;

struct Pending<Rep> {
    waiters: HashMap<u64, Waiter<Rep>>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

/// A connection to a helper, cheap to clone; every clone shares the connection.
pub struct RpcClient<Req, Rep> {
    name: Arc<str>,
    next_id: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<Envelope<Req>>,
    pending: Arc<Mutex<Pending<Rep>>>,
}

impl<Req, Rep> Clone for RpcClient<Req, Rep> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            next_id: self.next_id.clone(),
            tx: self.tx.clone(),
            pending: self.pending.clone(),
        }
    }
}

fn helper_error(name: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Sandbox, format!("{name}: {why}"))
}

impl<Req, Rep> RpcClient<Req, Rep>
where
    Req: Serialize + Deadline + Send + 'static,
    Rep: DeserializeOwned + Send + 'static,
{
    /// Performs the handshake on `stream` with `process` (a helper named `name` in messages)
    /// and starts the connection's tasks. A helper that dies before answering is reported at
    /// once. Returns the client and the channel of the helper's events.
    pub async fn connect<Ev>(
        name: &str,
        stream: std::os::unix::net::UnixStream,
        max_frame: usize,
        process: &ChildProcess,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Ev>), ApiError>
    where
        Ev: DeserializeOwned + Send + 'static,
    {
        stream.set_nonblocking(true).map_err(|e| ApiError::io("socket", e))?;
        let stream = tokio::net::UnixStream::from_std(stream).map_err(|e| ApiError::io("socket", e))?;
        let (mut reader, mut writer) = split(stream, max_frame);
        writer
            .send(&Hello::new(format!("paddockd {}", env!("CARGO_PKG_VERSION"))))
            .await
            .map_err(|e| helper_error(name, e))?;
        let welcome = tokio::select! {
            w = reader.recv::<Welcome>() => w.map_err(|e| helper_error(name, e))?,
            _ = process.ended() => return Err(helper_error(name, "it exited while starting")),
        };
        if let Welcome::Refused { reason } = welcome {
            return Err(ApiError::new(ErrorKind::Sandbox, reason));
        }

        let (tx, mut rx) = mpsc::unbounded_channel::<Envelope<Req>>();
        let (events_tx, events_rx) = mpsc::unbounded_channel::<Ev>();
        let pending = Arc::new(Mutex::new(Pending { waiters: HashMap::new(), closed: None }));
        actix::spawn(async move {
            while let Some(envelope) = rx.recv().await {
                if writer.send(&envelope).await.is_err() {
                    break;
                }
            }
        });
        let reader_pending = pending.clone();
        actix::spawn(async move {
            let why = loop {
                match reader.recv::<Answer<Rep, Ev>>().await {
                    Ok(Answer::Reply { id, result }) => {
                        let waiter = reader_pending.lock().unwrap_or_else(|p| p.into_inner()).waiters.remove(&id);
                        if let Some(w) = waiter {
                            let _ = w.send(result);
                        }
                    }
                    Ok(Answer::Event(event)) => {
                        let _ = events_tx.send(event);
                    }
                    Err(e) => break e.to_string(),
                }
            };
            let mut p = reader_pending.lock().unwrap_or_else(|p| p.into_inner());
            p.closed = Some(why.clone());
            for (_, w) in p.waiters.drain() {
                let _ = w.send(Err(ApiError::new(ErrorKind::Sandbox, format!("connection lost: {why}"))));
            }
        });
        Ok((Self { name: name.into(), next_id: Arc::new(AtomicU64::new(1)), tx, pending }, events_rx))
    }

    /// Sends `request` and waits for its reply, at most until the request's deadline. A reply
    /// that comes after it is dropped: the caller has its timeout error by then.
    pub fn call(&self, request: Req) -> impl std::future::Future<Output = Result<Rep, ApiError>> + 'static {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let name = self.name.clone();
        let (deadline, operation) = (request.deadline(), request.operation());
        let pending = self.pending.clone();
        let queued = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match &p.closed {
                Some(why) => Err(helper_error(&name, format!("connection lost: {why}"))),
                None => {
                    p.waiters.insert(id, tx);
                    self.tx.send(Envelope { id, request }).map_err(|_| helper_error(&name, "connection lost"))
                }
            }
        };
        async move {
            queued?;
            let Some(limit) = deadline else {
                return rx.await.unwrap_or_else(|_| Err(helper_error(&name, "went away")));
            };
            match tokio::time::timeout(limit, rx).await {
                Ok(reply) => reply.unwrap_or_else(|_| Err(helper_error(&name, "went away"))),
                Err(_) => {
                    pending.lock().unwrap_or_else(|p| p.into_inner()).waiters.remove(&id);
                    Err(ApiError::new(
                        ErrorKind::Timeout,
                        format!("{name}: {operation} timed out: no answer within {} s", limit.as_secs()),
                    ))
                }
            }
        }
    }
}
