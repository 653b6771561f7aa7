//! The clock of a real `ward-agent` process, set by the test while the process runs.
//!
//! By default through the agent's test clock (`ward-agent` built with the `test-clock`
//! feature reads its offset from the file `WARD_AGENT_TEST_CLOCK_FILE` names): no system
//! library needed. [`AgentClock::faketime`] (or `WARD_TEST_AGENT_CLOCK=faketime` for every
//! test) moves the process's system clock instead, with libfaketime reading the same file, so
//! the same tests can also run against the real system clock path — or against an agent built
//! without the test clock, such as an older release.

use std::path::{Path, PathBuf};

/// libfaketime's multi-threaded library (Debian's `faketime` package).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[derive(Debug)]
pub struct AgentClock {
    file: PathBuf,
    faketime: bool,
}

impl AgentClock {
    /// A clock at the real time, in `dir`.
    pub fn new(dir: &Path) -> Self {
        let faketime = std::env::var("WARD_TEST_AGENT_CLOCK").is_ok_and(|v| v == "faketime");
        Self::with(dir, faketime)
    }

    /// The same through libfaketime.
    pub fn faketime(dir: &Path) -> Self {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: apt-get install faketime"
        );
        Self::with(dir, true)
    }

    fn with(dir: &Path, faketime: bool) -> Self {
        let clock = Self {
            file: dir.join("agent-clock"),
            faketime,
        };
        clock.set(0);
        clock
    }

    /// Moves the agent's clock to the real time plus `offset_secs` (negative: behind).
    pub fn set(&self, offset_secs: i64) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset_secs:+}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// The environment that puts an agent process on this clock.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let file = self.file.display().to_string();
        if self.faketime {
            vec![
                ("LD_PRELOAD", LIBFAKETIME.into()),
                ("FAKETIME_TIMESTAMP_FILE", file),
                ("FAKETIME_NO_CACHE", "1".into()),
                // Moving the clock must not move tokio's timers.
                ("DONT_FAKE_MONOTONIC", "1".into()),
            ]
        } else {
            vec![("WARD_AGENT_TEST_CLOCK_FILE", file)]
        }
    }
}

/// `env` as `Daemon::spawn_with_env` takes it.
pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}
