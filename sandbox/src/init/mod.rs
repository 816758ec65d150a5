//! Starting a container's init process.
//!
//! The sandbox asks its spawner for the process ([`create`]); the spawner forks it as the
//! sandbox's child ([`child`]), in a PID namespace of its own unless the spec shares one. The
//! child first drops every descriptor it was not given, then waits until the sandbox has
//! placed it in the container's cgroups (from outside: the child never holds a cgroup
//! directory), sets the container up (mount namespace, mounts, devices, pivot_root, masked
//! and read-only paths, process attributes) and reports over the [`crate::sync`] pair: `R`
//! when it is ready. It then blocks until the sandbox sends `S` (start) and calls `execve`.
//!
//! Until then nothing can see it: it is PID 1 of a namespace with nothing else in it (or, in
//! a shared or the host's namespace, non-dumpable, holding nothing of the sandbox's).

mod devices;
mod mounts;
pub mod time;

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::fs::OFlags;
use wire::{ApiError, ErrorKind, FdSlot};

use crate::spawner::jobs::{Done, InitJob, Job};
use crate::spawner::Spawner;
use crate::{process, seccomp, sync};

/// A container init that is set up and waits for start.
#[derive(Debug)]
pub struct WaitingInit {
    /// Its pid in the sandbox's namespace.
    pub pid: Pid,
    /// The sandbox's end of the sync pair.
    pub sync: OwnedFd,
    /// Set while it waits before its pivot for the create hooks (see [`finish`]): the id maps
    /// it may ask for once it goes on.
    pub before_pivot: Option<IdMaps>,
}

/// Has the spawner fork the container's init (and place it in the container's cgroups), and
/// waits until it is set up (or failed).
///
/// On failure the child has exited (or is killed) and reaped before this returns.
pub fn create(spawner: &mut Spawner, mut job: InitJob) -> Result<WaitingInit, ApiError> {
    let what = format!("container {:?}", job.id);
    let maps = IdMaps::of(&job.spec.parse()?);
    let stop_before_pivot = job.stop_before_pivot;
    let (parent_end, child_end) = sync::pair()?;
    job.sync = FdSlot::new(child_end);
    let pid = match spawner.call(Job::Init(Box::new(job)))? {
        Done::Spawned(pid) => Pid::from_raw(pid),
        other => return Err(ApiError::new(ErrorKind::Protocol, format!("the spawner answered {other:?}"))),
    };
    let handshake = (|| {
        // The spawner placed it in the container's cgroups before it answered.
        sync::send(&parent_end, sync::PLACED).map_err(|e| ApiError::io("sync", e))?;
        let got = sync::read(parent_end.as_fd());
        if stop_before_pivot && matches!(&got, Ok(Some(msg)) if msg.first() == Some(&sync::BEFORE_PIVOT)) {
            return Ok(true);
        }
        after_pivot(spawner, pid, &parent_end, &maps, got, &what).map(|()| false)
    })();
    match handshake {
        Ok(stopped) => Ok(WaitingInit { pid, sync: parent_end, before_pivot: stopped.then_some(maps) }),
        Err(err) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            Err(err)
        }
    }
}

/// The rest of the handshake, from the child's message `got` after its mounts: its id maps
/// when it asks for them, then ready.
fn after_pivot(
    spawner: &mut Spawner,
    pid: Pid,
    sync_end: &OwnedFd,
    maps: &IdMaps,
    mut got: std::io::Result<Option<Vec<u8>>>,
    what: &str,
) -> Result<(), ApiError> {
    if matches!(&got, Ok(Some(msg)) if msg.first() == Some(&sync::MAP_IDS)) {
        spawner.call(Job::MapIds { pid: pid.as_raw(), uid_map: maps.uid.clone(), gid_map: maps.gid.clone() })?;
        got = sync::send(sync_end, sync::IDS_MAPPED).and_then(|()| sync::read(sync_end.as_fd()));
    }
    match got {
        Ok(Some(msg)) if msg.first() == Some(&sync::READY) => Ok(()),
        other => Err(sync::failure(what, "setting up", other)),
    }
}

/// Lets an init that waits before its pivot (the create hooks ran) finish its setup; returns
/// once it waits for start. On failure it is killed, and reaped as any exited init.
pub fn finish(spawner: &mut Spawner, id: &str, pid: Pid, sync_end: &OwnedFd, maps: &IdMaps) -> Result<(), ApiError> {
    let what = format!("container {id:?}");
    let result = sync::send(sync_end, sync::HOOKS_RAN)
        .map_err(|e| ApiError::new(ErrorKind::Sandbox, format!("{what}: its process is gone: {e}")))
        .and_then(|()| after_pivot(spawner, pid, sync_end, maps, sync::read(sync_end.as_fd()), &what));
    if result.is_err() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    result
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

/// What the child holds.
struct Given {
    sync: OwnedFd,
    stdio: [Option<OwnedFd>; 3],
    console: Option<OwnedFd>,
    extra: Vec<OwnedFd>,
    joins: Joined,
}

/// The existing namespaces the container enters (see [`crate::spawner::jobs::Joins`]).
struct Joined {
    mount: Option<OwnedFd>,
    cgroup: Option<OwnedFd>,
    user: Option<OwnedFd>,
    time: Option<OwnedFd>,
}

/// The child, forked by the spawner: set up, report, wait for start, exec. Returns the exit
/// code when it cannot exec.
pub fn child(mut job: InitJob, spec: &Spec, seccomp: Option<Arc<seccomp::Filter>>, proc: &OwnedFd) -> i32 {
    let Some(sync) = job.sync.take() else { return 1 };
    let relay = job.seccomp_relay.take();
    let given = Given {
        sync,
        stdio: [job.stdio.stdin.take(), job.stdio.stdout.take(), job.stdio.stderr.take()],
        console: job.stdio.console.take(),
        extra: job.stdio.extra.iter_mut().filter_map(FdSlot::take).collect(),
        joins: Joined {
            mount: job.joins.mount.take(),
            cgroup: job.joins.cgroup.take(),
            user: job.joins.user.take(),
            time: job.joins.time.take(),
        },
    };
    // Nothing but what it was given: the spawner's socket, the sandbox's stdio, the other
    // requests' descriptors are not its to hold.
    let mut keep: Vec<i32> = vec![given.sync.as_raw_fd(), proc.as_raw_fd()];
    keep.extend(relay.iter().map(|f| f.as_raw_fd()));
    keep.extend(given.stdio.iter().flatten().map(|f| f.as_raw_fd()));
    keep.extend(given.console.iter().map(|f| f.as_raw_fd()));
    keep.extend(given.extra.iter().map(|f| f.as_raw_fd()));
    keep.extend(
        [&given.joins.mount, &given.joins.cgroup, &given.joins.user, &given.joins.time]
            .into_iter()
            .flatten()
            .map(|f| f.as_raw_fd()),
    );
    if sys::close_all_except(&keep).is_err() {
        return 1;
    }
    let config = InitConfig {
        spec,
        rootfs: job.rootfs.clone(),
        binds: job.binds.clone(),
        host_root: job.host_root.clone(),
        proc,
        stop_before_pivot: job.stop_before_pivot,
    };
    let plan = match setup(&config, &given, seccomp.as_ref(), relay) {
        Ok(plan) => plan,
        Err(err) => {
            sync::send_error(&given.sync, &err);
            return 1;
        }
    };
    // Set up: from here on it holds its stdio (now 0, 1, 2), its sync socket and the
    // descriptors it passes on, and nothing else (the sandbox's procfs least of all).
    let Given { sync, stdio, console, extra, joins } = given;
    let mut keep = vec![0, 1, 2, sync.as_raw_fd()];
    keep.extend(extra.iter().map(|f| f.as_raw_fd()));
    let closed = sys::close_all_except(&keep);
    // Closed above (or moved onto 0, 1, 2): not to be closed again.
    std::mem::forget((stdio, console, joins));
    if closed.is_err() || sync::send(&sync, sync::READY).is_err() {
        return 1;
    }
    // Wait for start. End-of-file means the sandbox gave up on us.
    if !sync::expect(&sync, sync::START) {
        return 1;
    }
    let sync = match sync::place_extra_fds(&extra, sync) {
        Ok(sync) => sync,
        Err((sync, err)) => {
            sync::send_error(&sync, &err);
            return 1;
        }
    };
    sync::send_error(&sync, &plan.exec());
    127
}

/// What the child's setup needs.
struct InitConfig<'a> {
    /// The container's spec.
    spec: &'a Spec,
    /// Where its root filesystem is attached in the sandbox's root.
    rootfs: PathBuf,
    /// Where the sandbox staged the gofer's bind mounts, in spec order.
    binds: Vec<PathBuf>,
    /// Its root filesystem's path on the host, where a container without a mount namespace
    /// has its tree attached.
    host_root: PathBuf,
    /// The sandbox's procfs (the child sees itself in it).
    proc: &'a OwnedFd,
    /// Wait before the pivot for the create hooks.
    stop_before_pivot: bool,
}

/// Whether the spec gives the container a namespace of `typ` of its own.
pub fn wants_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|ns| ns.iter().any(|n| n.typ() == typ))
}

fn setup(
    config: &InitConfig<'_>,
    given: &Given,
    seccomp: Option<&Arc<seccomp::Filter>>,
    relay: Option<OwnedFd>,
) -> Result<process::ExecPlan, ApiError> {
    let sync = &given.sync;
    sync::reset_process_state()?;
    // The sandbox places it in the container's cgroups before anything else, so that they
    // account for all of it.
    if !sync::expect(sync, sync::PLACED) {
        return Err(ApiError::new(ErrorKind::Sandbox, "the sandbox did not place the process in its cgroups"));
    }
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
    if let Some(ns) = &given.joins.cgroup {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| ApiError::io("joining the spec's cgroup namespace", e))?;
    } else if wants_namespace(spec, LinuxNamespaceType::Cgroup) {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| ApiError::io("unshare cgroup namespace", e))?;
    }
    if let Some(ns) = &given.joins.time {
        // Its offsets are the namespace's already (the spec may give none: they are fixed
        // once a process is in it).
        time::enter(ns).map_err(|e| ApiError::io("joining the spec's time namespace", e))?;
    } else if wants_namespace(spec, LinuxNamespaceType::Time) {
        let offsets = spec.linux().as_ref().and_then(|l| l.time_offsets().clone()).unwrap_or_default();
        time::unshare_with_offsets(config.proc, &offsets)?;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| ApiError::io("unshare mount namespace", e))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());

    let root =
        rustix::fs::open(&config.rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .map_err(|e| ApiError::io(format!("rootfs {}", config.rootfs.display()), e))?;
    let spec_mounts = spec.mounts().as_deref().unwrap_or_default();
    let mut binds: VecDeque<PathBuf> = config.binds.iter().cloned().collect();
    let owners = mounts::Owners::of(spec);
    let propagations = mounts::mount_all(root.as_fd(), spec_mounts, &mut binds, &cgroup_paths, owners.as_ref())?;
    let process = spec.process().as_ref().ok_or_else(|| ApiError::invalid_spec("the spec has no process"))?;
    // As runc: a /dev bind-mounted from the host is the host's business, nothing is made in it.
    if !spec_mounts.iter().any(|m| m.destination() == std::path::Path::new("/dev") && wire::mounts::is_bind(m)) {
        let devices = spec.linux().as_ref().and_then(|l| l.devices().as_deref()).unwrap_or_default();
        devices::create_all(root.as_fd(), devices, owners.as_ref(), process.terminal().unwrap_or(false))?;
    }
    // The working directory is created if missing, as runc does (a read-only root that lacks
    // it makes the chdir fail later with a clear message).
    let _ = sys::make_beneath(root.as_fd(), process.cwd(), sys::Create::Dir);

    if config.stop_before_pivot {
        // As runc: the create hooks run now, with the mounts in place and the old root still
        // there; from the rootfs as working directory (where paddockd finds it).
        nix::unistd::fchdir(&root).map_err(|e| ApiError::io("chdir into the rootfs", e))?;
        sync::send(sync, sync::BEFORE_PIVOT).map_err(|e| ApiError::io("sync", e))?;
        if !sync::expect(sync, sync::HOOKS_RAN) {
            return Err(ApiError::new(
                ErrorKind::Sandbox,
                "the sandbox did not let the setup go on after the create hooks",
            ));
        }
    }

    let own_mount_ns = given.joins.mount.is_none();
    match &given.joins.mount {
        None => {
            pivot_root(&root)?;
            // Closed now: opened after the descriptors were cleared, it may sit on 0, 1 or 2,
            // which the stdio is about to take (dropped later, it would close one of those).
            drop(root);
        }
        Some(ns) => {
            enter_mount_namespace(root, ns, wants_namespace(spec, LinuxNamespaceType::Mount), &config.host_root)?
        }
    }

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
    crate::attributes::apply(process, spec.linux().as_ref())?;
    if let Some(ns) = &given.joins.user {
        // Its maps are written already. A mount namespace of the container's own is copied
        // into one the joined user namespace owns, which locks its mounts; a joined or the
        // host's mount namespace stays what it is.
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER)
            .map_err(|e| ApiError::io("joining the spec's user namespace", e))?;
        if own_mount_ns {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| ApiError::io("unshare mount namespace", e))?;
        }
    } else if wants_namespace(spec, LinuxNamespaceType::User) || (own_mount_ns && needs_locking(spec)) {
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
    // Each mount's own option after the root's, as runc (whose root propagation comes first).
    if !propagations.is_empty() {
        let slash =
            rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| ApiError::io("open /", e))?;
        mounts::apply_propagations(slash.as_fd(), &propagations)?;
    }

    // The terminal before the process drops its privileges, as runc does: the pty is opened
    // (and its slave owned) by the container's root.
    crate::console::connect(process, given.console.as_ref(), &given.stdio, crate::console::Console::Bind)?;
    process::apply(process, seccomp, relay)
}

/// Moves the container's tree, set up in a mount namespace of its own, into an existing one:
/// the one its spec names (`joined`: it pivots there, as runc's container does) or, for a
/// container without a mount namespace, the host's (its tree is attached on its root
/// filesystem's path there, as runc's mounts are, and it chroots into it; paddockd detaches it
/// when the container is deleted).
fn enter_mount_namespace(
    root: OwnedFd,
    ns: &OwnedFd,
    joined: bool,
    host_root: &std::path::Path,
) -> Result<(), ApiError> {
    let tree = sys::clone_tree(root.as_fd(), true).map_err(|e| ApiError::io("copying the container's tree", e))?;
    drop(root);
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
        ApiError::io(
            if joined { "joining the spec's mount namespace" } else { "entering the host's mount namespace" },
            e,
        )
    })?;
    if joined {
        return sys::pivot_into(tree.as_fd()).map_err(|e| ApiError::io("pivoting in the joined mount namespace", e));
    }
    let target =
        rustix::fs::open(host_root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .map_err(|e| {
                ApiError::io(format!("root filesystem {} in the host's mount namespace", host_root.display()), e)
            })?;
    sys::attach(tree.as_fd(), target.as_fd())
        .map_err(|e| ApiError::io(format!("attaching the container's tree on {}", host_root.display()), e))?;
    nix::unistd::fchdir(&tree).map_err(|e| ApiError::io("chdir into the rootfs", e))?;
    nix::unistd::chroot(".").map_err(|e| ApiError::io("chroot into the rootfs", e))?;
    nix::unistd::chdir("/").map_err(|e| ApiError::io("chdir /", e))
}

/// Whether the container's read-only mounts must be locked: it has some, and its process
/// may hold CAP_SYS_ADMIN, with which it could otherwise remount them read-write.
fn needs_locking(spec: &Spec) -> bool {
    let readonly_root = spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false);
    let readonly_bind = spec.mounts().as_deref().unwrap_or_default().iter().any(|m| {
        wire::mounts::is_bind(m) && wire::mounts::parse_options(m.options().as_deref().unwrap_or_default()).readonly()
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
#[derive(Debug)]
pub struct IdMaps {
    uid: String,
    gid: String,
}

impl IdMaps {
    /// The spec's mappings when it asks for a user namespace; otherwise every id onto itself.
    pub fn of(spec: &Spec) -> Self {
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

/// Makes `root` the process's `/`, and detaches the sandbox's root beneath it.
fn pivot_root(root: &OwnedFd) -> Result<(), ApiError> {
    nix::unistd::fchdir(root).map_err(|e| ApiError::io("chdir into the rootfs", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| ApiError::io("pivot_root", e))?;
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| ApiError::io("detaching the old root", e))?;
    nix::unistd::chdir("/").map_err(|e| ApiError::io("chdir /", e))?;
    Ok(())
}
