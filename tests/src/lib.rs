//! Test harness for Ward's end-to-end tests: real processes and in-process servers over real
//! mutual TLS on 127.0.0.1, generated PKIs, and waits on conditions with deadlines (never a
//! sleep followed by an assert).
//!
//! No shipped crate may depend on it, and it may depend on any of them (it tests them as
//! deployed). Its library uses the shipped crates as released; the
//! test-only features (`fuzzing`, `failpoints`, `test-clock`) are turned on for its tests alone
//! (dev-dependencies), never for a crate it hands on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod app_on_postgres;
pub mod clock;
pub mod console;
pub mod fleet;
pub mod inprocess;
pub mod postgres;
pub mod process;
pub mod sandbox;
pub mod scim;
pub mod seed;
pub mod swtpm;
pub mod timer;
pub mod wipes;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The same, for synchronous probes in non-async tests.
pub fn eventually_blocking<T>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
