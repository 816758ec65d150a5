//! A byte stream as a peer would send it, cut into reads at arbitrary places, through the
//! frame reader into one of the decoders (chosen by the first byte; the next eight are the
//! read sizes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::fuzzing::{stream, Decoder};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let decoder = Decoder::ALL[data[0] as usize % Decoder::ALL.len()];
    stream(decoder, &data[9..], &data[1..9], 1 << 20);
});
