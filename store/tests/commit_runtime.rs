//! The commit runtime (`wardctl serve` starts it): once started, the writer's lanes run on its
//! threads, not on the runtime of whoever opened the store, where thousands of connection
//! tasks would be queued ahead of them. In a test binary of its own: starting it is for the
//! whole process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ward_store::writer::Priority;
use ward_store::{MemoryStore, Store, StoreError, commit_runtime};

/// The threads of this process named as the commit runtime's.
fn commit_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == commit_runtime::THREAD_NAME)
        .count()
}

/// Started twice (from two threads at once, outside any runtime), the runtime is built once:
/// one thread per core, at least two. A job then runs on one of them.
#[test]
fn started_once_the_writer_runs_its_jobs_on_the_commit_threads() {
    assert_eq!(commit_threads(), 0, "nothing started yet");
    let both = [
        std::thread::spawn(commit_runtime::start),
        std::thread::spawn(commit_runtime::start),
    ];
    for started in both {
        started.join().unwrap().unwrap();
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while commit_threads() < cores && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(commit_threads(), cores, "one runtime's threads, not two");

    let caller = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let ran_on: Option<String> = caller.block_on(async {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        store
            .write(Priority::High, |_tx| {
                Box::pin(async {
                    Ok::<_, StoreError>(std::thread::current().name().map(str::to_owned))
                })
            })
            .await
            .unwrap()
    });
    assert_eq!(ran_on.as_deref(), Some(commit_runtime::THREAD_NAME));
}
