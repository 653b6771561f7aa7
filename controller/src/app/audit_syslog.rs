//! Streaming the audit log to a SIEM (`serve --audit-syslog`): every entry, in sequence
//! order, at least once, from a cursor kept in the store.
//!
//! The cursor is the last sequence number the collector took. It moves once per batch: after
//! the batch was written and flushed, and after the connection then stayed open for
//! [`SyslogConfig::settle`] (a collector that dies right after the write, its socket buffer
//! unread, closes the connection within that time, and the batch is sent again). Every
//! (re)connection resumes after the stored cursor, so an entry can arrive twice, never not at
//! all. One replica streams at a time: the one that holds the store's lease for the export.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::App;
use crate::core::Clock;
use crate::core::audit::syslog::{AuditFormat, Origin, checkpoint_message, render};
use crate::metrics::Metrics;
use crate::store::{AuditFilter, Lease, SYSLOG_EXPORT, Store, StoreError};
use crate::syslog_transport::{Connector, Link};

/// How the audit log is streamed.
#[derive(Clone)]
pub struct SyslogConfig {
    pub connector: Arc<dyn Connector>,
    pub origin: Origin,
    /// The message body: the entry's details, or an OCSF event.
    pub format: AuditFormat,
    /// At most this many entries per write.
    pub batch: u32,
    /// How often the log is read for new entries.
    pub poll: Duration,
    /// How long a connection must stay open after a batch was flushed before the cursor moves
    /// past it.
    pub settle: Duration,
    /// Reconnection delays: doubling from the first to the last, with jitter.
    pub backoff: (Duration, Duration),
    /// How often a replica without the lease tries to take it.
    pub lease_retry: Duration,
}

impl std::fmt::Debug for SyslogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogConfig")
            .field("collector", &self.connector.describe())
            .field("origin", &self.origin)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl SyslogConfig {
    pub fn new(connector: Arc<dyn Connector>, origin: Origin) -> Self {
        Self {
            connector,
            origin,
            format: AuditFormat::Rfc5424,
            batch: 500,
            poll: Duration::from_millis(500),
            settle: Duration::from_secs(2),
            backoff: (Duration::from_secs(1), Duration::from_secs(30)),
            lease_retry: Duration::from_secs(5),
        }
    }
}

impl App {
    /// Starts streaming the audit log to the collector, until [`App::stop_background`].
    pub fn start_audit_syslog(self: &Arc<Self>, config: SyslogConfig) {
        let streamer = Streamer {
            store: Arc::clone(&self.store),
            metrics: Arc::clone(&self.metrics),
            clock: Arc::clone(&self.clock),
            audit_state: Arc::clone(&self.audit_state),
            checkpoint_sent: std::sync::atomic::AtomicU64::new(0),
            config,
        };
        self.background.spawn(streamer.run());
    }
}

/// Why a connection's streaming ended.
enum End {
    /// The connection broke (or the store failed): reconnect.
    Broken(String),
    /// Another replica may stream now.
    LeaseLost,
}

struct Streamer {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    /// Where this controller's newest signed checkpoints are.
    audit_state: Arc<super::audit::AuditState>,
    /// The seq of the newest checkpoint sent (on this connection or an earlier one).
    checkpoint_sent: std::sync::atomic::AtomicU64,
    config: SyslogConfig,
}

impl Streamer {
    async fn run(self) {
        let collector = self.config.connector.describe();
        loop {
            let mut lease =
                super::lease::acquire(&*self.store, SYSLOG_EXPORT, || self.idle()).await;
            info!(%collector, "streaming the audit log to the collector");
            let mut delay = self.config.backoff.0;
            while lease.held().await {
                self.metrics.audit_syslog_connected.set(0);
                let link = match self.config.connector.connect().await {
                    Ok(link) => link,
                    Err(e) => {
                        let _ = self.report_lag().await;
                        warn!(%collector, error = %e, retry_in = ?delay, "cannot reach the audit collector; nothing is lost, streaming resumes from the cursor");
                        delay = self.pause(delay).await;
                        continue;
                    }
                };
                info!(%collector, "connected to the audit collector");
                self.metrics.audit_syslog_connected.set(1);
                let (end, progressed) = self.stream(link, lease.as_mut()).await;
                self.metrics.audit_syslog_connected.set(0);
                if progressed {
                    delay = self.config.backoff.0;
                }
                match end {
                    End::Broken(reason) => {
                        warn!(%collector, reason, retry_in = ?delay, "the audit collector's connection ended; resuming from the cursor");
                        delay = self.pause(delay).await;
                    }
                    End::LeaseLost => break,
                }
            }
            warn!("lost the audit export's lease; another replica may stream now");
        }
    }

    /// Waits `delay` (with up to a quarter more, at random); the next delay.
    async fn pause(&self, delay: Duration) -> Duration {
        let jitter = delay.mul_f64(rand::random::<f64>() / 4.0);
        tokio::time::sleep(delay + jitter).await;
        (delay * 2).min(self.config.backoff.1)
    }

    /// A replica without the lease: reports the lag it sees, and waits to try again.
    async fn idle(&self) {
        self.metrics.audit_syslog_connected.set(0);
        let _ = self.report_lag().await;
        tokio::time::sleep(self.config.lease_retry).await;
    }

    /// The stored cursor, with the lag behind the head set in the metrics. A cursor past the
    /// head is never legitimate (the database was edited, or restored from an older copy):
    /// left alone it would silence the stream for good with a lag of 0. It is logged as an
    /// error, the lag gauge shows how far past it is (so the lag alert fires), and streaming
    /// goes on from the head.
    async fn report_lag(&self) -> Result<u64, StoreError> {
        let cursor = self.store.export_cursor(SYSLOG_EXPORT).await?;
        let head = self.store.audit_head().await?.seq;
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics.audit_syslog_cursor.set(gauge(cursor));
        if cursor > head {
            error!(
                cursor,
                head,
                "the stored audit-export cursor is past the audit log's head: the database was edited or restored; streaming from the head on (what the collector missed before cannot be told from here: compare its last seq with `wardctl audit list`)"
            );
            self.metrics.audit_syslog_lag.set(gauge(cursor - head));
            return Ok(head);
        }
        self.metrics
            .audit_syslog_lag
            .set(gauge(head.saturating_sub(cursor)));
        Ok(cursor)
    }

    /// Sends this controller's newest signed checkpoint if the entries it covers were sent
    /// (it comes after them in the stream) and it was not sent before. A SIEM then holds the
    /// checkpoints too, where whoever holds the database cannot reach them. Best effort per
    /// checkpoint: one lost with a connection is superseded by the next, which covers it.
    async fn send_checkpoint(&self, link: &mut dyn Link, sent: u64) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let newest = self
            .audit_state
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .find(|c| c.seq <= sent)
            .cloned();
        let Some(checkpoint) = newest else {
            return Ok(());
        };
        if checkpoint.seq <= self.checkpoint_sent.load(Ordering::Relaxed) {
            return Ok(());
        }
        link.send(&[checkpoint_message(&checkpoint, &self.config.origin)])
            .await?;
        self.checkpoint_sent
            .store(checkpoint.seq, Ordering::Relaxed);
        Ok(())
    }

    /// Streams over one connection until it breaks or the lease is lost; whether the cursor
    /// moved.
    async fn stream(&self, mut link: Box<dyn Link>, lease: &mut dyn Lease) -> (End, bool) {
        let mut closed = link.closed();
        let mut sent = match self.report_lag().await {
            Ok(cursor) => cursor,
            Err(e) => return (End::Broken(format!("cannot read the cursor: {e}")), false),
        };
        // Batches flushed, by their last seq and when the cursor may move past them.
        let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
        let mut progressed = false;
        loop {
            let settled = settle(&mut pending, Instant::now());
            if let Some(seq) = settled {
                let now = self.clock.now();
                if let Err(e) = self.store.set_export_cursor(SYSLOG_EXPORT, seq, now).await {
                    return (
                        End::Broken(format!("cannot store the cursor: {e}")),
                        progressed,
                    );
                }
                progressed = true;
            }
            if let Err(e) = self.report_lag().await {
                return (End::Broken(format!("cannot read the log: {e}")), progressed);
            }
            if !lease.held().await {
                return (End::LeaseLost, progressed);
            }
            let entries = match self
                .store
                .list_audit(&AuditFilter {
                    after_seq: Some(sent),
                    limit: Some(self.config.batch),
                    ..AuditFilter::default()
                })
                .await
            {
                Ok(entries) => entries,
                Err(e) => return (End::Broken(format!("cannot read the log: {e}")), progressed),
            };
            if let Some(last) = entries.last().map(|e| e.seq) {
                let messages: Vec<String> = entries
                    .iter()
                    .map(|e| render(e, &self.config.origin, self.config.format))
                    .collect();
                if let Err(e) = link.send(&messages).await {
                    return (End::Broken(format!("cannot write: {e}")), progressed);
                }
                self.metrics.audit_syslog_sent.inc_by(messages.len() as u64);
                sent = last;
                pending.push_back((last, Instant::now() + self.config.settle));
                if entries.len() == self.config.batch as usize {
                    continue;
                }
            }
            if let Err(e) = self.send_checkpoint(link.as_mut(), sent).await {
                return (End::Broken(format!("cannot write: {e}")), progressed);
            }
            let wake = pending
                .front()
                .map_or(self.config.poll, |(_, at)| {
                    at.saturating_duration_since(Instant::now())
                })
                .min(self.config.poll);
            tokio::select! {
                () = tokio::time::sleep(wake) => {}
                _ = closed.changed() => {
                    let reason = closed.borrow().clone().unwrap_or_else(|| "closed".into());
                    return (End::Broken(reason), progressed);
                }
            }
        }
    }
}

/// Takes the batches whose settle time has passed off the front; the newest one's seq.
fn settle(pending: &mut VecDeque<(u64, Instant)>, now: Instant) -> Option<u64> {
    let mut newest = None;
    while let Some(&(seq, at)) = pending.front() {
        if at > now {
            break;
        }
        newest = Some(seq);
        pending.pop_front();
    }
    newest
}

#[cfg(test)]
#[path = "audit_syslog_tests.rs"]
mod tests;
