//! Fuzz target `controller_config`: the check lives in `wardctl::fuzzing`, where the corpus replay
//! (`tests/tests/fuzz_corpus.rs`) calls it too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wardctl::fuzzing::controller_config(data));
