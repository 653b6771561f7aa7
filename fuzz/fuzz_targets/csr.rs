//! Fuzz target `csr`: the check lives in `ward_certs::fuzzing`, where the corpus replay
//! (`tests/tests/fuzz_corpus.rs`) calls it too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ward_certs::fuzzing::csr(data));
