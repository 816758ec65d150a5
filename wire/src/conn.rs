//! A blocking connection that sends and receives whole messages with their descriptors.
//!
//! Used by `ctl`, the sandbox and the gofer, which are single-threaded and have no async
//! runtime. The sandbox drives several connections from one `poll` loop: it calls
//! [`Connection::fill`] when the socket is readable and then takes every buffered message with
//! [`Connection::try_next`].

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::WireError;
use crate::fds::{attach_fds, fds_to_send, recv_with_fds, send_with_fds, CarriesFds};
use crate::frame::{decode_payload, encode_frame, FrameReader};

/// Size of one read from the socket.
const READ_CHUNK: usize = 64 * 1024;

/// One end of a framed stream connection.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    reader: FrameReader,
    received_fds: VecDeque<OwnedFd>,
    max_frame: usize,
    eof: bool,
}

impl Connection {
    /// Wraps a connected stream; frames above `max_frame` bytes are refused both ways.
    pub fn new(stream: UnixStream, max_frame: usize) -> Self {
        Self { stream, reader: FrameReader::new(max_frame), received_fds: VecDeque::new(), max_frame, eof: false }
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
    pub fn send<T: Serialize + CarriesFds + ?Sized>(&mut self, msg: &T) -> Result<(), WireError> {
        let fds = fds_to_send(msg)?;
        let frame = encode_frame(msg, self.max_frame)?;
        send_all(self.stream.as_fd(), &frame, &fds)
    }

    /// Receives one message, blocking until it is complete.
    pub fn recv<T: DeserializeOwned + CarriesFds>(&mut self) -> Result<T, WireError> {
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
        let mut chunk = vec![0u8; READ_CHUNK];
        let n = loop {
            match recv_with_fds(self.stream.as_fd(), &mut chunk, &mut self.received_fds) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.reader.extend(&chunk[..n]);
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
    pub fn try_next<T: DeserializeOwned + CarriesFds>(&mut self) -> Result<Option<T>, WireError> {
        let Some(payload) = self.reader.next_frame()? else {
            return Ok(None);
        };
        let mut msg: T = decode_payload(&payload)?;
        attach_fds(&mut msg, &mut self.received_fds)?;
        Ok(Some(msg))
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// Writes a whole frame, descriptors attached to its first chunk.
fn send_all(sock: BorrowedFd<'_>, mut bytes: &[u8], fds: &[i32]) -> Result<(), WireError> {
    let mut fds = fds;
    while !bytes.is_empty() {
        match send_with_fds(sock, bytes, fds) {
            Ok(n) => {
                bytes = &bytes[n..];
                fds = &[];
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
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    struct WithFd {
        name: String,
        fd: FdSlot,
    }

    impl CarriesFds for WithFd {
        fn fd_slots_mut(&mut self) -> Vec<&mut FdSlot> {
            vec![&mut self.fd]
        }
        fn fd_slots(&self) -> Vec<&FdSlot> {
            vec![&self.fd]
        }
    }

    impl CarriesFds for String {}

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
