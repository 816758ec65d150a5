//! Restoring a container's processes with CRIU, as children of this sandbox.
//!
//! The sandbox forks a child that stays in the sandbox's PID, network, UTS and IPC namespaces
//! but enters a private copy of the host's mount namespace (where CRIU, its images and logs
//! are) and the host's cgroup namespace, attaches a copy of the container's staged root where
//! CRIU expects it, mounts a procfs of the sandbox's PID namespace, and executes CRIU. With
//! `--restore-sibling`, CRIU forks the restored init as the sandbox's child: the sandbox reaps
//! it as any container's init.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use rustix::fs::{Mode, OFlags};
use wire::sandbox_proto::RestoreInSandbox;
use wire::{ApiError, ErrorKind};

/// Where the restored processes' standard descriptors and the PID namespace are placed in
/// CRIU's process (its own 0–2 stay the sandbox's).
const FIRST_PLACED_FD: RawFd = 3;
/// How far below `pid_max` the restoring processes take their pids, so that they never take
/// one the checkpoint needs (CRIU gives restored processes their old pids).
const PID_HEADROOM: u64 = 1024;

/// What the child needs.
pub struct RestoreConfig<'a> {
    /// The container's id, for messages.
    pub id: &'a str,
    /// Where the container's root is attached in the sandbox.
    pub rootfs: &'a Path,
    /// Where the container's bind mounts are attached in the sandbox, in spec order.
    pub binds: &'a [std::path::PathBuf],
    /// The caller's stdio, replacing the checkpoint's.
    pub stdio: [Option<OwnedFd>; 3],
    /// The caller's console socket: a checkpoint whose process had a terminal gets a new
    /// pty, whose master goes there.
    pub console: Option<OwnedFd>,
    /// The sandbox's procfs.
    pub proc: &'a OwnedFd,
    /// paddockd's plan.
    pub plan: RestoreInSandbox,
}

/// Runs CRIU and returns the restored init's pid once CRIU has finished.
pub fn restore(mut config: RestoreConfig<'_>) -> Result<Pid, ApiError> {
    let what = format!("restore of container {:?}", config.id);
    let copy = |place: &Path| -> Result<OwnedFd, ApiError> {
        let fd = rustix::fs::open(place, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ApiError::io(format!("open {}", place.display()), e))?;
        sys::clone_tree(fd.as_fd(), true).map_err(|e| ApiError::io(format!("copying {}", place.display()), e))
    };
    let root = copy(config.rootfs)?;
    if config.binds.len() != config.plan.bind_keys.len() {
        return Err(ApiError::new(
            ErrorKind::Protocol,
            format!("{} bind mounts staged, {} to restore", config.binds.len(), config.plan.bind_keys.len()),
        ));
    }
    // The binds as the gofer opened them (beneath the bundle, symlinks resolved safely), not
    // their host paths again.
    let binds = config.binds.iter().map(|b| copy(b)).collect::<Result<Vec<_>, _>>()?;
    let host_mnt = config.plan.host_mnt.take().ok_or_else(|| missing("the host's mount namespace"))?;
    let host_cgroup = config.plan.host_cgroup.take().ok_or_else(|| missing("the host's cgroup namespace"))?;
    let argv = criu_argv(&config)?;
    let c_path = |path: &Path| {
        CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| ApiError::invalid_argument(format!("{} has a NUL byte", path.display())))
    };
    let mountpoints = (c_path(&config.plan.root_mountpoint)?, c_path(&config.plan.binds_mountpoint)?);
    move_next_pid_up(config.proc)?;
    let (errors_in, errors_out) =
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| ApiError::io("pipe", e))?;
    // SAFETY: the sandbox is single-threaded, so the child may do anything the parent could.
    match unsafe { nix::unistd::fork() }.map_err(|e| ApiError::io("fork", e))? {
        ForkResult::Child => {
            drop(errors_in);
            // Above the numbers CRIU's descriptors are placed at.
            let errors_out = rustix::io::fcntl_dupfd_cloexec(&errors_out, 1000).unwrap_or(errors_out);
            let trees = Trees { root: &root, binds: &binds };
            let err = child(&config, &trees, &host_mnt, &host_cgroup, &mountpoints, &argv);
            let _ = rustix::io::write(&errors_out, err.as_bytes());
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => {
            drop(errors_out);
            drop((root, binds, host_mnt, host_cgroup));
            config.stdio = [None, None, None];
            config.console = None;
            let mut message = String::new();
            let _ = std::io::Read::read_to_string(&mut std::fs::File::from(errors_in), &mut message);
            let status = wait_for_criu(child)?;
            if !message.is_empty() {
                return Err(ApiError::new(ErrorKind::Sandbox, format!("{what}: {message}")));
            }
            match status {
                nix::sys::wait::WaitStatus::Exited(_, 0) => {}
                other => return Err(ApiError::new(ErrorKind::Sandbox, format!("{what}: CRIU ended with {other:?}"))),
            }
            let pid = Pid::from_raw(config.plan.init_pid);
            if parent_of(config.proc, pid) != Some(1) {
                return Err(ApiError::new(
                    ErrorKind::Sandbox,
                    format!("{what}: CRIU succeeded but process {pid} is not the sandbox's child"),
                ));
            }
            // Back down: the container's next processes get small pids, as in any sandbox.
            let _ = set_last_pid(config.proc, pid.as_raw() as u64);
            Ok(pid)
        }
    }
}

/// How long CRIU may take before it is killed: the sandbox serves nothing else meanwhile.
const CRIU_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Waits for CRIU to end (killing it after [`CRIU_TIMEOUT`]) and reaps it.
fn wait_for_criu(child: Pid) -> Result<nix::sys::wait::WaitStatus, ApiError> {
    let pidfd = rustix::process::Pid::from_raw(child.as_raw())
        .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok());
    if let Some(pidfd) = pidfd {
        let mut fds = [nix::poll::PollFd::new(pidfd.as_fd(), nix::poll::PollFlags::POLLIN)];
        let timeout =
            nix::poll::PollTimeout::try_from(CRIU_TIMEOUT.as_millis() as i32).unwrap_or(nix::poll::PollTimeout::MAX);
        if matches!(nix::poll::poll(&mut fds, timeout), Ok(0)) {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(ApiError::new(
                ErrorKind::Sandbox,
                format!("CRIU did not finish within {} s and was killed", CRIU_TIMEOUT.as_secs()),
            ));
        }
    }
    nix::sys::wait::waitpid(child, None).map_err(|e| ApiError::io("waiting for CRIU", e))
}

/// The detached copies of the container's mounts CRIU restores on.
struct Trees<'a> {
    root: &'a OwnedFd,
    binds: &'a [OwnedFd],
}

fn missing(what: &str) -> ApiError {
    ApiError::new(ErrorKind::Protocol, format!("restore without {what}"))
}

/// CRIU's full command line: paddockd's part, then the root, the namespaces the restored
/// processes share with the sandbox, and the descriptors that replace the checkpoint's.
fn criu_argv(config: &RestoreConfig<'_>) -> Result<Vec<CString>, ApiError> {
    let plan = &config.plan;
    let mut args: Vec<String> = vec![plan.criu.display().to_string()];
    args.extend(plan.args.iter().cloned());
    args.extend(["--root".into(), plan.root_mountpoint.display().to_string()]);
    for ns in ["uts", "ipc"] {
        args.extend(["--join-ns".into(), format!("{ns}:/proc/1/ns/{ns}")]);
    }
    let mut next = FIRST_PLACED_FD;
    for (i, mountpoint) in plan.bind_keys.iter().enumerate() {
        let place = plan.binds_mountpoint.join(i.to_string());
        args.extend(["--external".into(), format!("mnt[{mountpoint}]:{}", place.display())]);
    }
    for (i, source) in descriptor_plan(config)?.iter().enumerate() {
        if let Placed::Caller(_) | Placed::Terminal = source {
            let key = plan.stdio_keys.get(i).and_then(|k| k.as_deref()).unwrap_or_default();
            args.extend(["--inherit-fd".into(), format!("fd[{next}]:{key}")]);
        }
        next += 1;
    }
    for key in SANDBOX_NAMESPACES.map(|(_, key)| key) {
        args.extend(["--inherit-fd".into(), format!("fd[{next}]:{key}")]);
        next += 1;
    }
    args.into_iter()
        .map(|a| CString::new(a).map_err(|_| ApiError::invalid_argument("a CRIU argument has a NUL byte")))
        .collect()
}

/// What CRIU's process gets at 3, 4 and 5, for each of the checkpoint's stdin, stdout and
/// stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// The caller's descriptor of that number.
    Caller(usize),
    /// The slave of the new terminal (once, for the first descriptor that was the terminal).
    Terminal,
    /// Nothing: the checkpoint had nothing to replace there, or the caller gave nothing.
    Nothing,
}

/// Which descriptor replaces each of the checkpoint's standard descriptors.
fn descriptor_plan(config: &RestoreConfig<'_>) -> Result<[Placed; 3], ApiError> {
    let keys = &config.plan.stdio_keys;
    let mut plan = [Placed::Nothing; 3];
    for (i, place) in plan.iter_mut().enumerate() {
        let Some(key) = keys.get(i).and_then(|k| k.as_deref()) else { continue };
        if key.starts_with("tty[") {
            if config.console.is_none() {
                return Err(ApiError::invalid_argument(
                    "the checkpoint's process had a terminal: restore it with process.terminal and a console socket (or \
                     in the foreground)",
                ));
            }
            // One key, one inherited descriptor: CRIU gives it to every descriptor of that tty.
            if !keys[..i].iter().any(|k| k.as_deref() == Some(key)) {
                *place = Placed::Terminal;
            }
        } else if config.stdio[i].is_some() {
            *place = Placed::Caller(i);
        }
    }
    if config.console.is_some() && !keys.iter().flatten().any(|k| k.starts_with("tty[")) {
        // The caller waits for a terminal that would never come.
        return Err(ApiError::invalid_spec(
            "process.terminal asks for a terminal, but the checkpoint's process had none",
        ));
    }
    Ok(plan)
}

/// The sandbox's namespaces a checkpoint marks external, with their keys, in the order their
/// descriptors follow the standard ones.
const SANDBOX_NAMESPACES: [(&str, &str); 2] =
    [("/proc/1/ns/pid", wire::sandbox_proto::PID_NS_KEY), ("/proc/1/ns/net", wire::sandbox_proto::NET_NS_KEY)];

/// Moves the PID namespace's next pid near its end, so that CRIU and its helpers do not take
/// the low pids a checkpoint's processes had (a fresh sandbox would give CRIU pid 2, its
/// init's).
fn move_next_pid_up(proc: &OwnedFd) -> Result<(), ApiError> {
    let fd = rustix::fs::openat(proc, "sys/kernel/pid_max", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ApiError::io("sys/kernel/pid_max", e))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)
        .map_err(|e| ApiError::io("sys/kernel/pid_max", e))?;
    let max: u64 = text.trim().parse().unwrap_or(32768);
    set_last_pid(proc, max.saturating_sub(PID_HEADROOM).max(1))
}

/// Sets the pid the PID namespace's next process follows (the kernel skips pids in use).
fn set_last_pid(proc: &OwnedFd, last: u64) -> Result<(), ApiError> {
    let fd = rustix::fs::openat(proc, "sys/kernel/ns_last_pid", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ApiError::io("sys/kernel/ns_last_pid", e))?;
    rustix::io::write(&fd, last.to_string().as_bytes()).map_err(|e| ApiError::io("writing ns_last_pid", e))?;
    Ok(())
}

/// Attaches the bind mounts' copies at `<place>/0`, `<place>/1`, ... on a private tmpfs.
fn attach_binds(binds: &[OwnedFd], place: &CString) -> Result<(), String> {
    if binds.is_empty() {
        return Ok(());
    }
    let tmpfs = sys::new_mount("tmpfs", Some("paddock-criu-binds"), &["mode=0700".to_string()], 0)
        .map_err(|e| format!("a tmpfs for the bind mounts: {e}"))?;
    let dir = rustix::fs::open(place.as_c_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("open {}: {e}", place.to_string_lossy()))?;
    sys::attach(tmpfs.as_fd(), dir.as_fd()).map_err(|e| format!("attaching the binds' tmpfs: {e}"))?;
    let dir = rustix::fs::open(place.as_c_str(), OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("open {}: {e}", place.to_string_lossy()))?;
    for (i, bind) in binds.iter().enumerate() {
        let name = i.to_string();
        let is_dir = rustix::fs::fstat(bind)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
            .map_err(|e| format!("fstat of bind {i}: {e}"))?;
        let made = if is_dir {
            rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o700))
        } else {
            rustix::fs::openat(
                &dir,
                name.as_str(),
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map(drop)
        };
        made.map_err(|e| format!("a mount point for bind {i}: {e}"))?;
        let target = rustix::fs::openat(&dir, name.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| format!("open the mount point of bind {i}: {e}"))?;
        sys::attach(bind.as_fd(), target.as_fd()).map_err(|e| format!("attaching bind {i}: {e}"))?;
    }
    Ok(())
}

/// The parent of `pid` in the sandbox's PID namespace (read as bytes: a command name need not
/// be UTF-8).
fn parent_of(proc: &OwnedFd, pid: Pid) -> Option<i32> {
    let fd = rustix::fs::openat(proc, format!("{pid}/stat").as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .ok()?;
    let mut stat = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut stat).ok()?;
    let after = &stat[stat.iter().rposition(|b| *b == b')')? + 1..];
    std::str::from_utf8(after).ok()?.split_whitespace().nth(1)?.parse().ok()
}

/// The child: namespaces, root, procfs, descriptors, then CRIU. Returns only on failure.
fn child(
    config: &RestoreConfig<'_>,
    trees: &Trees<'_>,
    host_mnt: &OwnedFd,
    host_cgroup: &OwnedFd,
    mountpoints: &(CString, CString),
    argv: &[CString],
) -> String {
    match prepare(config, trees, host_mnt, host_cgroup, mountpoints) {
        Ok(()) => {}
        Err(e) => return e,
    }
    let Err(e) = nix::unistd::execv(&argv[0], argv);
    format!("executing {}: {e} (is CRIU 4.1 or later installed?)", argv[0].to_string_lossy())
}

/// Everything of the child before CRIU executes: a clean signal state and session, the
/// host's cgroup and (a private copy of its) mount namespace, the
/// container's trees attached where CRIU is told to find them, a procfs of the sandbox's PID
/// namespace, and the descriptors placed.
fn prepare(
    config: &RestoreConfig<'_>,
    trees: &Trees<'_>,
    host_mnt: &OwnedFd,
    host_cgroup: &OwnedFd,
    mountpoints: &(CString, CString),
) -> Result<(), String> {
    crate::sync::reset_process_state().map_err(|e| e.message)?;
    // CRIU itself stays in the sandbox's cgroup (its memory is not the container's to pay
    // for); it puts the restored processes into the container's (`--cgroup-root`).
    nix::sched::setns(host_cgroup, CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| format!("entering the host's cgroup namespace: {e}"))?;
    nix::sched::setns(host_mnt, CloneFlags::CLONE_NEWNS).map_err(|e| format!("entering the host's mounts: {e}"))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mount namespace: {e}"))?;
    let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>)
        .map_err(|e| format!("making the mounts private: {e}"))?;
    let (root_place, binds_place) = mountpoints;
    let place = rustix::fs::open(root_place.as_c_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("open {}: {e}", root_place.to_string_lossy()))?;
    sys::attach(trees.root.as_fd(), place.as_fd()).map_err(|e| format!("attaching the container's root: {e}"))?;
    attach_binds(trees.binds, binds_place)?;
    let hidden = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC;
    nix::mount::mount(Some("proc"), "/proc", Some("proc"), hidden, None::<&str>)
        .map_err(|e| format!("mounting the sandbox's procfs: {e}"))?;
    let mut namespaces = Vec::new();
    for (path, _) in SANDBOX_NAMESPACES {
        namespaces.push(
            rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("open the sandbox's namespace {path}: {e}"))?,
        );
    }
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    let placed = descriptor_plan(config).map_err(|e| e.message)?;
    // A terminal for the restored process: opened here, in the host's devpts (the container's
    // is CRIU's to restore), its master sent to the caller.
    let terminal = match (placed.contains(&Placed::Terminal), config.console.as_ref()) {
        (true, Some(console)) => {
            let pty = crate::console::open().map_err(|e| e.message)?;
            pty.send_master(console.as_fd()).map_err(|e| e.message)?;
            Some(pty)
        }
        _ => None,
    };
    let stdio_sources = placed.map(|p| match p {
        Placed::Caller(i) => config.stdio[i].as_ref().map(|f| f.as_fd()),
        Placed::Terminal => terminal.as_ref().map(|t| t.slave()),
        Placed::Nothing => None,
    });
    // Out of the way first (a source may sit where another is to go), then into place.
    let mut sources: Vec<Option<OwnedFd>> = Vec::new();
    for fd in stdio_sources.into_iter().chain(namespaces.iter().map(|n| Some(n.as_fd()))) {
        sources.push(
            fd.map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 1000))
                .transpose()
                .map_err(|e| format!("duplicating a descriptor: {e}"))?,
        );
    }
    for (i, fd) in sources.iter().enumerate() {
        let target = FIRST_PLACED_FD + i as RawFd;
        match fd {
            // SAFETY: dup2 onto a number this process means to replace.
            Some(fd) if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 => {
                return Err(format!("placing a descriptor: {}", std::io::Error::last_os_error()));
            }
            Some(_) => {}
            // SAFETY: whatever the sandbox had there is not for CRIU.
            None => unsafe {
                libc::close(target);
            },
        }
    }
    sys::cloexec_from(FIRST_PLACED_FD + sources.len() as RawFd).map_err(|e| format!("close_range: {e}"))
}
