//! Checks shared by the coverage-guided fuzz targets in `fuzz/` and the corpus replay in the
//! ordinary test suite (`tests/tests/fuzz_corpus.rs`).
//!
//! Each check takes arbitrary bytes. It must return normally for every input; it panics, on
//! purpose, only when one of the invariants it states is broken — that panic is what the
//! fuzzer reports. Not part of Ward's API.

mod certificate;
mod csr;

pub use certificate::{certificate, certificate_seeds};
pub use csr::{csr, csr_seeds};

use std::sync::OnceLock;

use time::OffsetDateTime;
use time::macros::datetime;

use crate::CertificateAuthority;

/// The instant the checks' CA and seeds are made at, and certificates are checked at:
/// fixed, so a corpus file means the same thing on every run.
pub const FUZZ_NOW: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

/// One CA for every run of a process: generated, never stored, so no key is committed.
pub(crate) fn fuzz_ca() -> &'static CertificateAuthority {
    static CA: OnceLock<CertificateAuthority> = OnceLock::new();
    CA.get_or_init(
        || match CertificateAuthority::create("Ward fuzz CA", FUZZ_NOW) {
            Ok(ca) => ca,
            Err(e) => panic!("cannot create the fuzzing CA: {e}"),
        },
    )
}

/// `Ok` or a panic naming the setup step: the seeds are made from Ward's own issuing code,
/// which must not fail on its own inputs.
pub(crate) fn made<T, E: std::fmt::Display>(what: &str, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("cannot make {what}: {e}"),
    }
}
