//! File descriptors beside frames.
//!
//! A message that carries descriptors holds [`FdSlot`]s, anywhere in its fields. On the wire a
//! slot is a single boolean ("a descriptor belongs here"); the descriptors themselves travel as
//! `SCM_RIGHTS` control data attached to the frame's first bytes, in the order the slots are
//! encoded.
//!
//! The slots are declared once, by the message's own type: encoding visits every field (serde's
//! derive is exhaustive), and [`FdSlot`]'s `Serialize` hands its descriptor to the send in
//! progress ([`encode_message`](crate::frame::encode_message)); decoding visits the same fields
//! in the same order, and [`FdSlot`]'s `Deserialize` takes the next descriptor that arrived
//! with the frame ([`decode_message`](crate::frame::decode_message)). No list of slots is
//! written by hand, so a message that gains a descriptor cannot be sent without it. (Servo's
//! `ipc-channel` passes its channels through serde the same way.)

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::WireError;

/// The most descriptors one frame may carry: the kernel's limit for one `SCM_RIGHTS` message
/// (`SCM_MAX_FD`).
pub const MAX_FDS_PER_FRAME: usize = 253;

/// The most descriptors one message may carry: several `SCM_RIGHTS` batches of
/// [`MAX_FDS_PER_FRAME`] (runc's `--preserve-fds` takes any number the caller has open).
pub const MAX_FDS_PER_MESSAGE: usize = 4096;

/// What to send next of a frame's `bytes` and the `fds` not sent yet: a full batch on a
/// single byte while more than one batch is left, else all of them with all the bytes. A
/// frame has a byte for every descriptor slot, so it never runs out of bytes first.
pub fn next_batch<'a>(bytes: &[u8], fds: &'a [RawFd]) -> (usize, &'a [RawFd]) {
    if fds.len() > MAX_FDS_PER_FRAME {
        (1, &fds[..MAX_FDS_PER_FRAME])
    } else {
        (bytes.len(), fds)
    }
}

/// A place in a message for one file descriptor.
#[derive(Debug, Default)]
pub enum FdSlot {
    /// No descriptor here.
    #[default]
    Empty,
    /// Decoded from the wire without the descriptors of its frame (a payload decoded on its
    /// own, or a frame that brought too few): a descriptor belongs here but none is attached.
    Pending,
    /// A descriptor, owned by the message.
    Present(OwnedFd),
}

impl FdSlot {
    /// A slot holding `fd`.
    pub fn new(fd: impl Into<OwnedFd>) -> Self {
        FdSlot::Present(fd.into())
    }

    /// A slot holding `fd` if there is one.
    pub fn from_option(fd: Option<OwnedFd>) -> Self {
        fd.map_or(FdSlot::Empty, FdSlot::Present)
    }

    /// Takes the descriptor out, leaving the slot empty.
    pub fn take(&mut self) -> Option<OwnedFd> {
        match std::mem::take(self) {
            FdSlot::Present(fd) => Some(fd),
            _ => None,
        }
    }

    /// Borrows the descriptor, if present.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            FdSlot::Present(fd) => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// Whether a descriptor is (or, for a decoded message, will be) in this slot.
    pub fn is_some(&self) -> bool {
        !matches!(self, FdSlot::Empty)
    }
}

thread_local! {
    /// The descriptors of the message this thread is encoding for a send, in slot order.
    static OUTGOING: RefCell<Option<Vec<RawFd>>> = const { RefCell::new(None) };
    /// The descriptors that came with the frame this thread is decoding.
    static INCOMING: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

/// The descriptors a frame brought, handed to its slots as they are decoded.
#[derive(Debug, Default)]
struct Incoming {
    fds: VecDeque<OwnedFd>,
    /// How many arrived.
    received: usize,
    /// How many slots asked for one.
    wanted: usize,
}

/// Runs `encode` (the encoding of one message) and returns, beside its result, the raw
/// descriptors of every present slot it encoded, in order. They stay owned by the message.
pub(crate) fn collecting_fds<R>(encode: impl FnOnce() -> R) -> (R, Vec<RawFd>) {
    /// Restores the outer collection (if any) even when `encode` unwinds.
    struct Scope(Option<Vec<RawFd>>);
    impl Drop for Scope {
        fn drop(&mut self) {
            let outer = self.0.take();
            OUTGOING.with(|o| *o.borrow_mut() = outer);
        }
    }
    let scope = Scope(OUTGOING.with(|o| o.borrow_mut().replace(Vec::new())));
    let result = encode();
    let fds = OUTGOING.with(|o| o.borrow_mut().take()).unwrap_or_default();
    drop(scope);
    (result, fds)
}

/// Runs `decode` (the decoding of one message) with `fds` for its slots, in order. Fails with
/// [`WireError::MissingFds`] when its slots asked for more than arrived; descriptors no slot
/// asked for are closed here, at once: a peer cannot make us keep what we did not ask for.
pub(crate) fn supplying_fds<T>(
    fds: Vec<OwnedFd>,
    decode: impl FnOnce() -> Result<T, WireError>,
) -> Result<T, WireError> {
    /// Restores the outer supply (if any) even when `decode` unwinds.
    struct Scope(Option<Incoming>);
    impl Drop for Scope {
        fn drop(&mut self) {
            let outer = self.0.take();
            INCOMING.with(|i| *i.borrow_mut() = outer);
        }
    }
    let mine = Incoming { received: fds.len(), fds: fds.into(), wanted: 0 };
    let scope = Scope(INCOMING.with(|i| i.borrow_mut().replace(mine)));
    let result = decode();
    let used = INCOMING.with(|i| i.borrow_mut().take()).unwrap_or_default();
    drop(scope);
    // A message whose slots wanted more than came is dropped, closing what it did get.
    let msg = result?;
    if used.wanted > used.received {
        return Err(WireError::MissingFds { expected: used.wanted, received: used.received });
    }
    Ok(msg)
}

impl Serialize for FdSlot {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if let FdSlot::Present(fd) = self {
            OUTGOING.with(|o| {
                if let Some(fds) = o.borrow_mut().as_mut() {
                    fds.push(fd.as_raw_fd());
                }
            });
        }
        s.serialize_bool(matches!(self, FdSlot::Present(_)))
    }
}

impl<'de> Deserialize<'de> for FdSlot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !bool::deserialize(d)? {
            return Ok(FdSlot::Empty);
        }
        // Outside a receive (a payload decoded on its own), or when the frame brought too few:
        // pending, which the receive reports as missing.
        Ok(INCOMING.with(|i| match i.borrow_mut().as_mut() {
            Some(incoming) => {
                incoming.wanted += 1;
                incoming.fds.pop_front().map_or(FdSlot::Pending, FdSlot::Present)
            }
            None => FdSlot::Pending,
        }))
    }
}

/// Sends `bytes` on a stream socket, with `fds` attached to the first byte.
///
/// Blocks (or fails with `WouldBlock` on a non-blocking socket before anything was sent) until
/// every byte is written. Never raises SIGPIPE.
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let sent = if fds.is_empty() {
        sendmsg::<()>(sock.as_raw_fd(), &iov, &[], MsgFlags::MSG_NOSIGNAL, None)
    } else {
        let cmsg = [ControlMessage::ScmRights(fds)];
        sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
    };
    sent.map_err(std::io::Error::from)
}

/// Receives bytes into `buf` and any descriptors that came with them into `fds`
/// (close-on-exec). Returns the byte count; 0 means the peer closed the stream.
///
/// Every descriptor the kernel installed is owned (and so closed if unused) before anything
/// can fail: when more arrived than one frame may carry, the kernel installs what fits and
/// flags the message truncated, and those must not leak. (nix refuses to iterate a truncated
/// message's control data, which once leaked 64 descriptors per such message; rustix hands
/// them over as owned descriptors.)
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> std::io::Result<usize> {
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_FRAME))];
    recv_into(sock, buf, fds, &mut space)
}

/// [`recv_with_fds`] with room for the control data given by `space`.
fn recv_into(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    space: &mut [std::mem::MaybeUninit<u8>],
) -> std::io::Result<usize> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    let mut control = RecvAncillaryBuffer::new(space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = rustix::net::recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) {
        fds.clear();
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("more than {MAX_FDS_PER_FRAME} file descriptors arrived with one message"),
        ));
    }
    Ok(msg.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    #[test]
    fn descriptors_travel_with_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut pr, pw) = std::io::pipe().unwrap();
        let sent = send_with_fds(a.as_fd(), b"x", &[pw.as_raw_fd()]).unwrap();
        assert_eq!(sent, 1);
        drop(pw);
        let mut buf = [0u8; 8];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!((n, fds.len()), (1, 1));
        // The received descriptor is the pipe's write end: writing to it reaches the reader.
        let w = fds.pop().unwrap();
        nix::unistd::write(&w, b"ok").unwrap();
        drop(w);
        let mut out = String::new();
        pr.read_to_string(&mut out).unwrap();
        assert_eq!(out, "ok");
    }

    #[test]
    fn a_truncated_message_leaks_no_descriptor() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = std::io::pipe().unwrap();
        send_with_fds(a.as_fd(), b"x", &[w.as_raw_fd(); 10]).unwrap();
        drop(w);
        // Room for 4: the kernel installs 4, closes the rest and flags the message truncated.
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
        let mut fds = Vec::new();
        let mut buf = [0u8; 8];
        assert!(recv_into(b.as_fd(), &mut buf, &mut fds, &mut space).is_err());
        assert!(fds.is_empty());
        // Every copy of the write end is closed: the reader sees end-of-file at once.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut { r }, &mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[test]
    fn slot_serializes_as_presence() {
        let (a, _b) = UnixStream::pair().unwrap();
        let slot = FdSlot::new(OwnedFd::from(a));
        let bytes = crate::frame::encode_frame(&slot, 100).unwrap();
        let back: FdSlot = crate::frame::decode_payload(&bytes[4..]).unwrap();
        assert!(matches!(back, FdSlot::Pending));
        let empty = crate::frame::encode_frame(&FdSlot::Empty, 100).unwrap();
        let back: FdSlot = crate::frame::decode_payload(&empty[4..]).unwrap();
        assert!(matches!(back, FdSlot::Empty));
    }
}
