//! paddock-sandbox: PID 1 of one sandbox.
//!
//! paddockd starts it in new PID, mount, UTS, IPC, network and cgroup namespaces, with a
//! listening control socket (bound by paddockd under the state root) as its only extra
//! descriptor. The sandbox first hides the host from itself (a private tmpfs root, see
//! [`sandbox_root`]), brings up loopback, and then serves paddockd: it receives each
//! container's root filesystem from the container's gofer, forks the container's init,
//! reaps every process of the sandbox, and keeps exit statuses until paddockd has stored them.
//!
//! It is single-threaded and has no async runtime: it is per-sandbox overhead.
//!
//! Usage (internal, called by paddockd): `paddock-sandbox --id ID --control-fd N`

mod args;
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
mod sync;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

fn main() {
    let args = match args::SandboxArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("paddock-sandbox: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: paddockd passes the listening control socket as this descriptor; nothing else
    // in this process owns it.
    let listener = UnixListener::from(unsafe { OwnedFd::from_raw_fd(args.control_fd) });

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
        .and_then(|()| net::loopback_up().map_err(|e| format!("bringing up loopback: {e}")))
        // A procfs of the sandbox's own PID namespace (it is PID 1 there), never attached:
        // for the containers' namespaces and id maps.
        .and_then(|()| sys::new_mount("proc", Some("proc"), &[], 0).map_err(|e| format!("mounting procfs: {e}")));
    let (proc, setup_error) = match setup {
        Ok(proc) => (Some(proc), None),
        Err(err) => {
            eprintln!("paddock-sandbox {}: {err}", args.id);
            (None, Some(err))
        }
    };
    std::process::exit(server::Server::new(args.id, listener, signals, proc, setup_error).run());
}
