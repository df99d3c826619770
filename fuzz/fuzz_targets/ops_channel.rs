//! Channel under hostile bytes: the input is both the channel's raw memory (header and
//! ring) and a script of bounded operations interleaved with more raw writes. No operation
//! may panic, access memory outside its object, or take longer than its bound. The driver
//! is `tests/fuzz_ops/mod.rs`, shared with the seeded test `tests/ops_fuzz.rs`.

#![no_main]

#[path = "../../tests/fuzz_ops/mod.rs"]
mod fuzz_ops;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_ops::channel(data));
