//! paddock-gofer: one per container.
//!
//! paddockd starts it as PID 1 of new IPC, mount, network, PID and UTS namespaces, with a
//! listening control socket (`<root>/<id>/gofer.sock`) as its only extra descriptor. On the
//! first connection paddockd sends the setup: the gofer opens the container's root filesystem
//! and every bind mount of the spec on the host, turns each into a detached mount (under a
//! tmpfs overlay where asked), and hands them to the sandbox over one io socket per mount.
//! Then it pivots into its own copy of the container's tree — from then on it cannot see the
//! host's files — and serves confined file access (`ctl cp`) resolved beneath the
//! container's root.
//!
//! A restarted gofer gets the container's mounts back from the sandbox instead of opening
//! the host paths again, so an overlay's contents survive the restart.
//!
//! Usage (internal, called by paddockd): `paddock-gofer --id ID --control-fd N`

mod archive;
mod overlay;
mod server;
mod setup;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

/// What the gofer needs once set up, as runsc's gofer: to read and write any file of the
/// container (DAC_OVERRIDE, DAC_READ_SEARCH), give what it writes its owner and mode (CHOWN,
/// FOWNER, FSETID), and make device nodes a tar stream carries (MKNOD).
const GOFER_CAPABILITIES: [caps::Capability; 6] = [
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_DAC_READ_SEARCH,
    caps::Capability::CAP_FOWNER,
    caps::Capability::CAP_FSETID,
    caps::Capability::CAP_MKNOD,
];

/// The file system calls of copying in and out, beyond what every helper makes.
const GOFER_SYSCALLS: &[&str] = &[
    "copy_file_range",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "fstatfs",
    "ftruncate",
    "linkat",
    "mkdirat",
    "mknodat",
    "sendfile",
    "splice",
    "symlinkat",
    "unlinkat",
    "utimensat",
];

/// Drops what the gofer no longer needs once set up (see [`sys::confine`]).
fn confine() -> Result<(), sys::confine::ConfineError> {
    sys::confine::confine(&GOFER_CAPABILITIES, GOFER_SYSCALLS)
}

fn main() {
    sys::exit_on_panic("paddock-gofer");
    // Before anything else: where the command line is, for a pooled gofer to name its
    // container there once it has one (see `sys::proctitle`).
    let title = sys::proctitle::Title::capture().ok();
    let args = match sys::helper_args::HelperArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("paddock-gofer: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: paddockd passes the listening control socket as this descriptor; nothing else
    // in this process owns it.
    let listener = UnixListener::from(unsafe { OwnedFd::from_raw_fd(args.control_fd) });
    std::process::exit(server::Server::new(args.id, listener, title, args.control_fd).run());
}
