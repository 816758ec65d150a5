//! create and run: building the spec, handing over stdio, waiting, forwarding signals.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wire::api::Create;
use wire::client::Client;
use wire::{ContainerState, FdSlot, SpecJson, Stdio};

use crate::autostart::connect_or_start;

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
}

/// The signals a foreground `ctl run` or `ctl exec` passes on to its process: every one that
/// can be caught, less those that concern ctl itself (SIGCHLD from a daemon it started,
/// SIGPIPE from its own output) and those that report its own faults.
fn forwarded_signals() -> Vec<i32> {
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
/// `None`), until the returned guard is dropped.
struct Forwarder {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    /// Starts listening (before the process exists, so that no signal slips past).
    fn listen() -> anyhow::Result<signal_hook::iterator::Signals> {
        signal_hook::iterator::Signals::new(forwarded_signals()).context("installing signal handlers")
    }

    fn start(mut signals: signal_hook::iterator::Signals, root: &Path, id: &str, pid: Option<i32>) -> anyhow::Result<Self> {
        let handle = signals.handle();
        let mut client = connect_or_start(root)?;
        let target = id.to_string();
        let thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                let _ = client.kill(&target, signal, false, pid);
            }
        });
        Ok(Self { handle, thread: Some(thread) })
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

/// ctl's own standard descriptors, duplicated (those that are open).
fn own_stdio() -> Stdio {
    let dup = |fd: std::os::fd::BorrowedFd<'_>| -> FdSlot { FdSlot::from_option(fd.try_clone_to_owned().ok()) };
    Stdio {
        stdin: dup(std::io::stdin().as_fd()),
        stdout: dup(std::io::stdout().as_fd()),
        stderr: dup(std::io::stderr().as_fd()),
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
            Ok((PathBuf::new(), actors::spec::embedded_default(id, command)?))
        }
    }
}

/// Creates a container with ctl's stdio and writes its pid file.
pub fn create(
    client: &mut Client,
    id: &str,
    bundle: Option<&Path>,
    command: Vec<String>,
    pid_file: Option<&Path>,
) -> anyhow::Result<ContainerState> {
    wire::ids::validate_id(id)?;
    let (bundle, spec) = build_spec(id, bundle, command)?;
    let state =
        client.create(Create { id: id.to_string(), bundle, spec: SpecJson::from_spec(&spec)?, stdio: own_stdio() })?;
    if let Some(path) = pid_file {
        write_pid_file(path, state.pid.unwrap_or(0))?;
    }
    Ok(state)
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
    let forwarding = if opts.detach {
        None
    } else {
        Some(Forwarder::listen()?)
    };
    let state = create(&mut client, &opts.id, opts.bundle.as_deref(), opts.command, opts.pid_file.as_deref())?;
    let id = state.id;
    if let Err(e) = client.start(&id) {
        // As runc's run: a container that cannot start is not left behind.
        let _ = client.delete(&id, true);
        return Err(e.into());
    }
    let Some(signals) = forwarding else {
        return Ok(0);
    };
    let forwarder = Forwarder::start(signals, root, &id, None)?;
    let status = client.wait(&id);
    drop(forwarder);
    let status = status?;
    if opts.remove {
        client.delete(&id, false)?;
    }
    Ok(status.code())
}

/// `ctl exec`: start a process in the container and, unless detached, wait for it (passing
/// on signals) and return its exit code.
pub fn exec(root: &Path, id: &str, spec: wire::api::ExecSpec, detach: bool, pid_file: Option<&Path>) -> anyhow::Result<i32> {
    let mut client = connect_or_start(root)?;
    let full_id = client.state(id)?.id;
    let forwarding = if detach { None } else { Some(Forwarder::listen()?) };
    let started = client.exec(wire::api::Exec { id: full_id.clone(), spec, stdio: own_stdio() })?;
    if let Some(path) = pid_file {
        write_pid_file(path, started.pid)?;
    }
    let Some(signals) = forwarding else {
        return Ok(0);
    };
    let forwarder = Forwarder::start(signals, root, &full_id, Some(started.ns_pid))?;
    let status = client.wait_process(&full_id, started.ns_pid, false);
    drop(forwarder);
    Ok(status?.code())
}
