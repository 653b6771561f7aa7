//! Requests from many callers, run together: a task takes every request waiting when its last
//! batch finished (up to a bound) and runs them as one batch, then answers each caller with
//! its own outcome; a batch that fails as a whole fails every caller, or runs each request
//! again alone ([`OnFailure`]). With the store's writer behind it, a thousand callers that
//! arrive at once cost one job and a few many-row statements instead of a thousand jobs.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::AppError;

type Pending<R, O> = (R, oneshot::Sender<Result<O, AppError>>);

/// A queue of `R`s answered with `O`s, run in batches by one task.
pub(super) struct Lane<R, O> {
    name: &'static str,
    queue: mpsc::UnboundedSender<Pending<R, O>>,
}

impl<R, O> Clone for Lane<R, O> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            queue: self.queue.clone(),
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
    /// Each request of a batch of more than one runs again in a batch of its own, so a
    /// request that cannot succeed fails alone and its neighbours go ahead.
    RetryEachAlone,
}

impl<R: Send + Sync + 'static, O: Send + 'static> Lane<R, O> {
    /// Starts the task. `run` answers a batch with one outcome per request, in order.
    pub(super) fn start<F, Fut>(
        name: &'static str,
        max_batch: usize,
        on_failure: OnFailure,
        run: F,
    ) -> Self
    where
        R: Clone,
        F: Fn(Arc<[R]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, AppError>> + Send + 'static,
    {
        let (queue, mut requests) = mpsc::unbounded_channel::<Pending<R, O>>();
        tokio::spawn(async move {
            while let Some(first) = requests.recv().await {
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match requests.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                tracing::debug!(lane = name, requests = batch.len(), "batch");
                let (asked, answers): (Vec<R>, Vec<_>) = batch.into_iter().unzip();
                let asked: Arc<[R]> = asked.into();
                match run_batch(name, &run, Arc::clone(&asked)).await {
                    Ok(outcomes) => {
                        for (answer, outcome) in answers.into_iter().zip(outcomes) {
                            let _ = answer.send(Ok(outcome));
                        }
                    }
                    Err(e) if on_failure == OnFailure::RetryEachAlone && asked.len() > 1 => {
                        tracing::warn!(lane = name, requests = asked.len(), error = %e, "batch failed; each request runs again alone");
                        for (request, answer) in asked.iter().zip(answers) {
                            let alone: Arc<[R]> = Arc::from(vec![request.clone()]);
                            let outcome = run_batch(name, &run, alone)
                                .await
                                .and_then(|mut one| one.pop().ok_or_else(|| unanswered(name)));
                            let _ = answer.send(outcome);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(lane = name, requests = answers.len(), error = %e, "batch failed");
                        for answer in answers {
                            let _ = answer.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Self { name, queue }
    }

    /// Queues `request` and waits for its outcome.
    pub(super) async fn run(&self, request: R) -> Result<O, AppError> {
        let name = self.name;
        let (answer, outcome) = oneshot::channel();
        self.queue
            .send((request, answer))
            .map_err(|_| AppError::Internal(format!("the {name} task has stopped")))?;
        outcome
            .await
            .map_err(|_| AppError::Internal(format!("the {name} task stopped before answering")))?
    }
}

/// One batch, in a task of its own (a batch that panics fails its callers, not the lane), with
/// one outcome per request.
async fn run_batch<R, O, F, Fut>(
    name: &'static str,
    run: &F,
    batch: Arc<[R]>,
) -> Result<Vec<O>, AppError>
where
    O: Send + 'static,
    F: Fn(Arc<[R]>) -> Fut,
    Fut: Future<Output = Result<Vec<O>, AppError>> + Send + 'static,
{
    let asked = batch.len();
    let outcomes = tokio::spawn(run(batch))
        .await
        .unwrap_or_else(|e| Err(AppError::Internal(format!("the {name} batch stopped: {e}"))))?;
    if outcomes.len() == asked {
        Ok(outcomes)
    } else {
        Err(AppError::Internal(format!(
            "the {name} batch answered {} of {asked} requests",
            outcomes.len()
        )))
    }
}

fn unanswered(name: &str) -> AppError {
    AppError::Internal(format!("the {name} batch left a request unanswered"))
}
