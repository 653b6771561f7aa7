//! Checks shared by the coverage-guided fuzz targets in `fuzz/` and the corpus replay in the
//! ordinary test suite (`tests/tests/fuzz_corpus.rs`).
//!
//! Each check takes arbitrary bytes. It must return normally for every input; it panics, on
//! purpose, only when one of the invariants it states is broken — that panic is what the
//! fuzzer reports. Not part of Ward's API.

mod audit_chain;

pub use audit_chain::{audit_chain, audit_chain_seeds};

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_keep_the_audit_chain_invariants(data in vec(any::<u8>(), 0..600)) {
            super::audit_chain(&data);
        }
    }
}
