//! The Sandbox actor: owns one sandbox process and the connection to its control socket.

use std::collections::HashMap;
use std::path::Path;

use actix::prelude::*;
use tracing::{info, warn};
use wire::sandbox_proto::{SandboxContainer, SandboxEvent, SandboxReply, SandboxRequest};
use wire::{ApiError, ErrorKind, ExitStatus, Object};

use crate::config::{SupervisorConfig, SANDBOX_BINARY};
use crate::launch::{reattach_helper, start_helper, AttachedHelper};
use crate::meta::ProcessRecord;
use crate::pool::PooledHelper;
use crate::process::ChildProcess;
use crate::rpc::RpcClient;

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
struct Event(SandboxEvent);

#[derive(Message)]
#[rtype(result = "()")]
struct ProcessEnded;

/// Owns one sandbox process.
pub struct SandboxActor {
    id: String,
    process: ChildProcess,
    rpc: RpcClient<SandboxRequest, SandboxReply>,
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
    /// `namespaces` (see [`crate::spec::sandbox_namespaces`]): the sandbox's new namespaces
    /// (PID and mount always; network, UTS, IPC as the spec asks, which is not cgroup: the
    /// sandbox moves its containers' processes between cgroups, so it stays in the host's
    /// cgroup namespace) and those it joins by path. `pooled`: a sandbox the pool started
    /// ahead of need with exactly these namespaces, to take over instead.
    pub async fn launch(
        config: &SupervisorConfig,
        id: &str,
        state_dir: &Path,
        namespaces: (u64, Vec<(std::path::PathBuf, i32)>),
        pooled: Option<PooledHelper>,
    ) -> Result<(Connected, ProcessRecord), ApiError> {
        // A pooled sandbox was started with these very namespaces (the pool keys them); it
        // learns its id from its first root container.
        let adopted = pooled.and_then(|p| {
            p.hand_over(state_dir, SOCKET_NAME)
                .map_err(|e| warn!(sandbox = id, "cannot take the pool's sandbox, starting one: {e}"))
                .ok()
        });
        let AttachedHelper { process, record, stream } = match adopted {
            Some(attached) => {
                info!(sandbox = id, pid = attached.record.pid, "sandbox taken from the pool");
                attached
            }
            None => {
                let program = config.helper(SANDBOX_BINARY)?;
                let started =
                    start_helper(program, id, state_dir.join(SOCKET_NAME), namespaces, 0, None, "the sandbox").await?;
                info!(sandbox = id, pid = started.record.pid, "sandbox started");
                started
            }
        };
        match Self::connect(config, id, process.clone(), stream).await {
            Ok(c) => Ok((c, record)),
            Err(e) => {
                process.kill().await;
                Err(e)
            }
        }
    }

    /// Reconnects to a sandbox started by an earlier paddockd, if that very process still runs.
    pub async fn reconnect(
        config: &SupervisorConfig,
        id: &str,
        record: &ProcessRecord,
        state_dir: &Path,
    ) -> Result<Connected, ApiError> {
        let gone = || ApiError::new(ErrorKind::Sandbox, "is gone").on(Object::Sandbox(id.to_string()));
        let AttachedHelper { process, stream, .. } =
            reattach_helper(record, state_dir.join(SOCKET_NAME), "the sandbox", gone).await?;
        Self::connect(config, id, process, stream).await
    }

    async fn connect(
        config: &SupervisorConfig,
        id: &str,
        process: ChildProcess,
        stream: std::os::unix::net::UnixStream,
    ) -> Result<Connected, ApiError> {
        let name = format!("sandbox {id:?}");
        let (rpc, mut events) = RpcClient::<SandboxRequest, SandboxReply>::connect::<SandboxEvent>(
            &name,
            stream,
            config.max_frame,
            &process,
        )
        .await?;
        let containers = match rpc.call(SandboxRequest::Attach).await? {
            SandboxReply::Attached(list) => list,
            other => return Err(ApiError::new(ErrorKind::Protocol, format!("{name}: unexpected {other:?}"))),
        };
        let id = id.to_string();
        let addr = SandboxActor::create(move |ctx| {
            let me = ctx.address();
            let events_to = me.clone();
            actix::spawn(async move {
                while let Some(event) = events.recv().await {
                    events_to.do_send(Event(event));
                }
            });
            let watched = process.clone();
            actix::spawn(async move {
                watched.ended().await;
                me.do_send(ProcessEnded);
            });
            SandboxActor { id, process, rpc, listeners: HashMap::new(), undelivered: HashMap::new(), destroying: false }
        });
        Ok(Connected { addr, containers })
    }

    fn notify(&mut self, id: &str, notice: SandboxNotice) {
        match self.listeners.get(id) {
            Some(r) => r.do_send(notice),
            None => self.undelivered.entry(id.to_string()).or_default().push(notice),
        }
    }
}

impl Actor for SandboxActor {
    type Context = Context<Self>;
}

impl Handler<Call> for SandboxActor {
    type Result = ResponseFuture<Result<SandboxReply, ApiError>>;

    fn handle(&mut self, Call(request): Call, _: &mut Context<Self>) -> Self::Result {
        Box::pin(self.rpc.call(request))
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

impl Handler<Event> for SandboxActor {
    type Result = ();

    fn handle(&mut self, Event(event): Event, _: &mut Context<Self>) {
        match event {
            SandboxEvent::Exited { id, status } => {
                info!(container = %id, sandbox = %self.id, %status, "container exited");
                self.notify(&id, SandboxNotice::Exited(status));
            }
        }
    }
}

impl Handler<ProcessEnded> for SandboxActor {
    type Result = ();

    fn handle(&mut self, _: ProcessEnded, _: &mut Context<Self>) {
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
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}
