//! One payload straight into one of the decoders (chosen by the first byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::fuzzing::{decode, Decoder};

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let decoder = Decoder::ALL[data[0] as usize % Decoder::ALL.len()];
    decode(decoder, &data[1..], Vec::new());
});
