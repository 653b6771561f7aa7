//! The streamer against a collector in memory that can lose what it had not read yet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::watch;

use super::*;
use crate::app::test_fixture::fixture;
use crate::store::SYSLOG_EXPORT;

#[derive(Default)]
struct CollectorState {
    up: bool,
    /// Whether what arrives is read at once (else it waits in `unread`).
    reading: bool,
    unread: Vec<u64>,
    received: Vec<u64>,
    links: Vec<watch::Sender<Option<String>>>,
    connections: usize,
}

#[derive(Clone, Default)]
struct FakeCollector(Arc<Mutex<CollectorState>>);

impl FakeCollector {
    fn with<T>(&self, f: impl FnOnce(&mut CollectorState) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    /// Dies: what it had not read is lost, every connection closes.
    fn kill(&self) {
        self.with(|s| {
            s.up = false;
            s.unread.clear();
            for link in s.links.drain(..) {
                let _ = link.send(Some("killed".into()));
            }
        });
    }
}

struct FakeLink {
    collector: FakeCollector,
    closed: watch::Receiver<Option<String>>,
}

fn seq_of(message: &str) -> u64 {
    let start = message.find("seq=\"").unwrap() + 5;
    let len = message[start..].find('"').unwrap();
    message[start..start + len].parse().unwrap()
}

#[async_trait]
impl Link for FakeLink {
    async fn send(&mut self, messages: &[String]) -> std::io::Result<()> {
        if self.closed.borrow().is_some() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.collector.with(|s| {
            let seqs = messages.iter().map(|m| seq_of(m));
            if s.reading {
                s.received.extend(seqs);
            } else {
                s.unread.extend(seqs);
            }
        });
        Ok(())
    }

    fn closed(&self) -> watch::Receiver<Option<String>> {
        self.closed.clone()
    }
}

#[async_trait]
impl Connector for FakeCollector {
    async fn connect(&self) -> std::io::Result<Box<dyn Link>> {
        let closed = self.with(|s| {
            if !s.up {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
            }
            let (tx, rx) = watch::channel(None);
            s.links.push(tx);
            s.connections += 1;
            Ok(rx)
        })?;
        Ok(Box::new(FakeLink {
            collector: self.clone(),
            closed,
        }))
    }

    fn describe(&self) -> String {
        "fake".into()
    }
}

async fn record(app: &App, n: u64) {
    app.audit(
        "ward://admin/root",
        "policy.set",
        &format!("t{n}"),
        json!({ "n": n }),
    )
    .await
    .unwrap();
}

async fn until(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config(collector: &FakeCollector) -> SyslogConfig {
    SyslogConfig {
        poll: Duration::from_millis(10),
        settle: Duration::from_millis(300),
        backoff: (Duration::from_millis(10), Duration::from_millis(40)),
        lease_retry: Duration::from_millis(10),
        batch: 4,
        ..SyslogConfig::new(
            Arc::new(collector.clone()),
            Origin {
                hostname: "ward".into(),
                app_name: "ward".into(),
                procid: None,
            },
        )
    }
}

/// Every sequence number from 1 to `head` arrived, and the first arrivals are in order.
fn complete_in_order(received: &[u64], head: u64) -> bool {
    let mut firsts = Vec::new();
    for seq in received {
        if !firsts.contains(seq) {
            firsts.push(*seq);
        }
    }
    firsts == (1..=head).collect::<Vec<_>>()
}

#[tokio::test]
async fn a_collector_that_dies_with_unread_entries_gets_them_again_in_order() {
    let f = fixture();
    let app = Arc::new(f.app);
    for n in 0..10 {
        record(&app, n).await;
    }
    let collector = FakeCollector::default();
    collector.with(|s| {
        s.up = true;
        s.reading = true;
    });
    app.start_audit_syslog(config(&collector));
    until("the first ten entries", || {
        collector.with(|s| s.received.len() >= 10)
    })
    .await;
    let head = || async { f.store.audit_head().await.unwrap().seq };
    let first_head = head().await;
    // Wait for the cursor, so the next entries are the ones in flight when it dies.
    let store = Arc::clone(&f.store);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.export_cursor(SYSLOG_EXPORT).await.unwrap() < first_head {
        assert!(
            Instant::now() < deadline,
            "the cursor never reached the head"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Flushed to the connection but never read: lost when the collector dies.
    collector.with(|s| s.reading = false);
    for n in 10..13 {
        record(&app, n).await;
    }
    until("entries in flight", || {
        collector.with(|s| !s.unread.is_empty())
    })
    .await;
    collector.kill();
    // Recorded while it is down.
    for n in 13..20 {
        record(&app, n).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    collector.with(|s| {
        s.up = true;
        s.reading = true;
    });
    let last = head().await;
    until("every entry after the restart", || {
        collector.with(|s| complete_in_order(&s.received, last))
    })
    .await;
    assert!(collector.with(|s| s.connections) >= 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.export_cursor(SYSLOG_EXPORT).await.unwrap() < last {
        assert!(
            Instant::now() < deadline,
            "the cursor never reached the head"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.metrics().audit_syslog_lag.get(), 0);
}

#[tokio::test]
async fn the_cursor_waits_for_the_connection_to_settle() {
    let f = fixture();
    let app = Arc::new(f.app);
    for n in 0..3 {
        record(&app, n).await;
    }
    let collector = FakeCollector::default();
    collector.with(|s| s.up = true);
    let mut config = config(&collector);
    config.settle = Duration::from_secs(3600);
    app.start_audit_syslog(config);
    until("the entries written", || {
        collector.with(|s| s.unread.len() >= 3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f.store.export_cursor(SYSLOG_EXPORT).await.unwrap(), 0);
    assert!(app.metrics().audit_syslog_lag.get() >= 3);
    assert_eq!(app.metrics().audit_syslog_connected.get(), 1);
}

/// Attack review (c), a database holder: the cursor set far past the log's head (the SQL
/// upsert only ever moves it forward, so the streamer can never pull it back) makes every
/// entry written from then on unstreamed, while the metrics read lag 0 and connected 1 and
/// nothing is logged. The collector sees no gap in `prev_hash` either: it is sent nothing.
/// A cursor past the head is never legitimate; the streamer should flag it (a warning, a
/// metric, an audit entry) and stream from the head it can see.
#[tokio::test]
async fn a_cursor_moved_past_the_head_does_not_silence_the_stream() {
    let f = fixture();
    let app = Arc::new(f.app);
    for n in 0..3 {
        record(&app, n).await;
    }
    // The tamper: one row in audit_export_cursor.
    f.store
        .set_export_cursor(SYSLOG_EXPORT, 1_000_000, app.now())
        .await
        .unwrap();
    let collector = FakeCollector::default();
    collector.with(|s| {
        s.up = true;
        s.reading = true;
    });
    app.start_audit_syslog(config(&collector));
    // Entries written after the tamper, e.g. a wipe approval the holder wants unseen.
    for n in 3..8 {
        record(&app, n).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let received = collector.with(|s| s.received.clone());
    let lag = app.metrics().audit_syslog_lag.get();
    assert!(
        !received.is_empty() || lag > 0,
        "nothing streamed and nothing shows it: received {received:?}, lag gauge {lag}, \
         connected {}",
        app.metrics().audit_syslog_connected.get()
    );
}
