//! Ward's device agent: enrollment, periodic check-in, status.
//!
//! The binary (`ward-agent`) only parses arguments and calls [`cli::main`].
//!
//! It may not depend on ward-controller, ward-core or ward-store: it meets the controller only
//! through ward-proto (the wire), ward-vocab (the shared words) and ward-certs (the PKI); its
//! files are written through ward-files.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod checkin;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod connection;
pub mod device_key;
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
pub mod timer_file;
pub mod tpm;
pub mod tpm_key;
pub mod trust;
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

/// A time as `ward-agent status` shows it, the way `wardctl` writes every time: RFC 3339,
/// UTC, milliseconds (`2026-12-05T10:00:00.123Z`). The state files keep their own text.
pub(crate) fn shown_time(t: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| rfc3339(t))
}

/// Stored RFC 3339 text written as [`shown_time`] does (text that does not parse is kept).
pub(crate) fn shown_time_text(text: &str) -> String {
    parse_rfc3339(text).map_or_else(|| text.to_owned(), shown_time)
}

pub(crate) fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn status_times_are_utc_to_the_millisecond() {
        assert_eq!(
            super::shown_time_text("2026-12-05T10:00:00.123456789Z"),
            "2026-12-05T10:00:00.123Z"
        );
        assert_eq!(
            super::shown_time_text("2026-12-05T11:00:00+01:00"),
            "2026-12-05T10:00:00.000Z"
        );
        assert_eq!(super::shown_time_text("not a time"), "not a time");
    }
}
