//! Helpers for the agent's own tests.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

/// Connects to a Unix socket, waiting (with a deadline) for its server to bind.
pub(crate) async fn connect_when_ready(path: &Path) -> UnixStream {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return stream,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "socket {} never came up: {e}",
                    path.display()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
