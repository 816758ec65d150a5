//! A warm pool of helpers: gofers and sandboxes started ahead of need, so that starting them
//! (namespaces, exec, the dynamic loader, the sandbox's own setup and its spawner) is off a
//! create's critical path, which then only takes one and hands it over.
//!
//! Pool members wait in `<root>/paddockd.pool/<n>/`, each with its control socket there and
//! a placeholder `--id pool-<n>` (with room on its command line for a container's id). They
//! are started exactly as a container's own helpers are ([`crate::launch::start_helper`]:
//! same binary, same namespaces, same confinement), in paddockd's cgroup, as any helper is
//! until its container's create moves it into the container's cgroup. A handover renames
//! the control socket into the container's state directory (so that a later paddockd finds it
//! where it finds any helper's), and the helper takes the container's id as its own from its
//! first request (the gofer's setup, the sandbox's root container): in its messages and on
//! its command line (see [`sys::proctitle`]).
//!
//! Gofers have fixed namespaces, so any create takes one. A sandbox's namespaces depend on
//! the spec ([`crate::spec::sandbox_namespaces`]): the pool keeps sandboxes for the flags of
//! the latest create that could use one (a new PID namespace, nothing joined by path; a user
//! namespace does not matter: the sandbox is never in it, see the spec module), starting with
//! those of the usual default spec. A restore never takes a pooled sandbox.
//!
//! Refills run in the background once a create that took from the pool is over. A miss is
//! today's launch. paddockd's stop closes the pool (kills its members and waits, removes the
//! directory); a paddockd that died leaves members that the next one kills at start-up,
//! unless a container's metadata records them (handed over before the crash; see
//! [`crate::procfs::HelperScan::under`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{info, warn};
use wire::{ApiError, ErrorKind};

use crate::config::{SupervisorConfig, GOFER_BINARY, SANDBOX_BINARY};
use crate::launch::{start_helper, AttachedHelper, GOFER_NAMESPACES};
use crate::{blocking, gofer, sandbox};

/// The pool's directory in the state root (reserved: no container id starts with it).
pub const POOL_DIR: &str = "paddockd.pool";

/// The longest container id a pooled helper can take on its command line: ids longer than
/// this get freshly started helpers.
pub const ID_ROOM: usize = 200;

/// The nice value members start at, until a handover gives them paddockd's: a refill runs
/// right after a create, while the client's next calls (start, wait, delete) are being
/// served, and its execs and helper set-ups took their CPU (`start` 2 → 5–7 ms on 2 cores).
/// At the lowest priority it takes only the CPU they leave.
const MEMBER_NICE: i32 = 19;

/// The sandbox namespaces the pool starts with: the default spec's of docker, podman and
/// `ctl` (new mount, PID, network, UTS and IPC namespaces).
const DEFAULT_SANDBOX_NAMESPACES: u64 =
    (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWNET | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) as u64;

/// The pool directory of state root `root`.
pub fn dir(root: &Path) -> PathBuf {
    root.join(POOL_DIR)
}

/// The key under which a pooled sandbox fits a spec: its namespace flags, when a sandbox for
/// it needs nothing from the spec but those (nothing to join by path) and has a PID namespace
/// of its own (killing it then kills everything it made, as the pool's cleanup assumes).
pub fn sandbox_key(spec: &oci_spec::runtime::Spec) -> Option<u64> {
    let (flags, join) = crate::spec::sandbox_namespaces(spec);
    (join.is_empty() && flags & libc::CLONE_NEWPID as u64 != 0).then_some(flags)
}

/// A helper waiting in the pool. Dropped without [`PooledHelper::hand_over`], it is killed.
pub struct PooledHelper {
    helper: Option<AttachedHelper>,
    dir: PathBuf,
    socket_name: &'static str,
}

impl PooledHelper {
    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.helper.as_ref().map_or(0, |h| h.process.pid())
    }

    /// Its pid, if it still runs (as far as its watcher knows).
    pub fn live_pid(&self) -> Option<i32> {
        self.alive().then(|| self.pid())
    }

    fn alive(&self) -> bool {
        self.helper.as_ref().is_some_and(|h| !h.process.exited_now())
    }

    /// Gives it (and what it forked: its session's process group, every thread) paddockd's
    /// own nice value back, and moves its control socket into `state_dir` (as `socket_name`,
    /// which must be the one it was started with), and hands it over. On failure it is
    /// killed.
    pub(crate) fn hand_over(mut self, state_dir: &Path, socket_name: &str) -> Result<AttachedHelper, ApiError> {
        if socket_name != self.socket_name {
            return Err(ApiError::internal(format!("a pooled {} is not a {socket_name}", self.socket_name)));
        }
        // A member started at [`MEMBER_NICE`]; the container's processes inherit from it, so
        // a handover that cannot restore the priority fails.
        let pid = rustix::process::Pid::from_raw(self.pid())
            .ok_or_else(|| ApiError::internal("a pooled helper without a pid"))?;
        rustix::process::getpriority_process(None)
            .and_then(|own| rustix::process::setpriority_pgrp(Some(pid), own))
            .map_err(|e| ApiError::io(format!("restoring the priority of pooled helper {}", self.pid()), e))?;
        let from = self.dir.join(socket_name);
        let to = state_dir.join(socket_name);
        // One rename on one filesystem: the socket is at one of the two places at any time.
        std::fs::rename(&from, &to)
            .map_err(|e| ApiError::io(format!("moving {} to {}", from.display(), to.display()), e))?;
        let _ = std::fs::remove_dir(&self.dir);
        self.helper.take().ok_or_else(|| ApiError::internal("a pooled helper handed over twice"))
    }

    /// Kills it and waits until it is gone; removes its directory.
    async fn kill(mut self) {
        if let Some(helper) = self.helper.take() {
            helper.process.kill().await;
        }
        self.remove_dir();
    }

    fn remove_dir(&self) {
        let _ = std::fs::remove_file(self.dir.join(self.socket_name));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl Drop for PooledHelper {
    fn drop(&mut self) {
        if let Some(helper) = self.helper.take() {
            // Not waited for here (the watcher reaps it): a drop cannot wait.
            let _ = helper.process.signal(libc::SIGKILL);
            self.remove_dir();
        }
    }
}

/// What a create took from the pool.
#[derive(Default)]
pub struct Taken {
    /// A gofer, if one was ready.
    pub gofer: Option<PooledHelper>,
    /// A sandbox with the namespaces the spec needs, if one was ready.
    pub sandbox: Option<PooledHelper>,
    /// The namespace flags the sandbox was made with.
    pub key: Option<u64>,
}

struct Inner {
    size: usize,
    dir: PathBuf,
    next: u64,
    gofers: Vec<PooledHelper>,
    sandboxes: Vec<(u64, PooledHelper)>,
    filling_gofers: usize,
    filling_sandboxes: usize,
    /// The namespace flags new sandboxes get.
    wanted: u64,
    closed: bool,
}

/// The pool of one supervisor (cheap to clone: shared).
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Mutex<Inner>>,
    /// Members being started (counted until they are in the pool or killed).
    in_flight: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Pool {
    /// A pool of up to `size` gofers and `size` sandboxes under state root `root` (0: none).
    pub fn new(root: &Path, size: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                size,
                dir: dir(root),
                next: 0,
                gofers: Vec::new(),
                sandboxes: Vec::new(),
                filling_gofers: 0,
                filling_sandboxes: 0,
                wanted: DEFAULT_SANDBOX_NAMESPACES,
                closed: false,
            })),
            in_flight: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes what is ready for root container `id`, whose sandbox fits `key` (see
    /// [`sandbox_key`]; `None`: no pooled sandbox fits). Sandboxes kept for other flags
    /// are let go: the pool follows the latest create.
    pub fn take(&self, id: &str, key: Option<u64>) -> Taken {
        let mut inner = self.lock();
        if inner.size == 0 || inner.closed || id.len() > ID_ROOM {
            return Taken::default();
        }
        let mut taken = Taken::default();
        while let Some(g) = inner.gofers.pop() {
            if g.alive() {
                taken.gofer = Some(g);
                break;
            }
        }
        if let Some(key) = key {
            inner.wanted = key;
            let (fit, other): (Vec<_>, Vec<_>) =
                std::mem::take(&mut inner.sandboxes).into_iter().partition(|(k, _)| *k == key);
            drop(other);
            let mut fit: Vec<PooledHelper> = fit.into_iter().map(|(_, s)| s).filter(PooledHelper::alive).collect();
            taken.sandbox = fit.pop();
            taken.key = Some(key);
            inner.sandboxes = fit.into_iter().map(|s| (key, s)).collect();
        }
        taken
    }

    /// Starts, in the background, what the pool lacks. Call it from the actix system.
    pub fn refill(&self, config: &SupervisorConfig) {
        let (gofers, sandboxes, flags) = {
            let mut inner = self.lock();
            if inner.size == 0 || inner.closed {
                return;
            }
            let gofers = inner.size.saturating_sub(inner.gofers.len() + inner.filling_gofers);
            let sandboxes = inner.size.saturating_sub(inner.sandboxes.len() + inner.filling_sandboxes);
            inner.filling_gofers += gofers;
            inner.filling_sandboxes += sandboxes;
            (gofers, sandboxes, inner.wanted)
        };
        let jobs = std::iter::repeat_n(Kind::Gofer, gofers).chain(std::iter::repeat_n(Kind::Sandbox(flags), sandboxes));
        for kind in jobs {
            let (n, dir) = {
                let mut inner = self.lock();
                inner.next += 1;
                (inner.next, inner.dir.join(inner.next.to_string()))
            };
            self.in_flight.send_modify(|c| *c += 1);
            let (pool, config) = (self.clone(), config.clone());
            actix::spawn(async move {
                let started = start_member(&config, kind, n, dir.clone()).await;
                // Decided under the lock, killed after it: a lock is never held across an await.
                let refused = {
                    let mut inner = pool.lock();
                    match kind {
                        Kind::Gofer => inner.filling_gofers -= 1,
                        Kind::Sandbox(_) => inner.filling_sandboxes -= 1,
                    }
                    match started {
                        Ok(member) if inner.closed => Some(member),
                        Ok(member) => match kind {
                            Kind::Gofer => {
                                inner.gofers.push(member);
                                None
                            }
                            // The flags changed meanwhile: it fits no create any more.
                            Kind::Sandbox(flags) if flags != inner.wanted => Some(member),
                            Kind::Sandbox(flags) => {
                                inner.sandboxes.push((flags, member));
                                None
                            }
                        },
                        Err(e) => {
                            warn!("starting a pool member: {e}");
                            let _ = std::fs::remove_dir_all(&dir);
                            None
                        }
                    }
                };
                if let Some(member) = refused {
                    member.kill().await;
                }
                pool.in_flight.send_modify(|c| *c -= 1);
            });
        }
    }

    /// Closes the pool: kills every member (those still starting too, once they are up),
    /// waits until all are gone, and removes the pool's directory.
    pub async fn close(&self) {
        let (members, dir) = {
            let mut inner = self.lock();
            inner.closed = true;
            let mut members: Vec<PooledHelper> = std::mem::take(&mut inner.gofers);
            members.extend(std::mem::take(&mut inner.sandboxes).into_iter().map(|(_, s)| s));
            (members, inner.dir.clone())
        };
        let count = members.len();
        futures_util::future::join_all(members.into_iter().map(PooledHelper::kill)).await;
        let mut in_flight = self.in_flight.subscribe();
        let _ = in_flight.wait_for(|c| *c == 0).await;
        let _ = blocking(move || {
            let _ = std::fs::remove_dir_all(&dir);
            Ok(())
        })
        .await;
        if count > 0 {
            info!(members = count, "helper pool closed");
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Gofer,
    Sandbox(u64),
}

/// Starts one pool member in `dir`.
async fn start_member(config: &SupervisorConfig, kind: Kind, n: u64, dir: PathBuf) -> Result<PooledHelper, ApiError> {
    {
        let dir = dir.clone();
        blocking(move || {
            // Root's alone, as a container's directory: its socket commands a helper.
            std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
                .create(&dir)
                .map_err(|e| ApiError::io(format!("creating {}", dir.display()), e))
        })
        .await?;
    }
    let (binary, socket_name, namespaces, what) = match kind {
        Kind::Gofer => (GOFER_BINARY, gofer::SOCKET_NAME, GOFER_NAMESPACES, "a pooled gofer"),
        Kind::Sandbox(flags) => (SANDBOX_BINARY, sandbox::SOCKET_NAME, flags, "a pooled sandbox"),
    };
    let program = config.helper(binary)?;
    let helper = start_helper(
        program,
        &format!("pool-{n}"),
        dir.join(socket_name),
        (namespaces, Vec::new()),
        ID_ROOM,
        Some(MEMBER_NICE),
        what,
    )
    .await
    .map_err(|e| ApiError::new(ErrorKind::Sandbox, format!("{what}: {e}")))?;
    Ok(PooledHelper { helper: Some(helper), dir, socket_name })
}
