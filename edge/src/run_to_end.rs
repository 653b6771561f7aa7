//! A call, once accepted, runs to its end even when its client hangs up.
//!
//! HTTP/2 drops a call's handler when the client resets the stream (a timeout, a dropped
//! VPN). A handler dropped while its write waits in the store's writer leaves the write to
//! commit without the caller: what follows the commit on this replica — a revoked serial in
//! the list the handshake checks, cached records refreshed, a device's stream woken, the other
//! replicas told — was skipped until the next reload. Every call here runs in its own task
//! instead; the client's hang-up drops only the wait for its answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// The most calls running in tasks of their own at once. A call runs on after its client
/// hangs up, so without a bound a client that sends and resets streams over and over would
/// leave work piling up. Beyond it a call runs as before, in its connection's task, dropped if
/// its client hangs up: it never waits for a place (a client trickling request bodies on many
/// streams would otherwise hold every place and stall everyone). Ten thousand agents checking
/// in together fit.
pub(crate) const MAX_CALLS_RUNNING: usize = 16_384;

/// Wraps a service so each call runs in its own task ([`RunToEnd`]).
#[derive(Clone, Debug)]
pub(crate) struct RunToEndLayer {
    running: Arc<Semaphore>,
}

impl RunToEndLayer {
    /// At most `max` calls running at once.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(max)),
        }
    }
}

impl Default for RunToEndLayer {
    fn default() -> Self {
        Self::new(MAX_CALLS_RUNNING)
    }
}

impl<S> Layer<S> for RunToEndLayer {
    type Service = RunToEnd<S>;

    fn layer(&self, inner: S) -> RunToEnd<S> {
        RunToEnd {
            inner,
            running: Arc::clone(&self.running),
        }
    }
}

/// The service of [`RunToEndLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RunToEnd<S> {
    inner: S,
    running: Arc<Semaphore>,
}

impl<S, R> Service<R> for RunToEnd<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // Nothing of the call runs until the future is polled.
        let call = self.inner.call(request);
        let Ok(place) = Arc::clone(&self.running).try_acquire_owned() else {
            return Box::pin(call);
        };
        let task = tokio::spawn(async move {
            let answer = call.await;
            drop(place);
            answer
        });
        Box::pin(async move {
            match task.await {
                Ok(answer) => answer,
                // The task is never aborted, so it ended by panicking: the panic goes on to
                // the connection as it would have without the task.
                Err(ended) => std::panic::resume_unwind(ended.into_panic()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;
    use tower::{ServiceExt, service_fn};

    use super::*;

    /// A service whose calls wait for `go`, then count themselves in `ended`.
    fn waiting(
        go: Arc<Notify>,
        started: Arc<AtomicUsize>,
        ended: Arc<AtomicUsize>,
    ) -> impl Service<(), Response = (), Error = std::convert::Infallible, Future: Send> + Clone
    {
        service_fn(move |()| {
            let (go, started, ended) = (go.clone(), started.clone(), ended.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                go.notified().await;
                ended.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_call_whose_caller_went_away_runs_to_its_end() {
        let (go, started, ended) = Default::default();
        let mut service = RunToEndLayer::default().layer(waiting(
            Arc::clone(&go),
            Arc::clone(&started),
            Arc::clone(&ended),
        ));
        let mut call = Box::pin(service.ready().await.unwrap().call(()));
        assert!(futures::poll!(&mut call).is_pending());
        until("the call to start", || started.load(Ordering::SeqCst) == 1).await;
        drop(call);
        go.notify_one();
        until("the call to end", || ended.load(Ordering::SeqCst) == 1).await;
    }

    #[tokio::test]
    async fn beyond_the_bound_a_call_runs_in_its_callers_task_and_never_waits() {
        let (go, started, ended) = Default::default();
        let mut service = RunToEndLayer::new(1).layer(waiting(
            Arc::clone(&go),
            Arc::clone(&started),
            Arc::clone(&ended),
        ));
        let mut first = Box::pin(service.ready().await.unwrap().call(()));
        assert!(futures::poll!(&mut first).is_pending());
        until("the first call to start", || {
            started.load(Ordering::SeqCst) == 1
        })
        .await;

        // The place is taken: the next call starts at once, in the caller's task...
        let mut inline = Box::pin(service.ready().await.unwrap().call(()));
        assert!(futures::poll!(&mut inline).is_pending());
        assert_eq!(started.load(Ordering::SeqCst), 2, "it waited for a place");
        // ...and is dropped with its caller.
        drop(inline);
        go.notify_waiters();
        first.await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(ended.load(Ordering::SeqCst), 1, "the dropped call ran on");

        // The place is back once the first call's task has ended.
        let mut again = Box::pin(service.ready().await.unwrap().call(()));
        assert!(futures::poll!(&mut again).is_pending());
        drop(again);
        until("the detached call to start", || {
            started.load(Ordering::SeqCst) == 3
        })
        .await;
        go.notify_one();
        until("the detached call to end", || {
            ended.load(Ordering::SeqCst) == 2
        })
        .await;
    }
}
