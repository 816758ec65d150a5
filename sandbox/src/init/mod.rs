//! Starting a container's init process.
//!
//! The sandbox forks; the child sets the container up (mount namespace, mounts, devices,
//! pivot_root, masked paths, process attributes) and reports over a `SOCK_SEQPACKET` pair:
//! `R` when it is ready, or `E` and a message when setup failed. It then blocks until the
//! sandbox sends `S` (start) and calls `execve`. The pair is close-on-exec, so a successful
//! exec shows up on the sandbox's side as end-of-file, and a failed one as `E` and a message.

mod devices;
mod mounts;
mod process;

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Spec;
use rustix::fs::OFlags;
use wire::{ApiError, ErrorKind};

/// How long the child may take to set up or to exec before the sandbox gives up on it.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

const SYNC_READY: u8 = b'R';
const SYNC_ERROR: u8 = b'E';
const SYNC_START: u8 = b'S';
/// The child entered a new user namespace and needs its id maps written by the sandbox.
const SYNC_MAP_IDS: u8 = b'U';
/// The sandbox wrote them.
const SYNC_IDS_MAPPED: u8 = b'M';

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
    /// Where the sandbox staged the gofer's bind mounts, in spec order.
    pub binds: Vec<PathBuf>,
}

/// A container init that is set up and waits for start.
#[derive(Debug)]
pub struct WaitingInit {
    /// Its pid in the sandbox's namespace.
    pub pid: Pid,
    /// The sandbox's end of the sync pair.
    pub sync: OwnedFd,
}

/// Forks the container's init and waits until it is set up (or failed).
///
/// On failure the child has exited (or is killed) and reaped before this returns.
pub fn spawn(config: InitConfig<'_>) -> Result<WaitingInit, ApiError> {
    let (parent_end, child_end) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| ApiError::io("socketpair", e))?;
    // SAFETY: the sandbox is single-threaded, so the child may do anything the parent could.
    match unsafe { nix::unistd::fork() }.map_err(|e| ApiError::io("fork", e))? {
        ForkResult::Child => {
            drop(parent_end);
            let code = child_main(config, child_end);
            // SAFETY: _exit ends the child without running the parent's destructors or atexit
            // handlers twice.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            drop(config.stdio);
            let mut got = read_sync(parent_end.as_fd());
            if matches!(&got, Ok(Some(msg)) if msg.first() == Some(&SYNC_MAP_IDS)) {
                got = map_ids(child)
                    .and_then(|()| {
                        nix::sys::socket::send(parent_end.as_raw_fd(), &[SYNC_IDS_MAPPED], MsgFlags::MSG_NOSIGNAL)
                            .map_err(std::io::Error::from)
                    })
                    .and_then(|_| read_sync(parent_end.as_fd()));
            }
            match got {
                Ok(Some(msg)) if msg.first() == Some(&SYNC_READY) => Ok(WaitingInit { pid: child, sync: parent_end }),
                other => {
                    let err = sync_failure(config.id, "setting up", other);
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                    Err(err)
                }
            }
        }
    }
}

/// Lets a waiting init run its program. Returns once it has called `execve` successfully.
pub fn start(id: &str, init: &WaitingInit) -> Result<(), ApiError> {
    nix::sys::socket::send(init.sync.as_raw_fd(), &[SYNC_START], MsgFlags::MSG_NOSIGNAL)
        .map_err(|e| ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: its process is gone: {e}")))?;
    match read_sync(init.sync.as_fd()) {
        Ok(None) => Ok(()),
        other => Err(sync_failure(id, "starting", other)),
    }
}

fn sync_failure(id: &str, phase: &str, got: std::io::Result<Option<Vec<u8>>>) -> ApiError {
    match got {
        Ok(Some(msg)) if msg.first() == Some(&SYNC_ERROR) => {
            // The child sent an encoded ApiError.
            let text = String::from_utf8_lossy(&msg[2..]).to_string();
            let kind = match msg.get(1) {
                Some(b's') => ErrorKind::InvalidSpec,
                Some(b'u') => ErrorKind::Unsupported,
                _ => ErrorKind::Io,
            };
            ApiError::new(kind, format!("container {id:?}: {text}"))
        }
        Ok(Some(_)) => ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: garbled message while {phase}")),
        Ok(None) => ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: its process died while {phase}")),
        Err(e) => ApiError::new(ErrorKind::Sandbox, format!("container {id:?}: while {phase}: {e}")),
    }
}

/// Reads one message; `None` at end-of-file. Gives up after [`SETUP_TIMEOUT`].
fn read_sync(fd: BorrowedFd<'_>) -> std::io::Result<Option<Vec<u8>>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let timeout = PollTimeout::try_from(SETUP_TIMEOUT).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")),
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::ECONNRESET) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn send_error(sync: &OwnedFd, err: &ApiError) {
    let kind = match err.kind {
        ErrorKind::InvalidSpec => b's',
        ErrorKind::Unsupported => b'u',
        _ => b'i',
    };
    let mut msg = vec![SYNC_ERROR, kind];
    msg.extend_from_slice(err.message.as_bytes());
    msg.truncate(60 * 1024);
    let _ = nix::sys::socket::send(sync.as_raw_fd(), &msg, MsgFlags::MSG_NOSIGNAL);
}

/// The child: set up, report, wait for start, exec.
fn child_main(config: InitConfig<'_>, sync: OwnedFd) -> i32 {
    let plan = match setup(&config, &sync) {
        Ok(plan) => plan,
        Err(err) => {
            send_error(&sync, &err);
            return 1;
        }
    };
    if nix::sys::socket::send(sync.as_raw_fd(), &[SYNC_READY], MsgFlags::MSG_NOSIGNAL).is_err() {
        return 1;
    }
    // Wait for start. End-of-file means the sandbox gave up on us.
    let mut byte = [0u8; 1];
    loop {
        match nix::sys::socket::recv(sync.as_raw_fd(), &mut byte, MsgFlags::empty()) {
            Ok(1) if byte[0] == SYNC_START => break,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return 1,
        }
    }
    let err = plan.exec();
    send_error(
        &sync,
        &ApiError::new(ErrorKind::InvalidSpec, format!("exec {:?}: {err}", plan.path().to_string_lossy())),
    );
    127
}

fn setup(config: &InitConfig<'_>, sync: &OwnedFd) -> Result<process::ExecPlan, ApiError> {
    // The sandbox blocks SIGCHLD for its signalfd and Rust ignores SIGPIPE: neither may leak
    // into the container.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: restoring the default disposition of SIGPIPE installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    nix::unistd::setsid().map_err(|e| ApiError::io("setsid", e))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| ApiError::io("unshare mount namespace", e))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());

    let spec = config.spec;
    let root =
        rustix::fs::open(&config.rootfs, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, rustix::fs::Mode::empty())
            .map_err(|e| ApiError::io(format!("rootfs {}", config.rootfs.display()), e))?;
    let spec_mounts = spec.mounts().as_deref().unwrap_or_default();
    let mut binds: VecDeque<PathBuf> = config.binds.iter().cloned().collect();
    mounts::mount_all(root.as_fd(), spec_mounts, &mut binds)?;
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
    if needs_locking(spec) {
        lock_mounts(sync)?;
    }

    let plan = process::apply(process)?;
    connect_stdio(&config.stdio)?;
    Ok(plan)
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

/// Locks every mount's flags (read-only above all) against the container.
///
/// The kernel locks a mount's flags when its mount namespace is copied into one owned by a
/// less privileged user namespace. So the container enters a new user namespace, mapped 1:1
/// onto the host's ids (the container's root stays uid 0 for files), together with a new
/// mount namespace: its capabilities now count only in that user namespace, and
/// `mount -o remount,rw` of a locked mount fails even with CAP_SYS_ADMIN. Only a process with
/// CAP_SETUID in the parent namespace may write a full map, which the container's process no
/// longer is once it has unshared: the sandbox writes the maps for it.
fn lock_mounts(sync: &OwnedFd) -> Result<(), ApiError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| ApiError::io("unshare user and mount namespaces", e))?;
    nix::sys::socket::send(sync.as_raw_fd(), &[SYNC_MAP_IDS], MsgFlags::MSG_NOSIGNAL)
        .map_err(|e| ApiError::io("sync", e))?;
    let mut byte = [0u8; 1];
    match nix::sys::socket::recv(sync.as_raw_fd(), &mut byte, MsgFlags::empty()) {
        Ok(1) if byte[0] == SYNC_IDS_MAPPED => Ok(()),
        _ => Err(ApiError::new(ErrorKind::Sandbox, "the sandbox did not map the user namespace's ids")),
    }
}

/// The sandbox's side of [`lock_mounts`]: maps every id of the child's new user namespace onto
/// the same id outside, through a private procfs (the sandbox's own root has none).
fn map_ids(child: Pid) -> std::io::Result<()> {
    let proc = sys::new_mount("proc", Some("proc"), &[], 0)?;
    for map in ["uid_map", "gid_map"] {
        let file = rustix::fs::openat(
            &proc,
            format!("{child}/{map}").as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        rustix::io::write(&file, b"0 0 4294967295\n")?;
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

/// Puts the caller's stdio (or `/dev/null`) on descriptors 0, 1 and 2.
fn connect_stdio(stdio: &[Option<OwnedFd>; 3]) -> Result<(), ApiError> {
    for (target, fd) in stdio.iter().enumerate() {
        let source = match fd {
            Some(fd) => fd.try_clone().map_err(|e| ApiError::io("dup stdio", e))?,
            None => rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| ApiError::io("/dev/null", e))?,
        };
        // SAFETY: dup2 onto 0..=2 replaces the standard descriptors, which nothing else in this
        // process holds as an OwnedFd.
        if unsafe { libc::dup2(source.as_raw_fd(), target as i32) } < 0 {
            return Err(ApiError::io("dup2 stdio", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
