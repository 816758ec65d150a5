//! create and run: building the spec, handing over stdio, waiting, forwarding signals.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wire::api::{Create, RestoreFrom};
use wire::client::{Client, RequestSender};
use wire::{ContainerState, FdSlot, SpecJson, Stdio};

use super::terminal::{self, Console, Proxy};
use wire::autostart::connect_or_start;

/// What `ctl run` was asked to do.
#[derive(Debug)]
pub struct RunOptions {
    /// The container's id.
    pub id: String,
    /// The bundle, or `None` for the embedded default.
    pub bundle: Option<PathBuf>,
    /// The command (replaces the bundle's `process.args`).
    pub command: Vec<String>,
    /// Return once started.
    pub detach: bool,
    /// Delete once exited.
    pub remove: bool,
    /// Where to write the pid.
    pub pid_file: Option<PathBuf>,
    /// Give the process a terminal.
    pub tty: bool,
    /// Where to send the terminal (else a foreground ctl serves it).
    pub console_socket: Option<PathBuf>,
    /// The restart policy.
    pub restart: Option<String>,
    /// Restore the container's processes from a checkpoint instead of starting its process
    /// (`ctl restore`).
    pub restore: Option<RestoreFrom>,
}

/// How `create` hands the container its stdio.
#[derive(Debug, Clone, Copy)]
pub struct CreateOptions<'a> {
    /// Where to write the pid.
    pub pid_file: Option<&'a Path>,
    /// Where to send a terminal.
    pub console_socket: Option<&'a Path>,
    /// ctl will not stay to serve a terminal.
    pub detach: bool,
    /// Give the process a terminal whatever the spec says.
    pub tty: bool,
    /// The restart policy (the annotation `dev.paddock.restart`).
    pub restart: Option<&'a str>,
    /// The state root (for the pid file's monitor, see [`super::monitor`]).
    pub root: &'a Path,
    /// Restore from a checkpoint (the container is running once created).
    pub restore: Option<&'a RestoreFrom>,
}

/// The signals a foreground `ctl run` or `ctl exec` passes on to its process: every one that
/// can be caught, less those that concern ctl itself (SIGCHLD from a daemon it started,
/// SIGPIPE from its own output) and those that report its own faults.
pub(super) fn forwarded_signals() -> Vec<i32> {
    let mut signals = vec![
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGALRM,
        libc::SIGTERM,
        libc::SIGCONT,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGURG,
        libc::SIGXCPU,
        libc::SIGXFSZ,
        libc::SIGVTALRM,
        libc::SIGPROF,
        libc::SIGWINCH,
        libc::SIGIO,
        libc::SIGPWR,
    ];
    signals.extend(libc::SIGRTMIN()..=libc::SIGRTMAX());
    signals
}

/// Forwards the signals ctl receives to process `pid` of container `id` (its init when
/// `None`), until the returned guard is dropped. With a terminal, they go to its foreground
/// process group instead (as a terminal would send them), and a window change resizes it.
struct Forwarder {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    /// Starts listening (before the process exists, so that no signal slips past).
    fn listen() -> anyhow::Result<signal_hook::iterator::Signals> {
        signal_hook::iterator::Signals::new(forwarded_signals()).context("installing signal handlers")
    }

    /// Starts forwarding through `client`, a sender on the connection that waits for the exit
    /// (see [`Client::sender`]): one connection for both. Called once the wait request is
    /// written, so the two never write at once; signals that came before are queued.
    fn start(
        mut signals: signal_hook::iterator::Signals,
        mut client: RequestSender,
        id: &str,
        pid: Option<i32>,
        tty: Option<OwnedFd>,
    ) -> Self {
        let handle = signals.handle();
        let target = id.to_string();
        let thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                if let Some(tty) = &tty {
                    if signal == libc::SIGWINCH {
                        terminal::copy_window_size(tty.as_fd());
                        continue;
                    }
                    if let Some(group) = terminal::foreground_group(tty.as_fd()) {
                        // SAFETY: kill has no memory effects; a negative pid names a group.
                        if unsafe { libc::kill(-group, signal) } == 0 {
                            continue;
                        }
                    }
                }
                let _ = client.kill(&target, signal, pid);
            }
        });
        Self { handle, thread: Some(thread) }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A fresh container id: 16 random hex digits.
pub fn random_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The descriptors `--preserve-fds` passes on, taken at ctl's start.
static PRESERVED: std::sync::Mutex<Vec<std::os::fd::OwnedFd>> = std::sync::Mutex::new(Vec::new());

/// Takes ctl's descriptors 3 … 3+count-1 for the container's process (runc's
/// `--preserve-fds`); call before ctl opens anything of its own. Each must be open.
pub fn preserve_fds(count: u32) -> anyhow::Result<()> {
    // One request carries them all, beside the three standard streams, the console socket
    // and the few descriptors the sandbox adds on the way to the process.
    #[expect(clippy::cast_possible_truncation, reason = "a few thousand descriptors per message")]
    const MOST: u32 = wire::fds::MAX_FDS_PER_MESSAGE as u32 - 8;
    if count > MOST {
        anyhow::bail!("--preserve-fds {count}: at most {MOST} descriptors can be passed on");
    }
    let mut taken = Vec::with_capacity(count as usize);
    for fd in 3..3 + count as i32 {
        // SAFETY: only duplicated (to a close-on-exec copy above the range), never closed or
        // owned here; a number that is not open fails the duplication.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let copy = rustix::io::fcntl_dupfd_cloexec(borrowed, 3 + count as i32)
            .map_err(|e| anyhow::anyhow!("--preserve-fds {count}: descriptor {fd} is not open ({e})"))?;
        taken.push(copy);
    }
    *PRESERVED.lock().unwrap_or_else(|p| p.into_inner()) = taken;
    Ok(())
}

/// ctl's own standard descriptors, duplicated (those that are open), for a process without a
/// terminal, and the descriptors of `--preserve-fds`. A process with a terminal gets none of
/// the three, as with runc: its terminal is its stdio, and a container that waits for start
/// must not hold the caller's pipes open (containerd's shim reads `create`'s output until
/// end-of-file).
fn own_stdio(terminal: bool) -> Stdio {
    let extra = std::mem::take(&mut *PRESERVED.lock().unwrap_or_else(|p| p.into_inner()));
    let extra = extra.into_iter().map(FdSlot::new).collect();
    if terminal {
        return Stdio { extra, ..Stdio::default() };
    }
    let dup = |fd: std::os::fd::BorrowedFd<'_>| -> FdSlot { FdSlot::from_option(fd.try_clone_to_owned().ok()) };
    Stdio {
        stdin: dup(std::io::stdin().as_fd()),
        stdout: dup(std::io::stdout().as_fd()),
        stderr: dup(std::io::stderr().as_fd()),
        console: FdSlot::Empty,
        extra,
    }
}

/// The spec to run: the bundle's (with `command` replacing its arguments if given), or the
/// embedded default.
fn build_spec(
    id: &str,
    bundle: Option<&Path>,
    command: Vec<String>,
) -> anyhow::Result<(PathBuf, oci_spec::runtime::Spec)> {
    match bundle {
        Some(bundle) => {
            let bundle = std::path::absolute(bundle).with_context(|| format!("bundle {}", bundle.display()))?;
            let mut spec = wire::spec::read_bundle_spec(&bundle)?;
            if !command.is_empty() {
                let process = spec.process_mut().as_mut().ok_or_else(|| {
                    anyhow::anyhow!("{}/config.json has no process to run the command in", bundle.display())
                })?;
                process.set_args(Some(command));
            }
            Ok((bundle, spec))
        }
        None => {
            anyhow::ensure!(!command.is_empty(), "nothing to run: give a --bundle or a command after --");
            Ok((PathBuf::new(), wire::spec::embedded_default(id, command)?))
        }
    }
}

/// Creates a container with ctl's stdio (or a terminal) and writes its pid file. Returns the
/// terminal's master when ctl is to serve it.
pub fn create(
    client: &mut Client,
    id: &str,
    bundle: Option<&Path>,
    command: Vec<String>,
    how: CreateOptions<'_>,
) -> anyhow::Result<(ContainerState, Option<OwnedFd>)> {
    wire::ids::validate_id(id)?;
    let (bundle, mut spec) = build_spec(id, bundle, command)?;
    if let Some(policy) = how.restart {
        wire::spec::restart::RestartPolicy::parse(policy)?;
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(wire::spec::restart::RESTART_ANNOTATION.to_string(), policy.to_string());
        spec.set_annotations(Some(annotations));
    }
    if how.tty {
        if let Some(process) = spec.process_mut() {
            process.set_terminal(Some(true));
        }
    }
    let terminal = spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    if terminal && how.console_socket.is_none() && !how.detach {
        // A terminal ctl serves itself starts at ctl's own size.
        if let (Some(process), Some(size)) = (spec.process_mut(), terminal::own_window_size()) {
            if process.console_size().is_none() {
                process.set_console_size(Some(wire::spec::console_size(size)));
            }
        }
    }
    let mut console = Console::prepare(terminal, how.console_socket, how.detach)?;
    let mut stdio = own_stdio(terminal);
    stdio.console = std::mem::take(&mut console.slot);
    let state = client.create(Create {
        id: id.to_string(),
        bundle,
        spec: SpecJson::from_spec(&spec)?,
        stdio,
        restore: how.restore.cloned(),
    })?;
    let master = match console.take_master() {
        Ok(master) => master,
        Err(e) => {
            let _ = client.delete(&state.id, true);
            return Err(e);
        }
    };
    if let Some(path) = how.pid_file {
        // Detached, the caller learns of the exit from the pid file's process: a monitor.
        let written = match how.detach {
            true => super::monitor::spawn(how.root, &state.id, None).and_then(|pid| write_pid_file(path, pid)),
            false => write_pid_file(path, state.pid.unwrap_or(0)),
        };
        if let Err(e) = written {
            let _ = client.delete(&state.id, true);
            return Err(e);
        }
    }
    Ok((state, master))
}

/// Writes the pid as runc does: to a temporary file renamed into place, so a reader never
/// sees a partial file.
fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    let path = std::path::absolute(path)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    write!(f, "{pid}")?;
    drop(f);
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `ctl run`: create, start, and unless detached wait (forwarding signals) and return the
/// container's exit code.
pub fn run(root: &Path, opts: RunOptions) -> anyhow::Result<i32> {
    let mut client = connect_or_start(root)?;
    // Listen for signals before the container exists, so none slips past.
    let forwarding = if opts.detach { None } else { Some(Forwarder::listen()?) };
    let how = CreateOptions {
        pid_file: opts.pid_file.as_deref(),
        console_socket: opts.console_socket.as_deref(),
        detach: opts.detach,
        tty: opts.tty,
        restart: opts.restart.as_deref(),
        root,
        restore: opts.restore.as_ref(),
    };
    let (state, master) = create(&mut client, &opts.id, opts.bundle.as_deref(), opts.command, how)?;
    let id = state.id;
    let proxy = match master.as_ref().map(Proxy::start).transpose() {
        Ok(proxy) => proxy,
        Err(e) => {
            let _ = client.delete(&id, true);
            return Err(e);
        }
    };
    let started = if opts.restore.is_some() { Ok(()) } else { client.start(&id).map(drop) };
    if let Err(e) = started {
        // As runc's run: a container that cannot start is not left behind.
        let _ = client.delete(&id, true);
        return Err(e.into());
    }
    let Some(signals) = forwarding else {
        return Ok(0);
    };
    let sender = client.sender()?;
    let mut forwarder = None;
    let status = client.wait_with(wire::api::Wait { id: id.clone(), kill_on_hangup: false }, || {
        forwarder = Some(Forwarder::start(signals, sender, &id, None, master));
    });
    drop(forwarder);
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    let status = status?;
    if opts.remove {
        client.delete(&id, false)?;
    }
    Ok(status.code())
}

/// `ctl exec`: start a process in the container and, unless detached, wait for it (passing
/// on signals) and return its exit code.
pub fn exec(
    root: &Path,
    id: &str,
    spec: wire::api::ExecSpec,
    detach: bool,
    pid_file: Option<&Path>,
    console_socket: Option<&Path>,
) -> anyhow::Result<i32> {
    let mut client = connect_or_start(root)?;
    let full_id = client.state(id)?.id;
    let terminal = spec.tty || spec.process.as_deref().is_some_and(process_wants_terminal);
    let mut console = Console::prepare(terminal, console_socket, detach)?;
    let forwarding = if detach { None } else { Some(Forwarder::listen()?) };
    let mut stdio = own_stdio(terminal);
    stdio.console = std::mem::take(&mut console.slot);
    let started = client.exec(wire::api::Exec { id: full_id.clone(), spec, stdio })?;
    let master = console.take_master()?;
    if let Some(path) = pid_file {
        let pid = if detach { super::monitor::spawn(root, &full_id, Some(started.ns_pid))? } else { started.pid };
        write_pid_file(path, pid)?;
    }
    let Some(signals) = forwarding else {
        return Ok(0);
    };
    let proxy = master.as_ref().map(Proxy::start).transpose()?;
    let sender = client.sender()?;
    let mut forwarder = None;
    let request =
        wire::api::WaitProcess { id: full_id.clone(), pid: started.ns_pid, root: false, kill_on_hangup: false };
    let status = client.wait_process_with(request, || {
        forwarder = Some(Forwarder::start(signals, sender, &full_id, Some(started.ns_pid), master));
    });
    drop(forwarder);
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    Ok(status?.code())
}

/// Whether runc's `exec --process` JSON asks for a terminal.
fn process_wants_terminal(json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(json).is_ok_and(|p| p["terminal"] == serde_json::Value::Bool(true))
}
