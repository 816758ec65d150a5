//! paddock-gofer: one per container.
//!
//! paddockd starts it (before the sandbox) as PID 1 of new IPC, mount, network, PID and UTS
//! namespaces, with the sandbox's end of their io socket still in paddockd's hands and the
//! gofer's end as fd 3. The gofer opens the container's root filesystem on the host, turns it
//! into a detached mount (read-only, or under a tmpfs overlay, as asked) and sends that mount
//! over the io socket. The sandbox attaches it; it never resolves a host path itself.
//!
//! Afterwards the gofer stays alive until its socket closes or paddockd kills it.
//!
//! Usage (internal, called by paddockd):
//! `paddock-gofer --id ID --io-fd N --rootfs PATH [--readonly] [--overlay memory] [--overlay-size BYTES]`

mod args;
mod rootfs;
mod sys;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use wire::conn::Connection;
use wire::frame::DEFAULT_MAX_FRAME;
use wire::gofer_proto::GoferMessage;
use wire::{ApiError, FdSlot};

fn main() {
    let args = match args::GoferArgs::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("paddock-gofer: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: paddockd passes the io socket as this descriptor and nothing else in this
    // process owns it.
    let io = unsafe { OwnedFd::from_raw_fd(args.io_fd) };
    let mut conn = Connection::new(UnixStream::from(io), DEFAULT_MAX_FRAME);

    let message = match rootfs::prepare(&args) {
        Ok(mount) => GoferMessage::Rootfs {
            mount: FdSlot::new(mount),
        },
        Err(err) => {
            GoferMessage::Failed(err.context(format!("gofer of {}", wire::ids::show_id(&args.id))))
        }
    };
    let failed = matches!(message, GoferMessage::Failed(_));
    if let Err(e) = conn.send(&message) {
        eprintln!(
            "paddock-gofer {}: cannot hand the rootfs to the sandbox: {e}",
            args.id
        );
        std::process::exit(1);
    }
    drop(message);
    if failed {
        std::process::exit(1);
    }
    serve(&mut conn);
}

/// Waits on the io socket until the sandbox closes it. Confined file service (`cp`) will be
/// answered here.
fn serve(conn: &mut Connection) {
    loop {
        match conn.fill() {
            Ok(0) => return,
            Ok(_) => {
                // No requests are defined yet; anything that arrives is dropped.
                while let Ok(Some(_)) = conn.try_next::<GoferMessage>() {}
            }
            Err(_) => return,
        }
    }
}

/// Converts a failed system call into an error naming what was being done.
pub(crate) fn sys_err(what: impl std::fmt::Display, err: impl std::fmt::Display) -> ApiError {
    ApiError::io(what, err)
}
