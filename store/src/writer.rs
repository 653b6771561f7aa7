//! Group commit: one writer per store runs every queued [`Job`] of many callers in one
//! transaction, commits once, then answers each caller.
//!
//! - A caller is answered only after the commit that holds its change.
//! - A job that fails fails alone: the batch is rolled back and run again without it, so its
//!   neighbours commit and it gets its own error.
//! - Jobs run in the order they were queued; calls that must not wait behind a flood of
//!   check-ins (admin calls, command acknowledgements and results) queue apart and go first,
//!   and check-ins are refused at once (`Overloaded`) when the queue holds more than the
//!   writer can commit within the agents' patience.
//! - A writer may have several lanes, each its own connection and transaction (PostgreSQL;
//!   SQLite has one write lock, so one lane). The first lane runs every high-priority job, in
//!   order; check-ins are spread over all lanes. Two lanes are to each other what two replicas
//!   are: each job re-reads what it changes inside its transaction, and the audit head is
//!   locked at each commit, so the chain stays linear. A lane waits for the database's round
//!   trips; several keep the cores busy meanwhile.
//!
//! The [`Engine`] is the database side: SQLite or PostgreSQL through one SQL body, or the
//! in-memory store of the unit tests.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::tx::{Erased, Failure, Job, Tx};

/// The database side of the writer.
#[async_trait]
pub trait Engine: Send + 'static {
    /// Starts a transaction (reconnecting first if the connection broke).
    async fn begin(&mut self) -> Result<(), StoreError>;
    /// The open transaction, for the next job.
    fn tx(&mut self) -> &mut dyn Tx;
    /// Appends the audit entries the batch's jobs recorded, signs the audit head once, and
    /// commits. On error nothing of the batch is kept.
    async fn commit(&mut self) -> Result<(), StoreError>;
    /// Discards the open transaction and the audit entries recorded in it.
    async fn rollback(&mut self);
}

/// How the writer batches; `wardctl serve --write-batch-window`, `--write-batch-max` and
/// `--shed-check-ins-after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// After the first job of a batch, how long to wait for more before running it. Jobs that
    /// arrive while a commit is in flight join the next batch anyway.
    pub window: Duration,
    /// The most jobs in one transaction.
    pub max_jobs: usize,
    /// A check-in is refused when the writer would need longer than this to reach it (by
    /// the writer for a [`Priority::Sheddable`] job, by the caller's own measure for a
    /// [`Priority::Admitted`] one).
    pub shed_after: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(2),
            max_jobs: 1000,
            // Measured (BENCHMARKS.md): 100 ms shed 91 % of PostgreSQL's check-ins at 5,000/s
            // offered and did not shorten the rest, whose wait is mostly before the writer.
            shed_after: Duration::from_secs(5),
        }
    }
}

/// Which queue a job waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Admin calls, command acknowledgements and results, enrollment: never shed, run first.
    High,
    /// Check-ins and other periodic reports: shed when the writer is behind.
    Sheddable,
    /// As [`Priority::Sheddable`], for a job its caller admitted already by a measure of its
    /// own (a batch of many check-ins, which the writer's count of jobs would weigh as one):
    /// runs after the high-priority jobs, never refused.
    Admitted,
}

/// What the writer has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub queued_high: AtomicUsize,
    pub queued_sheddable: AtomicUsize,
    pub batches: AtomicU64,
    pub jobs_committed: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub jobs_shed: AtomicU64,
    /// Recent commit throughput of each lane (jobs a second), smoothed; 0 until its first
    /// batch.
    jobs_per_second: [AtomicU64; MAX_LANES],
    /// Observers of each batch (size, commit latency), e.g. Prometheus histograms.
    observers: std::sync::OnceLock<Arc<dyn BatchObserver>>,
}

/// Told about every committed batch.
pub trait BatchObserver: Send + Sync + std::fmt::Debug {
    fn batch(&self, jobs: usize, commit: Duration);
}

impl WriterStats {
    pub fn observe_with(&self, observer: Arc<dyn BatchObserver>) {
        let _ = self.observers.set(observer);
    }

    /// Recent commit throughput of all lanes together (jobs a second); 0 until the first
    /// batch.
    pub fn jobs_per_second(&self) -> u64 {
        self.jobs_per_second
            .iter()
            .map(|lane| lane.load(Ordering::Relaxed))
            .sum()
    }

    fn record(&self, lane: usize, jobs: usize, took: Duration, commit: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.jobs_committed
            .fetch_add(jobs as u64, Ordering::Relaxed);
        #[allow(clippy::cast_possible_truncation)] // a rate estimate; a float `as` cast saturates
        let rate = (jobs as f64 / took.as_secs_f64().max(1e-6)) as u64;
        let lane = &self.jobs_per_second[lane];
        let old = lane.load(Ordering::Relaxed);
        let smoothed = if old == 0 { rate } else { (old * 7 + rate) / 8 };
        lane.store(smoothed, Ordering::Relaxed);
        if let Some(observer) = self.observers.get() {
            observer.batch(jobs, commit);
        }
    }
}

struct Pending {
    job: Job,
    reply: oneshot::Sender<Result<Erased, Failure>>,
}

/// The most lanes a writer may have.
pub const MAX_LANES: usize = 16;

/// The handle callers queue jobs through; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    /// One per lane.
    close: Arc<[mpsc::UnboundedSender<oneshot::Sender<()>>]>,
    /// The first lane's.
    high: mpsc::UnboundedSender<Pending>,
    /// One per lane, taken in turn.
    sheddable: Arc<[mpsc::UnboundedSender<Pending>]>,
    next_lane: Arc<AtomicUsize>,
    /// Shared with the writer task, which reads them at each batch.
    settings: Arc<Mutex<BatchSettings>>,
    stats: Arc<WriterStats>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl Writer {
    /// Starts the writer task over `engine`: one lane.
    pub fn start(engine: impl Engine, settings: BatchSettings) -> Self {
        Self::start_lanes(vec![engine], settings)
    }

    /// Starts one writer task per engine, each a lane (see the module's documentation): at
    /// least one, at most [`MAX_LANES`] (engines beyond are dropped).
    pub fn start_lanes<E: Engine>(engines: Vec<E>, settings: BatchSettings) -> Self {
        assert!(!engines.is_empty(), "a writer needs at least one engine");
        let stats = Arc::new(WriterStats::default());
        let settings = Arc::new(Mutex::new(settings));
        let (high, high_rx) = mpsc::unbounded_channel();
        let mut high_rx = Some(high_rx);
        let (mut close, mut sheddable) = (Vec::new(), Vec::new());
        for (lane, engine) in engines.into_iter().take(MAX_LANES).enumerate() {
            let (sheddable_tx, sheddable_rx) = mpsc::unbounded_channel();
            let (close_tx, close_rx) = mpsc::unbounded_channel();
            let queues = Queues {
                high: high_rx.take(),
                sheddable: sheddable_rx,
                close: close_rx,
            };
            crate::commit_runtime::spawn(run(
                engine,
                lane,
                queues,
                Arc::clone(&settings),
                Arc::clone(&stats),
            ));
            close.push(close_tx);
            sheddable.push(sheddable_tx);
        }
        Self {
            close: close.into(),
            high,
            sheddable: sheddable.into(),
            next_lane: Arc::default(),
            settings,
            stats,
        }
    }

    /// How many lanes write.
    pub fn lanes(&self) -> usize {
        self.sheddable.len()
    }

    /// The lanes that run jobs of `priority`: high-priority ones on the first, in order. An
    /// admitted job (a batch of many devices' check-ins) stays off the first lane when there
    /// are others: only they give up on a row another writer holds (PostgreSQL's lock
    /// timeout), and the first lane's admin calls and results would wait behind a batch that
    /// waits for a lock.
    pub fn lanes_for(&self, priority: Priority) -> std::ops::Range<usize> {
        let lanes = self.sheddable.len();
        match priority {
            Priority::High => 0..1,
            Priority::Admitted if lanes > 1 => 1..lanes,
            Priority::Admitted | Priority::Sheddable => 0..lanes,
        }
    }

    /// Stops every lane once its batch in flight has committed and lets go of its
    /// connection; jobs still queued are answered with an error.
    pub async fn close(&self) {
        for lane in self.close.iter() {
            let (done, closed) = oneshot::channel();
            if lane.send(done).is_ok() {
                let _ = closed.await;
            }
        }
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// The settings in force.
    pub fn settings(&self) -> BatchSettings {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the settings; the next batch uses them.
    pub fn configure(&self, settings: BatchSettings) {
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// Queues `job` and waits for the commit that holds it.
    pub async fn submit(&self, job: Job, priority: Priority) -> Result<Erased, Failure> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending { job, reply };
        let queue = match priority {
            Priority::High => {
                self.stats.queued_high.fetch_add(1, Ordering::Relaxed);
                &self.high
            }
            Priority::Sheddable | Priority::Admitted => {
                if priority == Priority::Sheddable && self.behind() {
                    self.stats.jobs_shed.fetch_add(1, Ordering::Relaxed);
                    return Err(Failure::Store(StoreError::Overloaded));
                }
                self.stats.queued_sheddable.fetch_add(1, Ordering::Relaxed);
                let turn = self.next_lane.fetch_add(1, Ordering::Relaxed);
                let lanes = self.lanes_for(priority);
                &self.sheddable[lanes.start + turn % lanes.len()]
            }
        };
        if queue.send(pending).is_err() {
            return Err(Failure::Store(StoreError::Database(
                "the store's writer has stopped".into(),
            )));
        }
        answer.await.unwrap_or_else(|_| {
            Err(Failure::Store(StoreError::Database(
                "the store's writer stopped before answering".into(),
            )))
        })
    }

    /// True when the queued jobs would take longer than `shed_after` to commit at the
    /// recent rate.
    fn behind(&self) -> bool {
        let rate = self.stats.jobs_per_second();
        if rate == 0 {
            return false;
        }
        let queued = self.stats.queued_high.load(Ordering::Relaxed)
            + self.stats.queued_sheddable.load(Ordering::Relaxed);
        Duration::from_secs_f64(queued as f64 / rate as f64) > self.settings().shed_after
    }
}

struct Queues {
    /// The first lane's only.
    high: Option<mpsc::UnboundedReceiver<Pending>>,
    sheddable: mpsc::UnboundedReceiver<Pending>,
    close: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
}

async fn run(
    mut engine: impl Engine,
    lane: usize,
    mut queues: Queues,
    settings: Arc<Mutex<BatchSettings>>,
    stats: Arc<WriterStats>,
) {
    loop {
        // The first job: a high-priority one if any waits.
        let first = tokio::select! {
            biased;
            closing = queues.close.recv() => {
                // Dropping the engine gives its connection back to the pool.
                drop(engine);
                if let Some(done) = closing {
                    let _ = done.send(());
                }
                return;
            }
            Some(p) = recv_high(&mut queues.high) => { stats.queued_high.fetch_sub(1, Ordering::Relaxed); p }
            Some(p) = queues.sheddable.recv() => { stats.queued_sheddable.fetch_sub(1, Ordering::Relaxed); p }
            else => return,
        };
        let settings = *settings.lock().unwrap_or_else(PoisonError::into_inner);
        let mut batch = vec![first];
        gather(
            &mut batch,
            &mut queues.high,
            &mut queues.sheddable,
            &settings,
            &stats,
        )
        .await;
        // The writer's capacity is measured from here: the window spent waiting for more jobs
        // is not work, and counting it made small batches look slow, so shedding fed itself
        // (fewer jobs a batch, a lower rate, more shed).
        let started = Instant::now();
        let (answers, commit) = execute(&mut engine, &batch).await;
        let committed = answers.iter().filter(|a| a.is_ok()).count();
        stats
            .jobs_failed
            .fetch_add((answers.len() - committed) as u64, Ordering::Relaxed);
        if committed > 0 {
            stats.record(lane, committed, started.elapsed(), commit);
        }
        for (Pending { job, reply }, answer) in batch.into_iter().zip(answers) {
            // The job goes before its caller hears: what it holds (a device's check-in turn)
            // is free by the time the caller can ask again.
            drop(job);
            // A caller that gave up is no reason to stop.
            let _ = reply.send(answer);
        }
    }
}

/// The next high-priority job, on the lane that has their queue; never on the others.
async fn recv_high(high: &mut Option<mpsc::UnboundedReceiver<Pending>>) -> Option<Pending> {
    match high {
        Some(queue) => queue.recv().await,
        None => std::future::pending().await,
    }
}

/// Adds queued jobs to `batch`: high-priority ones first, until the batch is full, or the
/// queues are empty and the window has passed.
async fn gather(
    batch: &mut Vec<Pending>,
    high: &mut Option<mpsc::UnboundedReceiver<Pending>>,
    sheddable: &mut mpsc::UnboundedReceiver<Pending>,
    settings: &BatchSettings,
    stats: &WriterStats,
) {
    let deadline = tokio::time::Instant::now() + settings.window;
    while batch.len() < settings.max_jobs {
        if let Some(p) = high.as_mut().and_then(|q| q.try_recv().ok()) {
            stats.queued_high.fetch_sub(1, Ordering::Relaxed);
            batch.push(p);
            continue;
        }
        if let Ok(p) = sheddable.try_recv() {
            stats.queued_sheddable.fetch_sub(1, Ordering::Relaxed);
            batch.push(p);
            continue;
        }
        let next = tokio::select! {
            biased;
            p = recv_high(high) => p.map(|p| (p, true)),
            p = sheddable.recv() => p.map(|p| (p, false)),
            () = tokio::time::sleep_until(deadline) => None,
        };
        match next {
            Some((p, is_high)) => {
                let queued = if is_high {
                    &stats.queued_high
                } else {
                    &stats.queued_sheddable
                };
                queued.fetch_sub(1, Ordering::Relaxed);
                batch.push(p);
            }
            None => return,
        }
    }
}

/// Runs the batch to a commit; each job's answer, and how long the commit took.
async fn execute(
    engine: &mut impl Engine,
    batch: &[Pending],
) -> (Vec<Result<Erased, Failure>>, Duration) {
    let mut failed: Vec<Option<Erased>> = batch.iter().map(|_| None).collect();
    loop {
        if let Err(e) = engine.begin().await {
            return (everyone(batch.len(), &mut failed, &e), Duration::ZERO);
        }
        let mut outputs: Vec<Option<Erased>> = Vec::with_capacity(batch.len());
        let mut rerun = false;
        for (i, pending) in batch.iter().enumerate() {
            if failed[i].is_some() {
                outputs.push(None);
                continue;
            }
            let run = std::panic::AssertUnwindSafe((pending.job)(engine.tx())).catch_unwind();
            match run.await {
                Ok(Ok(output)) => outputs.push(Some(output)),
                Ok(Err(own)) => {
                    failed[i] = Some(own);
                    rerun = true;
                    break;
                }
                Err(_) => {
                    tracing::error!("a store job panicked; its caller gets an error");
                    failed[i] = Some(Box::new(StoreError::Database(
                        "internal error while writing (see the controller's log)".into(),
                    )));
                    rerun = true;
                    break;
                }
            }
        }
        if rerun {
            // Undo the jobs that ran before the failed one; they run again without it.
            engine.rollback().await;
            continue;
        }
        let started = Instant::now();
        return match engine.commit().await {
            Ok(()) => {
                let answers = outputs
                    .into_iter()
                    .zip(failed)
                    .map(|(output, own)| match (output, own) {
                        (Some(output), _) => Ok(output),
                        (None, Some(own)) => Err(Failure::Job(own)),
                        (None, None) => Err(Failure::Store(StoreError::Database(
                            "a store job was skipped".into(),
                        ))),
                    })
                    .collect();
                (answers, started.elapsed())
            }
            Err(e) => {
                engine.rollback().await;
                (everyone(batch.len(), &mut failed, &e), started.elapsed())
            }
        };
    }
}

/// The answers when the batch as a whole could not commit: each failed job keeps its own
/// error, every other caller gets the store's.
fn everyone(
    n: usize,
    failed: &mut [Option<Erased>],
    error: &StoreError,
) -> Vec<Result<Erased, Failure>> {
    (0..n)
        .map(|i| match failed[i].take() {
            Some(own) => Err(Failure::Job(own)),
            None => Err(Failure::Store(error.clone())),
        })
        .collect()
}
