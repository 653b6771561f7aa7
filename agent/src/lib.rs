//! Ward's device agent: enrollment, periodic check-in, status.
//!
//! The binary (`ward-agent`) only parses arguments and calls [`cli::main`].

#![forbid(unsafe_code)]

pub mod backoff;
pub mod checkin;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod connection;
pub mod enroll;
pub mod error;
pub mod executor;
pub mod facts;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
// The fuzz bodies (and the test hooks) are for fuzzing and test builds: a release build that
// turns them on is refused rather than shipped (cargo-fuzz builds set `cfg(fuzzing)`).
#[cfg(all(
    not(debug_assertions),
    not(fuzzing),
    any(feature = "fuzzing", feature = "failpoints", feature = "test-clock")
))]
compile_error!(
    "the `fuzzing` and test-only features are for fuzz and test builds, not release builds"
);
pub mod inventory;
pub mod ledger;
pub mod link;
pub mod local_api;
pub mod messaging_dir;
pub mod offline;
pub mod platform;
pub mod policy;
pub mod receipt;
pub mod renew;
pub mod run;
pub mod secrets;
pub mod state;
pub mod status;
#[cfg(test)]
mod test_support;
pub mod tpm;
pub mod vault;
pub mod vault_fs;
pub mod vault_slot;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How far this device's clock may be off when it sanity-checks a certificate the controller
/// just issued: the controller decides validity with its own clock; the agent checks the
/// chain and the identity, and must not refuse a good certificate because its clock is an
/// hour or so wrong.
pub const AGENT_CLOCK_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}
