//! paddock-sandbox: the reaper and keeper of one sandbox (a pod).
//!
//! paddockd starts it in new mount, UTS, IPC and network namespaces, and as PID 1 of a PID
//! namespace of its own (or, for a pod that shares the host's PID namespace or joins
//! another, in the host's, as a child subreaper), with a listening control socket (bound by
//! paddockd under the state root) as its only extra descriptor. The sandbox first hides the
//! host from itself (a private tmpfs root, see [`sandbox_root`]), brings up loopback, forks
//! its [`spawner`], and then serves paddockd: it receives each container's root filesystem
//! from the container's gofer, has the spawner fork the container's init (PID 1 of the
//! container's own PID namespace, nested in the sandbox's: no container ever sees the
//! sandbox), reaps every process of the sandbox, and keeps exit statuses until paddockd has
//! stored them.
//!
//! It is single-threaded and has no async runtime: it is per-sandbox overhead.
//!
//! Usage (internal, called by paddockd): `paddock-sandbox --id ID --control-fd N`

mod attributes;
mod cgroup;
mod console;
mod containers;
mod exec;
mod hooks;
mod init;
mod net;
mod process;
mod restore;
mod sandbox_root;
mod seccomp;
mod server;
mod spawner;
mod sync;
mod work;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use sandbox_root::SetupError;

/// What the sandbox does once its spawner runs: answer paddockd, reap, signal, place
/// processes in cgroups (as root, through the files' owner permissions), read its procfs.
/// Signalling processes of other users takes CAP_KILL; nothing else takes a capability.
const SANDBOX_SYSCALLS: &[&str] = &["kill", "pidfd_open", "wait4", "waitid"];

/// Where this process's command line is, and the control descriptor it shows (see
/// [`retitle`]); the spawner, forked after it is set, has the same.
static TITLE: std::sync::OnceLock<(sys::proctitle::Title, i32)> = std::sync::OnceLock::new();

/// Rewrites this process's command line to name root container `id` (a pooled sandbox, and
/// its spawner, learn their container once it is created in them); the same line again
/// changes nothing.
pub(crate) fn retitle(id: &str) {
    if let Some((title, fd)) = TITLE.get() {
        let fd = fd.to_string();
        if let Err(e) = title.set(&sys::helper_args::HelperArgs::for_container(id, &fd)) {
            eprintln!("paddock-sandbox {id}: rewriting its command line: {e}");
        }
    }
}

fn confine() -> Result<(), sys::confine::ConfineError> {
    sys::confine::confine(&[caps::Capability::CAP_KILL], SANDBOX_SYSCALLS)
}

fn main() {
    sys::exit_on_panic("paddock-sandbox");
    // Before anything hides /proc: where the command line is, for a pooled sandbox to name
    // its root container there once it has one (see `sys::proctitle`).
    let title = sys::proctitle::Title::capture().ok();
    let args = match sys::helper_args::HelperArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("paddock-sandbox: {e}");
            std::process::exit(2);
        }
    };
    if let Some(title) = title {
        // Before the spawner is forked: it inherits it (same addresses, its own copy).
        let _ = TITLE.set((title, args.control_fd));
    }
    // SAFETY: paddockd passes the listening control socket as this descriptor; nothing else
    // in this process owns it.
    let listener = UnixListener::from(unsafe { OwnedFd::from_raw_fd(args.control_fd) });
    // Nothing of the sandbox can be taken through ptrace, /proc/PID/fd or pidfd_getfd by a
    // process without CAP_SYS_PTRACE over it: not the sandbox, not the spawner, and not the
    // processes they fork until these execute (execve makes a program dumpable again).
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("paddock-sandbox {}: PR_SET_DUMPABLE: {e}", args.id);
        std::process::exit(1);
    }
    // In a PID namespace of its own the sandbox is its init, to which orphans go; in the
    // host's it asks for them.
    if nix::unistd::getpid() != nix::unistd::Pid::from_raw(1) {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            eprintln!("paddock-sandbox {}: PR_SET_CHILD_SUBREAPER: {e}", args.id);
            std::process::exit(1);
        }
    }

    // Block SIGCHLD before anything can exit, and read it from a signalfd in the loop.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    if let Err(e) = mask.thread_block() {
        eprintln!("paddock-sandbox {}: blocking SIGCHLD: {e}", args.id);
        std::process::exit(1);
    }
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("paddock-sandbox {}: signalfd: {e}", args.id);
            std::process::exit(1);
        }
    };

    let setup = sandbox_root::isolate()
        .and_then(|()| net::loopback_up().map_err(SetupError::at("bringing up loopback")))
        // A procfs of the sandbox's own PID namespace (it is PID 1 there), never attached:
        // for the containers' namespaces and id maps.
        .and_then(|()| sys::new_mount("proc", Some("proc"), &[], 0).map_err(SetupError::at("mounting procfs")));
    let setup = setup
        .and_then(|proc| {
            let spawner = spawner::Spawner::start(&proc).map_err(SetupError::at("starting the spawner"))?;
            Ok((proc, spawner))
        })
        // The spawner keeps the privileges every container must be able to start from; the
        // sandbox itself needs none of them any more.
        .and_then(|set_up| {
            confine().map_err(SetupError::at("confining itself"))?;
            Ok(set_up)
        });
    let (proc, spawner, setup_error) = match setup {
        Ok((proc, spawner)) => (Some(proc), Some(spawner), None),
        Err(err) => {
            eprintln!("paddock-sandbox {}: {err}", args.id);
            // Kept to answer every request with: the sandbox cannot serve.
            (None, None, Some(err.to_string()))
        }
    };
    let server = server::Server::new(args.id, listener, signals, proc, spawner, setup_error);
    std::process::exit(server.run());
}
