//! When and in what order a serving controller stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;
use ward_controller::app::App;
use ward_edge::grpc::RunningServer;

use crate::error::ServeError;

/// Completes on Ctrl-C, or SIGTERM on Unix: the shutdown `wardctl serve` passes to
/// [`serve`](crate::serve). The handlers are installed when it is first polled (once the
/// controller serves); a signal before that ends the process as it would without them.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The metrics and SCIM listeners of a serving controller: they close once this is dropped
/// (or [`Listeners::close`]d).
#[derive(Debug)]
pub(crate) struct Listeners {
    open: watch::Sender<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            open: watch::channel(()).0,
            tasks: Vec::new(),
        }
    }
}

impl Listeners {
    /// Completes when the listeners are to close: the shutdown a listener is given.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut open = self.open.subscribe();
        async move {
            // Dropping the sender is the signal.
            let _ = open.changed().await;
        }
    }

    /// A listener's task, which ends once its port is closed.
    pub(crate) fn push(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Closes the ports; requests in flight get at most a second (the store is closed by then,
    /// so they can only fail), then their tasks are aborted.
    async fn close(self) {
        drop(self.open);
        for mut task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

/// Agent streams closed first, then calls in flight finished (at most 10 s), then the audit
/// log's last word, then the database connections (at most 5 s), then the app's background
/// tasks and the metrics and SCIM ports (which ran until then, as they did while `serve`
/// ended with its process).
pub(crate) async fn stop(
    app: &Arc<App>,
    server: RunningServer,
    listeners: Listeners,
) -> Result<(), ServeError> {
    info!("shutting down: closing agent streams, finishing calls in flight (at most 10 s)");
    app.hub().stop();
    let stopped = match tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await {
        Ok(result) => result.map_err(ServeError::Grpc),
        Err(_) => {
            info!("calls still in flight after 10 s; stopping anyway");
            Ok(())
        }
    };
    // The last word of the audit log: refusal summaries and a checkpoint of the final head.
    if let Err(e) = app.close_audit().await {
        tracing::error!(error = %e, "cannot write the final audit checkpoint");
    }
    if tokio::time::timeout(Duration::from_secs(5), app.close_store())
        .await
        .is_err()
    {
        info!("the database connections did not close within 5 s; stopping anyway");
    }
    app.stop_background().await;
    listeners.close().await;
    stopped
}
