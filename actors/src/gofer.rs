//! The Gofer actor: owns one gofer process and the connection to its control socket.

use std::path::Path;

use actix::prelude::*;
use tracing::{info, warn};
use wire::gofer_proto::{GoferReply, GoferRequest, GoferSetup};
use wire::rpc::NoEvent;
use wire::{ApiError, ErrorKind, Object};

use crate::config::{SupervisorConfig, GOFER_BINARY};
use crate::launch::{reattach_helper, start_helper, AttachedHelper, GOFER_NAMESPACES};
use crate::meta::ProcessRecord;
use crate::pool::PooledHelper;
use crate::process::ChildProcess;
use crate::rpc::RpcClient;

/// The gofer's control socket's name in the container's state directory.
pub const SOCKET_NAME: &str = "gofer.sock";

/// Sends a request to the gofer and waits for its reply.
#[derive(Message)]
#[rtype(result = "Result<GoferReply, ApiError>")]
pub struct GoferCall(pub GoferRequest);

/// Kills the gofer and waits until it is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DestroyGofer;

/// Asks to be told when the gofer dies on its own.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchGofer(pub Recipient<GoferDied>);

/// The gofer with this pid died without being asked to.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct GoferDied(pub i32);

#[derive(Message)]
#[rtype(result = "()")]
struct GoferEnded;

/// A started gofer: its actor, its process (for a direct look at whether it still runs) and
/// its identity for the metadata.
pub struct RunningGofer {
    /// The actor.
    pub addr: Addr<GoferActor>,
    /// The process.
    pub process: ChildProcess,
    /// The process's identity.
    pub record: ProcessRecord,
}

/// Owns one gofer process.
pub struct GoferActor {
    id: String,
    process: ChildProcess,
    rpc: RpcClient<GoferRequest, GoferReply>,
    destroying: bool,
    died: bool,
    watcher: Option<Recipient<GoferDied>>,
}

impl GoferActor {
    /// Starts a gofer for container `id` (control socket in `state_dir`) and sets it up with
    /// `setup`.
    pub async fn launch(
        config: &SupervisorConfig,
        id: &str,
        state_dir: &Path,
        setup: GoferSetup,
    ) -> Result<RunningGofer, ApiError> {
        Self::launch_or_adopt(config, id, state_dir, setup, None).await
    }

    /// [`GoferActor::launch`], taking over `pooled`, a gofer the pool started ahead of need,
    /// when there is one (its socket moves into `state_dir`; the setup names the container).
    pub async fn launch_or_adopt(
        config: &SupervisorConfig,
        id: &str,
        state_dir: &Path,
        setup: GoferSetup,
        pooled: Option<PooledHelper>,
    ) -> Result<RunningGofer, ApiError> {
        let adopted = pooled.and_then(|p| {
            p.hand_over(state_dir, SOCKET_NAME)
                .map_err(|e| warn!(container = id, "cannot take the pool's gofer, starting one: {e}"))
                .ok()
        });
        let AttachedHelper { process, record, stream } = match adopted {
            Some(attached) => attached,
            None => {
                let program = config.helper(GOFER_BINARY)?;
                let namespaces = (GOFER_NAMESPACES, Vec::new());
                start_helper(program, id, state_dir.join(SOCKET_NAME), namespaces, 0, None, "the gofer").await?
            }
        };
        let connected = async {
            let rpc = Self::connect(config, id, &process, stream).await?;
            match rpc.call(GoferRequest::Setup(setup)).await? {
                GoferReply::Ready => Ok(rpc),
                other => Err(ApiError::new(ErrorKind::Protocol, format!("gofer of {id:?}: unexpected {other:?}"))),
            }
        }
        .await;
        match connected {
            Ok(rpc) => {
                info!(container = id, pid = record.pid, "gofer started");
                Ok(RunningGofer { addr: Self::start_watching(id, process.clone(), rpc), process, record })
            }
            Err(e) => {
                process.kill().await;
                Err(e)
            }
        }
    }

    /// Reconnects to a gofer started by an earlier paddockd, if that very process still runs.
    pub async fn reconnect(
        config: &SupervisorConfig,
        id: &str,
        record: &ProcessRecord,
        state_dir: &Path,
    ) -> Result<RunningGofer, ApiError> {
        let gone = || ApiError::new(ErrorKind::Sandbox, "its gofer is gone").on(Object::Container(id.to_string()));
        let AttachedHelper { process, record, stream } =
            reattach_helper(record, state_dir.join(SOCKET_NAME), "the gofer", gone).await?;
        let rpc = Self::connect(config, id, &process, stream).await?;
        Ok(RunningGofer { addr: Self::start_watching(id, process.clone(), rpc), process, record })
    }

    async fn connect(
        config: &SupervisorConfig,
        id: &str,
        process: &ChildProcess,
        stream: std::os::unix::net::UnixStream,
    ) -> Result<RpcClient<GoferRequest, GoferReply>, ApiError> {
        let (rpc, _events) =
            RpcClient::connect::<NoEvent>(&format!("gofer of {id:?}"), stream, config.max_frame, process).await?;
        Ok(rpc)
    }

    fn start_watching(id: &str, process: ChildProcess, rpc: RpcClient<GoferRequest, GoferReply>) -> Addr<GoferActor> {
        let watched = process.clone();
        GoferActor::create(move |ctx| {
            let addr = ctx.address();
            actix::spawn(async move {
                watched.ended().await;
                addr.do_send(GoferEnded);
            });
            GoferActor { id: id.to_string(), process, rpc, destroying: false, died: false, watcher: None }
        })
    }
}

impl Actor for GoferActor {
    type Context = Context<Self>;
}

impl Handler<GoferCall> for GoferActor {
    type Result = ResponseFuture<Result<GoferReply, ApiError>>;

    fn handle(&mut self, GoferCall(request): GoferCall, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.rpc.call(request))
    }
}

impl Handler<WatchGofer> for GoferActor {
    type Result = ();

    fn handle(&mut self, WatchGofer(recipient): WatchGofer, ctx: &mut Context<Self>) {
        if self.died {
            recipient.do_send(GoferDied(self.process.pid()));
            ctx.stop();
        }
        self.watcher = Some(recipient);
    }
}

impl Handler<DestroyGofer> for GoferActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: DestroyGofer, _: &mut Context<Self>) -> Self::Result {
        self.destroying = true;
        let process = self.process.clone();
        Box::pin(
            async move {
                process.kill().await;
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

impl Handler<GoferEnded> for GoferActor {
    type Result = ();

    fn handle(&mut self, _: GoferEnded, ctx: &mut Context<Self>) {
        if self.destroying {
            return;
        }
        warn!(container = %self.id, pid = self.process.pid(), "gofer died");
        self.died = true;
        // Without a watcher yet, stay until one registers, so the death is not lost.
        if let Some(w) = &self.watcher {
            w.do_send(GoferDied(self.process.pid()));
            ctx.stop();
        }
    }
}
