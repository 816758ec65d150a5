//! The fuzz targets on stable Rust: every decoder fed a fixed, seeded set of inputs —
//! garbage of every length, and valid frames cut short, bit-flipped and spliced — in a few
//! seconds. `cargo fuzz` (see fuzz/) explores far more; this keeps every change honest.
//! Set PADDOCK_FUZZ_ROUNDS to run longer.

// Truncating casts are how this generator cuts random numbers down to bytes and lengths.
#![allow(clippy::cast_possible_truncation)]

use wire::api::{Kill, Request, RequestFrame};
use wire::frame::encode_frame;
use wire::fuzzing::{decode, stream, Decoder};

/// xorshift64*: a reproducible stream of numbers, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Valid frames of each protocol, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let kill =
        RequestFrame { id: 7, request: Request::Kill(Kill { id: "abc".into(), signal: 9, all: true, pid: Some(3) }) };
    seeds.push(encode_frame(&kill, 1 << 20).unwrap());
    let list = RequestFrame { id: 1, request: Request::List(wire::api::List) };
    seeds.push(encode_frame(&list, 1 << 20).unwrap());
    seeds.push(encode_frame(&wire::handshake::Hello::new("fuzz"), 1 << 20).unwrap());
    let start = wire::sandbox_proto::SandboxRequestFrame {
        id: 2,
        request: wire::sandbox_proto::SandboxRequest::Start { id: "c".into() },
    };
    seeds.push(encode_frame(&start, 1 << 20).unwrap());
    seeds
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.below(5) {
        0 => v.truncate(rng.below(v.len() + 1)),
        1 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
        }
        2 => {
            let i = rng.below(v.len());
            v[i] = [0x00, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xfe, 0xff][rng.below(8)];
        }
        3 => {
            let n = rng.below(64);
            let extra = rng.bytes(n);
            let at = rng.below(v.len() + 1);
            v.splice(at..at, extra);
        }
        _ => {
            // A length prefix that lies.
            let len = (rng.next() as u32) % 4096;
            v[..4].copy_from_slice(&len.to_le_bytes());
        }
    }
    v
}

#[test]
fn decoders_survive_garbage_and_mutated_frames() {
    let rounds: usize = std::env::var("PADDOCK_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(200_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = seeds();
    for round in 0..rounds {
        let decoder = Decoder::ALL[round % Decoder::ALL.len()];
        let input = if round % 3 == 0 {
            let len = rng.below(300);
            rng.bytes(len)
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        if input.len() > 4 {
            decode(decoder, &input[4..], Vec::new());
        }
        decode(decoder, &input, Vec::new());
        let n = 1 + rng.below(8);
        let cuts = rng.bytes(n);
        stream(decoder, &input, &cuts, 1 << 16);
    }
}
