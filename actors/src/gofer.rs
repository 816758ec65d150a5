//! The Gofer actor: owns one gofer process.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use actix::prelude::*;
use tracing::info;
use wire::ApiError;

use crate::config::{SupervisorConfig, GOFER_BINARY};
use crate::launch::{launch, LaunchSpec, GOFER_NAMESPACES};
use crate::meta::ProcessRecord;
use crate::process::ChildProcess;
use crate::spec::Overlay;
use crate::{blocking, procfs};

/// What a gofer is asked to prepare.
#[derive(Debug, Clone)]
pub struct GoferPlan {
    /// The root filesystem on the host.
    pub rootfs: PathBuf,
    /// Present it under an overlay.
    pub overlay: Overlay,
}

/// Owns one gofer process and watches it.
pub struct GoferActor {
    id: String,
    process: ChildProcess,
    destroying: bool,
}

/// Kills the gofer and waits until it is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DestroyGofer;

#[derive(Message)]
#[rtype(result = "()")]
struct GoferEnded;

impl GoferActor {
    /// Starts a gofer for container `id`. Returns the actor, the sandbox's end of the io socket
    /// (to be handed to the sandbox), and the gofer's identity for the metadata.
    pub async fn launch(
        config: &SupervisorConfig,
        id: &str,
        plan: GoferPlan,
    ) -> Result<(Addr<GoferActor>, OwnedFd, ProcessRecord), ApiError> {
        let program = config.helper(GOFER_BINARY)?;
        let (sandbox_end, gofer_end) =
            UnixStream::pair().map_err(|e| ApiError::io("socketpair", e))?;
        let mut args = vec![
            "--id".to_string(),
            id.to_string(),
            "--io-fd".to_string(),
            "3".to_string(),
            "--rootfs".to_string(),
            plan.rootfs.to_string_lossy().into_owned(),
        ];
        if let Overlay::RootMemory { size } = plan.overlay {
            args.extend(["--overlay".to_string(), "memory".to_string()]);
            if let Some(size) = size {
                args.extend(["--overlay-size".to_string(), size.to_string()]);
            }
        }
        let launched = blocking(move || {
            launch(LaunchSpec {
                program: &program,
                args,
                fds: vec![(OwnedFd::from(gofer_end), 3)],
                namespaces: GOFER_NAMESPACES,
            })
            .map_err(|e| ApiError::io(format!("starting {}", program.display()), e))
        })
        .await?;
        let record = procfs::record(launched.pid)
            .map_err(|e| ApiError::io("reading the gofer's start time", e))?;
        let process = ChildProcess::watch(launched.pid, launched.pidfd)
            .map_err(|e| ApiError::io("watching the gofer", e))?;
        info!(container = id, pid = launched.pid, "gofer started");
        Ok((
            Self::start_watching(id, process),
            OwnedFd::from(sandbox_end),
            record,
        ))
    }

    /// Takes over a gofer started by an earlier paddockd, if that very process still runs.
    pub fn adopt(id: &str, record: &ProcessRecord) -> Option<Addr<GoferActor>> {
        let pidfd = procfs::open_verified(record)?;
        let process = ChildProcess::watch(record.pid, pidfd).ok()?;
        Some(Self::start_watching(id, process))
    }

    fn start_watching(id: &str, process: ChildProcess) -> Addr<GoferActor> {
        let watched = process.clone();
        GoferActor::create(move |ctx| {
            let addr = ctx.address();
            actix::spawn(async move {
                watched.ended().await;
                addr.do_send(GoferEnded);
            });
            GoferActor {
                id: id.to_string(),
                process,
                destroying: false,
            }
        })
    }
}

impl Actor for GoferActor {
    type Context = Context<Self>;
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

    fn handle(&mut self, _: GoferEnded, _: &mut Context<Self>) {
        if !self.destroying {
            info!(container = %self.id, pid = self.process.pid(), "gofer exited");
        }
    }
}
