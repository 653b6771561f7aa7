//! Fuzz target `agent_config`: the check lives in `ward_agent::fuzzing`, where the corpus replay
//! (`tests/tests/fuzz_corpus.rs`) calls it too.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ward_agent::fuzzing::agent_config(data));
