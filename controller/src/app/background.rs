//! The app's background work while serving (replica announcements, revocation refresh,
//! audit checkpoints and summaries, the syslog and webhook senders, the server certificate's
//! renewal, CA rotation): every task is recorded here, so that the caller who started them can
//! end them, not only the process's exit.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use tokio::task::JoinHandle;

use super::App;

/// The tasks started by `App::start_*`.
#[derive(Debug, Default)]
pub(super) struct Background {
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Background {
    pub(super) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn take(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl App {
    /// Ends the background work started by `start_*` (at shutdown, after the store is closed,
    /// when it could only fail): each task is aborted where it waits, and has ended, with
    /// what it held, when this returns.
    pub async fn stop_background(&self) {
        for task in self.background.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::test_fixture::fixture;

    #[tokio::test]
    async fn stopping_the_background_work_lets_go_of_the_app() {
        let app = Arc::new(fixture().app);
        app.start_background().await.unwrap();
        app.start_audit_tasks();
        app.start_following_ca_rotation(Duration::from_secs(60));
        assert!(Arc::strong_count(&app) > 1, "the loops hold the app");

        app.stop_background().await;
        assert_eq!(
            Arc::strong_count(&app),
            1,
            "every background task has ended and dropped the app"
        );
        // Stopping again (a second shutdown path) is harmless.
        app.stop_background().await;
    }
}
