//! Creating a container.
//!
//! A root container gets a sandbox of its own: its cgroups, its gofer and the sandbox start,
//! and the container's init is forked in the sandbox, where it waits for start. A
//! subcontainer joins an existing sandbox: as in runsc, create only registers it, and its
//! gofer and process come at start.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;
use oci_spec::runtime::LinuxNamespaceType;
use tracing::{info, warn};
use wire::api::{Create, RestoreFrom};
use wire::gofer_proto::GoferSetup;
use wire::sandbox_proto::{CreateContainer, RestoreInSandbox, SandboxReply, SandboxRequest};
use wire::{ApiError, ErrorKind, FdSlot, Object, Status};

use super::{now_rfc3339, save, ActorParts, ContainerActor, GoferHandle, Parts};
use crate::cgroups::{self, Cgroup};
use crate::config::SupervisorConfig;
use crate::events::EventBus;
use crate::gofer::GoferActor;
use crate::hooks::{self, Stage};
use crate::meta::{Meta, MetaStore, ProcessRecord, FORMAT_VERSION};
use crate::restart::RestartPolicy;
use crate::sandbox::{Call, Connected, SandboxActor};
use crate::spec::{self, Placement};
use crate::status::{self};
use crate::{blocking, procfs};

/// The sandbox a subcontainer joins.
pub(crate) struct Joined {
    /// The sandbox's actor.
    pub sandbox: Addr<SandboxActor>,
    /// The sandbox process.
    pub record: ProcessRecord,
    /// The sandbox's id.
    pub sandbox_id: String,
}

/// The gofer's setup for a container: its rootfs, overlay and bind mounts, with `io` sockets
/// to the sandbox (a fresh gofer) or `adopted` mounts (a restarted one).
pub(super) fn gofer_setup(
    config: &SupervisorConfig,
    meta: &Meta,
    io: Vec<FdSlot>,
    adopted: Vec<FdSlot>,
) -> Result<GoferSetup, ApiError> {
    let mounts = meta.spec.mounts().as_deref().unwrap_or_default();
    Ok(GoferSetup {
        id: meta.id.clone(),
        bundle: meta.bundle.clone(),
        rootfs: meta.rootfs.clone(),
        readonly_root: meta.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
        overlay: spec::overlay_of(&meta.spec, config.default_overlay)?,
        binds: wire::mounts::bind_mounts(&meta.spec),
        unreachable: wire::mounts::own_mount_destinations(mounts),
        io,
        adopted,
    })
}

/// One io socket pair per mount (the rootfs, then each bind mount in spec order): the gofer's
/// ends and the sandbox's.
pub(super) fn io_sockets(meta: &Meta) -> Result<(Vec<FdSlot>, Vec<FdSlot>), ApiError> {
    let count = 1 + wire::mounts::bind_mounts(&meta.spec).len();
    let mut gofer_ends = Vec::with_capacity(count);
    let mut sandbox_ends = Vec::with_capacity(count);
    for _ in 0..count {
        let (s, g) = UnixStream::pair().map_err(|e| ApiError::io("socketpair", e))?;
        sandbox_ends.push(FdSlot::new(OwnedFd::from(s)));
        gofer_ends.push(FdSlot::new(OwnedFd::from(g)));
    }
    Ok((gofer_ends, sandbox_ends))
}

/// The container's cgroup: the spec's `cgroupsPath` (a path relative to each hierarchy's
/// root, or systemd's `slice:prefix:name`), or paddock's own place for it.
fn cgroup_path(spec: &oci_spec::runtime::Spec, sandbox_id: &str, id: &str) -> Result<String, ApiError> {
    match spec.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()) {
        Some(path) if !path.as_os_str().is_empty() => cgroups::spec_path(&path.to_string_lossy()),
        _ => Ok(cgroups::container_path(sandbox_id, id)),
    }
}

fn new_meta(msg: &Create, spec: oci_spec::runtime::Spec, sandbox_id: &str) -> Result<Meta, ApiError> {
    let rootfs = spec::rootfs_path(&msg.bundle, &spec)?;
    let cgroup = cgroup_path(&spec, sandbox_id, &msg.id)?;
    let has_mount_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|n| n.typ() == LinuxNamespaceType::Mount));
    let host_root_mount = match has_mount_ns {
        true => None,
        false => Some(
            crate::procfs::mount_id(&rootfs).map_err(|e| ApiError::io(format!("rootfs {}", rootfs.display()), e))?,
        ),
    };
    Ok(Meta {
        format: FORMAT_VERSION,
        id: msg.id.clone(),
        sandbox_id: sandbox_id.to_string(),
        bundle: msg.bundle.clone(),
        rootfs,
        spec,
        status: Status::Creating,
        created: now_rfc3339(),
        owner: String::new(),
        sandbox: None,
        gofer: None,
        init: None,
        exit_status: None,
        sandbox_lost: false,
        gofer_restarts: 0,
        cgroup: Some(cgroup),
        restart: Default::default(),
        monitor: None,
        host_root_mount,
    })
}

/// Creates a container. Anything made is undone on failure.
pub(crate) async fn create(
    config: Arc<SupervisorConfig>,
    store: MetaStore,
    events: EventBus,
    board: crate::board::StateBoard,
    mut msg: Create,
    joined: Option<Joined>,
    pooled: crate::pool::Taken,
) -> Result<Addr<ContainerActor>, ApiError> {
    let mut spec = msg.spec.parse()?;
    spec::joined_user_namespace_maps(&mut spec)?;
    spec::validate(&spec)?;
    if let Some(linux) = spec.linux() {
        crate::netdev::validate(linux, joined.is_some())?;
    }
    RestartPolicy::of(&spec)?;
    let restart_stdio = ContainerActor::keep_stdio_for_restarts(&spec, &msg.stdio);
    if let Some(process) = spec.process() {
        spec::require_console(process, &msg.stdio)?;
    }
    if !msg.bundle.as_os_str().is_empty() && !msg.bundle.is_absolute() {
        return Err(ApiError::invalid_argument(format!("bundle {} is not an absolute path", msg.bundle.display())));
    }
    spec::overlay_of(&spec, config.default_overlay)?;
    if let Some(from) = &msg.restore {
        // Before anything is made: what cannot be restored fails at once.
        restorable(&msg.id, joined.is_some(), from)?;
        crate::criu::refuse_seccomp_listener(&msg.id, &spec, "restore")?;
        let image = from.image_path.clone();
        blocking(move || crate::criu::read_record(&image).map(drop)).await?;
        crate::criu::program(from.criu.as_deref())?;
    }
    let sandbox_id = joined.as_ref().map_or(msg.id.clone(), |j| j.sandbox_id.clone());
    let mut meta = new_meta(&msg, spec, &sandbox_id)?;
    {
        let rootfs = meta.rootfs.clone();
        blocking(move || spec::check_rootfs(&rootfs)).await?;
    }
    {
        let (store, meta) = (store.clone(), meta.clone());
        blocking(move || store.create(&meta)).await?;
    }
    let id = meta.id.clone();
    let mut parts = Parts::default();
    let built = match &joined {
        None => build_root(&config, &store, &mut meta, &mut parts, &mut msg, pooled).await,
        Some(j) => register_sub(&store, &mut meta, &mut parts, j).await,
    };
    if let Err(e) = built {
        warn!(container = %id, "create failed: {e}");
        parts.destroy().await;
        let _ = blocking(move || store.remove(&id)).await;
        // As runc's destroy after a failed create: the poststop hooks, warnings only.
        if joined.is_none() {
            hooks::run_here_warning_only(&meta, Stage::Poststop).await;
        }
        return Err(e);
    }
    let pending_stdio = joined.is_some().then(|| std::mem::take(&mut msg.stdio));
    Ok(ContainerActor {
        pending_stdio,
        restart_stdio,
        ..ContainerActor::new(ActorParts {
            meta,
            config,
            store,
            events,
            sandbox: parts.sandbox.clone().or(joined.map(|j| j.sandbox)),
            cgroup: parts.cgroups.first().cloned(),
            gofer: parts.gofer,
            board,
        })
    }
    .start())
}

/// A root container: its cgroups, gofer and sandbox, and its init in the sandbox.
async fn build_root(
    config: &SupervisorConfig,
    store: &MetaStore,
    meta: &mut Meta,
    parts: &mut Parts,
    msg: &mut Create,
    pooled: crate::pool::Taken,
) -> Result<(), ApiError> {
    let id = meta.id.clone();
    let (gofer_ends, sandbox_ends) = io_sockets(meta)?;
    let setup = gofer_setup(config, meta, gofer_ends, Vec::new())?;
    let state_dir = store.dir(&id);
    // Pooled helpers when there are (a pooled sandbox only for the very namespaces it was
    // made with), else new ones.
    let pooled_sandbox =
        pooled.sandbox.filter(|_| pooled.key.is_some() && crate::pool::sandbox_key(&meta.spec) == pooled.key);
    // The first migration into a cgroup after a quiet spell waits for an RCU grace period (the
    // kernel's one threadgroup rwsem entering its slow mode: ~8 ms on this 2-CPU host, more
    // than the rest of a pooled create), holding the cgroup mutex meanwhile, so every other
    // cgroup operation (mkdir, a resource file) waits too; migrations within a grace period
    // of it are quick. So the helpers move once this create's cgroups are made and written,
    // and no sooner; and nothing waits for the move that does not need it: pooled helpers
    // already run, so they move while they are handed over and the container is created in
    // the sandbox, whose init's own migration then shares the grace period. The move ends
    // before the container is Created, and before any cleanup.
    let pooled_pids: Vec<i32> =
        [pooled.gofer.as_ref(), pooled_sandbox.as_ref()].into_iter().flatten().filter_map(|h| h.live_pid()).collect();
    // The cgroups, the gofer and the sandbox do not need each other until the container is
    // created in the sandbox, so they are made side by side.
    let (made, gofer, sandbox) = tokio::join!(
        make_cgroups(meta, pooled_pids),
        GoferActor::launch_or_adopt(config, &id, &state_dir, setup, pooled.gofer),
        SandboxActor::launch(config, &id, &state_dir, spec::sandbox_namespaces(&meta.spec), pooled_sandbox)
    );
    let gofer = gofer.map(|launched| {
        meta.gofer = Some(launched.record);
        parts.gofer = Some(GoferHandle::from(launched));
    });
    if let Ok((Connected { addr, .. }, record)) = &sandbox {
        parts.sandbox = Some(addr.clone());
        meta.sandbox = Some(*record);
    }
    let (cgroup, sandbox_cgroup, pooled_moving) = made?;
    parts.cgroups = vec![cgroup.clone(), sandbox_cgroup.clone()];
    let pooled_moving = pooled_moving?;
    let sandbox = match gofer.and(sandbox) {
        Ok((Connected { addr, .. }, _)) => addr,
        Err(e) => {
            let _ = finish_blocking(pooled_moving).await;
            return Err(e);
        }
    };
    // The sandbox and its gofers live in the sandbox's own cgroup: the helpers launched here
    // (none was pooled, or a pooled one had died) move once they exist.
    let launched: Vec<i32> = [meta.sandbox, meta.gofer].iter().flatten().map(|r| r.pid).collect();
    let moving = async {
        let moved = finish_blocking(pooled_moving).await?;
        let rest: Vec<i32> = launched.into_iter().filter(|pid| !moved.contains(pid)).collect();
        if rest.is_empty() {
            return Ok(());
        }
        let sandbox_cgroup = sandbox_cgroup.clone();
        blocking(move || sandbox_cgroup.add_all(&rest)).await
    };
    // Not saved yet: one metadata write per transition, and the next is Created. A paddockd
    // that dies before it finds the container Creating on disk and these helpers by their
    // command line and state directory (`procfs::HelperScan`), kills them (the sandbox is
    // PID 1 of its namespace: the container's init, if it exists yet, goes with it) and
    // removes the cgroups and the directory (`recover`).
    let restore = msg.restore.take();
    let restoring = restore.is_some();
    let stdio = std::mem::take(&mut msg.stdio);
    let (moved, created) =
        tokio::join!(moving, init_in_sandbox(&sandbox, meta, &cgroup, &state_dir, stdio, sandbox_ends, restore));
    moved?;
    let host_pid = created?;
    meta.init = Some(procfs::record(host_pid).map_err(|e| ApiError::io("reading the container's start time", e))?);
    if restoring {
        // As runc's restore: the runtime-namespace hooks of create run (a network hook sets up
        // the new sandbox's network) once the processes exist; a failure fails the restore.
        // The container-namespace and start hooks ran in the checkpointed container's life.
        hooks::run_here(meta, Stage::Prestart).await?;
        hooks::run_here(meta, Stage::CreateRuntime).await?;
        // Restored processes run at once: the container never waits for start.
        meta.status = status::transition(&id, meta.status, Status::Created)?;
        meta.status = status::transition(&id, meta.status, Status::Running)?;
        save(store, meta).await?;
        info!(container = %id, pid = host_pid, "container restored");
        return Ok(());
    }
    create_hooks(&sandbox, meta).await?;
    meta.status = status::transition(&id, meta.status, Status::Created)?;
    save(store, meta).await?;
    info!(container = %id, pid = host_pid, "container created");
    Ok(())
}

/// Creates the container's init in the sandbox (first launch or restore), once its network
/// interfaces are in the sandbox's namespace; returns its host pid.
async fn init_in_sandbox(
    sandbox: &Addr<SandboxActor>,
    meta: &Meta,
    cgroup: &Arc<Cgroup>,
    state_dir: &Path,
    stdio: wire::Stdio,
    mounts: Vec<FdSlot>,
    restore: Option<RestoreFrom>,
) -> Result<i32, ApiError> {
    // The interfaces go into the sandbox's network namespace before the container's init
    // exists, so that it, and the createRuntime hooks, find them there (as runc's do).
    if let (Some(linux), Some(record)) = (meta.spec.linux().clone(), meta.sandbox) {
        blocking(move || crate::netdev::move_in(&linux, &record)).await?;
    }
    let cgroup_dirs = {
        let cgroup = cgroup.clone();
        blocking(move || cgroup.open_dirs()).await?
    };
    let restore = match restore {
        Some(from) => {
            let (meta, state_dir) = (meta.clone(), state_dir.to_path_buf());
            Some(blocking(move || restore_in_sandbox(&meta, &from, &state_dir)).await?)
        }
        None => None,
    };
    let restore_log = restore.as_ref().map(|r| r.work.join(crate::criu::RESTORE_LOG));
    let launch = restore.map_or(Launch::First, |r| Launch::Restore(Box::new(r.request)));
    match (create_in_sandbox(sandbox, meta, stdio, mounts, cgroup_dirs, launch).await, restore_log) {
        (Ok(pid), _) => Ok(pid),
        // CRIU ran and failed: its log says why.
        (Err(e), Some(log)) if e.kind == ErrorKind::Criu => {
            blocking(move || Ok(crate::criu::failure("restore", &log, &e.to_string()))).await.and_then(Err)
        }
        (Err(e), _) => Err(e),
    }
}

/// Refuses what a restore cannot bring back yet, and what it is not given right.
fn restorable(id: &str, joins: bool, from: &RestoreFrom) -> Result<(), ApiError> {
    if joins {
        return Err(ApiError::new(
            ErrorKind::Unsupported,
            format!(
                "restore of {id:?}: a container of a pod (restoring into an existing sandbox) cannot be restored yet"
            ),
        ));
    }
    for path in [Some(&from.image_path), from.work_path.as_ref()].into_iter().flatten() {
        if !path.is_absolute() {
            return Err(ApiError::invalid_argument(format!("{} is not an absolute path", path.display())));
        }
    }
    crate::criu::check_options(&from.criu_options)
}

/// A restore's request to the sandbox, and CRIU's work directory.
struct PlannedRestore {
    request: RestoreInSandbox,
    work: PathBuf,
}

/// Reads the checkpoint's record and prepares what the sandbox needs to run CRIU.
fn restore_in_sandbox(meta: &Meta, from: &RestoreFrom, state_dir: &Path) -> Result<PlannedRestore, ApiError> {
    let record = crate::criu::read_record(&from.image_path)?;
    let work = from.work_path.clone().unwrap_or_else(|| from.image_path.clone());
    std::fs::create_dir_all(&work).map_err(|e| ApiError::io("mkdir", e).on(Object::Path(work.clone())))?;
    // A log of an earlier restore in the same work directory must not be taken for this one's.
    let _ = std::fs::remove_file(work.join(crate::criu::RESTORE_LOG));
    let (root_mountpoint, binds_mountpoint) = (state_dir.join("criu-root"), state_dir.join("criu-binds"));
    for dir in [&root_mountpoint, &binds_mountpoint] {
        match std::fs::create_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(ApiError::io("mkdir", e).on(Object::Path(dir.to_path_buf())))
            }
            _ => {}
        }
    }
    let bind_keys = wire::mounts::bind_mounts(&meta.spec)
        .iter()
        .map(|b| crate::criu::bind_key(&b.destination))
        .collect::<Result<Vec<_>, _>>()?;
    let namespace = |ns: &str| -> Result<FdSlot, ApiError> {
        let path = format!("/proc/self/ns/{ns}");
        std::fs::File::open(&path).map(|f| FdSlot::new(OwnedFd::from(f))).map_err(|e| ApiError::io(path, e))
    };
    let request = RestoreInSandbox {
        criu: crate::criu::program(from.criu.as_deref())?,
        args: crate::criu::restore_args(&from.image_path, &work, meta.cgroup.as_deref(), &record, &from.criu_options)?,
        root_mountpoint,
        binds_mountpoint,
        bind_keys,
        stdio_keys: record.stdio.clone(),
        console_key: record.console.clone(),
        host_mnt: namespace("mnt")?,
        host_cgroup: namespace("cgroup")?,
    };
    Ok(PlannedRestore { request, work })
}

/// The hooks of create, while the container's init has its mounts set up and waits before
/// its pivot (as runc runs them): `prestart` and `createRuntime` here, `createContainer` here
/// too but in the container's namespaces; then the init finishes its setup. A failure fails
/// the create (and the caller destroys what was made).
pub(super) async fn create_hooks(sandbox: &Addr<SandboxActor>, meta: &Meta) -> Result<(), ApiError> {
    if !hooks::stops_before_pivot(&meta.spec) {
        return Ok(());
    }
    hooks::run_here(meta, Stage::Prestart).await?;
    hooks::run_here(meta, Stage::CreateRuntime).await?;
    hooks::run_create_container(meta).await?;
    let id = meta.id.clone();
    sandbox
        .send(Call(SandboxRequest::FinishCreate { id: id.clone() }))
        .await
        .map_err(|_| ApiError::new(ErrorKind::Sandbox, format!("the sandbox of {id:?} went away")))??;
    Ok(())
}

/// A move of processes into a cgroup, running on a blocking thread: it is always awaited
/// ([`finish_blocking`]) before the create returns, so that no cleanup races it.
type Moving = tokio::task::JoinHandle<Result<Vec<i32>, ApiError>>;

/// The pids a [`Moving`] moved.
async fn finish_blocking(moving: Moving) -> Result<Vec<i32>, ApiError> {
    moving.await.map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
}

/// Makes a new sandbox's cgroups (the container's, the sandbox's), applies the container's
/// resources, and starts moving the already running (pooled) helpers `pids` into the
/// sandbox's cgroup. The cgroups are returned even when a later step failed, so that the
/// cleanup removes them.
async fn make_cgroups(
    meta: &Meta,
    pids: Vec<i32>,
) -> Result<(Arc<Cgroup>, Arc<Cgroup>, Result<Moving, ApiError>), ApiError> {
    let (path, sandbox_id) = (meta.cgroup.clone().unwrap_or_default(), meta.id.clone());
    let (cgroup, sandbox_cgroup) = blocking(move || {
        let (cgroup, sandbox_cgroup) = Cgroup::create_for_sandbox(&sandbox_id, &path)?;
        Ok((Arc::new(cgroup), Arc::new(sandbox_cgroup)))
    })
    .await?;
    let moving = apply_resources(meta, &cgroup).await.map(|()| {
        let sandbox_cgroup = sandbox_cgroup.clone();
        tokio::task::spawn_blocking(move || sandbox_cgroup.add_running(&pids))
    });
    Ok((cgroup, sandbox_cgroup, moving))
}

/// Sets the spec's `linux.resources` (with the devices every container needs) on the
/// container's cgroup, before any of its processes joins it.
async fn apply_resources(meta: &Meta, cgroup: &Arc<Cgroup>) -> Result<(), ApiError> {
    let resources = spec::container_resources(&meta.spec);
    let cgroup = cgroup.clone();
    blocking(move || cgroup.apply(&resources)).await
}

/// A subcontainer: its cgroup now, everything else at start.
async fn register_sub(store: &MetaStore, meta: &mut Meta, parts: &mut Parts, joined: &Joined) -> Result<(), ApiError> {
    let path = meta.cgroup.clone().unwrap_or_default();
    let cgroup = blocking(move || Cgroup::create(&path).map(Arc::new)).await?;
    parts.cgroups = vec![cgroup.clone()];
    apply_resources(meta, &cgroup).await?;
    meta.sandbox = Some(joined.record);
    meta.status = status::transition(&meta.id, meta.status, Status::Created)?;
    save(store, meta).await?;
    info!(container = %meta.id, sandbox = %joined.sandbox_id, "subcontainer created");
    Ok(())
}

/// How a container's first process comes to be in its sandbox.
#[derive(Debug)]
pub(super) enum Launch {
    /// Its init, for the first time, on the mounts its gofer hands over; it stops before its
    /// pivot when the spec has create hooks.
    First,
    /// Its init again after it exited (a restart), on the mounts it had; no create hooks.
    Again,
    /// Its processes, restored from a checkpoint with this plan; no create hooks.
    Restore(Box<RestoreInSandbox>),
}

/// Creates the container in its sandbox: the sandbox receives the mounts from the gofer (for
/// a first launch or a restore) and forks the container's init, which waits for start, or has
/// CRIU restore its processes. Returns the init's host pid.
pub(super) async fn create_in_sandbox(
    sandbox: &Addr<SandboxActor>,
    meta: &Meta,
    stdio: wire::Stdio,
    mounts: Vec<FdSlot>,
    cgroups: Vec<OwnedFd>,
    launch: Launch,
) -> Result<i32, ApiError> {
    let id = meta.id.clone();
    // A first launch stops before its pivot for the create hooks; a restart or a restore runs
    // none of them.
    let stop_before_pivot = matches!(launch, Launch::First) && hooks::stops_before_pivot(&meta.spec);
    let (again, restore) = match launch {
        Launch::First => (false, None),
        Launch::Again => (true, None),
        Launch::Restore(plan) => (false, Some(plan)),
    };
    // A restored container's processes have their filters already.
    let seccomp_relay = match (&restore, crate::seccomp_agent::Listener::of(&meta.spec)) {
        (None, Some(listener)) => FdSlot::new(crate::seccomp_agent::relay(crate::seccomp_agent::Delivery::new(
            listener,
            &meta.id,
            meta.bundle.clone(),
            &meta.spec,
            "creating",
        ))?),
        _ => FdSlot::Empty,
    };
    let reply = sandbox
        .send(Call(SandboxRequest::Create(CreateContainer {
            id: id.clone(),
            bundle: meta.bundle.clone(),
            spec: wire::SpecJson::from_spec(&meta.spec)?,
            root: meta.is_root(),
            stdio,
            mounts,
            cgroups: cgroups.into_iter().map(FdSlot::new).collect(),
            pid_ns: pid_namespace_to_join(meta)?,
            mount_ns: mount_namespace_to_enter(meta)?,
            cgroup_ns: namespace_to_join(meta, LinuxNamespaceType::Cgroup)?,
            user_ns: namespace_to_join(meta, LinuxNamespaceType::User)?,
            time_ns: namespace_to_join(meta, LinuxNamespaceType::Time)?,
            again,
            restore,
            stop_before_pivot,
            seccomp_relay,
        })))
        .await
        .map_err(|_| ApiError::new(ErrorKind::Sandbox, format!("the sandbox of {id:?} went away")))??;
    let SandboxReply::Created { pidfd, .. } = reply else {
        return Err(ApiError::new(ErrorKind::Protocol, format!("sandbox of {id:?}: unexpected reply {reply:?}")));
    };
    let pidfd = pidfd
        .as_fd()
        .ok_or_else(|| ApiError::new(ErrorKind::Protocol, format!("sandbox of {id:?}: no pidfd for the process")))?;
    procfs::pidfd_pid(pidfd).map_err(|e| ApiError::io("reading the container's pid", e))
}

/// The PID namespace a root container's spec names by path, opened here on the host (as
/// runc opens it) for the sandbox to place the container's init in. A pod member's path names
/// its pod's, which the sandbox has.
fn pid_namespace_to_join(meta: &Meta) -> Result<FdSlot, ApiError> {
    if !meta.is_root() {
        return Ok(FdSlot::Empty);
    }
    namespace_to_join(meta, LinuxNamespaceType::Pid)
}

/// The namespace of type `typ` that the spec names by path, opened here on the host (as runc
/// opens it, before anything of the container exists). Empty when it names none.
fn namespace_to_join(meta: &Meta, typ: LinuxNamespaceType) -> Result<FdSlot, ApiError> {
    let path = listed_namespace(meta, typ).and_then(|n| n.path().clone());
    let Some(path) = path else { return Ok(FdSlot::Empty) };
    let file = std::fs::File::open(&path)
        .map_err(|e| ApiError::invalid_spec(format!("{typ:?} namespace path {}: {e}", path.display())))?;
    let fd = OwnedFd::from(file);
    // A path that names something else (a file, another type's namespace) would be refused by
    // setns deep in the sandbox with EINVAL; here the error can say what it is.
    if procfs::namespace_type(&fd).ok() != Some(clone_flag(typ)) {
        return Err(ApiError::invalid_spec(format!(
            "{typ:?} namespace path {}: not a {typ:?} namespace",
            path.display()
        )));
    }
    Ok(FdSlot::new(fd))
}

/// The mount namespace the container's init enters (see [`CreateContainer::mount_ns`]): the
/// spec's path, or when the spec gives it none, paddockd's own (the host's).
fn mount_namespace_to_enter(meta: &Meta) -> Result<FdSlot, ApiError> {
    if listed_namespace(meta, LinuxNamespaceType::Mount).is_some() {
        return namespace_to_join(meta, LinuxNamespaceType::Mount);
    }
    let file =
        std::fs::File::open("/proc/self/ns/mnt").map_err(|e| ApiError::io("opening paddockd's mount namespace", e))?;
    Ok(FdSlot::new(OwnedFd::from(file)))
}

fn listed_namespace(meta: &Meta, typ: LinuxNamespaceType) -> Option<&oci_spec::runtime::LinuxNamespace> {
    meta.spec.linux().as_ref()?.namespaces().as_ref()?.iter().find(|n| n.typ() == typ)
}

/// The `CLONE_NEW*` flag of a namespace type.
fn clone_flag(typ: LinuxNamespaceType) -> i32 {
    match typ {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// Where a container of `spec` goes, and for a new sandbox, which pooled sandbox fits it
/// (see [`crate::pool::sandbox_key`]), from one parse (for the supervisor).
pub(crate) fn placement_and_pool_key(spec: &wire::SpecJson) -> Result<(Placement, Option<u64>), ApiError> {
    let spec = spec.parse()?;
    Ok((spec::placement(&spec)?, crate::pool::sandbox_key(&spec)))
}
