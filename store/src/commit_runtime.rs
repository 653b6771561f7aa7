//! The commit path's own threads. A controller holding ten thousand command streams has
//! thousands of tasks ready at once after a mass offboarding (each pushing a command or
//! answering an acknowledgement); on a shared runtime a task woken behind them waits its
//! turn in the same queue. The writer and the batches feeding it are that kind of task: a
//! batch that waited 46–270 ms for its turn held back every caller queued behind it
//! (BENCHMARKS.md). On a runtime of their own, with threads the operating system schedules
//! beside the others, they run when their batch may start and, on SQLite (whose statements
//! run on sqlx's thread for the connection), when a statement returns. A PostgreSQL
//! connection's socket is watched by the runtime that opened it, which may be the shared
//! one; on PostgreSQL this was measured to change nothing either way.
//!
//! `wardctl serve` calls [`start`] once, before its async runtime starts. Without it (tests,
//! one-shot commands) [`spawn`] uses the caller's runtime, as `tokio::spawn` does.

use std::future::Future;
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Held while the runtime is built, so two callers never both build one.
static STARTING: Mutex<()> = Mutex::new(());

/// Starts the commit runtime: one thread per core, at least two (the writer's lanes and the
/// batches take turns on them). Later calls do nothing. Call it outside any async runtime.
/// The runtime lives as long as the process (a static is never dropped).
pub fn start() -> std::io::Result<()> {
    let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if RUNTIME.get().is_some() {
        return Ok(());
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let runtime = Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()?;
    // Only this caller can set it: it holds `STARTING` and found it unset.
    let _ = RUNTIME.set(runtime);
    Ok(())
}

/// The name of the commit runtime's threads (as `top -H` and `/proc` show them).
pub const THREAD_NAME: &str = "ward-commit";

/// Spawns `task` on the commit runtime once started, else on the caller's runtime.
pub fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RUNTIME.get() {
        Some(runtime) => runtime.spawn(task),
        None => tokio::spawn(task),
    }
}
