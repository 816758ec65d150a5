//! Starting a container's init process.
//!
//! The sandbox forks; the child joins the container's cgroup, sets the container up (mount
//! namespace, mounts, devices, pivot_root, masked paths, process attributes) and reports over
//! the [`crate::sync`] pair: `R` when it is ready. It then blocks until the sandbox sends `S`
//! (start) and calls `execve`.

mod devices;
mod mounts;

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::fs::OFlags;
use wire::{ApiError, ErrorKind};

use crate::{process, seccomp, sync};

/// What the child needs to set up one container.
pub struct InitConfig<'a> {
    /// The container's id, for messages.
    pub id: &'a str,
    /// The container's spec.
    pub spec: &'a Spec,
    /// Where its root filesystem is attached in the sandbox's root.
    pub rootfs: PathBuf,
    /// The caller's stdio; `None` becomes `/dev/null`.
    pub stdio: [Option<OwnedFd>; 3],
    /// The caller's console socket, for a process with a terminal.
    pub console: Option<OwnedFd>,
    /// Descriptors to become the process's 3, 4, … (`--preserve-fds`).
    pub extra: Vec<OwnedFd>,
    /// Where the sandbox staged the gofer's bind mounts, in spec order.
    pub binds: Vec<PathBuf>,
    /// The container's cgroup directories.
    pub cgroups: &'a [OwnedFd],
    /// The sandbox's procfs (to write a user namespace's id maps).
    pub proc: &'a OwnedFd,
}

/// A container init that is set up and waits for start.
#[derive(Debug)]
pub struct WaitingInit {
    /// Its pid in the sandbox's namespace.
    pub pid: Pid,
    /// The sandbox's end of the sync pair.
    pub sync: OwnedFd,
    /// The container's seccomp filter (`None`: its spec has none), for the processes exec'd
    /// into it later.
    pub seccomp: Option<Arc<seccomp::Filter>>,
}

/// Forks the container's init and waits until it is set up (or failed).
///
/// On failure the child has exited (or is killed) and reaped before this returns.
///
/// The container's seccomp profile is compiled first, so that a bad one fails before anything
/// is set up; the waiting init carries it for the processes exec'd into the container later.
pub fn spawn(config: InitConfig<'_>) -> Result<WaitingInit, ApiError> {
    let seccomp =
        seccomp::for_spec(config.spec).map_err(|e| e.context(format!("container {:?}", config.id)))?.map(Arc::new);
    let maps = IdMaps::of(config.spec);
    let (parent_end, child_end) = sync::pair()?;
    // SAFETY: the sandbox is single-threaded, so the child may do anything the parent could.
    match unsafe { nix::unistd::fork() }.map_err(|e| ApiError::io("fork", e))? {
        ForkResult::Child => {
            drop(parent_end);
            let code = child_main(config, child_end, seccomp.as_ref());
            // SAFETY: _exit ends the child without running the parent's destructors or atexit
            // handlers twice.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            let InitConfig { id, stdio, console, extra, proc, .. } = config;
            drop((stdio, console, extra));
            let what = format!("container {id:?}");
            let mut got = sync::read(parent_end.as_fd());
            if matches!(&got, Ok(Some(msg)) if msg.first() == Some(&sync::MAP_IDS)) {
                got = map_ids(proc, child, &maps)
                    .and_then(|()| sync::send(&parent_end, sync::IDS_MAPPED))
                    .and_then(|()| sync::read(parent_end.as_fd()));
            }
            match got {
                Ok(Some(msg)) if msg.first() == Some(&sync::READY) => {
                    Ok(WaitingInit { pid: child, sync: parent_end, seccomp })
                }
                other => {
                    let err = sync::failure(&what, "setting up", other);
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(err)
                }
            }
        }
    }
}

/// Lets a waiting init run its program. Returns once it has called `execve` successfully.
pub fn start(id: &str, init: &WaitingInit) -> Result<(), ApiError> {
    sync::send(&init.sync, sync::START)
        .map_err(|e| ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: its process is gone: {e}")))?;
    match sync::read(init.sync.as_fd()) {
        Ok(None) => Ok(()),
        other => Err(sync::failure(&format!("container {id:?}"), "starting", other)),
    }
}

/// The child: set up, report, wait for start, exec.
fn child_main(config: InitConfig<'_>, sync: OwnedFd, seccomp: Option<&Arc<seccomp::Filter>>) -> i32 {
    let plan = match setup(&config, &sync, seccomp) {
        Ok(plan) => plan,
        Err(err) => {
            sync::send_error(&sync, &err);
            return 1;
        }
    };
    if sync::send(&sync, sync::READY).is_err() {
        return 1;
    }
    // Wait for start. End-of-file means the sandbox gave up on us.
    if !sync::expect(&sync, sync::START) {
        return 1;
    }
    let sync = match sync::place_extra_fds(&config.extra, sync) {
        Ok(sync) => sync,
        Err((sync, err)) => {
            sync::send_error(&sync, &err);
            return 1;
        }
    };
    sync::send_error(&sync, &plan.exec());
    127
}

/// Whether the spec gives the container a namespace of `typ` of its own.
pub fn wants_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|ns| ns.iter().any(|n| n.typ() == typ))
}

fn setup(
    config: &InitConfig<'_>,
    sync: &OwnedFd,
    seccomp: Option<&Arc<seccomp::Filter>>,
) -> Result<process::ExecPlan, ApiError> {
    sync::reset_process_state()?;
    // Into the container's cgroup before anything else, so it accounts for all of it.
    crate::cgroup::join(config.cgroups).map_err(|e| ApiError::io("joining the container's cgroup", e))?;
    let spec = config.spec;
    let cgroup_paths = {
        let text =
            rustix::fs::openat(config.proc, "self/cgroup", OFlags::RDONLY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(std::io::Error::from)
                .map(std::fs::File::from)
                .and_then(|mut f| {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut f, &mut text).map(|_| text)
                })
                .map_err(|e| ApiError::io("reading the container's cgroups", e))?;
        mounts::CgroupPaths::parse(&text, wants_namespace(spec, LinuxNamespaceType::Cgroup))
    };
    if wants_namespace(spec, LinuxNamespaceType::Cgroup) {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| ApiError::io("unshare cgroup namespace", e))?;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| ApiError::io("unshare mount namespace", e))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());

    let root =
        rustix::fs::open(&config.rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .map_err(|e| ApiError::io(format!("rootfs {}", config.rootfs.display()), e))?;
    let spec_mounts = spec.mounts().as_deref().unwrap_or_default();
    let mut binds: VecDeque<PathBuf> = config.binds.iter().cloned().collect();
    mounts::mount_all(root.as_fd(), spec_mounts, &mut binds, &cgroup_paths, mounts::Owners::of(spec).as_ref())?;
    if !spec_mounts.iter().any(|m| m.destination() == std::path::Path::new("/dev") && wire::mounts::is_bind(m)) {
        devices::create_default(root.as_fd())?;
    }
    let process = spec.process().as_ref().ok_or_else(|| ApiError::invalid_spec("the spec has no process"))?;
    // The working directory is created if missing, as runc does (a read-only root that lacks
    // it makes the chdir fail later with a clear message).
    let _ = sys::make_beneath(root.as_fd(), process.cwd(), sys::Create::Dir);

    pivot_root(&root)?;
    drop(root);

    let slash = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
        .map_err(|e| ApiError::io("open /", e))?;
    // As runc: the root becomes read-only last, after every mount point was created in it.
    // Only the root mount itself; the mounts on top keep their own options.
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        sys::mount_setattr(slash.as_fd(), false, libc::MOUNT_ATTR_RDONLY, 0)
            .map_err(|e| ApiError::io("making the root read-only", e))?;
    }
    if let Some(linux) = spec.linux() {
        mounts::mask_paths(slash.as_fd(), linux.masked_paths().as_deref().unwrap_or_default())?;
        mounts::readonly_paths(slash.as_fd(), linux.readonly_paths().as_deref().unwrap_or_default())?;
    }
    drop(slash);
    process::apply_limits(process, config.proc)?;
    if wants_namespace(spec, LinuxNamespaceType::User) || needs_locking(spec) {
        enter_user_namespace(sync)?;
    }
    // After the user namespace: copying the mount namespace into a less privileged one turns
    // shared mounts into slaves. And after the masks: a detached mount cannot be attached
    // beneath a shared one.
    if let Some(propagation) = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref()) {
        let (flag, recursive) = wire::mounts::propagation_of(propagation).ok_or_else(|| {
            ApiError::invalid_spec(format!("linux.rootfsPropagation {propagation:?} is not a propagation"))
        })?;
        let slash =
            rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| ApiError::io("open /", e))?;
        sys::set_propagation(slash.as_fd(), recursive, flag)
            .map_err(|e| ApiError::io(format!("setting the root's propagation to {propagation}"), e))?;
    }

    // The terminal before the process drops its privileges, as runc does: the pty is opened
    // (and its slave owned) by the container's root.
    crate::console::connect(process, config.console.as_ref(), &config.stdio)?;
    process::apply(process, seccomp)
}

/// Whether the container's read-only mounts must be locked: it has some, and its process
/// may hold CAP_SYS_ADMIN, with which it could otherwise remount them read-write.
fn needs_locking(spec: &Spec) -> bool {
    let readonly_root = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    let readonly_bind = spec.mounts().as_deref().unwrap_or_default().iter().any(|m| {
        wire::mounts::is_bind(m)
            && wire::mounts::parse_options(m.options().as_deref().unwrap_or_default()).attrs & libc::MOUNT_ATTR_RDONLY
                != 0
    });
    let may_admin = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .is_some_and(|b| b.contains(&oci_spec::runtime::Capability::SysAdmin));
    (readonly_root || readonly_bind) && may_admin
}

/// Enters a new user namespace (with a new mount namespace), whose id maps the sandbox
/// writes: the spec's `uidMappings`/`gidMappings` for a container that asks for a user
/// namespace, or 1:1 onto the host's ids to lock the mounts of one that does not.
///
/// Everything that needs the host's privileges (the mounts, devices, pivot_root, cgroup
/// namespace) is done by then, in the sandbox's user namespace; what follows (identity,
/// capabilities, seccomp, exec) happens inside the new one. The mounts end up locked, as for
/// an unprivileged container of runc: the container's root cannot unmount or remount them.
///
/// Locking, for a container without a user namespace: the kernel locks a mount's flags when its mount namespace is copied into one owned by a
/// less privileged user namespace. So the container enters a new user namespace, mapped 1:1
/// onto the host's ids (the container's root stays uid 0 for files), together with a new
/// mount namespace: its capabilities now count only in that user namespace, and
/// `mount -o remount,rw` of a locked mount fails even with CAP_SYS_ADMIN. Only a process with
/// CAP_SETUID in the parent namespace may write a full map, which the container's process no
/// longer is once it has unshared: the sandbox writes the maps for it.
fn enter_user_namespace(sync: &OwnedFd) -> Result<(), ApiError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| ApiError::io("unshare user and mount namespaces", e))?;
    sync::send(sync, sync::MAP_IDS).map_err(|e| ApiError::io("sync", e))?;
    if sync::expect(sync, sync::IDS_MAPPED) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::Sandbox, "the sandbox did not map the user namespace's ids"))
    }
}

/// The id maps of a container's user namespace, as `/proc/PID/{uid,gid}_map` take them.
struct IdMaps {
    uid: String,
    gid: String,
}

impl IdMaps {
    /// The spec's mappings when it asks for a user namespace; otherwise every id onto itself.
    fn of(spec: &Spec) -> Self {
        let lines = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            maps.as_deref()
                .unwrap_or_default()
                .iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
                .collect::<String>()
        };
        match spec.linux().as_ref() {
            Some(linux) if wants_namespace(spec, LinuxNamespaceType::User) => {
                Self { uid: lines(linux.uid_mappings()), gid: lines(linux.gid_mappings()) }
            }
            _ => Self { uid: "0 0 4294967295\n".into(), gid: "0 0 4294967295\n".into() },
        }
    }
}

/// The sandbox's side of [`enter_user_namespace`]: writes the child's id maps.
fn map_ids(proc: &OwnedFd, child: Pid, maps: &IdMaps) -> std::io::Result<()> {
    for (file, map) in [("uid_map", &maps.uid), ("gid_map", &maps.gid)] {
        let fd = rustix::fs::openat(
            proc,
            format!("{child}/{file}").as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        // One write: the kernel takes a map whole or not at all.
        rustix::io::write(&fd, map.as_bytes()).map_err(|e| {
            std::io::Error::new(std::io::Error::from(e).kind(), format!("writing {file} {:?}: {e}", map.trim()))
        })?;
    }
    Ok(())
}

/// Makes `root` the process's `/`, and detaches the sandbox's root beneath it.
fn pivot_root(root: &OwnedFd) -> Result<(), ApiError> {
    nix::unistd::fchdir(root).map_err(|e| ApiError::io("chdir into the rootfs", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| ApiError::io("pivot_root", e))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| ApiError::io("detaching the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| ApiError::io("chdir /", e))?;
    Ok(())
}
