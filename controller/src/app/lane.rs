//! Requests from many callers, run together: a task takes every request waiting when a batch
//! may start (up to a bound) and runs them as one batch, then answers each caller with its own
//! outcome; a batch that fails as a whole fails every caller, or runs again in halves until a
//! failing request is alone ([`OnFailure`]). With the store's writer behind it, a thousand callers that arrive at once
//! cost one job and a few many-row statements instead of a thousand jobs. A lane runs one
//! batch at a time, or a few at once where the writer has lanes to run them side by side
//! ([`Shape::concurrent`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::AppError;
use crate::store::{StoreError, commit_runtime};

type Pending<R, O> = (R, oneshot::Sender<Result<O, AppError>>);

/// A queue of `R`s answered with `O`s, run in batches by one task.
pub(super) struct Lane<R, O> {
    name: &'static str,
    queue: mpsc::UnboundedSender<Pending<R, O>>,
    load: Arc<Load>,
}

/// How many requests wait for a batch, and how fast batches have taken them lately.
#[derive(Debug, Default)]
struct Load {
    queued: AtomicUsize,
    /// Requests answered a second, smoothed over recent batches that others waited for; 0
    /// before the first.
    per_second: AtomicU64,
}

impl<R, O> Clone for Lane<R, O> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            queue: self.queue.clone(),
            load: Arc::clone(&self.load),
        }
    }
}

impl<R, O> fmt::Debug for Lane<R, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lane").field("name", &self.name).finish()
    }
}

/// What a lane does when a batch fails as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OnFailure {
    /// Every caller in the batch gets the error (it is the store's, not any one request's).
    FailAll,
    /// The batch runs again in two halves, and a half that fails again in two halves, until
    /// a request that cannot succeed fails alone and its neighbours go ahead: one failing
    /// request in a batch of a thousand costs about twenty batches, not a thousand. Only for
    /// the batch's own failure: one of the store as a whole fails every caller at once, as
    /// [`OnFailure::FailAll`] ([`Failed::apart`]).
    SplitUntilAlone,
}

/// Where a lane's tasks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Threads {
    /// The commit path's own threads ([`commit_runtime`]), once `wardctl serve` started
    /// them: a lane that feeds the writer, whose batches must not wait behind the
    /// connections' tasks.
    Commit,
    /// The caller's runtime: a lane of reads, which has no business on the commit threads.
    Caller,
}

impl Threads {
    fn spawn<T>(self, task: T) -> tokio::task::JoinHandle<T::Output>
    where
        T: Future + Send + 'static,
        T::Output: Send + 'static,
    {
        match self {
            Self::Commit => commit_runtime::spawn(task),
            Self::Caller => tokio::spawn(task),
        }
    }
}

/// The most runs of one failed batch's halves at once: a batch whose every request fails
/// on its own (every row unreadable) splits down to single requests, some two thousand
/// runs for a thousand, and a lane of reads must not take the whole read pool for them.
const SPLIT_RUNS_AT_ONCE: usize = 4;

/// Why a batch failed as a whole, and whether its requests may fare better apart.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) error: AppError,
    /// The batch's own failure (one of its requests could not be written): run apart, the
    /// others may succeed ([`OnFailure::SplitUntilAlone`]). Not when the store failed as a
    /// whole (the database unreachable, a commit refused): every request would fail the same
    /// way, round after round, while the callers and the lane wait; they are answered at
    /// once, and the devices call again with their back-off.
    pub(super) apart: bool,
}

impl Failed {
    /// The batch's own failure.
    pub(super) fn own(error: AppError) -> Self {
        Self { error, apart: true }
    }

    /// The store failed as a whole.
    pub(super) fn store(error: StoreError) -> Self {
        Self {
            error: error.into(),
            apart: false,
        }
    }

    /// A writer job's outcome ([`crate::store::Store::write_apart`]) as a batch's.
    pub(super) fn of_write<T>(written: Result<Result<T, AppError>, StoreError>) -> Result<T, Self> {
        match written {
            Ok(outcome) => outcome.map_err(Self::own),
            Err(store) => Err(Self::store(store)),
        }
    }
}

impl From<AppError> for Failed {
    fn from(error: AppError) -> Self {
        Self::own(error)
    }
}

/// A store error as a lane's batch meets it (a read, or a writer job's outcome without
/// [`Failed::of_write`]): a row that cannot be read (its text unreadable, a column that does
/// not decode: [`StoreError::Corrupt`]) is the batch's own,
/// and fails only the requests that read it once they run apart. Any other error is the
/// store's (the read pool exhausted, the database unreachable): run apart, a thousand reads
/// would fail the same way some two thousand times, each half holding a connection of its
/// own, while the callers wait.
impl From<StoreError> for Failed {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt(_) => Self::own(error.into()),
            other => Self::store(other),
        }
    }
}

/// How a lane runs its batches: [`Shape::new`], then what differs from one batch at a time
/// on the commit path's threads.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shape {
    name: &'static str,
    max_batch: usize,
    on_failure: OnFailure,
    concurrent: usize,
    threads: Threads,
}

impl Shape {
    /// Batches of up to `max_batch` requests, one at a time, on [`Threads::Commit`].
    pub(super) const fn new(name: &'static str, max_batch: usize, on_failure: OnFailure) -> Self {
        Self {
            name,
            max_batch,
            on_failure,
            concurrent: 1,
            threads: Threads::Commit,
        }
    }

    /// Up to `concurrent` batches at once (at least one): the next batch starts while others
    /// are still running, with the requests that arrived meanwhile.
    pub(super) const fn concurrent(self, concurrent: usize) -> Self {
        Self { concurrent, ..self }
    }

    /// On `threads`: [`Threads::Caller`] for a lane of reads.
    pub(super) const fn on(self, threads: Threads) -> Self {
        Self { threads, ..self }
    }
}

impl<R: Send + Sync + 'static, O: Send + 'static> Lane<R, O> {
    /// Starts the lane's task. `run` answers a batch with one outcome per request, in order.
    pub(super) fn start<F, Fut>(shape: Shape, run: F) -> Self
    where
        R: Clone,
        F: Fn(Arc<[R]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, Failed>> + Send + 'static,
    {
        let Shape {
            name,
            max_batch,
            on_failure,
            concurrent,
            threads,
        } = shape;
        let (queue, mut requests) = mpsc::unbounded_channel::<Pending<R, O>>();
        let load = Arc::new(Load::default());
        let run = Arc::new(run);
        let running = Arc::new(Semaphore::new(concurrent.max(1)));
        let task_load = Arc::clone(&load);
        threads.spawn(async move {
            while let Some(first) = requests.recv().await {
                let Ok(slot) = Arc::clone(&running).acquire_owned().await else {
                    return;
                };
                // Everything that arrived while the slot was taken joins this batch.
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match requests.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                task_load.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                let (run, load) = (Arc::clone(&run), Arc::clone(&task_load));
                threads.spawn(async move {
                    let runner = Runner {
                        name,
                        run: run.as_ref(),
                        on_failure,
                        threads,
                        split_runs: Semaphore::new(SPLIT_RUNS_AT_ONCE),
                    };
                    answer(&runner, batch, (max_batch, concurrent), &load).await;
                    drop(slot);
                });
            }
        });
        Self { name, queue, load }
    }

    /// Queues `request` and waits for its outcome.
    pub(super) async fn run(&self, request: R) -> Result<O, AppError> {
        let name = self.name;
        let (answer, outcome) = oneshot::channel();
        self.load.queued.fetch_add(1, Ordering::Relaxed);
        if self.queue.send((request, answer)).is_err() {
            self.load.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(AppError::Internal(format!("the {name} task has stopped")));
        }
        outcome
            .await
            .map_err(|_| AppError::Internal(format!("the {name} task stopped before answering")))?
    }

    /// How long a request queued now would wait for its batch to start, at the rate recent
    /// batches that others waited for took requests; `None` until such a batch.
    pub(super) fn wait(&self) -> Option<Duration> {
        let rate = self.load.per_second.load(Ordering::Relaxed);
        let queued = self.load.queued.load(Ordering::Relaxed);
        (rate > 0).then(|| Duration::from_secs_f64(queued as f64 / rate as f64))
    }

    /// The requests waiting for a batch.
    pub(super) fn queued(&self) -> usize {
        self.load.queued.load(Ordering::Relaxed)
    }
}

/// Runs one batch and answers its callers. Each caller hears only once its request is
/// dropped (what a request holds, such as a device's check-in turn, is free by the time the
/// caller can ask again).
async fn answer<R, O, F, Fut>(
    runner: &Runner<'_, F>,
    batch: Vec<Pending<R, O>>,
    (max_batch, concurrent): (usize, usize),
    load: &Load,
) where
    R: Clone + Send + Sync + 'static,
    O: Send + 'static,
    F: Fn(Arc<[R]>) -> Fut + Sync,
    Fut: Future<Output = Result<Vec<O>, Failed>> + Send + 'static,
{
    tracing::debug!(lane = runner.name, requests = batch.len(), "batch");
    let requests = batch.len();
    let (asked, answers): (Vec<R>, Vec<_>) = batch.into_iter().unzip();
    let started = Instant::now();
    settle(runner, asked, answers).await;
    // How fast the lane goes is told by a batch that others waited for (full, or with
    // requests queued behind it when it ended), from its start to its last answer, retries
    // included. A small batch nobody waited for says only that few requests came: counting
    // it made a burst after a quiet spell look hopeless, and shedding then fed itself (fewer
    // requests a batch, a lower rate, more shed).
    if requests == max_batch || load.queued.load(Ordering::Relaxed) > 0 {
        load.observe(requests, started.elapsed(), concurrent);
    }
}

/// Runs `requests` as one batch and answers each caller: with its outcome; or, when the
/// batch failed on its own and the lane splits ([`OnFailure::SplitUntilAlone`]), by running
/// it again as two halves side by side, each settled the same way, until a request that
/// fails is alone and gets its own error; or else with the batch's error. Each caller hears
/// only once its request is dropped. At most [`SPLIT_RUNS_AT_ONCE`] of one batch's halves run
/// at once.
fn settle<'a, R, O, F, Fut>(
    runner: &'a Runner<'a, F>,
    requests: Vec<R>,
    mut answers: Vec<oneshot::Sender<Result<O, AppError>>>,
) -> BoxFuture<'a, ()>
where
    R: Clone + Send + Sync + 'static,
    O: Send + 'static,
    F: Fn(Arc<[R]>) -> Fut + Sync,
    Fut: Future<Output = Result<Vec<O>, Failed>> + Send + 'static,
{
    Box::pin(async move {
        let Runner {
            name, on_failure, ..
        } = *runner;
        let batch: Arc<[R]> = requests.into();
        match runner.run_batch(Arc::clone(&batch)).await {
            Ok(outcomes) => {
                drop(batch);
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Err(Failed {
                error: e,
                apart: true,
            }) if on_failure == OnFailure::SplitUntilAlone && batch.len() > 1 => {
                tracing::debug!(lane = name, requests = batch.len(), error = %e, "batch failed; it runs again in halves");
                let mut first: Vec<R> = batch.iter().cloned().collect();
                drop(batch);
                let later = first.split_off(first.len() / 2);
                let later_answers = answers.split_off(answers.len() / 2);
                futures::join!(
                    settle(runner, first, answers),
                    settle(runner, later, later_answers)
                );
            }
            Err(Failed { error: e, .. }) => {
                drop(batch);
                tracing::warn!(lane = name, requests = answers.len(), error = %e, "batch failed");
                for answer in answers {
                    let _ = answer.send(Err(e.clone()));
                }
            }
        }
    })
}

impl Load {
    /// A batch of `requests` took `took`, with up to `concurrent` batches side by side.
    fn observe(&self, requests: usize, took: Duration, concurrent: usize) {
        #[allow(clippy::cast_possible_truncation)] // a rate estimate; a float `as` cast saturates
        let rate = ((requests as f64 * concurrent.max(1) as f64 / took.as_secs_f64().max(1e-6))
            as u64)
            .max(1);
        let old = self.per_second.load(Ordering::Relaxed);
        let smoothed = if old == 0 {
            rate
        } else {
            ((old * 7 + rate) / 8).max(1)
        };
        self.per_second.store(smoothed, Ordering::Relaxed);
    }
}

/// What a lane runs each batch with.
struct Runner<'a, F> {
    name: &'static str,
    run: &'a F,
    on_failure: OnFailure,
    threads: Threads,
    /// Shared by one batch's halves ([`SPLIT_RUNS_AT_ONCE`]).
    split_runs: Semaphore,
}

impl<F> Runner<'_, F> {
    /// One batch, in a task of its own (a batch that panics fails its callers, not the
    /// lane), with one outcome per request.
    async fn run_batch<R, O, Fut>(&self, batch: Arc<[R]>) -> Result<Vec<O>, Failed>
    where
        O: Send + 'static,
        F: Fn(Arc<[R]>) -> Fut,
        Fut: Future<Output = Result<Vec<O>, Failed>> + Send + 'static,
    {
        let name = self.name;
        let asked = batch.len();
        let outcomes = {
            // Held for the run only, never while the halves wait for theirs.
            let _turn = self.split_runs.acquire().await;
            self.threads.spawn((self.run)(batch)).await
        }
        .unwrap_or_else(|e| {
            Err(Failed::own(AppError::Internal(format!(
                "the {name} batch stopped: {e}"
            ))))
        })?;
        if outcomes.len() == asked {
            Ok(outcomes)
        } else {
            Err(Failed::own(AppError::Internal(format!(
                "the {name} batch answered {} of {asked} requests",
                outcomes.len()
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Lane, OnFailure, Shape};

    /// With two batches allowed at once, a second batch starts while the first is still
    /// running (each waits for the other here, so one at a time would never finish).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batches_run_side_by_side() {
        let both = Arc::new(tokio::sync::Barrier::new(2));
        let lane: Lane<u32, u32> = Lane::start(
            Shape::new("test", 1, OnFailure::FailAll).concurrent(2),
            move |batch| {
                let both = Arc::clone(&both);
                async move {
                    both.wait().await;
                    Ok(batch.iter().map(|n| n * 10).collect())
                }
            },
        );
        let answers = tokio::time::timeout(
            Duration::from_secs(10),
            futures::future::join(lane.run(1), lane.run(2)),
        )
        .await
        .expect("the two batches ran at once");
        assert_eq!((answers.0.unwrap(), answers.1.unwrap()), (10, 20));
    }

    /// A caller hears only after its request is dropped, also when its batch failed and it
    /// ran again alone; and the lane estimates a wait only once a batch was full.
    #[tokio::test]
    async fn requests_are_dropped_before_their_callers_hear() {
        let lane: Lane<Arc<u32>, u32> = Lane::start(
            Shape::new("test", 2, OnFailure::SplitUntilAlone),
            |batch: Arc<[Arc<u32>]>| async move {
                if batch.len() > 1 && batch.iter().any(|n| **n == 13) {
                    return Err(super::AppError::Internal("unlucky".into()).into());
                }
                Ok(batch.iter().map(|n| **n).collect())
            },
        );
        assert_eq!(lane.wait(), None, "no batch yet");
        let (one, two) = (Arc::new(1), Arc::new(13));
        let answers = futures::future::join(lane.run(Arc::clone(&one)), lane.run(Arc::clone(&two)));
        let (a, b) = answers.await;
        assert_eq!((a.unwrap(), b.unwrap()), (1, 13), "each ran again alone");
        assert_eq!(
            (Arc::strong_count(&one), Arc::strong_count(&two)),
            (1, 1),
            "the lane kept no request after answering"
        );
        assert!(lane.wait().is_some(), "a full batch (of two) was seen");
        assert_eq!(lane.queued(), 0);
    }

    /// A read that fails as the database does (its pool exhausted, the server gone) fails
    /// every caller after one run; a row that cannot be read fails only its own caller, the
    /// batch run again in halves until it is alone.
    #[tokio::test]
    async fn only_an_unreadable_row_splits_a_batch_of_reads() {
        use crate::store::StoreError;
        use std::sync::atomic::{AtomicUsize, Ordering};
        for (error, runs_expected) in [
            (StoreError::Database("pool timed out".into()), 1),
            (StoreError::Corrupt("column issued_at".into()), 7),
        ] {
            let runs = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&runs);
            let failing = error.clone();
            let lane: Lane<u32, u32> = Lane::start(
                Shape::new("test", 8, OnFailure::SplitUntilAlone),
                move |batch: Arc<[u32]>| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let failing = failing.clone();
                    async move {
                        let fails = match &failing {
                            StoreError::Corrupt(_) => batch.contains(&3),
                            _ => true,
                        };
                        if fails {
                            return Err(failing.into());
                        }
                        Ok(batch.to_vec())
                    }
                },
            );
            let answers = futures::future::join_all((0..8).map(|n| lane.run(n))).await;
            let failed: Vec<usize> = (0..8).filter(|&i| answers[i].is_err()).collect();
            match error {
                StoreError::Corrupt(_) => assert_eq!(failed, [3], "{answers:?}"),
                _ => assert_eq!(failed.len(), 8, "{answers:?}"),
            }
            assert_eq!(runs.load(Ordering::Relaxed), runs_expected, "{error}");
        }
    }

    /// A batch whose every request fails on its own (every row unreadable) splits down to
    /// single requests (31 runs for 16 in one batch), but never more than
    /// `SPLIT_RUNS_AT_ONCE` at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_split_to_the_end_runs_a_few_halves_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (runs, now, most) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let counted = (Arc::clone(&runs), Arc::clone(&now), Arc::clone(&most));
        let lane: Lane<u32, u32> = Lane::start(
            Shape::new("test", 16, OnFailure::SplitUntilAlone).on(super::Threads::Caller),
            move |_batch: Arc<[u32]>| {
                let (runs, now, most) = (
                    Arc::clone(&counted.0),
                    Arc::clone(&counted.1),
                    Arc::clone(&counted.2),
                );
                async move {
                    runs.fetch_add(1, Ordering::Relaxed);
                    let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(running, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    Err(crate::store::StoreError::Corrupt("unreadable".into()).into())
                }
            },
        );
        let answers = futures::future::join_all((0..16).map(|n| lane.run(n))).await;
        assert!(answers.iter().all(Result::is_err));
        assert!(
            runs.load(Ordering::Relaxed) >= 16,
            "each request ran alone in the end"
        );
        let most = most.load(Ordering::SeqCst);
        assert!(
            (2..=super::SPLIT_RUNS_AT_ONCE).contains(&most),
            "{most} runs at once"
        );
    }

    /// A batch that failed because the store did (the database unreachable, its commit
    /// refused) is not run again in halves: every request would fail the same way, round
    /// after round, while the callers wait. Each caller hears the store's error after the one
    /// run.
    #[tokio::test]
    async fn a_batch_the_store_failed_is_answered_at_once_not_split() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let lane: Lane<u32, u32> = Lane::start(
            Shape::new("test", 8, OnFailure::SplitUntilAlone),
            move |_batch: Arc<[u32]>| {
                counted.fetch_add(1, Ordering::Relaxed);
                async move {
                    Err(super::Failed::store(crate::store::StoreError::Database(
                        "connection refused".into(),
                    )))
                }
            },
        );
        let answers = futures::future::join_all((0..8).map(|n| lane.run(n))).await;
        assert!(
            answers.iter().all(|a| a
                .as_ref()
                .is_err_and(|e| e.to_string().contains("connection refused"))),
            "{answers:?}"
        );
        assert_eq!(runs.load(Ordering::Relaxed), 1, "one run, no halves");
    }
}
