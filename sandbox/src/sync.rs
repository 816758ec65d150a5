//! The handshake between the sandbox and a child it forked (a container's init or an exec'd
//! process), over a close-on-exec `SOCK_SEQPACKET` pair.
//!
//! The sandbox sends `P` once it has placed the child in its container's cgroups, `D` once
//! the create hooks ran, `M` once it has mapped its user namespace's ids, `S` to start. The
//! child sends one-byte messages (`H` stopped before the pivot, `R` ready, `U` please map my
//! user namespace's ids) or `E` and an error, encoded as on the wire
//! (so its kind and errno reach paddockd). A successful `execve` closes the child's end, which the sandbox sees as end-of-file.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use rustix::fs::OFlags;
use wire::{ApiError, ErrorKind};

/// How long a child may take to set up or to exec before the sandbox gives up on it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The child is set up (and waits for start).
pub const READY: u8 = b'R';
/// The sandbox placed the child in its container's cgroups.
pub const PLACED: u8 = b'P';
/// An error follows.
pub const ERROR: u8 = b'E';
/// Run the user's program.
pub const START: u8 = b'S';
/// The child entered a new user namespace and needs its id maps written by the sandbox.
pub const MAP_IDS: u8 = b'U';
/// The sandbox wrote them.
pub const IDS_MAPPED: u8 = b'M';
/// The child's mounts are set up and it waits before its pivot (its working directory is its
/// root), for the create hooks.
pub const BEFORE_PIVOT: u8 = b'H';
/// The create hooks ran: go on.
pub const HOOKS_RAN: u8 = b'D';

/// A close-on-exec seqpacket pair: (sandbox's end, child's end).
pub fn pair() -> Result<(OwnedFd, OwnedFd), ApiError> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| ApiError::io("socketpair", e))
}

/// Sends a one-byte message.
pub fn send(fd: &OwnedFd, byte: u8) -> std::io::Result<()> {
    nix::sys::socket::send(fd.as_raw_fd(), &[byte], MsgFlags::MSG_NOSIGNAL).map(drop).map_err(Into::into)
}

/// Reads one message; `None` at end-of-file. Gives up after a minute.
pub fn read(fd: BorrowedFd<'_>) -> std::io::Result<Option<Vec<u8>>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let timeout = PollTimeout::try_from(TIMEOUT).unwrap_or(PollTimeout::MAX);
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

/// Blocks until the peer sends `byte`; anything else (or end-of-file) is `false`.
pub fn expect(fd: &OwnedFd, byte: u8) -> bool {
    let mut got = [0u8; 1];
    loop {
        match nix::sys::socket::recv(fd.as_raw_fd(), &mut got, MsgFlags::empty()) {
            Ok(1) => return got[0] == byte,
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return false,
        }
    }
}

/// What a child that has exited wrote to its report pipe (`report` is the read end): read
/// without blocking, since a process the child left behind could hold the write end open.
pub fn read_report(report: &OwnedFd) -> String {
    let _ = rustix::fs::fcntl_setfl(report, OFlags::NONBLOCK);
    let mut message = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = rustix::io::read(report, &mut chunk) {
        message.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&message).into_owned()
}

/// The child side: reports an error, whole (kind, errno, operation and message), encoded as
/// on the wire.
pub fn send_error(fd: &OwnedFd, err: &ApiError) {
    let mut msg = vec![ERROR];
    // A seqpacket message must fit in one send: an overlong message is cut.
    let mut err = err.clone();
    if err.message.len() > 32 * 1024 {
        let mut end = 32 * 1024;
        while !err.message.is_char_boundary(end) {
            end -= 1;
        }
        err.message.truncate(end);
    }
    if let Ok(frame) = wire::frame::encode_frame(&err, 60 * 1024) {
        msg.extend_from_slice(&frame[wire::frame::HEADER_LEN..]);
    }
    let _ = nix::sys::socket::send(fd.as_raw_fd(), &msg, MsgFlags::MSG_NOSIGNAL);
}

/// The sandbox side: turns what the child said (or did not say) into an error about `what`.
pub fn failure(what: &str, phase: &str, got: std::io::Result<Option<Vec<u8>>>) -> ApiError {
    match got {
        Ok(Some(msg)) if msg.first() == Some(&ERROR) => match wire::frame::decode_payload::<ApiError>(&msg[1..]) {
            Ok(err) => err.context(what),
            Err(_) => ApiError::new(ErrorKind::Sandbox, format!("{what}: garbled error while {phase}")),
        },
        Ok(Some(_)) => ApiError::new(ErrorKind::Sandbox, format!("{what}: garbled message while {phase}")),
        Ok(None) => ApiError::new(ErrorKind::Sandbox, format!("{what}: its process died while {phase}")),
        Err(e) => ApiError::new(ErrorKind::Sandbox, format!("{what}: while {phase}: {e}")),
    }
}

/// The child side, first thing: the sandbox blocks SIGCHLD for its signalfd and Rust ignores
/// SIGPIPE; neither may leak into the container. A new session detaches from the sandbox's.
pub fn reset_process_state() -> Result<(), ApiError> {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: restoring the default disposition of SIGPIPE installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
    }
    nix::unistd::setsid().map_err(|e| ApiError::io("setsid", e))?;
    Ok(())
}

/// The child side, last thing before exec: the caller's stdio (or `/dev/null`) on 0, 1, 2.
#[expect(clippy::cast_possible_truncation, reason = "descriptor numbers 0 to 2")]
pub fn connect_stdio(stdio: &[Option<OwnedFd>; 3]) -> Result<(), ApiError> {
    // Every source is copied above the standard numbers before any dup2: a given descriptor
    // may itself sit on 0, 1 or 2 (where a descriptor lands depends on which numbers were free
    // in each process it passed through), and a dup2 onto its number would close it before
    // its own turn.
    let mut sources = Vec::with_capacity(3);
    for fd in stdio {
        let source = match fd {
            Some(fd) => fd.try_clone().map_err(|e| ApiError::io("dup stdio", e))?,
            None => rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, rustix::fs::Mode::empty())
                .map_err(|e| ApiError::io("/dev/null", e))?,
        };
        sources.push(above_stdio(source)?);
    }
    for (target, source) in sources.iter().enumerate() {
        // SAFETY: dup2 onto 0..=2 replaces the standard descriptors, which nothing else in this
        // process holds as an OwnedFd.
        if unsafe { libc::dup2(source.as_fd().as_raw_fd(), target as i32) } < 0 {
            return Err(ApiError::io("dup2 stdio", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// `fd` moved to a number above 2 (it may sit on 0, 1 or 2 when those are closed).
pub fn above_stdio(fd: OwnedFd) -> Result<OwnedFd, ApiError> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    rustix::io::fcntl_dupfd_cloexec(&fd, 3).map_err(|e| ApiError::io("moving a descriptor above 2", e))
}

/// Places `extra` at descriptors 3, 4, … of the calling child (inherited across `execve`; every
/// other descriptor from 3 up is close-on-exec by then, see [`crate::process::apply`]), as
/// runc's `--preserve-fds` does, first moving `sync` above them so it survives for the exec's
/// verdict; returns `sync` (perhaps renumbered). Whatever else the child held on those numbers
/// is replaced: after this only the exec follows.
#[expect(
    clippy::cast_possible_truncation,
    reason = "descriptor numbers: at most 3 + the preserved fds, which are capped far below i32::MAX"
)]
pub fn place_extra_fds(extra: &[OwnedFd], sync: OwnedFd) -> Result<OwnedFd, (OwnedFd, ApiError)> {
    let top = 3 + extra.len() as i32;
    if extra.is_empty() {
        return Ok(sync);
    }
    let sync = if sync.as_raw_fd() < top {
        match rustix::io::fcntl_dupfd_cloexec(&sync, top) {
            // The old number is closed now, before it may receive a preserved descriptor.
            Ok(moved) => {
                drop(sync);
                moved
            }
            Err(e) => return Err((sync, ApiError::io("moving the sync socket", e))),
        }
    } else {
        sync
    };
    // Every source above the range first, so that no dup2 overwrites one still to be placed.
    let mut high = Vec::with_capacity(extra.len());
    for fd in extra {
        match rustix::io::fcntl_dupfd_cloexec(fd, top) {
            Ok(copy) => high.push(copy),
            Err(e) => return Err((sync, ApiError::io("duplicating a preserved descriptor", e))),
        }
    }
    for (i, fd) in high.iter().enumerate() {
        // SAFETY: dup2 onto 3+i replaces that number, which after this point nothing of ours
        // uses (only execve follows); the copy is not close-on-exec, so the program gets it.
        if unsafe { libc::dup2(fd.as_raw_fd(), 3 + i as i32) } < 0 {
            return Err((sync, ApiError::io("placing a preserved descriptor", std::io::Error::last_os_error())));
        }
    }
    Ok(sync)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_error_arrives_whole() {
        let (sandbox, child) = pair().unwrap();
        let sent = ApiError::io("mknod /dev/null", nix::errno::Errno::EPERM).with_kind(ErrorKind::Unsupported);
        send_error(&child, &sent);
        let got = failure("container \"c\"", "setting up", read(sandbox.as_fd()));
        assert_eq!((got.kind, got.errno), (ErrorKind::Unsupported, Some(libc::EPERM)));
        assert_eq!(got.to_string(), "container \"c\": mknod /dev/null: Operation not permitted (EPERM)");
    }

    #[test]
    fn an_overlong_error_is_cut_not_lost() {
        let (sandbox, child) = pair().unwrap();
        send_error(&child, &ApiError::invalid_spec("é".repeat(50_000)));
        let got = failure("container \"c\"", "setting up", read(sandbox.as_fd()));
        assert_eq!(got.kind, ErrorKind::InvalidSpec);
        assert!(got.message.len() <= 32 * 1024 && got.message.starts_with('é'), "{}", got.message.len());
    }
}
