//! The process a pid file names.
//!
//! runc's callers (podman's conmon, containerd's shim) are child subreapers: they learn that a
//! container (or an exec'd process) ended by `waitpid` on the pid in `--pid-file`, which with
//! runc is their reparented grandchild. A paddock container's processes are the sandbox's
//! children, never the caller's. So a detached `create`, `run -d` or `exec -d` with a pid file
//! leaves a monitor behind instead — as runsc's pid file names its sandbox: a small child of
//! the caller (reparented to it when ctl exits) that waits for the container's exit through
//! paddockd and exits the same way (the same code; a signal's death as its code, 128 + the
//! signal, the number every one of those callers reports for it).
//!
//! Callers read more than the exit from that pid, so the monitor stands where the container
//! does before the pid file is written:
//!
//! - **cgroups**: paddockd moves it into the container's (every hierarchy but a v1 freezer):
//!   containerd's shim loads the task's cgroups from `/proc/<pid>/cgroup` for its metrics and
//!   its OOM watch, and so does conmon for OOM.
//! - **network, IPC and UTS namespaces**: it joins the container's, so that
//!   `/proc/<pid>/ns/{net,ipc,uts}` (Docker's and podman's `container:` modes, CRI's pod
//!   members) are the container's, for paddock and for any other runtime alike.
//! - **PID namespace**: one of its own, of which it is the only process. A monitor cannot enter
//!   the container's (it would show up among the container's processes), and in the host's
//!   `/proc/<pid>/ns/pid` would hand the host's to whoever joins it. paddockd resolves a path
//!   naming a monitor to the container's (see `actors::monitors`); another runtime joining it
//!   gets an empty namespace, never the host's.
//!
//! It is one thread (the signals it passes on come through a signalfd), so that it counts as
//! one task in the container's `pids` cgroup. Catchable signals sent to it go on to the
//! container; SIGKILL, which it cannot catch, reaches the process through paddockd, which kills
//! it when the monitor's connection hangs up in the middle of its wait. It holds none of the
//! caller's descriptors, and it never starts a paddockd (one started from its namespaces would
//! die with it): if paddockd is away, it waits for the next one.

use std::io::Read as _;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wire::api::{Reply, Request};
use wire::client::Client;
use wire::stateroot::SOCKET_NAME;
use wire::{ErrorKind, ExitStatus};

/// The hidden subcommand the monitor runs as.
pub const COMMAND: &str = "monitor-process";

/// How long the monitor keeps trying to reach paddockd once the process it stands for is gone
/// (its exit status is with the sandbox until a paddockd collects it) before it gives up and
/// exits with 255. While the process runs, it waits for paddockd as long as it takes.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(120);

/// What the monitor writes on its ready pipe once its wait is with paddockd.
const READY: &[u8] = b"r";

/// Starts a monitor of container `id` (or of its process `pid`, a pid in the container's PID
/// namespace) and returns its pid, for the pid file. Returns once the monitor is in the
/// container's cgroups and namespaces and its wait is with paddockd, so that a SIGKILL sent
/// to it from then on reaches the process; fails with the monitor's reason if it could not.
pub fn spawn(root: &Path, id: &str, pid: Option<i32>) -> anyhow::Result<i32> {
    const READY_FD: i32 = 3;
    let (mut ready_read, ready_write) = std::io::pipe()?;
    let ready_raw = ready_write.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--root").arg(root).arg(COMMAND).arg("--ready-fd").arg(READY_FD.to_string());
    if let Some(pid) = pid {
        cmd.arg("--pid").arg(pid.to_string());
    }
    cmd.arg(id);
    // Its own process group: a terminal's ^C to the caller's group is not meant for it.
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
    // SAFETY: only async-signal-safe calls (dup2, fcntl, close_range) between fork and exec.
    unsafe {
        cmd.pre_exec(move || sys::inherit_only(ready_raw, READY_FD));
    }
    let child = in_new_pid_namespace(|| cmd.spawn())?;
    drop(ready_write);
    drop(cmd);
    let mut answer = Vec::new();
    let _ = ready_read.read_to_end(&mut answer);
    // Never waited for by ctl: when ctl exits, it becomes the caller's (the subreaper's) child.
    let monitor = child.id() as i32;
    match answer.as_slice() {
        READY => Ok(monitor),
        [] => anyhow::bail!("the pid file's monitor of {id:?} exited before it was ready"),
        why => anyhow::bail!("the pid file's monitor of {id:?}: {}", String::from_utf8_lossy(why)),
    }
}

/// Runs `spawn` with the children it forks going into a new PID namespace (the first, the
/// monitor, as its PID 1); ctl's later children go into ctl's own again.
fn in_new_pid_namespace<T>(spawn: impl FnOnce() -> std::io::Result<T>) -> anyhow::Result<T> {
    use anyhow::Context as _;
    let own = std::fs::File::open("/proc/self/ns/pid").context("opening ctl's own PID namespace")?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).context("a PID namespace for the monitor")?;
    let spawned = spawn();
    nix::sched::setns(own, nix::sched::CloneFlags::CLONE_NEWPID).context("returning to ctl's PID namespace")?;
    Ok(spawned?)
}

/// How one attempt to wait through paddockd ended, short of the exit status.
enum Interrupted {
    /// paddockd is away (not running, restarting, shutting down).
    Unreachable,
    /// The container (or process) no longer exists: deleted before it could be waited for.
    Gone,
    /// paddockd refused, for a reason that will not change.
    Refused(String),
}

/// The monitor itself: joins the container, forwards signals, waits, and ends as the process
/// ended.
pub fn run(root: &Path, id: &str, pid: Option<i32>, ready_fd: Option<i32>) -> i32 {
    // SAFETY: the descriptor was handed to us for this alone; it is owned (and closed) here.
    let mut ready = ready_fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
    let report = |ready: &mut Option<OwnedFd>, what: &[u8]| {
        if let Some(fd) = ready.take() {
            let _ = rustix::io::write(&fd, what);
        }
    };
    let signals = match SignalFd::block(&super::run::forwarded_signals()) {
        Ok(s) => s,
        Err(e) => {
            report(&mut ready, format!("cannot take its signals: {e}").as_bytes());
            return 255;
        }
    };
    let watch = Watch { socket: root.join(SOCKET_NAME), id, pid, signals };
    let mut joined = false;
    let mut init: Option<(i32, u64)> = None;
    // Since when paddockd has been away with the process already gone.
    let mut dead_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        match watch.once(&mut joined, &mut init, &mut ready) {
            Ok(status) => end_like(status),
            Err(Interrupted::Gone) => end_like(ExitStatus::Signaled(libc::SIGKILL)),
            Err(Interrupted::Refused(why)) => {
                report(&mut ready, why.as_bytes());
                return 255;
            }
            Err(Interrupted::Unreachable) => {
                if ready.is_some() {
                    // ctl talked to paddockd a moment ago: say so instead of waiting.
                    report(&mut ready, b"paddockd went away before the monitor could wait");
                    return 255;
                }
                if init.is_some_and(|(pid, start)| start_time(pid) == Some(start)) {
                    dead_since = None;
                } else if dead_since.get_or_insert_with(Instant::now).elapsed() > UNREACHABLE_LIMIT {
                    return 255;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One container (or process) to watch.
struct Watch<'a> {
    socket: std::path::PathBuf,
    id: &'a str,
    pid: Option<i32>,
    signals: SignalFd,
}

impl Watch<'_> {
    /// Connects, joins the container (the first time), sends the wait and answers signals
    /// until the exit status comes.
    fn once(
        &self,
        joined: &mut bool,
        init: &mut Option<(i32, u64)>,
        ready: &mut Option<OwnedFd>,
    ) -> Result<ExitStatus, Interrupted> {
        let mut client = Client::connect(&self.socket).map_err(|_| Interrupted::Unreachable)?;
        let monitored = client.monitor(self.id, self.pid).map_err(classify)?;
        if monitored.namespaces_of.is_some() {
            *init = monitored.namespaces_of;
        }
        if !*joined {
            if let Some(process) = monitored.namespaces_of {
                join_namespaces(process).map_err(|e| Interrupted::Refused(e.to_string()))?;
            }
            *joined = true;
        }
        let request = match self.pid {
            None => Request::Wait(wire::api::Wait { id: self.id.into(), kill_on_hangup: true }),
            Some(pid) => Request::WaitProcess(wire::api::WaitProcess {
                id: self.id.into(),
                pid,
                root: false,
                kill_on_hangup: true,
            }),
        };
        let asked = client.send_request(request).map_err(classify)?;
        if let Some(fd) = ready.take() {
            let _ = rustix::io::write(&fd, READY);
        }
        loop {
            let mut fds = [
                rustix::event::PollFd::new(&client, rustix::event::PollFlags::IN),
                rustix::event::PollFd::new(&self.signals.fd, rustix::event::PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => return Err(Interrupted::Unreachable),
            }
            let (answered, signalled) = (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
            if signalled {
                for signal in self.signals.take() {
                    self.forward(signal);
                }
            }
            if answered {
                return match client.reply_to(asked).map_err(classify)? {
                    Reply::Exit(status) => Ok(status),
                    _ => Err(Interrupted::Refused("paddockd answered the wait with something else".into())),
                };
            }
        }
    }

    /// Passes a signal on to the process, on a connection of its own.
    fn forward(&self, signal: i32) {
        if let Ok(mut client) = Client::connect(&self.socket) {
            let _ = client.kill(self.id, signal, false, self.pid);
        }
    }
}

fn classify(e: wire::ApiError) -> Interrupted {
    match e.kind {
        ErrorKind::NotFound => Interrupted::Gone,
        ErrorKind::Unavailable | ErrorKind::Io => Interrupted::Unreachable,
        _ => Interrupted::Refused(e.to_string()),
    }
}

/// Joins the network, IPC and UTS namespaces of process `(pid, start time)` (a host pid: the
/// monitor's `/proc` is the host's). They are opened first and the process checked after, so
/// that a pid reused in between is noticed; a process that has already ended has nothing to
/// join, and the wait will say how it ended.
fn join_namespaces((pid, start): (i32, u64)) -> Result<(), wire::ApiError> {
    use nix::sched::CloneFlags;
    let kinds =
        [("net", CloneFlags::CLONE_NEWNET), ("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)];
    let mut opened = Vec::with_capacity(kinds.len());
    for (name, flag) in kinds {
        match std::fs::File::open(format!("/proc/{pid}/ns/{name}")) {
            Ok(f) => opened.push((name, f, flag)),
            Err(_) if start_time(pid) != Some(start) => return Ok(()),
            Err(e) => return Err(wire::ApiError::io(format!("opening /proc/{pid}/ns/{name}"), e)),
        }
    }
    if start_time(pid) != Some(start) {
        return Ok(());
    }
    for (name, file, flag) in opened {
        nix::sched::setns(file, flag)
            .map_err(|e| wire::ApiError::io(format!("joining the container's {name} namespace"), e))?;
    }
    Ok(())
}

/// The start time of host pid `pid` (field 22 of `/proc/<pid>/stat`), if it runs.
fn start_time(pid: i32) -> Option<u64> {
    sys::proc_stat::ProcStat::read(pid).ok().map(|s| s.start_time)
}

/// Signals taken synchronously: blocked, and read from a signalfd polled with the connection
/// (a thread for them would be one more task in the container's `pids` cgroup). nix's
/// `SignalFd` takes only the signals it names, not the real-time ones that are forwarded too,
/// hence libc.
struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    fn block(signals: &[i32]) -> std::io::Result<Self> {
        // SAFETY: sigset operations on a zeroed set we own; sigprocmask and signalfd only read
        // it. The monitor is one thread, so the mask is the process's.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &signal in signals {
                libc::sigaddset(&mut set, signal);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Self { fd: OwnedFd::from_raw_fd(fd) })
        }
    }

    /// The signals that have arrived.
    fn take(&self) -> Vec<i32> {
        let mut signals = Vec::new();
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        while let Ok(n) = rustix::io::read(self.fd.as_fd(), &mut info) {
            if n < info.len() {
                break;
            }
            // SAFETY: the kernel wrote a whole signalfd_siginfo; read_unaligned copes with the
            // byte buffer's alignment.
            let si: libc::signalfd_siginfo = unsafe { std::ptr::read_unaligned(info.as_ptr().cast()) };
            signals.push(si.ssi_signo as i32);
        }
        signals
    }
}

/// Exits as `status` says: with its code, or for a signal with 128 + the signal. The monitor
/// is PID 1 of its namespace, which no signal of its own can end, and its callers report a
/// death by signal N as 128 + N anyway (containerd's shim, conmon, a shell).
fn end_like(status: ExitStatus) -> ! {
    std::process::exit(status.code())
}
