//! The Sandbox actor: owns one sandbox process and the connection to its control socket.
//!
//! Requests are multiplexed by id over one connection: a writer task sends, a reader task
//! routes replies to their callers and events (exits) to the containers that listen.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};
use wire::async_conn::{split, AsyncReader};
use wire::handshake::{Hello, Welcome};
use wire::sandbox_proto::{
    SandboxContainer, SandboxEvent, SandboxFrame, SandboxReply, SandboxRequest, SandboxRequestFrame,
};
use wire::{ApiError, ErrorKind, ExitStatus, WireError};

use crate::config::{SupervisorConfig, SANDBOX_BINARY};
use crate::launch::{launch, LaunchSpec, SANDBOX_NAMESPACES};
use crate::meta::ProcessRecord;
use crate::process::ChildProcess;
use crate::{blocking, procfs};

/// The control socket's name in the container's state directory.
pub const SOCKET_NAME: &str = "sandbox.sock";

/// What a sandbox tells a container about itself.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum SandboxNotice {
    /// The container's init exited.
    Exited(ExitStatus),
    /// The sandbox process vanished without reporting the container's end.
    Lost,
}

/// Sends a request to the sandbox process and waits for its reply.
#[derive(Message)]
#[rtype(result = "Result<SandboxReply, ApiError>")]
pub struct Call(pub SandboxRequest);

/// Routes the notices about container `id` to `recipient` (and delivers any that came before).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Listen {
    /// The container.
    pub id: String,
    /// Who gets its notices.
    pub recipient: Recipient<SandboxNotice>,
}

/// Kills the sandbox (and so everything in it) and waits until it is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DestroySandbox;

#[derive(Message)]
#[rtype(result = "()")]
struct Incoming(SandboxFrame);

#[derive(Message)]
#[rtype(result = "()")]
struct Disconnected(String);

#[derive(Message)]
#[rtype(result = "()")]
struct ProcessEnded;

/// Owns one sandbox process.
pub struct SandboxActor {
    id: String,
    process: ChildProcess,
    writer: Option<mpsc::UnboundedSender<SandboxRequestFrame>>,
    pending: HashMap<u64, oneshot::Sender<Result<SandboxReply, ApiError>>>,
    next_id: u64,
    listeners: HashMap<String, Recipient<SandboxNotice>>,
    undelivered: HashMap<String, Vec<SandboxNotice>>,
    destroying: bool,
}

/// A connected sandbox: its actor and the containers it reported when paddockd attached.
pub struct Connected {
    /// The actor.
    pub addr: Addr<SandboxActor>,
    /// The sandbox's containers as it reported them.
    pub containers: Vec<SandboxContainer>,
}

impl SandboxActor {
    /// Starts a new sandbox for root container `id`, its control socket in `state_dir`.
    pub async fn launch(
        config: &SupervisorConfig,
        id: &str,
        state_dir: &Path,
    ) -> Result<(Connected, ProcessRecord), ApiError> {
        let program = config.helper(SANDBOX_BINARY)?;
        let socket = state_dir.join(SOCKET_NAME);
        let sandbox_id = id.to_string();
        let (launched, stream) = blocking(move || {
            let _ = std::fs::remove_file(&socket);
            let listener = wire::sockpath::bind(&socket)
                .map_err(|e| ApiError::io(format!("binding {}", socket.display()), e))?;
            let launched = launch(LaunchSpec {
                program: &program,
                args: vec!["--id".into(), sandbox_id, "--control-fd".into(), "3".into()],
                fds: vec![(OwnedFd::from(listener), 3)],
                namespaces: SANDBOX_NAMESPACES,
            })
            .map_err(|e| ApiError::io(format!("starting {}", program.display()), e))?;
            // The socket listens already, so this connects at once; the sandbox accepts when
            // it is ready, and the handshake below waits for that.
            let stream = wire::sockpath::connect(&socket)
                .map_err(|e| ApiError::io(format!("connecting to {}", socket.display()), e))?;
            Ok((launched, stream))
        })
        .await?;
        let record = procfs::record(launched.pid)
            .map_err(|e| ApiError::io("reading the sandbox's start time", e))?;
        let process = ChildProcess::watch(launched.pid, launched.pidfd)
            .map_err(|e| ApiError::io("watching the sandbox", e))?;
        info!(sandbox = id, pid = launched.pid, "sandbox started");
        let connected = match Self::connect(config, id, process.clone(), stream).await {
            Ok(c) => c,
            Err(e) => {
                process.kill().await;
                return Err(e);
            }
        };
        Ok((connected, record))
    }

    /// Reconnects to a sandbox started by an earlier paddockd, if that very process still runs.
    pub async fn reconnect(
        config: &SupervisorConfig,
        id: &str,
        record: &ProcessRecord,
        state_dir: &Path,
    ) -> Result<Connected, ApiError> {
        let pidfd = procfs::open_verified(record)
            .ok_or_else(|| ApiError::new(ErrorKind::Sandbox, format!("sandbox {id:?} is gone")))?;
        let process = ChildProcess::watch(record.pid, pidfd)
            .map_err(|e| ApiError::io("watching the sandbox", e))?;
        let socket: PathBuf = state_dir.join(SOCKET_NAME);
        let stream = blocking(move || {
            wire::sockpath::connect(&socket)
                .map_err(|e| ApiError::io(format!("connecting to {}", socket.display()), e))
        })
        .await?;
        Self::connect(config, id, process, stream).await
    }

    async fn connect(
        config: &SupervisorConfig,
        id: &str,
        process: ChildProcess,
        stream: std::os::unix::net::UnixStream,
    ) -> Result<Connected, ApiError> {
        stream
            .set_nonblocking(true)
            .map_err(|e| ApiError::io("socket", e))?;
        let stream =
            tokio::net::UnixStream::from_std(stream).map_err(|e| ApiError::io("socket", e))?;
        let (mut reader, mut writer) = split(stream, config.max_frame);
        let lost = |e: WireError| ApiError::new(ErrorKind::Sandbox, format!("sandbox {id:?}: {e}"));

        writer
            .send(&Hello::new(format!(
                "paddockd {}",
                env!("CARGO_PKG_VERSION")
            )))
            .await
            .map_err(lost)?;
        let welcome = tokio::select! {
            w = reader.recv::<Welcome>() => w.map_err(lost)?,
            _ = process.ended() => return Err(ApiError::new(ErrorKind::Sandbox, format!("sandbox {id:?} exited while starting"))),
        };
        if let Welcome::Refused { reason } = welcome {
            return Err(ApiError::new(ErrorKind::Sandbox, reason));
        }
        writer
            .send(&SandboxRequestFrame {
                id: 0,
                request: SandboxRequest::Attach,
            })
            .await
            .map_err(lost)?;
        let containers = match reader.recv::<SandboxFrame>().await.map_err(lost)? {
            SandboxFrame::Reply {
                result: Ok(SandboxReply::Attached(list)),
                ..
            } => list,
            SandboxFrame::Reply { result: Err(e), .. } => return Err(e),
            other => {
                return Err(ApiError::new(
                    ErrorKind::Protocol,
                    format!("sandbox {id:?}: unexpected {other:?}"),
                ))
            }
        };

        let (tx, mut rx) = mpsc::unbounded_channel::<SandboxRequestFrame>();
        let id = id.to_string();
        let addr = SandboxActor::create(move |ctx| {
            let me = ctx.address();
            actix::spawn(async move {
                while let Some(frame) = rx.recv().await {
                    if writer.send(&frame).await.is_err() {
                        break;
                    }
                }
            });
            actix::spawn(read_frames(reader, me.clone()));
            let watched = process.clone();
            actix::spawn(async move {
                watched.ended().await;
                me.do_send(ProcessEnded);
            });
            SandboxActor {
                id,
                process,
                writer: Some(tx),
                pending: HashMap::new(),
                next_id: 1,
                listeners: HashMap::new(),
                undelivered: HashMap::new(),
                destroying: false,
            }
        });
        Ok(Connected { addr, containers })
    }

    fn fail_pending(&mut self, why: &str) {
        for (_, tx) in self.pending.drain() {
            let _ = tx.send(Err(ApiError::new(
                ErrorKind::Sandbox,
                format!("sandbox {:?}: {why}", self.id),
            )));
        }
    }

    fn notify(&mut self, id: &str, notice: SandboxNotice) {
        match self.listeners.get(id) {
            Some(r) => r.do_send(notice),
            None => self
                .undelivered
                .entry(id.to_string())
                .or_default()
                .push(notice),
        }
    }
}

async fn read_frames(mut reader: AsyncReader, me: Addr<SandboxActor>) {
    loop {
        match reader.recv::<SandboxFrame>().await {
            Ok(frame) => me.do_send(Incoming(frame)),
            Err(e) => {
                me.do_send(Disconnected(e.to_string()));
                return;
            }
        }
    }
}

impl Actor for SandboxActor {
    type Context = Context<Self>;
}

impl Handler<Call> for SandboxActor {
    type Result = ResponseFuture<Result<SandboxReply, ApiError>>;

    fn handle(&mut self, Call(request): Call, _: &mut Context<Self>) -> Self::Result {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        let sandbox = self.id.clone();
        let sent = self
            .writer
            .as_ref()
            .is_some_and(|w| w.send(SandboxRequestFrame { id, request }).is_ok());
        if !sent {
            return Box::pin(async move {
                Err(ApiError::new(
                    ErrorKind::Sandbox,
                    format!("sandbox {sandbox:?}: the connection to it is lost"),
                ))
            });
        }
        self.pending.insert(id, tx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(ApiError::new(
                    ErrorKind::Sandbox,
                    format!("sandbox {sandbox:?} went away"),
                ))
            })
        })
    }
}

impl Handler<Listen> for SandboxActor {
    type Result = ();

    fn handle(&mut self, msg: Listen, _: &mut Context<Self>) {
        for notice in self.undelivered.remove(&msg.id).unwrap_or_default() {
            msg.recipient.do_send(notice);
        }
        if self.process.has_ended() && !self.destroying {
            msg.recipient.do_send(SandboxNotice::Lost);
        }
        self.listeners.insert(msg.id, msg.recipient);
    }
}

impl Handler<Incoming> for SandboxActor {
    type Result = ();

    fn handle(&mut self, Incoming(frame): Incoming, _: &mut Context<Self>) {
        match frame {
            SandboxFrame::Reply { id, result } => {
                if let Some(tx) = self.pending.remove(&id) {
                    let _ = tx.send(result);
                }
            }
            SandboxFrame::Event(SandboxEvent::Exited { id, status }) => {
                info!(container = %id, sandbox = %self.id, %status, "container exited");
                self.notify(&id, SandboxNotice::Exited(status));
            }
        }
    }
}

impl Handler<Disconnected> for SandboxActor {
    type Result = ();

    fn handle(&mut self, Disconnected(why): Disconnected, _: &mut Context<Self>) {
        if !self.destroying && !self.process.has_ended() {
            warn!(sandbox = %self.id, "connection to the sandbox lost: {why}");
        }
        self.writer = None;
        self.fail_pending(&format!("connection lost: {why}"));
    }
}

impl Handler<ProcessEnded> for SandboxActor {
    type Result = ();

    fn handle(&mut self, _: ProcessEnded, _: &mut Context<Self>) {
        self.fail_pending("the sandbox process ended");
        if self.destroying {
            return;
        }
        warn!(sandbox = %self.id, pid = self.process.pid(), "sandbox process ended unexpectedly");
        let ids: Vec<String> = self.listeners.keys().cloned().collect();
        for id in ids {
            self.notify(&id, SandboxNotice::Lost);
        }
    }
}

impl Handler<DestroySandbox> for SandboxActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: DestroySandbox, _: &mut Context<Self>) -> Self::Result {
        self.destroying = true;
        let process = self.process.clone();
        Box::pin(
            async move {
                process.kill().await;
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                act.fail_pending("destroyed");
                ctx.stop();
            }),
        )
    }
}
