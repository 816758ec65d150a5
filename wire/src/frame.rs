//! Framing: a `u32` little-endian payload length, then the payload, a bincode 2 encoding
//! (serde, `config::standard()`) of one message.
//!
//! A reader learns a frame's size from its first four bytes and refuses it at once when it is
//! larger than the configured maximum, so a hostile peer can make us buffer at most that much.
//! Decoding itself runs under bincode's byte limit, so no length field inside a payload can make
//! us allocate more than the payload could hold.
//!
//! Descriptors: a sender attaches a frame's descriptors to its first `sendmsg`, so they ride
//! with the frame's first bytes (more than one `SCM_RIGHTS` message holds go in full batches,
//! one a byte, the last with the rest of the frame). The kernel ends a `recvmsg` of a stream socket right after
//! the bytes that carried descriptors, so the last byte a read returns with descriptors lies
//! inside the frame they belong to. The reader tags each batch with that byte's offset in the
//! stream and hands a frame exactly the batches tagged inside it — never another frame's, and
//! never a batch twice. A frame owns one batch, or several of which all but the last are full,
//! up to [`MAX_FDS_PER_MESSAGE`]: anything else is a protocol error, so a peer cannot make us
//! hold more than that beyond the frame being read.

use std::collections::VecDeque;
use std::os::fd::{OwnedFd, RawFd};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::WireError;
use crate::fds::{MAX_FDS_PER_FRAME, MAX_FDS_PER_MESSAGE};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The default maximum payload size of a frame: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The largest maximum that may be configured: 64 MiB. It is also bincode's decode limit.
pub const HARD_MAX_FRAME: usize = 64 << 20;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<HARD_MAX_FRAME>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<HARD_MAX_FRAME>()
}

/// A frame's batches of descriptors as a sender makes them: full ones (of
/// [`MAX_FDS_PER_FRAME`]) but the last, [`MAX_FDS_PER_MESSAGE`] at most in all. Anything else
/// is refused, so a peer cannot make us hold more than that beyond the frame being read.
fn check_batches(sizes: impl Iterator<Item = usize>) -> Result<(), WireError> {
    let (mut total, mut open) = (0, true);
    for size in sizes {
        if !open {
            return Err(WireError::Decode("descriptors arrived twice within one frame".into()));
        }
        total += size;
        open = size == MAX_FDS_PER_FRAME;
    }
    if total > MAX_FDS_PER_MESSAGE {
        return Err(WireError::Decode(format!("more than {MAX_FDS_PER_MESSAGE} descriptors arrived with one frame")));
    }
    Ok(())
}

/// Encodes `msg` as one complete frame (length prefix included).
///
/// Fails with [`WireError::FrameTooLarge`] when the payload would exceed `max_frame`.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T, max_frame: usize) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; HEADER_LEN];
    bincode::serde::encode_into_std_write(msg, &mut out, config()).map_err(|e| WireError::Encode(e.to_string()))?;
    let size = out.len() - HEADER_LEN;
    if size > max_frame.min(HARD_MAX_FRAME) {
        return Err(WireError::FrameTooLarge { size, max: max_frame });
    }
    let len = u32::try_from(size).map_err(|_| WireError::FrameTooLarge { size, max: max_frame })?;
    out[..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    Ok(out)
}

/// Encodes `msg` as one complete frame, as [`encode_frame`], and returns beside it the
/// descriptors of its slots, in order, to send with the frame (they stay owned by `msg`).
///
/// Fails with [`WireError::TooManyFds`] above [`MAX_FDS_PER_MESSAGE`] descriptors.
pub fn encode_message<T: Serialize + ?Sized>(msg: &T, max_frame: usize) -> Result<(Vec<u8>, Vec<RawFd>), WireError> {
    let (frame, fds) = crate::fds::collecting_fds(|| encode_frame(msg, max_frame));
    let frame = frame?;
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(WireError::TooManyFds { count: fds.len(), max: MAX_FDS_PER_MESSAGE });
    }
    Ok((frame, fds))
}

/// Decodes one payload, as [`decode_payload`], putting the descriptors that came with its
/// frame into its slots, in order. Fails with [`WireError::MissingFds`] when its slots ask for
/// more than came; descriptors beyond its slots are closed at once.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8], fds: Vec<OwnedFd>) -> Result<T, WireError> {
    crate::fds::supplying_fds(fds, || decode_payload(payload))
}

/// Decodes one payload (without its length prefix). Every byte must belong to the message.
///
/// Its descriptor slots stay [`Pending`](crate::fds::FdSlot::Pending): a message received with
/// descriptors is decoded by [`decode_message`].
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, WireError> {
    let (msg, used) =
        bincode::serde::decode_from_slice(payload, config()).map_err(|e| WireError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(WireError::Decode(format!("{} trailing bytes after the message", payload.len() - used)));
    }
    Ok(msg)
}

/// Accumulates bytes (and the descriptors that came with them) from a stream and cuts them
/// into frames.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    max_frame: usize,
    /// The stream offset of `buf[0]`.
    start: u64,
    /// Descriptors not yet handed out, each batch tagged with the stream offset of the last
    /// byte of the read that brought it.
    fds: VecDeque<(u64, Vec<OwnedFd>)>,
}

/// A whole frame: its payload and the descriptors that came with it.
#[derive(Debug)]
pub struct Frame {
    /// The payload, without its length prefix.
    pub payload: Vec<u8>,
    /// The descriptors that arrived with it, in order.
    pub fds: Vec<OwnedFd>,
}

impl FrameReader {
    /// A reader that refuses frames above `max_frame` bytes (capped at [`HARD_MAX_FRAME`]).
    pub fn new(max_frame: usize) -> Self {
        Self { buf: Vec::new(), max_frame: max_frame.min(HARD_MAX_FRAME), start: 0, fds: VecDeque::new() }
    }

    /// Appends the bytes of one read and the descriptors that came with them (see the module
    /// documentation). Descriptors that came with no byte belong to nothing and are closed.
    pub fn extend_with_fds(&mut self, bytes: &[u8], fds: Vec<OwnedFd>) {
        self.buf.extend_from_slice(bytes);
        if !fds.is_empty() && !bytes.is_empty() {
            let last = self.start + self.buf.len() as u64 - 1;
            self.fds.push_back((last, fds));
        }
    }

    /// The payload size the frame being read announced, once its length prefix arrived.
    pub fn announced(&self) -> Option<usize> {
        let header = self.buf.get(..HEADER_LEN)?;
        let mut len_bytes = [0u8; HEADER_LEN];
        len_bytes.copy_from_slice(header);
        Some(u32::from_le_bytes(len_bytes) as usize)
    }

    /// Descriptors held for frames not yet complete.
    pub fn pending_fds(&self) -> usize {
        self.fds.iter().map(|(_, b)| b.len()).sum()
    }

    /// Takes the next complete frame, with its descriptors, out of the buffer.
    ///
    /// Fails as soon as a length prefix above the maximum is seen, before its payload arrives,
    /// and when descriptors arrived twice within one frame.
    pub fn next_frame_with_fds(&mut self) -> Result<Option<Frame>, WireError> {
        let Some(payload) = self.next_frame()? else {
            // Every batch held belongs to the frame being read.
            check_batches(self.fds.iter().map(|(_, b)| b.len()))?;
            return Ok(None);
        };
        let mut batches = Vec::new();
        while self.fds.front().is_some_and(|(at, _)| *at < self.start) {
            if let Some((_, batch)) = self.fds.pop_front() {
                batches.push(batch);
            }
        }
        check_batches(batches.iter().map(Vec::len))?;
        Ok(Some(Frame { payload, fds: batches.into_iter().flatten().collect() }))
    }

    /// The configured maximum payload size.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// How many bytes are buffered that do not yet form a whole frame (or several).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next complete frame's payload out of the buffer, if one is there (for streams
    /// without descriptors; see [`FrameReader::next_frame_with_fds`]).
    ///
    /// Fails as soon as a length prefix above the maximum is seen, before its payload arrives.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; HEADER_LEN];
        len_bytes.copy_from_slice(header);
        let size = u32::from_le_bytes(len_bytes) as usize;
        if size > self.max_frame {
            return Err(WireError::FrameTooLarge { size, max: self.max_frame });
        }
        if self.buf.len() < HEADER_LEN + size {
            return Ok(None);
        }
        let payload = self.buf[HEADER_LEN..HEADER_LEN + size].to_vec();
        self.buf.drain(..HEADER_LEN + size);
        self.start += (HEADER_LEN + size) as u64;
        Ok(Some(payload))
    }

    /// Called when the stream ended: an error if it ended inside a frame.
    pub fn finish(&self) -> WireError {
        if self.buf.is_empty() {
            WireError::Closed
        } else {
            WireError::Truncated { buffered: self.buf.len() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_and_split_delivery() {
        let msg = ("hello".to_string(), 42u64, vec![1u8, 2, 3]);
        let frame = encode_frame(&msg, DEFAULT_MAX_FRAME).unwrap();
        // Deliver one byte at a time: the frame appears exactly when its last byte arrives.
        let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
        for (i, b) in frame.iter().enumerate() {
            reader.extend(std::slice::from_ref(b));
            let got = reader.next_frame().unwrap();
            if i + 1 < frame.len() {
                assert!(got.is_none(), "frame complete after {} bytes", i + 1);
            } else {
                let back: (String, u64, Vec<u8>) = decode_payload(&got.unwrap()).unwrap();
                assert_eq!(back, msg);
            }
        }
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut bytes = encode_frame(&1u32, 100).unwrap();
        bytes.extend(encode_frame(&2u32, 100).unwrap());
        let mut reader = FrameReader::new(100);
        reader.extend(&bytes);
        let a: u32 = decode_payload(&reader.next_frame().unwrap().unwrap()).unwrap();
        let b: u32 = decode_payload(&reader.next_frame().unwrap().unwrap()).unwrap();
        assert_eq!((a, b), (1, 2));
        assert!(reader.next_frame().unwrap().is_none());
    }

    #[test]
    fn oversized_frame_refused_from_its_header() {
        let mut reader = FrameReader::new(1024);
        reader.extend(&(1025u32).to_le_bytes());
        match reader.next_frame() {
            Err(WireError::FrameTooLarge { size: 1025, max: 1024 }) => {}
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        // A header of u32::MAX is refused the same way, without allocating.
        let mut reader = FrameReader::new(DEFAULT_MAX_FRAME);
        reader.extend(&u32::MAX.to_le_bytes());
        assert!(matches!(reader.next_frame(), Err(WireError::FrameTooLarge { .. })));
    }

    #[test]
    fn encoding_above_the_maximum_fails() {
        let big = vec![7u8; 2000];
        assert!(matches!(encode_frame(&big, 1000), Err(WireError::FrameTooLarge { .. })));
    }

    #[test]
    fn truncated_stream_is_reported() {
        let frame = encode_frame(&"abc".to_string(), 100).unwrap();
        for cut in 0..frame.len() {
            let mut reader = FrameReader::new(100);
            reader.extend(&frame[..cut]);
            assert!(reader.next_frame().unwrap().is_none());
            match reader.finish() {
                WireError::Closed => assert_eq!(cut, 0),
                WireError::Truncated { buffered } => assert_eq!(buffered, cut),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut payload = bincode::serde::encode_to_vec(5u8, config()).unwrap();
        payload.push(0);
        assert!(matches!(decode_payload::<u8>(&payload), Err(WireError::Decode(_))));
    }

    #[test]
    fn huge_length_inside_payload_does_not_allocate() {
        // A Vec<u8> claiming 2^60 elements in a 10-byte payload must fail, not allocate.
        let mut payload = vec![0xFFu8]; // varint marker for u64
        payload.extend(&(1u64 << 60).to_le_bytes());
        payload.push(1);
        assert!(decode_payload::<Vec<u8>>(&payload).is_err());
        assert!(decode_payload::<String>(&payload).is_err());
    }
}
