//! Fuzz target `audit_chain`: the check lives in `ward_controller::fuzzing`, where the corpus replay
//! (`tests/tests/fuzz_corpus.rs`) calls it too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ward_controller::fuzzing::audit_chain(data));
