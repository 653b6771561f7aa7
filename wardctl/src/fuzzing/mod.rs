//! Checks shared by the coverage-guided fuzz targets in `fuzz/` and the corpus replay in the
//! ordinary test suite (`tests/tests/fuzz_corpus.rs`).
//!
//! Each check takes arbitrary bytes. It must return normally for every input; it panics, on
//! purpose, only when one of the invariants it states is broken — that panic is what the
//! fuzzer reports. Not part of Ward's API.

mod config;

pub use config::{controller_config, controller_config_seeds};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_keeps_the_controller_config_invariants(text in "\\PC{0,80}") {
            super::controller_config(text.as_bytes());
        }
    }
}
