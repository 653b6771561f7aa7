//! Time, passed in so expiry and renewal are tested instantly and deterministically.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

/// A point in time: milliseconds since the Unix epoch, UTC. What the store and the wire carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_ms(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    pub fn from_datetime(t: OffsetDateTime) -> Self {
        let ms = t.unix_timestamp_nanos() / 1_000_000;
        Self(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    pub fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// RFC 3339, UTC, always with milliseconds (`2026-11-24T02:31:53.120Z`), so the text
    /// sorts like the time.
    /// RFC 3339 text with any offset and precision (a device's clock, in a receipt), to the
    /// millisecond; `None` if it is not RFC 3339.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(Self::from_datetime)
    }

    /// The one way a time is written for people and scripts: RFC 3339, UTC, milliseconds
    /// (`2026-12-05T10:00:00.123Z`; README, "JSON output").
    pub fn rfc3339(self) -> String {
        const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        self.to_datetime()
            .format(FORMAT)
            .unwrap_or_else(|_| self.0.to_string())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(OffsetDateTime::now_utc())
    }
}

/// A clock tests move by hand.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.unix_ms())))
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn rewind(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_sub(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    #[test]
    fn times_are_written_in_utc_to_the_millisecond() {
        let t = Timestamp::from_unix_ms(1_796_464_800_123);
        assert_eq!(t.rfc3339(), "2026-12-05T10:00:00.123Z");
        assert_eq!(
            Timestamp::from_unix_ms(0).rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn a_device_stated_time_is_read_at_any_precision_and_offset() {
        let at = |text: &str| Timestamp::parse_rfc3339(text).map(Timestamp::rfc3339);
        assert_eq!(
            at("2026-12-05T10:00:00.123456789Z").as_deref(),
            Some("2026-12-05T10:00:00.123Z")
        );
        assert_eq!(
            at("2026-12-05T11:00:00+01:00").as_deref(),
            Some("2026-12-05T10:00:00.000Z")
        );
        assert_eq!(at("yesterday"), None);
    }
}
