//! When and in what order a serving controller stops.

use std::sync::Arc;
use std::time::Duration;

use tracing::info;
use ward_controller::app::App;
use ward_edge::grpc::RunningServer;

use crate::error::ServeError;

/// Ctrl-C, or SIGTERM on Unix.
pub(crate) async fn signal() {
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

/// Agent streams closed first, then calls in flight finished (at most 10 s), then the audit
/// log's last word, then the database connections (at most 5 s).
pub(crate) async fn stop(app: &Arc<App>, server: RunningServer) -> Result<(), ServeError> {
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
    stopped
}
