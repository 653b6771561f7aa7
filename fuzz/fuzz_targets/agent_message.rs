//! Fuzz target `agent_message`: the check lives in `ward_edge::fuzzing`, where the corpus replay
//! (`tests/tests/fuzz_corpus.rs`) calls it too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ward_edge::fuzzing::agent_message(data));
