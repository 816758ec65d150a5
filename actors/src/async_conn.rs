//! Framed connections on tokio, for paddockd (the wire crate itself is free of any runtime:
//! the sandbox and the gofer, which share it, link no tokio).
//!
//! tokio's `UnixStream` sends no ancillary data by itself, so the halves here wait for
//! readiness and then call `sendmsg`/`recvmsg` on the raw socket inside `try_io`.

use std::os::fd::{AsFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::time::Instant;

use wire::error::WireError;
use wire::fds::{recv_with_fds, send_with_fds};
use wire::frame::{decode_message, encode_message, FrameReader};

/// Size of one read, into a buffer on the stack: an idle connection holds no read buffer.
const READ_CHUNK: usize = 16 * 1024;

/// Frames larger than this need a permit from the reader's [`Budget`] before their body is
/// read, so that only a few connections at a time can make paddockd buffer a large frame.
pub const SMALL_FRAME: usize = 64 * 1024;

/// How many frames above [`SMALL_FRAME`] may be buffered at once across connections.
pub type Budget = Arc<tokio::sync::Semaphore>;

/// Splits a stream into a reading and a writing half that can live in different tasks.
pub fn split(stream: UnixStream, max_frame: usize) -> (AsyncReader, AsyncWriter) {
    let stream = Arc::new(stream);
    (
        AsyncReader {
            stream: stream.clone(),
            reader: FrameReader::new(max_frame),
            eof: false,
            budget: None,
            frame_timeout: None,
        },
        AsyncWriter { stream, max_frame },
    )
}

/// The reading half: yields whole messages with their descriptors attached.
#[derive(Debug)]
pub struct AsyncReader {
    stream: Arc<UnixStream>,
    reader: FrameReader,
    eof: bool,
    budget: Option<Budget>,
    frame_timeout: Option<Duration>,
}

impl AsyncReader {
    /// Bounds what a peer can make this reader hold: a frame it begins must be whole within
    /// `frame_timeout`, and a frame above [`SMALL_FRAME`] waits for a permit of `budget`
    /// (within the same time) before its body is read.
    pub fn bounded(mut self, budget: Budget, frame_timeout: Duration) -> Self {
        self.budget = Some(budget);
        self.frame_timeout = Some(frame_timeout);
        self
    }

    /// Whether part of a frame has arrived.
    pub fn mid_frame(&self) -> bool {
        self.reader.buffered() > 0
    }

    /// Receives the next message. Fails with [`WireError::Closed`] when the peer closed the
    /// stream between messages.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, WireError> {
        self.recv_or_idle(None).await
    }

    /// Receives the next message; fails with [`WireError::TimedOut`] when nothing of it has
    /// arrived by `idle_deadline` (`None`: wait forever), or when a frame that began is not
    /// whole within the reader's frame timeout.
    pub async fn recv_or_idle<T: DeserializeOwned>(&mut self, idle_deadline: Option<Instant>) -> Result<T, WireError> {
        let mut frame_deadline: Option<Instant> = None;
        let mut permit: Option<tokio::sync::OwnedSemaphorePermit> = None;
        loop {
            if let Some(frame) = self.reader.next_frame_with_fds()? {
                drop(permit);
                return decode_message(&frame.payload, frame.fds);
            }
            if self.eof {
                return Err(self.reader.finish());
            }
            if self.mid_frame() && frame_deadline.is_none() {
                frame_deadline = self.frame_timeout.map(|t| Instant::now() + t);
            }
            let deadline = if self.mid_frame() { frame_deadline } else { idle_deadline };
            let large = self.reader.announced().is_some_and(|size| size > SMALL_FRAME);
            if large && permit.is_none() {
                if let Some(budget) = &self.budget {
                    let acquired = budget.clone().acquire_owned();
                    permit = Some(
                        match deadline {
                            Some(d) => tokio::time::timeout_at(d, acquired)
                                .await
                                .map_err(|_| WireError::TimedOut("waiting to receive a large frame".into()))?,
                            None => acquired.await,
                        }
                        .map_err(|_| WireError::TimedOut("the server is closing".into()))?,
                    );
                }
            }
            let readable = self.stream.readable();
            match deadline {
                Some(d) => tokio::time::timeout_at(d, readable).await.map_err(|_| {
                    WireError::TimedOut(if self.mid_frame() {
                        "the rest of a frame did not arrive in time".into()
                    } else {
                        "idle connection".into()
                    })
                })??,
                None => readable.await?,
            }
            let reader = &mut self.reader;
            let stream = &self.stream;
            let read = stream.try_io(Interest::READABLE, || {
                let mut chunk = [0u8; READ_CHUNK];
                let mut fds = Vec::new();
                let n = recv_with_fds(stream.as_fd(), &mut chunk, &mut fds)?;
                reader.extend_with_fds(&chunk[..n], fds);
                Ok(n)
            });
            match read {
                Ok(0) => self.eof = true,
                Ok(_) => {}
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
    pub async fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), WireError> {
        let (frame, fds) = encode_message(msg, self.max_frame)?;
        self.send_frame(&frame, &fds).await
    }

    async fn send_frame(&mut self, mut bytes: &[u8], mut fds: &[RawFd]) -> Result<(), WireError> {
        while !bytes.is_empty() {
            self.stream.writable().await?;
            let stream = &self.stream;
            let (len, batch) = wire::fds::next_batch(bytes, fds);
            match stream.try_io(Interest::WRITABLE, || send_with_fds(stream.as_fd(), &bytes[..len], batch)) {
                Ok(n) => {
                    bytes = &bytes[n..];
                    fds = &fds[batch.len()..];
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
    use serde::Deserialize;
    use std::os::fd::OwnedFd;
    use wire::fds::FdSlot;

    #[derive(Debug, Serialize, Deserialize)]
    struct Msg {
        n: u32,
        fd: FdSlot,
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
            wa.send(&Big { data: big, fd: FdSlot::Empty }).await.unwrap();
        });
        let m: Msg = rb.recv().await.unwrap();
        assert_eq!(m.n, 1);
        assert!(matches!(m.fd, FdSlot::Present(_)));
        let big: Big = rb.recv().await.unwrap();
        assert_eq!(big.data.len(), 3 << 20);
        sender.await.unwrap();
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Big {
        data: Vec<u8>,
        fd: FdSlot,
    }
}
