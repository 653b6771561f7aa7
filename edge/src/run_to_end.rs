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
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// Wraps a service so each call runs in its own task ([`RunToEnd`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct RunToEndLayer;

impl<S> Layer<S> for RunToEndLayer {
    type Service = RunToEnd<S>;

    fn layer(&self, inner: S) -> RunToEnd<S> {
        RunToEnd(inner)
    }
}

/// The service of [`RunToEndLayer`].
#[derive(Clone, Debug)]
pub struct RunToEnd<S>(S);

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
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let call = tokio::spawn(self.0.call(request));
        Box::pin(async move {
            match call.await {
                Ok(answer) => answer,
                // The task is never aborted, so it ended by panicking: the panic goes on to
                // the connection as it would have without the task.
                Err(ended) => std::panic::resume_unwind(ended.into_panic()),
            }
        })
    }
}
