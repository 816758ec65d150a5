//! Framed connections on tokio, for paddockd.
//!
//! tokio's `UnixStream` sends no ancillary data by itself, so the halves here wait for
//! readiness and then call `sendmsg`/`recvmsg` on the raw socket inside `try_io`.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::error::WireError;
use crate::fds::{attach_fds, fds_to_send, recv_with_fds, send_with_fds, CarriesFds};
use crate::frame::{decode_payload, encode_frame, FrameReader};

const READ_CHUNK: usize = 64 * 1024;

/// Splits a stream into a reading and a writing half that can live in different tasks.
pub fn split(stream: UnixStream, max_frame: usize) -> (AsyncReader, AsyncWriter) {
    let stream = Arc::new(stream);
    (
        AsyncReader {
            stream: stream.clone(),
            reader: FrameReader::new(max_frame),
            received_fds: VecDeque::new(),
            chunk: vec![0u8; READ_CHUNK],
            eof: false,
        },
        AsyncWriter { stream, max_frame },
    )
}

/// The reading half: yields whole messages with their descriptors attached.
#[derive(Debug)]
pub struct AsyncReader {
    stream: Arc<UnixStream>,
    reader: FrameReader,
    received_fds: VecDeque<OwnedFd>,
    chunk: Vec<u8>,
    eof: bool,
}

impl AsyncReader {
    /// Receives the next message. Fails with [`WireError::Closed`] when the peer closed the
    /// stream between messages.
    pub async fn recv<T: DeserializeOwned + CarriesFds>(&mut self) -> Result<T, WireError> {
        loop {
            if let Some(payload) = self.reader.next_frame()? {
                let mut msg: T = decode_payload(&payload)?;
                attach_fds(&mut msg, &mut self.received_fds)?;
                return Ok(msg);
            }
            if self.eof {
                return Err(self.reader.finish());
            }
            self.stream.readable().await?;
            let chunk = &mut self.chunk;
            let fds = &mut self.received_fds;
            let stream = &self.stream;
            match stream.try_io(Interest::READABLE, || recv_with_fds(stream.as_fd(), chunk, fds)) {
                Ok(0) => self.eof = true,
                Ok(n) => self.reader.extend(&self.chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The writing half. One message at a time: callers that share it wrap it in a lock or give
/// it to a single writer task.
#[derive(Debug)]
pub struct AsyncWriter {
    stream: Arc<UnixStream>,
    max_frame: usize,
}

impl AsyncWriter {
    /// Sends one message with the descriptors in its slots.
    pub async fn send<T: Serialize + CarriesFds + ?Sized>(&mut self, msg: &T) -> Result<(), WireError> {
        let fds = fds_to_send(msg)?;
        let frame = encode_frame(msg, self.max_frame)?;
        self.send_frame(&frame, &fds).await
    }

    async fn send_frame(&mut self, mut bytes: &[u8], fds: &[RawFd]) -> Result<(), WireError> {
        let mut fds = fds;
        while !bytes.is_empty() {
            self.stream.writable().await?;
            let stream = &self.stream;
            match stream.try_io(Interest::WRITABLE, || send_with_fds(stream.as_fd(), bytes, fds)) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    fds = &[];
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fds::FdSlot;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize)]
    struct Msg {
        n: u32,
        fd: FdSlot,
    }
    impl CarriesFds for Msg {
        fn fd_slots_mut(&mut self) -> Vec<&mut FdSlot> {
            vec![&mut self.fd]
        }
        fn fd_slots(&self) -> Vec<&FdSlot> {
            vec![&self.fd]
        }
    }

    #[tokio::test]
    async fn large_message_and_fd_cross_async() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_ra, mut wa) = split(a, 8 << 20);
        let (mut rb, _wb) = split(b, 8 << 20);
        let (_r, w) = std::io::pipe().unwrap();
        let big = vec![9u8; 3 << 20];
        let sender = tokio::spawn(async move {
            wa.send(&Msg { n: 1, fd: FdSlot::new(OwnedFd::from(w)) }).await.unwrap();
            wa.send(&(big, FdSlot::Empty)).await.unwrap();
        });
        let m: Msg = rb.recv().await.unwrap();
        assert_eq!(m.n, 1);
        assert!(matches!(m.fd, FdSlot::Present(_)));
        let (data, _): (Vec<u8>, FdSlot) = rb.recv().await.unwrap();
        assert_eq!(data.len(), 3 << 20);
        sender.await.unwrap();
    }

    impl CarriesFds for (Vec<u8>, FdSlot) {}
}
