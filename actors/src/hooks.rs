//! OCI hooks (runtime-spec 1.2), with the reference's failure semantics.
//!
//! `prestart`, `createRuntime`, `poststart` and `poststop` run here, in paddockd's namespaces
//! (the runtime namespace). `createContainer` runs here too, while the container's init waits
//! with its mounts set up before its pivot (as runc runs it): in the container's namespaces,
//! with the container's rootfs as working directory and the runtime's root as root, so its
//! path (and its interpreter, its libraries, the programs it runs) resolve as on the host while
//! what it mounts under its working directory lands in the container. `startContainer` runs in
//! the container's namespaces and mount tree, forked by its sandbox. Every hook gets the container's state as JSON on stdin,
//! exactly its `args` and `env`, and is killed with its process group at its `timeout`.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags};
use std::path::Path;
use std::time::Duration;

use actix::Addr;
use oci_spec::runtime::{Hook, Spec};
use tracing::{debug, warn};
use wire::sandbox_proto::{HookCall, SandboxRequest};
use wire::{ApiError, ErrorKind, GoferStatus, Status};

use crate::blocking;
use crate::meta::Meta;
use crate::process::WatchedPid;
use crate::sandbox::{Call, SandboxActor};

/// The kinds of hooks, in the order of a container's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Deprecated; after the container's namespaces exist, before `createRuntime`.
    Prestart,
    /// After the container's environment exists, in the runtime namespace.
    CreateRuntime,
    /// After `createRuntime`, in the container's namespaces; the path resolves in paddockd's.
    CreateContainer,
    /// At start, before the user's program, in the container's namespaces and mount tree.
    StartContainer,
    /// After the user's program started, before start returns; failures are warnings.
    Poststart,
    /// After delete removed the container, before it returns; failures are warnings.
    Poststop,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 6] = [
        Stage::Prestart,
        Stage::CreateRuntime,
        Stage::CreateContainer,
        Stage::StartContainer,
        Stage::Poststart,
        Stage::Poststop,
    ];

    /// The spec's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Prestart => "prestart",
            Stage::CreateRuntime => "createRuntime",
            Stage::CreateContainer => "createContainer",
            Stage::StartContainer => "startContainer",
            Stage::Poststart => "poststart",
            Stage::Poststop => "poststop",
        }
    }

    /// The hooks of this stage in `spec`.
    #[allow(deprecated)] // prestart is deprecated in the spec, and still honoured by runc.
    pub fn of(self, spec: &Spec) -> &[Hook] {
        let Some(hooks) = spec.hooks() else { return &[] };
        let list = match self {
            Stage::Prestart => hooks.prestart(),
            Stage::CreateRuntime => hooks.create_runtime(),
            Stage::CreateContainer => hooks.create_container(),
            Stage::StartContainer => hooks.start_container(),
            Stage::Poststart => hooks.poststart(),
            Stage::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }

    /// The status the container's state shows the hooks of this stage.
    fn status(self) -> Status {
        match self {
            Stage::Prestart | Stage::CreateRuntime | Stage::CreateContainer => Status::Creating,
            Stage::StartContainer => Status::Created,
            Stage::Poststart => Status::Running,
            Stage::Poststop => Status::Stopped,
        }
    }
}

/// Checks every hook of `spec`: an absolute path, a positive timeout.
pub fn validate(spec: &Spec) -> Result<(), ApiError> {
    for stage in Stage::ALL {
        for (i, hook) in stage.of(spec).iter().enumerate() {
            if !hook.path().is_absolute() {
                return Err(ApiError::invalid_spec(format!(
                    "hooks.{}[{i}].path {:?} is not an absolute path",
                    stage.name(),
                    hook.path()
                )));
            }
            if hook.timeout().is_some_and(|t| t <= 0) {
                return Err(ApiError::invalid_spec(format!(
                    "hooks.{}[{i}].timeout must be positive, not {}",
                    stage.name(),
                    hook.timeout().unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// The state a hook of `stage` reads on stdin.
fn state_json(meta: &Meta, stage: Stage) -> String {
    let mut state = meta.state(GoferStatus::Running);
    state.status = stage.status();
    // A hook reaches the container through its pid (a network hook enters its namespaces), so
    // it gets the init itself, never the monitor a pid file may name.
    state.pid = match stage {
        Stage::Poststop => None,
        _ => state.init_pid.or(meta.init.map(|r| r.pid)),
    };
    state.to_oci_json().to_string()
}

/// How long a hook without a `timeout` may run. The spec lets such a hook run forever, but a
/// hung hook would hold its container's operations (and, for the hooks the sandbox runs, its
/// whole pod) with it; this bound is far above what any hook takes.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

fn timeout_of(hook: &Hook) -> Option<Duration> {
    Some(hook.timeout().and_then(|t| u64::try_from(t).ok()).map_or(DEFAULT_TIMEOUT, Duration::from_secs))
}

fn failure(meta: &Meta, stage: Stage, i: usize, hook: &Hook, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorKind::Sandbox,
        format!("container {:?}: {} hook #{i} ({}): {e}", meta.id, stage.name(), hook.path().display()),
    )
}

/// Runs the hooks of a runtime-namespace `stage` in paddockd, one after the other; the first
/// failure is the error.
pub async fn run_here(meta: &Meta, stage: Stage) -> Result<(), ApiError> {
    run_here_with(meta, stage, Err).await
}

/// Runs the hooks of `stage` with each failure logged as a warning, the others running still:
/// poststart and poststop.
pub async fn run_here_warning_only(meta: &Meta, stage: Stage) {
    let _ = run_here_with(meta, stage, |e| {
        warn!("{e}");
        Ok(())
    })
    .await;
}

/// Runs the hooks of `stage` here; `on_failure` decides whether a failure ends the run.
async fn run_here_with(
    meta: &Meta,
    stage: Stage,
    on_failure: impl Fn(ApiError) -> Result<(), ApiError> + Send + 'static,
) -> Result<(), ApiError> {
    if stage.of(&meta.spec).is_empty() {
        return Ok(());
    }
    let meta = meta.clone();
    blocking(move || {
        let state = state_json(&meta, stage);
        let cwd = if meta.bundle.as_os_str().is_empty() { Path::new("/") } else { meta.bundle.as_path() };
        let place = sys::hook::Place { cwd: Some(cwd), ..Default::default() };
        for (i, hook) in stage.of(&meta.spec).iter().enumerate() {
            debug!(container = %meta.id, hook = %hook.path().display(), "running {} hook", stage.name());
            run_one(&meta, stage, i, hook, &state, &place).or_else(&on_failure)?;
        }
        Ok(())
    })
    .await
}

/// Runs one hook in paddockd and reaps it.
fn run_one(
    meta: &Meta,
    stage: Stage,
    i: usize,
    hook: &Hook,
    state: &str,
    place: &sys::hook::Place<'_>,
) -> Result<(), ApiError> {
    let prepared = sys::hook::prepare(
        sys::hook::Hook {
            path: hook.path().clone(),
            exe: None,
            args: hook.args().clone().unwrap_or_default(),
            env: hook.env().clone().unwrap_or_default(),
            timeout: timeout_of(hook),
        },
        state.as_bytes(),
        place,
    )
    .map_err(|e| failure(meta, stage, i, hook, e))?;
    // On the watch list from its first instant, so paddockd's orphan reaper never takes the
    // hook's exit status.
    let (running, _watched) =
        WatchedPid::spawn(|| prepared.spawn(), |r| r.pid).map_err(|e| failure(meta, stage, i, hook, e))?;
    running.wait().map_err(|e| failure(meta, stage, i, hook, e))
}

/// Whether the container's init stops before its pivot for the create hooks: it has some.
pub fn stops_before_pivot(spec: &Spec) -> bool {
    [Stage::Prestart, Stage::CreateRuntime, Stage::CreateContainer].into_iter().any(|s| !s.of(spec).is_empty())
}

/// Runs the `createContainer` hooks here, one after the other, in the namespaces of the
/// container's init (which waits before its pivot, its rootfs as working directory); the
/// first failure is the error.
pub async fn run_create_container(meta: &Meta) -> Result<(), ApiError> {
    let stage = Stage::CreateContainer;
    if stage.of(&meta.spec).is_empty() {
        return Ok(());
    }
    let pid = meta
        .init
        .map(|r| r.pid)
        .ok_or_else(|| ApiError::internal(format!("container {:?}: no process to run hooks in", meta.id)))?;
    let meta = meta.clone();
    blocking(move || {
        let open = |path: &str| -> Result<OwnedFd, ApiError> {
            rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| ApiError::io(format!("container {:?}: opening {path}", meta.id), e))
        };
        let namespaces = namespaces_of(pid)?;
        let root = open("/")?;
        let cwd = open(&format!("/proc/{pid}/cwd"))?;
        let place = sys::hook::Place {
            join: namespaces.iter().map(|(fd, typ)| (fd, *typ)).collect(),
            root: Some(&root),
            cwd_fd: Some(&cwd),
            ..Default::default()
        };
        let state = state_json(&meta, stage);
        for (i, hook) in stage.of(&meta.spec).iter().enumerate() {
            debug!(container = %meta.id, hook = %hook.path().display(), "running {} hook", stage.name());
            run_one(&meta, stage, i, hook, &state, &place)?;
        }
        Ok(())
    })
    .await
}

/// The namespaces of process `pid` that are not paddockd's own, in the order a process joins
/// them: the user namespace after those it owns may need the host's privileges for, the mount
/// namespace last. (Its PID namespace is left out: only a child could enter it.)
fn namespaces_of(pid: i32) -> Result<Vec<(OwnedFd, i32)>, ApiError> {
    let kinds = [
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("user", libc::CLONE_NEWUSER),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let mut out = Vec::new();
    for (name, typ) in kinds {
        let open = |path: String| -> Result<OwnedFd, ApiError> {
            rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| ApiError::io(path, e))
        };
        let theirs = open(format!("/proc/{pid}/ns/{name}"))?;
        let ours = open(format!("/proc/self/ns/{name}"))?;
        let same = match (rustix::fs::fstat(&theirs), rustix::fs::fstat(&ours)) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        };
        // Entering one's own user namespace is refused; the others would be no-ops.
        if !same {
            out.push((theirs, typ));
        }
    }
    Ok(out)
}

/// Runs the hooks of `startContainer` through the container's sandbox, in the container's
/// namespaces and mount tree.
pub async fn run_in_container(sandbox: &Addr<SandboxActor>, meta: &Meta, stage: Stage) -> Result<(), ApiError> {
    let hooks = stage.of(&meta.spec);
    if hooks.is_empty() {
        return Ok(());
    }
    let calls = hooks
        .iter()
        .map(|hook| HookCall {
            path: hook.path().clone(),
            exe: wire::FdSlot::Empty,
            args: hook.args().clone().unwrap_or_default(),
            env: hook.env().clone().unwrap_or_default(),
            timeout: timeout_of(hook).map(|t| t.as_secs()),
        })
        .collect();
    let request = SandboxRequest::RunHooks {
        id: meta.id.clone(),
        stage: stage.name().into(),
        hooks: calls,
        state: state_json(meta, stage),
    };
    sandbox
        .send(Call(request))
        .await
        .map_err(|_| ApiError::new(ErrorKind::Sandbox, format!("the sandbox of {:?} went away", meta.id)))??;
    Ok(())
}
