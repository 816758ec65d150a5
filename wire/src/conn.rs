//! A blocking connection that sends and receives whole messages with their descriptors.
//!
//! Used by `ctl`, the sandbox and the gofer, which are single-threaded and have no async
//! runtime. The sandbox drives several connections from one `poll` loop: it calls
//! [`Connection::fill`] when the socket is readable and then takes every buffered message with
//! [`Connection::try_next`].

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::WireError;
use crate::fds::{recv_with_fds, send_with_fds};
use crate::frame::{decode_message, encode_message, FrameReader};

/// Size of one read from the socket (into a buffer on the stack).
const READ_CHUNK: usize = 16 * 1024;

/// One end of a framed stream connection.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    reader: FrameReader,
    max_frame: usize,
    eof: bool,
}

impl Connection {
    /// Wraps a connected stream; frames above `max_frame` bytes are refused both ways.
    pub fn new(stream: UnixStream, max_frame: usize) -> Self {
        Self { stream, reader: FrameReader::new(max_frame), max_frame, eof: false }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Gives the stream back (anything buffered is dropped).
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// Sends one message with the descriptors in its slots.
    pub fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), WireError> {
        let (frame, fds) = encode_message(msg, self.max_frame)?;
        send_all(self.stream.as_fd(), &frame, &fds)
    }

    /// Receives one message, blocking until it is complete.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, WireError> {
        loop {
            if let Some(msg) = self.try_next()? {
                return Ok(msg);
            }
            if self.eof {
                return Err(self.reader.finish());
            }
            self.fill()?;
        }
    }

    /// Reads once from the socket into the buffer (blocking if nothing is available).
    /// Returns the number of bytes read; 0 means the peer closed the connection.
    pub fn fill(&mut self) -> Result<usize, WireError> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut fds = Vec::new();
        let n = loop {
            match recv_with_fds(self.stream.as_fd(), &mut chunk, &mut fds) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.reader.extend_with_fds(&chunk[..n], fds);
        Ok(n)
    }

    /// Whether the peer has closed its end (after [`fill`](Self::fill) returned 0).
    pub fn is_closed(&self) -> bool {
        self.eof
    }

    /// The error that describes how the stream ended (closed cleanly or inside a frame).
    pub fn end_error(&self) -> WireError {
        self.reader.finish()
    }

    /// Decodes the next message if a whole frame is already buffered.
    pub fn try_next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, WireError> {
        let Some(frame) = self.reader.next_frame_with_fds()? else {
            return Ok(None);
        };
        decode_message(&frame.payload, frame.fds).map(Some)
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Writes a whole frame, descriptors attached to its first chunk.
fn send_all(sock: BorrowedFd<'_>, mut bytes: &[u8], mut fds: &[i32]) -> Result<(), WireError> {
    while !bytes.is_empty() {
        let (len, batch) = crate::fds::next_batch(bytes, fds);
        match send_with_fds(sock, &bytes[..len], batch) {
            Ok(n) => {
                bytes = &bytes[n..];
                fds = &fds[batch.len()..];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fds::FdSlot;
    use crate::frame::encode_frame;
    use serde::Deserialize;
    use std::os::fd::{AsRawFd, OwnedFd};

    #[derive(Debug, Serialize, Deserialize)]
    struct WithFd {
        name: String,
        fd: FdSlot,
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct ManyFds(Vec<FdSlot>);

    #[test]
    fn more_descriptors_than_one_control_message_holds_travel_in_full_batches() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut left, mut right) = (Connection::new(a, 1 << 20), Connection::new(b, 1 << 20));
        let (_r, w) = std::io::pipe().unwrap();
        let count = crate::fds::MAX_FDS_PER_FRAME * 2 + 7;
        let msg = ManyFds((0..count).map(|_| FdSlot::new(w.try_clone().unwrap())).collect());
        left.send(&msg).unwrap();
        left.send(&"after".to_string()).unwrap();
        let got: ManyFds = right.recv().unwrap();
        assert_eq!(got.0.iter().filter(|s| matches!(s, FdSlot::Present(_))).count(), count);
        assert_eq!(right.recv::<String>().unwrap(), "after");
    }

    #[test]
    fn messages_with_and_without_fds_in_sequence() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut left = Connection::new(a, 1024);
        let mut right = Connection::new(b, 1024);
        let (r, w) = std::io::pipe().unwrap();
        for i in 0..3 {
            let fd = if i == 1 { FdSlot::new(OwnedFd::from(w.try_clone().unwrap())) } else { FdSlot::Empty };
            left.send(&WithFd { name: format!("m{i}"), fd }).unwrap();
        }
        drop(w);
        let got: Vec<WithFd> = (0..3).map(|_| right.recv().unwrap()).collect();
        assert_eq!(got[1].name, "m1");
        assert!(matches!(got[0].fd, FdSlot::Empty));
        assert!(matches!(got[1].fd, FdSlot::Present(_)));
        assert!(matches!(got[2].fd, FdSlot::Empty));
        drop(r);
    }

    #[test]
    fn announced_fd_that_never_came_is_an_error() {
        // Hand-craft a frame that says "a descriptor belongs here" but send it without one.
        let (a, b) = UnixStream::pair().unwrap();
        let frame = encode_frame(&("x".to_string(), true), 1024).unwrap();
        send_all(a.as_fd(), &frame, &[]).unwrap();
        let mut right = Connection::new(b, 1024);
        match right.recv::<WithFd>() {
            Err(WireError::MissingFds { expected: 1, received: 0 }) => {}
            other => panic!("expected MissingFds, got {other:?}"),
        }
    }

    /// Whether the write end of the pipe whose read end is `read` is closed everywhere.
    fn writer_closed(read: &std::io::PipeReader) -> bool {
        let mut fds = [nix::poll::PollFd::new(read.as_fd(), nix::poll::PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap();
        fds[0].revents().is_some_and(|r| r.contains(nix::poll::PollFlags::POLLHUP))
    }

    #[test]
    fn descriptors_go_to_their_own_frame_and_extras_are_closed() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut right = Connection::new(b, 1024);
        // A frame with no slot, sent with a descriptor anyway, then a frame that expects one
        // but gets none: the first's descriptor must not slip into the second.
        let (r1, w1) = std::io::pipe().unwrap();
        let frame = encode_frame(&"no slot".to_string(), 1024).unwrap();
        send_all(a.as_fd(), &frame, &[w1.as_raw_fd()]).unwrap();
        drop(w1);
        let frame = encode_frame(&("wants one".to_string(), true), 1024).unwrap();
        send_all(a.as_fd(), &frame, &[]).unwrap();
        assert_eq!(right.recv::<String>().unwrap(), "no slot");
        assert!(writer_closed(&r1), "an unexpected descriptor was kept");
        assert!(matches!(right.recv::<WithFd>(), Err(WireError::MissingFds { expected: 1, received: 0 })));

        // Pipelined frames, descriptors on the second only, and more than its one slot.
        let (a, b) = UnixStream::pair().unwrap();
        let mut right = Connection::new(b, 1024);
        let (r2, w2) = std::io::pipe().unwrap();
        let (r3, w3) = std::io::pipe().unwrap();
        let mut both = encode_frame(&WithFd { name: "first".into(), fd: FdSlot::Empty }, 1024).unwrap();
        send_all(a.as_fd(), &both, &[]).unwrap();
        both = encode_frame(&("second".to_string(), true), 1024).unwrap();
        send_all(a.as_fd(), &both, &[w2.as_raw_fd(), w3.as_raw_fd()]).unwrap();
        drop((w2, w3));
        let first: WithFd = right.recv().unwrap();
        assert!(matches!(first.fd, FdSlot::Empty));
        let second: WithFd = right.recv().unwrap();
        assert_eq!(second.name, "second");
        assert!(matches!(second.fd, FdSlot::Present(_)));
        assert!(!writer_closed(&r2), "the frame's own descriptor");
        assert!(writer_closed(&r3), "the extra one is closed at once");
    }

    #[test]
    fn descriptors_beyond_a_frames_slots_leak_nothing() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut right = Connection::new(b, 1024);
        // Every descriptor sent is the pipe's write end: once all are closed, its reader sees
        // the hang-up (counting this process's descriptors would race the other tests).
        let (r, w) = std::io::pipe().unwrap();
        let frame = encode_frame(&("x".to_string(), true), 1024).unwrap();
        let many: Vec<i32> = vec![w.as_raw_fd(); 200];
        for _ in 0..20 {
            send_all(a.as_fd(), &frame, &many).unwrap();
        }
        drop(w);
        for _ in 0..20 {
            let got: WithFd = right.recv().unwrap();
            assert!(matches!(got.fd, FdSlot::Present(_)));
        }
        assert!(writer_closed(&r), "received descriptors leaked");
    }

    #[test]
    fn descriptors_twice_within_one_frame_are_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut right = Connection::new(b, 1024);
        let (_r, w) = std::io::pipe().unwrap();
        let frame = encode_frame(&("x".to_string(), true), 1024).unwrap();
        // The frame in two writes, each with a descriptor.
        send_all(a.as_fd(), &frame[..3], &[w.as_raw_fd()]).unwrap();
        right.fill().unwrap();
        send_all(a.as_fd(), &frame[3..5], &[w.as_raw_fd()]).unwrap();
        right.fill().unwrap();
        assert!(matches!(right.try_next::<WithFd>(), Err(WireError::Decode(_))));
    }

    #[test]
    fn closed_and_truncated_streams() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let mut conn = Connection::new(b, 1024);
        assert!(matches!(conn.recv::<WithFd>(), Err(WireError::Closed)));

        let (a, b) = UnixStream::pair().unwrap();
        let frame = encode_frame(&"abcdef".to_string(), 1024).unwrap();
        send_all(a.as_fd(), &frame[..5], &[]).unwrap();
        drop(a);
        let mut conn = Connection::new(b, 1024);
        assert!(matches!(conn.recv::<String>(), Err(WireError::Truncated { buffered: 5 })));
    }
}
