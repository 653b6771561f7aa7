//! The agent's one clock. Everything in the agent that reads the time — certificate checks
//! (including rustls's, through [`TlsTime`]), the ledger, receipts, renewal and the offline
//! timer — reads it from a [`Clock`] handed down from `main`, so tests set it instead of the
//! machine's.
//!
//! A clock gives two readings: the wall clock ([`Clock::now`]), which anyone with root can set
//! and which may jump either way, and a monotonic reading ([`Clock::monotonic`]), which only
//! moves forward while the process runs. The offline timer needs both (see `offline.rs`).

use std::fmt::Debug;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rustls::pki_types::UnixTime;
use time::OffsetDateTime;

pub trait Clock: Send + Sync + Debug {
    /// The wall-clock time, UTC.
    fn now(&self) -> OffsetDateTime;
    /// Time since an origin fixed for the life of the process; never goes back and does not
    /// move when the wall clock is set.
    fn monotonic(&self) -> Duration;
}

pub type SharedClock = Arc<dyn Clock>;

/// The machine's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn monotonic(&self) -> Duration {
        origin().elapsed()
    }
}

/// The machine's clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock a test sets by hand: [`ManualClock::advance`] lets time pass (both readings move);
/// [`ManualClock::set_wall`] sets the wall clock the way an administrator or a thief would,
/// leaving the monotonic reading alone.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<(OffsetDateTime, Duration)>>);

impl ManualClock {
    pub fn new(wall: OffsetDateTime) -> Self {
        Self(Arc::new(Mutex::new((wall, Duration::ZERO))))
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        t.0 += by;
        t.1 += by;
    }

    pub fn set_wall(&self, wall: OffsetDateTime) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0 = wall;
    }

    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    fn monotonic(&self) -> Duration {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).1
    }
}

/// The environment variable naming the test clock's offset file (builds with the
/// `test-clock` feature only).
pub const TEST_CLOCK_ENV: &str = "WARD_AGENT_TEST_CLOCK_FILE";

/// The machine's clock moved by an offset that a test writes to a file, read again at every
/// reading: the end-to-end tests move the clock of a real `ward-agent` process (its TLS stack
/// included) while it runs, as libfaketime would, without a system library. The file holds
/// whole seconds with a sign, `+7200` or `-86400` (libfaketime's relative format, so one file
/// can drive either). Only in builds with the `test-clock` feature, which the end-to-end test
/// crate turns on and `cargo build --release -p ward-agent` leaves off.
#[cfg(feature = "test-clock")]
#[derive(Debug)]
pub struct OffsetFileClock {
    path: std::path::PathBuf,
    last: Mutex<i64>,
}

#[cfg(feature = "test-clock")]
impl OffsetFileClock {
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: path.into(),
            last: Mutex::new(0),
        }
    }

    fn offset(&self) -> i64 {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        // A file being rewritten keeps the last offset read.
        if let Some(secs) = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|text| parse_offset(&text))
        {
            *last = secs;
        }
        *last
    }
}

#[cfg(feature = "test-clock")]
impl Clock for OffsetFileClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.offset())
    }

    fn monotonic(&self) -> Duration {
        origin().elapsed()
    }
}

/// `+7200`, `-86400` or `7200` → seconds.
#[cfg_attr(not(feature = "test-clock"), allow(dead_code))]
fn parse_offset(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    digits.parse().ok()
}

/// The clock `ward-agent` runs on: the machine's, or in a `test-clock` build the one
/// `WARD_AGENT_TEST_CLOCK_FILE` names.
pub fn from_environment() -> SharedClock {
    #[cfg(feature = "test-clock")]
    if let Some(path) = std::env::var_os(TEST_CLOCK_ENV) {
        return Arc::new(OffsetFileClock::new(path));
    }
    system()
}

/// A clock as rustls's time source, so the TLS stack judges certificate validity by the
/// agent's clock like everything else.
#[derive(Debug)]
pub struct TlsTime(pub SharedClock);

impl rustls::time_provider::TimeProvider for TlsTime {
    fn current_time(&self) -> Option<UnixTime> {
        let secs = u64::try_from(self.0.now().unix_timestamp()).ok()?;
        Some(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
    }
}

/// The same, ready for `ward_certs::tls`.
pub fn tls_time(clock: &SharedClock) -> Arc<dyn rustls::time_provider::TimeProvider> {
    Arc::new(TlsTime(clock.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let clock = ManualClock::new(t0);
        clock.advance(Duration::from_secs(60));
        assert_eq!(clock.now(), t0 + Duration::from_secs(60));
        assert_eq!(clock.monotonic(), Duration::from_secs(60));
        clock.set_wall(t0 - Duration::from_secs(86_400));
        assert_eq!(clock.now(), t0 - Duration::from_secs(86_400));
        assert_eq!(
            clock.monotonic(),
            Duration::from_secs(60),
            "setting the wall clock"
        );
    }

    #[test]
    fn offsets_read_like_libfaketime() {
        assert_eq!(parse_offset("+7200\n"), Some(7200));
        assert_eq!(parse_offset("-86400"), Some(-86_400));
        assert_eq!(parse_offset("30"), Some(30));
        assert_eq!(parse_offset(""), None);
        assert_eq!(parse_offset("+2h"), None);
    }

    #[test]
    fn rustls_sees_the_agent_clock() {
        use rustls::time_provider::TimeProvider;
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let time = TlsTime(ManualClock::new(t0).shared());
        assert_eq!(time.current_time().unwrap().as_secs(), 1_800_000_000);
    }
}
