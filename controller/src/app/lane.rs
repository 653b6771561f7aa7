//! Requests from many callers, run together: a task takes every request waiting when its last
//! batch finished (up to a bound) and runs them as one batch, then answers each caller with
//! its own outcome. With the store's writer behind it, a thousand callers that arrive at once
//! cost one job and a few many-row statements instead of a thousand jobs.

use std::fmt;
use std::future::Future;

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

impl<R: Send + 'static, O: Send + 'static> Lane<R, O> {
    /// Starts the task. `run` answers a batch with one outcome per request, in order; its
    /// error is every caller's in the batch.
    pub(super) fn start<F, Fut>(name: &'static str, max_batch: usize, run: F) -> Self
    where
        F: Fn(Vec<R>) -> Fut + Send + 'static,
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
                // In a task of its own: a batch that panics fails its callers, not the lane.
                let outcomes = tokio::spawn(run(asked)).await.unwrap_or_else(|e| {
                    Err(AppError::Internal(format!("the {name} batch stopped: {e}")))
                });
                match outcomes {
                    Ok(outcomes) if outcomes.len() == answers.len() => {
                        for (answer, outcome) in answers.into_iter().zip(outcomes) {
                            let _ = answer.send(Ok(outcome));
                        }
                    }
                    Ok(outcomes) => {
                        let e = AppError::Internal(format!(
                            "the {name} batch answered {} of {} requests",
                            outcomes.len(),
                            answers.len()
                        ));
                        for answer in answers {
                            let _ = answer.send(Err(e.clone()));
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
