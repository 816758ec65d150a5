//! containerd's task API, served from paddockd: one [`Service`] per shim process, which may
//! hold every container of a pod.
//!
//! paddockd owns the containers; the shim keeps only what containerd's API has and paddock's
//! does not: the FIFO paths, the exec processes containerd registered but has not started, and
//! each process's exit (from paddockd's event bus for a container's init, from a `wait` for an
//! exec), so that `Wait` and `State` answer as often as asked.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use containerd_shim_protos::api::{self, Empty};
use containerd_shim_protos::events::task::{
    TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageDyn, MessageField};
use containerd_shim_protos::shim::oci::CheckpointOptions;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::{self, Code};
use tokio::sync::{mpsc, watch};
use wire::api::{Create, Exec, ExecSpec};
use wire::events::{Event, EventKind};
use wire::{ApiError, ErrorKind, SpecJson};

use crate::config;
use crate::paddock::{Daemon, DaemonError};
use crate::stdio::{IoHandle, Prepared, StdioPaths};

/// How a process ended, and when the shim learned of it.
#[derive(Debug, Clone, Copy)]
struct Exit {
    status: u32,
    at: SystemTime,
}

/// How long a process's exit and Delete wait for its terminal's output to reach containerd
/// (see [`IoHandle::output_copied`]).
const OUTPUT_COPY_BOUND: Duration = Duration::from_secs(2);

/// A process containerd knows: a container's init (exec id "") or an exec.
struct Proc {
    /// Host pid, 0 until it runs.
    pid: u32,
    /// Pid in the container's PID namespace (execs: what paddockd's wait and kill take).
    ns_pid: i32,
    paths: StdioPaths,
    io: IoHandle,
    exit: watch::Sender<Option<Exit>>,
    /// An exec's OCI process (JSON), until `Start` runs it.
    pending: Option<String>,
}

impl Proc {
    fn new(paths: StdioPaths) -> Self {
        Self { pid: 0, ns_pid: 0, paths, io: IoHandle::default(), exit: watch::channel(None).0, pending: None }
    }

    fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }
}

/// A container of this shim.
struct Container {
    daemon: Daemon,
    bundle: PathBuf,
    /// Where the shim mounted containerd's rootfs mounts (unmounted at delete).
    mounted_rootfs: Option<PathBuf>,
    init: Proc,
    execs: HashMap<String, Proc>,
    /// Created from a checkpoint: running already, so `Start` only reports it.
    restored: bool,
    /// Held by `Start` until TaskStart is published, and taken by the exit's publication:
    /// containerd hears of a start before the exit of a process that ended at once.
    starting: Arc<tokio::sync::Mutex<()>>,
}

impl Container {
    fn process(&self, exec_id: &str) -> TtrpcResult<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| status(Code::NOT_FOUND, format!("exec {exec_id:?} does not exist")))
    }
}

type TtrpcResult<T> = Result<T, ttrpc::Error>;

fn status(code: Code, message: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

/// paddockd's errors as ttrpc statuses (containerd maps the codes to its errdefs).
fn rpc_error(e: DaemonError) -> ttrpc::Error {
    let code = match &e {
        DaemonError::Api(ApiError { kind, .. }) => match kind {
            ErrorKind::NotFound => Code::NOT_FOUND,
            ErrorKind::AlreadyExists => Code::ALREADY_EXISTS,
            ErrorKind::InvalidStatus => Code::FAILED_PRECONDITION,
            ErrorKind::InvalidId | ErrorKind::AmbiguousId | ErrorKind::InvalidSpec | ErrorKind::InvalidArgument => {
                Code::INVALID_ARGUMENT
            }
            ErrorKind::Unsupported => Code::UNIMPLEMENTED,
            ErrorKind::PermissionDenied => Code::PERMISSION_DENIED,
            ErrorKind::Unavailable => Code::UNAVAILABLE,
            ErrorKind::Timeout => Code::DEADLINE_EXCEEDED,
            _ => Code::UNKNOWN,
        },
        DaemonError::Autostart(_) | DaemonError::Start { .. } => Code::UNAVAILABLE,
        _ => Code::UNKNOWN,
    };
    status(code, e)
}

fn timestamp(at: SystemTime) -> MessageField<Timestamp> {
    MessageField::some(Timestamp::from(at))
}

fn pid_u32(pid: Option<i32>) -> u32 {
    pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0)
}

/// The shim's state, shared by every ttrpc call.
struct Inner {
    namespace: String,
    publisher: RemotePublisher,
    exit: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Container>>,
    /// The state roots whose event bus the shim follows.
    followed: Mutex<HashSet<PathBuf>>,
}

/// containerd's task service, backed by paddockd.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl Service {
    /// A service that publishes its events through `publisher` in containerd namespace
    /// `namespace`, and signals `exit` once containerd shuts it down with nothing left.
    pub fn new(namespace: String, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Self {
        Self {
            inner: Arc::new(Inner {
                namespace,
                publisher,
                exit,
                containers: Mutex::new(HashMap::new()),
                followed: Mutex::new(HashSet::new()),
            }),
        }
    }

    fn containers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Container>> {
        self.inner.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on container `id`.
    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> TtrpcResult<T>) -> TtrpcResult<T> {
        let mut containers = self.containers();
        let c = containers
            .get_mut(id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("container {id:?} does not exist")))?;
        f(c)
    }

    fn daemon_of(&self, id: &str) -> TtrpcResult<Daemon> {
        self.with(id, |c| Ok(c.daemon.clone()))
    }

    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self.inner.publisher.publish(Context::default(), topic, &self.inner.namespace, event).await {
            log::warn!("publishing {topic}: {e}");
        }
    }

    /// Follows the event bus of `daemon`'s root, once per root, before the shim creates
    /// anything there: every exit that follows reaches the shim. When the stream ends
    /// (paddockd stopped, or was killed and live-restores), the shim subscribes again and asks
    /// paddockd for what it missed meanwhile (see [`Service::reconcile`]).
    async fn follow(&self, daemon: &Daemon) -> TtrpcResult<()> {
        if !self.inner.followed.lock().unwrap_or_else(|p| p.into_inner()).insert(daemon.root().to_path_buf()) {
            return Ok(());
        }
        let rx = match subscribe(daemon).await {
            Ok(rx) => rx,
            Err(e) => {
                self.inner.followed.lock().unwrap_or_else(|p| p.into_inner()).remove(daemon.root());
                return Err(rpc_error(e));
            }
        };
        let me = self.clone();
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let mut rx = rx;
            loop {
                while let Some(event) = rx.recv().await {
                    me.on_event(event).await;
                }
                log::warn!("paddockd's event stream for {} ended: subscribing again", daemon.root().display());
                // Resubscribe while the shim has containers there; back off while paddockd is
                // away (a supervisor restarting it, or the next call starting one).
                let mut delay = std::time::Duration::from_millis(50);
                rx = loop {
                    if !me.containers().values().any(|c| c.daemon.root() == daemon.root()) {
                        me.inner.followed.lock().unwrap_or_else(|p| p.into_inner()).remove(daemon.root());
                        return;
                    }
                    match subscribe(&daemon).await {
                        Ok(rx) => break rx,
                        Err(e) => {
                            log::warn!("subscribing to paddockd's events again: {e}");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(std::time::Duration::from_secs(5));
                        }
                    }
                };
                me.reconcile(&daemon).await;
            }
        });
        Ok(())
    }

    /// After the event stream was lost: the exit of every container of `daemon`'s root that
    /// stopped meanwhile, from its state (paddockd keeps a stopped container's exit status
    /// across its own restarts).
    async fn reconcile(&self, daemon: &Daemon) {
        let ids: Vec<String> = self
            .containers()
            .iter()
            .filter(|(_, c)| c.daemon.root() == daemon.root() && c.init.exited().is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let cid = id.clone();
            match daemon.read(move |c| c.state(&cid)).await {
                Ok(state) => {
                    if let (wire::Status::Stopped, Some(exit)) = (state.status, state.exit_status) {
                        let kind = EventKind::exited(exit);
                        let event = Event { seq: 0, time: String::new(), id, sandbox_id: state.sandbox_id, kind };
                        self.on_event(event).await;
                    }
                }
                Err(e) => log::warn!("container {id:?}: its state after paddockd's events were lost: {e}"),
            }
        }
    }

    /// One event of paddockd's bus: exits and OOM kills of this shim's containers go to
    /// containerd.
    async fn on_event(&self, event: Event) {
        match event.kind {
            EventKind::Exited { exit_status } => {
                let Ok(starting) = self.with(&event.id, |c| Ok(c.starting.clone())) else { return };
                let _started = starting.lock().await;
                let exited = self.with(&event.id, |c| {
                    if c.init.exited().is_some() {
                        return Ok(None);
                    }
                    let exit = Exit { status: u32::try_from(exit_status).unwrap_or(255), at: SystemTime::now() };
                    c.init.exit.send_replace(Some(exit));
                    // Nobody reads its stdin any more: the copy ends with the client's writer.
                    c.init.io.close_stdin();
                    Ok(Some((c.init.pid, exit)))
                });
                if let Ok(Some((pid, exit))) = exited {
                    let event = TaskExit {
                        container_id: event.id.clone(),
                        id: event.id,
                        pid,
                        exit_status: exit.status,
                        exited_at: timestamp(exit.at),
                        ..Default::default()
                    };
                    self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event)).await;
                }
            }
            EventKind::Oom if self.containers().contains_key(&event.id) => {
                let event = TaskOOM { container_id: event.id, ..Default::default() };
                self.publish(topics::TASK_OOM_EVENT_TOPIC, Box::new(event)).await;
            }
            _ => {}
        }
    }

    /// Waits (off the runtime) for exec `exec_id` of `id` to exit, records and publishes it.
    fn watch_exec(&self, id: String, exec_id: String, daemon: Daemon, ns_pid: i32, pid: u32) {
        let me = self.clone();
        tokio::spawn(async move {
            let cid = id.clone();
            let status = match daemon.call(move |c| c.wait_process(&cid, ns_pid, false)).await {
                Ok(s) => u32::try_from(s.code()).unwrap_or(255),
                Err(e) => {
                    log::warn!("container {id:?}: waiting for exec {exec_id:?}: {e}");
                    // The process is gone without a status paddockd kept: as runc's shim
                    // reports a process it lost.
                    255
                }
            };
            // What the process wrote reaches containerd before its exit does.
            if let Ok(Some(io)) = me.with(&id, |c| Ok(c.execs.get(&exec_id).map(|p| p.io.clone()))) {
                io.output_copied(OUTPUT_COPY_BOUND).await;
            }
            let exit = Exit { status, at: SystemTime::now() };
            let recorded = me.with(&id, |c| {
                if let Some(p) = c.execs.get(&exec_id) {
                    p.exit.send_replace(Some(exit));
                    p.io.close_stdin();
                }
                Ok(())
            });
            if recorded.is_ok() {
                let event = TaskExit {
                    container_id: id,
                    id: exec_id,
                    pid,
                    exit_status: exit.status,
                    exited_at: timestamp(exit.at),
                    ..Default::default()
                };
                me.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(event)).await;
            }
        });
    }
}

/// Subscribes to the event bus of `daemon`'s root (blocking, off the runtime).
async fn subscribe(daemon: &Daemon) -> Result<mpsc::UnboundedReceiver<Event>, DaemonError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let d = daemon.clone();
    tokio::task::spawn_blocking(move || d.follow_events(tx))
        .await
        .map_err(|e| DaemonError::Cancelled(e.to_string()))??;
    Ok(rx)
}

/// Mounts containerd's rootfs mounts on `<bundle>/rootfs`, as runc's shim does.
async fn mount_rootfs(bundle: &Path, mounts: &[api::Mount]) -> TtrpcResult<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    if let Err(e) = std::fs::create_dir(&target) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(status(Code::INTERNAL, format!("creating {}: {e}", target.display())));
        }
    }
    for m in mounts {
        if let Err(e) = containerd_shim::util::mount_rootfs(m, &target).await {
            unmount_rootfs(&target);
            return Err(status(Code::INTERNAL, format!("mounting the rootfs on {}: {e}", target.display())));
        }
    }
    Ok(Some(target))
}

/// Detaches whatever is mounted on `target` (every layer).
fn unmount_rootfs(target: &Path) {
    while nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

#[async_trait]
impl Task for Service {
    async fn create(&self, _ctx: &TtrpcContext, req: api::CreateTaskRequest) -> TtrpcResult<api::CreateTaskResponse> {
        let id = req.id.clone();
        log::info!("create {id}");
        if self.containers().contains_key(&id) {
            return Err(status(Code::ALREADY_EXISTS, format!("container {id:?} exists")));
        }
        let bundle = PathBuf::from(&req.bundle);
        let root = config::state_root(req.options.as_ref()).map_err(|e| status(Code::INVALID_ARGUMENT, e))?;
        let daemon = Daemon::new(root);
        config::remember(&bundle, daemon.root()).map_err(|e| status(Code::INTERNAL, e))?;
        // A checkpoint to restore (containerd's image of a `Checkpoint`): paddockd's create
        // restores it, so the container runs once created (runc's shim restores at start).
        let restore = (!req.checkpoint.is_empty())
            .then(|| wire::api::RestoreFrom { image_path: PathBuf::from(&req.checkpoint), ..Default::default() });
        let restored = restore.is_some();
        self.follow(&daemon).await?;
        let mounted = mount_rootfs(&bundle, &req.rootfs).await?;
        let paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let (cid, b, p) = (id.clone(), bundle.clone(), paths.clone());
        let created = daemon
            .call(move |client| {
                let spec = wire::spec::read_bundle_spec(&b)?;
                let spec = SpecJson::from_spec(&spec)?;
                let mut prepared = Prepared::open(&p).map_err(|e| ApiError::new(ErrorKind::Io, e.to_string()))?;
                let stdio = std::mem::take(&mut prepared.stdio);
                let state = client.create(Create { id: cid.clone(), bundle: b, spec, stdio, restore })?;
                match prepared.finish() {
                    Ok(io) => Ok((state, io)),
                    Err(e) => {
                        let _ = client.delete(&cid, true);
                        Err(ApiError::new(ErrorKind::Io, e.to_string()))
                    }
                }
            })
            .await;
        let (state, io) = match created {
            Ok(done) => done,
            Err(e) => {
                if let Some(target) = &mounted {
                    unmount_rootfs(target);
                }
                return Err(rpc_error(e));
            }
        };
        let pid = pid_u32(state.init_pid.or(state.pid));
        let mut init = Proc::new(paths.clone());
        init.pid = pid;
        init.io = io;
        self.containers().insert(
            id.clone(),
            Container {
                daemon,
                bundle: bundle.clone(),
                mounted_rootfs: mounted,
                init,
                execs: HashMap::new(),
                restored,
                starting: Arc::default(),
            },
        );
        let event = TaskCreate {
            container_id: id,
            bundle: req.bundle,
            rootfs: req.rootfs,
            io: MessageField::some(TaskIO {
                stdin: paths.stdin,
                stdout: paths.stdout,
                stderr: paths.stderr,
                terminal: paths.terminal,
                ..Default::default()
            }),
            checkpoint: req.checkpoint,
            pid,
            ..Default::default()
        };
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(event)).await;
        Ok(api::CreateTaskResponse { pid, ..Default::default() })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        let daemon = self.daemon_of(&req.id)?;
        let id = req.id.clone();
        if req.exec_id.is_empty() {
            let cid = id.clone();
            let (restored, starting) = self.with(&id, |c| Ok((std::mem::take(&mut c.restored), c.starting.clone())))?;
            let _starting = starting.lock().await;
            let state = match restored {
                true => daemon.call(move |c| c.state(&cid)).await,
                false => daemon.call(move |c| c.start(&cid)).await,
            }
            .map_err(rpc_error)?;
            let pid = pid_u32(state.init_pid.or(state.pid));
            self.with(&id, |c| {
                c.init.pid = pid;
                Ok(())
            })?;
            self.publish(
                topics::TASK_START_EVENT_TOPIC,
                Box::new(TaskStart { container_id: id, pid, ..Default::default() }),
            )
            .await;
            return Ok(api::StartResponse { pid, ..Default::default() });
        }
        let exec_id = req.exec_id.clone();
        let (process, paths) = self.with(&id, |c| {
            let p = c
                .execs
                .get_mut(&exec_id)
                .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {exec_id:?} does not exist")))?;
            let process = p
                .pending
                .take()
                .ok_or_else(|| status(Code::FAILED_PRECONDITION, format!("exec {exec_id:?} was started")))?;
            Ok((process, p.paths.clone()))
        })?;
        let cid = id.clone();
        let executed = daemon
            .call(move |client| {
                let mut prepared = Prepared::open(&paths).map_err(|e| ApiError::new(ErrorKind::Io, e.to_string()))?;
                let stdio = std::mem::take(&mut prepared.stdio);
                let spec = ExecSpec { process: Some(process), ..Default::default() };
                let executed = client.exec(Exec { id: cid, spec, stdio })?;
                let io = prepared.finish().map_err(|e| ApiError::new(ErrorKind::Io, e.to_string()))?;
                Ok((executed, io))
            })
            .await
            .map_err(rpc_error)?;
        let (executed, io) = executed;
        let pid = pid_u32(Some(executed.pid));
        self.with(&id, |c| {
            if let Some(p) = c.execs.get_mut(&req.exec_id) {
                p.pid = pid;
                p.ns_pid = executed.ns_pid;
                p.io = io;
            }
            Ok(())
        })?;
        self.watch_exec(id.clone(), req.exec_id.clone(), daemon, executed.ns_pid, pid);
        let event = TaskExecStarted { container_id: id, exec_id: req.exec_id, pid, ..Default::default() };
        self.publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(event)).await;
        Ok(api::StartResponse { pid, ..Default::default() })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        let (daemon, bundle, pid, paths, exit, pending) = self.with(&req.id, |c| {
            let p = c.process(&req.exec_id)?;
            Ok((c.daemon.clone(), c.bundle.clone(), p.pid, p.paths.clone(), p.exited(), p.pending.is_some()))
        })?;
        let task_status = if let Some(_exit) = exit {
            api::Status::STOPPED
        } else if !req.exec_id.is_empty() {
            if pending {
                api::Status::CREATED
            } else {
                api::Status::RUNNING
            }
        } else {
            let id = req.id.clone();
            let state = daemon.read(move |c| c.state(&id)).await.map_err(rpc_error)?;
            match state.status {
                wire::Status::Creating | wire::Status::Created => api::Status::CREATED,
                wire::Status::Running => api::Status::RUNNING,
                wire::Status::Paused => api::Status::PAUSED,
                wire::Status::Stopped => api::Status::STOPPED,
            }
        };
        Ok(api::StateResponse {
            id: req.id,
            bundle: bundle.display().to_string(),
            pid,
            status: task_status.into(),
            stdin: paths.stdin,
            stdout: paths.stdout,
            stderr: paths.stderr,
            terminal: paths.terminal,
            exit_status: exit.map_or(0, |e| e.status),
            exited_at: exit.map_or_else(MessageField::none, |e| timestamp(e.at)),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let mut exit = self.with(&req.id, |c| Ok(c.process(&req.exec_id)?.exit.subscribe()))?;
        let exited = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| status(Code::NOT_FOUND, format!("container {:?} was deleted", req.id)))?;
        let Some(exit) = *exited else { return Err(status(Code::INTERNAL, "no exit status")) };
        Ok(api::WaitResponse { exit_status: exit.status, exited_at: timestamp(exit.at), ..Default::default() })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let (daemon, ns_pid, exited) = self.with(&req.id, |c| {
            let p = c.process(&req.exec_id)?;
            Ok((c.daemon.clone(), p.ns_pid, p.exited().is_some()))
        })?;
        let signal = i32::try_from(req.signal).map_err(|_| status(Code::INVALID_ARGUMENT, "signal out of range"))?;
        let id = req.id.clone();
        let result = if req.exec_id.is_empty() {
            daemon.call(move |c| c.kill(&id, signal, req.all, None)).await
        } else {
            if exited {
                return Err(status(Code::NOT_FOUND, format!("exec {:?}: process already finished", req.exec_id)));
            }
            daemon.call(move |c| c.kill(&id, signal, false, Some(ns_pid))).await
        };
        result.map_err(rpc_error)?;
        Ok(Empty::new())
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            let p = self.with(&req.id, |c| {
                let p = c
                    .execs
                    .get(&req.exec_id)
                    .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {:?} does not exist", req.exec_id)))?;
                if p.pid != 0 && p.exited().is_none() {
                    return Err(status(Code::FAILED_PRECONDITION, format!("exec {:?} is running", req.exec_id)));
                }
                Ok(c.execs.remove(&req.exec_id))
            })?;
            if let Some(p) = &p {
                p.io.output_copied(OUTPUT_COPY_BOUND).await;
            }
            let (pid, exit) = p.map(|p| (p.pid, p.exited())).unwrap_or((0, None));
            return Ok(api::DeleteResponse {
                pid,
                exit_status: exit.map_or(0, |e| e.status),
                exited_at: timestamp(exit.map_or_else(SystemTime::now, |e| e.at)),
                ..Default::default()
            });
        }
        let (daemon, pid, exit, io) =
            self.with(&req.id, |c| Ok((c.daemon.clone(), c.init.pid, c.init.exited(), c.init.io.clone())))?;
        if exit.is_some() {
            io.output_copied(OUTPUT_COPY_BOUND).await;
        }
        let id = req.id.clone();
        // A container that never ran (or ran and exited) goes; a running one is refused, as
        // runc's shim refuses it.
        let deleted = daemon.call(move |c| {
            let state = c.state(&id)?;
            if matches!(state.status, wire::Status::Running | wire::Status::Paused) {
                return Err(ApiError::new(ErrorKind::InvalidStatus, format!("container {id:?} is {}", state.status)));
            }
            c.delete(&id, true)
        });
        match deleted.await {
            Ok(()) => {}
            Err(DaemonError::Api(ApiError { kind: ErrorKind::NotFound, .. })) => {}
            Err(e) => return Err(rpc_error(e)),
        }
        let removed = self.containers().remove(&req.id);
        if let Some(target) = removed.as_ref().and_then(|c| c.mounted_rootfs.as_ref()) {
            unmount_rootfs(target);
        }
        let exit = exit.unwrap_or(Exit { status: 0, at: SystemTime::now() });
        let event = TaskDelete {
            container_id: req.id.clone(),
            pid,
            exit_status: exit.status,
            exited_at: timestamp(exit.at),
            id: req.id,
            ..Default::default()
        };
        self.publish(topics::TASK_DELETE_EVENT_TOPIC, Box::new(event)).await;
        Ok(api::DeleteResponse { pid, exit_status: exit.status, exited_at: timestamp(exit.at), ..Default::default() })
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let daemon = self.daemon_of(&req.id)?;
        let id = req.id.clone();
        let list = daemon.read(move |c| c.ps(&id)).await.map_err(rpc_error)?;
        let processes =
            list.into_iter().map(|p| api::ProcessInfo { pid: pid_u32(Some(p.pid)), ..Default::default() }).collect();
        Ok(api::PidsResponse { processes, ..Default::default() })
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let process = req
            .spec
            .as_ref()
            .map(|any| String::from_utf8_lossy(&any.value).into_owned())
            .ok_or_else(|| status(Code::INVALID_ARGUMENT, "exec without a process spec"))?;
        let paths = StdioPaths { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal };
        self.with(&req.id, |c| {
            if c.execs.contains_key(&req.exec_id) {
                return Err(status(Code::ALREADY_EXISTS, format!("exec {:?} exists", req.exec_id)));
            }
            let mut p = Proc::new(paths);
            p.pending = Some(process);
            c.execs.insert(req.exec_id.clone(), p);
            Ok(())
        })?;
        let event = TaskExecAdded { container_id: req.id, exec_id: req.exec_id, ..Default::default() };
        self.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(event)).await;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TtrpcResult<Empty> {
        let io = self.with(&req.id, |c| Ok(c.process(&req.exec_id)?.io.clone()))?;
        match io.resize(req.width, req.height) {
            Ok(true) => Ok(Empty::new()),
            Ok(false) => Err(status(Code::FAILED_PRECONDITION, "the process has no terminal")),
            Err(e) => Err(status(Code::INTERNAL, format!("resizing the terminal: {e}"))),
        }
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        let io = self.with(&req.id, |c| Ok(c.process(&req.exec_id)?.io.clone()))?;
        if req.stdin {
            io.close_stdin();
        }
        Ok(Empty::new())
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        let daemon = self.daemon_of(&req.id)?;
        let id = req.id.clone();
        daemon.call(move |c| c.pause(&id)).await.map_err(rpc_error)?;
        self.publish(
            topics::TASK_PAUSED_EVENT_TOPIC,
            Box::new(TaskPaused { container_id: req.id, ..Default::default() }),
        )
        .await;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        let daemon = self.daemon_of(&req.id)?;
        let id = req.id.clone();
        daemon.call(move |c| c.resume(&id)).await.map_err(rpc_error)?;
        let event = TaskResumed { container_id: req.id, ..Default::default() };
        self.publish(topics::TASK_RESUMED_EVENT_TOPIC, Box::new(event)).await;
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        let daemon = self.daemon_of(&req.id)?;
        // containerd sends the OCI `LinuxResources` as JSON in the Any's value.
        let resources = req
            .resources
            .as_ref()
            .map(|any| String::from_utf8_lossy(&any.value).into_owned())
            .ok_or_else(|| status(Code::INVALID_ARGUMENT, "update without resources"))?;
        let id = req.id.clone();
        daemon.call(move |c| c.update(&id, resources)).await.map_err(rpc_error)?;
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        let daemon = self.daemon_of(&req.id)?;
        let id = req.id.clone();
        let json = daemon.read(move |c| c.stats(&id)).await.map_err(rpc_error)?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| status(Code::INTERNAL, format!("paddockd's stats of {:?}: {e}", req.id)))?;
        let any = containerd_shim::util::convert_to_any(crate::stats::metrics(&value))
            .map_err(|e| status(Code::INTERNAL, e))?;
        Ok(api::StatsResponse { stats: MessageField::some(any), ..Default::default() })
    }

    async fn checkpoint(&self, _ctx: &TtrpcContext, req: api::CheckpointTaskRequest) -> TtrpcResult<Empty> {
        let daemon = self.daemon_of(&req.id)?;
        // containerd passes runc's checkpoint options; their paths, when set, win over `path`.
        let options = req
            .options
            .as_ref()
            .filter(|any| any.type_url.rsplit('/').next() == Some("containerd.runc.v1.CheckpointOptions"))
            .and_then(|any| CheckpointOptions::parse_from_bytes(&any.value).ok())
            .unwrap_or_default();
        let image_path = if options.image_path.is_empty() { req.path.clone() } else { options.image_path.clone() };
        if image_path.is_empty() {
            return Err(status(Code::INVALID_ARGUMENT, "checkpoint without an image path"));
        }
        let work_path = (!options.work_path.is_empty()).then(|| PathBuf::from(&options.work_path));
        let mut criu_options: Vec<String> = [
            (options.open_tcp, "--tcp-established"),
            (options.external_unix_sockets, "--ext-unix-sk"),
            (options.terminal, "--shell-job"),
            (options.file_locks, "--file-locks"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, flag)| flag.to_string())
        .collect();
        if !options.cgroups_mode.is_empty() {
            criu_options.push(format!("--manage-cgroups={}", options.cgroups_mode));
        }
        let checkpoint = wire::api::Checkpoint {
            id: req.id.clone(),
            image_path: PathBuf::from(&image_path),
            work_path,
            leave_running: !options.exit,
            criu_options,
            criu: None,
        };
        daemon.call(move |c| c.checkpoint(checkpoint)).await.map_err(rpc_error)?;
        let event = TaskCheckpointed { container_id: req.id, checkpoint: image_path, ..Default::default() };
        self.publish(topics::TASK_CHECKPOINTED_EVENT_TOPIC, Box::new(event)).await;
        Ok(Empty::new())
    }

    async fn connect(&self, _ctx: &TtrpcContext, req: api::ConnectRequest) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.with(&req.id, |c| Ok(c.init.pid)).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<Empty> {
        // One shim serves a whole pod: it stays while any of its containers does.
        if self.containers().is_empty() {
            self.inner.exit.signal();
        }
        Ok(Empty::new())
    }
}
