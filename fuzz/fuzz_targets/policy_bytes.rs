//! Arbitrary bytes as a tenant document: the loader, the compiler and the engine on what compiles.
//! Seeds: corpus/policy_bytes (the example documents).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rolegate_fuzz::load_and_decide(data));
