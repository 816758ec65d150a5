//! Entry points for fuzzing the decoders: everything a peer's bytes reach before any
//! handler runs. The `fuzz/` crate drives them with libFuzzer (`cargo fuzz`, nightly); the
//! `fuzz_smoke` test drives them on stable Rust with a fixed set of generated inputs, in
//! seconds, so CI runs them on every change.
//!
//! Each entry point must never panic, hang, or allocate beyond what its input could hold;
//! an error is a fine answer.

use std::os::fd::OwnedFd;

use crate::api::{RequestFrame, ServerFrame};
use crate::frame::{decode_message, decode_payload, FrameReader};
use crate::gofer_proto::{GoferFrame, GoferRequestFrame};
use crate::handshake::{Hello, Welcome};
use crate::sandbox_proto::{SandboxFrame, SandboxRequestFrame};

/// Which decoder to feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    /// paddockd's API, as paddockd reads it from clients.
    Request,
    /// paddockd's answers, as ctl and the client library read them.
    Server,
    /// A sandbox's requests, as the sandbox reads them from paddockd.
    SandboxRequest,
    /// A sandbox's answers and events, as paddockd reads them.
    SandboxAnswer,
    /// A gofer's requests.
    GoferRequest,
    /// A gofer's answers.
    GoferAnswer,
    /// The handshake, both ways.
    Handshake,
}

impl Decoder {
    /// Every decoder.
    pub const ALL: [Decoder; 7] = [
        Decoder::Request,
        Decoder::Server,
        Decoder::SandboxRequest,
        Decoder::SandboxAnswer,
        Decoder::GoferRequest,
        Decoder::GoferAnswer,
        Decoder::Handshake,
    ];
}

fn decode_as<T: serde::de::DeserializeOwned>(payload: &[u8], fds: Vec<OwnedFd>) {
    let _ = decode_message::<T>(payload, fds);
}

/// Decodes one payload (a frame without its length) as `decoder`'s message, attaching
/// `fds` as a frame's descriptors.
pub fn decode(decoder: Decoder, payload: &[u8], fds: Vec<OwnedFd>) {
    match decoder {
        Decoder::Request => decode_as::<RequestFrame>(payload, fds),
        Decoder::Server => decode_as::<ServerFrame>(payload, fds),
        Decoder::SandboxRequest => decode_as::<SandboxRequestFrame>(payload, fds),
        Decoder::SandboxAnswer => decode_as::<SandboxFrame>(payload, fds),
        Decoder::GoferRequest => decode_as::<GoferRequestFrame>(payload, fds),
        Decoder::GoferAnswer => decode_as::<GoferFrame>(payload, fds),
        Decoder::Handshake => {
            let _ = decode_payload::<Hello>(payload);
            let _ = decode_payload::<Welcome>(payload);
        }
    }
}

/// Feeds `stream` to a frame reader in chunks cut where `cuts` says (each byte of it a
/// chunk length), decoding every whole frame as `decoder`'s message.
pub fn stream(decoder: Decoder, stream: &[u8], cuts: &[u8], max_frame: usize) {
    let mut reader = FrameReader::new(max_frame);
    let mut rest = stream;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cuts.next().unwrap_or(&255) as usize).max(1).min(rest.len());
        reader.extend_with_fds(&rest[..n], Vec::new());
        rest = &rest[n..];
        loop {
            match reader.next_frame_with_fds() {
                Ok(Some(frame)) => decode(decoder, &frame.payload, frame.fds),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = reader.finish();
}
