//! Prometheus metrics and a health check, on their own plain-HTTP listener
//! (`wardctl serve --metrics-listen ADDR`), apart from the mutual-TLS port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::app::App;
use crate::core::CommandState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// The controller's metrics. Counters and histograms are updated where things happen;
/// gauges are read at scrape time.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub checkins: Counter,
    pub enrollments: Counter,
    pub denied_calls: Counter,
    /// Seconds from a command's commit to its first delivery.
    pub delivery_seconds: Histogram,
    /// Seconds from a command's commit to the device's acknowledgement.
    pub ack_seconds: Histogram,
    connected_agents: Gauge,
    commands: Family<StateLabel, Gauge>,
    /// The store writer's batches: jobs per transaction and the commit's duration.
    pub batch_jobs: Histogram,
    pub commit_seconds: Histogram,
    /// Jobs waiting for the writer, by queue.
    queued: Family<QueueLabel, Gauge>,
    /// Check-ins refused because the writer was too far behind.
    pub shed_checkins: Counter,
    /// Check-ins waiting for their batch, and how long one arriving now would wait (what
    /// check-ins are shed by).
    checkins_waiting: Gauge,
    checkin_wait_seconds: Gauge<f64, AtomicU64>,
    /// The writer's settings (`serve --write-batch-window`, `--write-batch-max`,
    /// `--shed-check-ins-after`), so a dashboard shows what the figures were taken under.
    batch_window_seconds: Gauge<f64, AtomicU64>,
    batch_max_jobs: Gauge,
    shed_after_seconds: Gauge<f64, AtomicU64>,
    /// 1 while the audit chain verifies; 0 once damage was found (until a verification
    /// passes again).
    pub audit_chain_ok: Gauge,
    pub audit_chain_breaks: Counter,
    pub audit_checkpoint_seq: Gauge,
    pub audit_checkpoint_failures: Counter,
    pub audit_refusals_suppressed: Counter,
    /// `serve --audit-syslog`: 1 while this replica is connected to the collector; the last
    /// sequence number the collector took (the stored cursor); the entries recorded after it;
    /// entries written to the collector (a resent one counts again).
    pub audit_syslog_connected: Gauge,
    pub audit_syslog_cursor: Gauge,
    pub audit_syslog_lag: Gauge,
    pub audit_syslog_sent: Counter,
    /// Webhook deliveries the receiver took (2xx), failed attempts (each retried or given
    /// up), and deliveries given up after the retry period, by this replica.
    pub webhook_delivered: Counter,
    pub webhook_failed_attempts: Counter,
    pub webhook_abandoned: Counter,
    /// Seconds to the expiry of the CA, of the server certificate this replica presents, and
    /// of the active admin certificate that expires first (negative once expired), with how
    /// many expire within a week. Aggregates only: `/metrics` is plain HTTP and unauthenticated,
    /// so it names no admin (who the admins are is for `wardctl ca status`, an audited read).
    ca_expiry_seconds: Gauge,
    server_cert_expiry_seconds: Gauge,
    admin_cert_soonest_expiry_seconds: Gauge,
    admin_certs_expiring_within_week: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: &'static str,
}

impl crate::store::writer::BatchObserver for Metrics {
    fn batch(&self, jobs: usize, commit: std::time::Duration) {
        self.batch_jobs.observe(jobs as f64);
        self.commit_seconds.observe(commit.as_secs_f64());
    }
}

/// Registers `metric` under `name` with its help text and hands it back: each metric is made,
/// named and described in one place.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Seconds from a millisecond to about half a minute.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ward");
        let r = &mut registry;
        let metrics = Self {
            batch_window_seconds: registered(
                r,
                "store_batch_window_seconds",
                "How long the store's writer waits for more changes after a batch's first",
                Gauge::default(),
            ),
            batch_max_jobs: registered(
                r,
                "store_batch_max_jobs",
                "The most changes the store's writer commits in one transaction",
                Gauge::default(),
            ),
            shed_after_seconds: registered(
                r,
                "store_shed_after_seconds",
                "Check-ins are refused when one would wait longer than this for its batch",
                Gauge::default(),
            ),
            batch_jobs: registered(
                r,
                "store_batch_jobs",
                "Changes committed together in one transaction by the store's writer",
                Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            ),
            commit_seconds: registered(
                r,
                "store_commit_seconds",
                "Time the store's writer took to commit one batch",
                Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            ),
            queued: registered(
                r,
                "store_queued_jobs",
                "Changes waiting for the store's writer, by queue",
                Family::default(),
            ),
            checkins_waiting: registered(
                r,
                "checkins_waiting",
                "Check-ins waiting for their batch to start",
                Gauge::default(),
            ),
            checkin_wait_seconds: registered(
                r,
                "checkin_wait_seconds",
                "How long a check-in arriving now would wait for its batch, at the rate of recent batches others waited for (check-ins are shed past store_shed_after_seconds; 0 until such a batch)",
                Gauge::default(),
            ),
            shed_checkins: registered(
                r,
                "shed_checkins",
                "Check-ins refused with UNAVAILABLE: their batch would have started too late, or the device's previous check-in was still being handled",
                Counter::default(),
            ),
            checkins: registered(r, "checkins", "Agent check-ins", Counter::default()),
            enrollments: registered(r, "enrollments", "Devices enrolled", Counter::default()),
            denied_calls: registered(
                r,
                "denied_calls",
                "Admin calls refused for the caller's role",
                Counter::default(),
            ),
            delivery_seconds: registered(
                r,
                "command_delivery_seconds",
                "Commit to first delivery of a command",
                latency(),
            ),
            ack_seconds: registered(
                r,
                "command_ack_seconds",
                "Commit to the device's acknowledgement",
                latency(),
            ),
            connected_agents: registered(
                r,
                "connected_agents",
                "Devices with an open command stream on this replica",
                Gauge::default(),
            ),
            commands: registered(
                r,
                "commands",
                "Commands by state (all replicas)",
                Family::default(),
            ),
            audit_chain_ok: registered(
                r,
                "audit_chain_ok",
                "1 while the audit chain verifies, 0 once damage was found in it",
                Gauge::default(),
            ),
            audit_chain_breaks: registered(
                r,
                "audit_chain_breaks",
                "Damage found in the audit chain and recorded as audit.break entries",
                Counter::default(),
            ),
            audit_checkpoint_seq: registered(
                r,
                "audit_checkpoint_seq",
                "Sequence number of the last signed audit checkpoint",
                Gauge::default(),
            ),
            audit_checkpoint_failures: registered(
                r,
                "audit_checkpoint_failures",
                "Audit checkpoints that could not be made or written to their directory",
                Counter::default(),
            ),
            audit_refusals_suppressed: registered(
                r,
                "audit_refusals_suppressed",
                "Refusals counted in a summary entry instead of one audit entry each",
                Counter::default(),
            ),
            audit_syslog_connected: registered(
                r,
                "audit_syslog_connected",
                "1 while this replica streams the audit log to the syslog collector (serve --audit-syslog)",
                Gauge::default(),
            ),
            audit_syslog_cursor: registered(
                r,
                "audit_syslog_cursor",
                "Sequence number of the last audit entry the syslog collector took (stored cursor)",
                Gauge::default(),
            ),
            audit_syslog_lag: registered(
                r,
                "audit_syslog_lag_entries",
                "Audit entries recorded after the syslog collector's cursor (head seq - cursor)",
                Gauge::default(),
            ),
            audit_syslog_sent: registered(
                r,
                "audit_syslog_sent_entries",
                "Audit entries written to the syslog collector by this replica, resent ones included",
                Counter::default(),
            ),
            webhook_delivered: registered(
                r,
                "webhook_delivered",
                "Webhook deliveries the receiver took (HTTP 2xx), by this replica",
                Counter::default(),
            ),
            webhook_failed_attempts: registered(
                r,
                "webhook_failed_attempts",
                "Webhook delivery attempts that failed (no connection, no answer in time, or not 2xx)",
                Counter::default(),
            ),
            webhook_abandoned: registered(
                r,
                "webhook_abandoned",
                "Webhook deliveries given up after the retry period (serve --webhook-give-up-after)",
                Counter::default(),
            ),
            ca_expiry_seconds: registered(
                r,
                "ca_expiry_seconds",
                "Seconds until the CA certificate expires",
                Gauge::default(),
            ),
            server_cert_expiry_seconds: registered(
                r,
                "server_certificate_expiry_seconds",
                "Seconds until the server certificate this replica presents expires (renewed two thirds into its lifetime)",
                Gauge::default(),
            ),
            admin_cert_soonest_expiry_seconds: registered(
                r,
                "admin_certificate_soonest_expiry_seconds",
                "Seconds until the first active admin certificate expires (negative: expired)",
                Gauge::default(),
            ),
            admin_certs_expiring_within_week: registered(
                r,
                "admin_certificates_expiring_within_week",
                "Active admin certificates that expire within 7 days (or have expired)",
                Gauge::default(),
            ),
            registry,
        };
        metrics.audit_chain_ok.set(1);
        metrics
    }
}

impl Metrics {
    /// The OpenMetrics text, with the gauges read now.
    pub async fn render(&self, app: &App) -> Result<String, String> {
        self.connected_agents
            .set(i64::try_from(app.hub().connected()).unwrap_or(i64::MAX));
        for state in CommandState::ALL {
            self.commands
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                })
                .set(0);
        }
        for (state, count) in app.count_commands().await.map_err(|e| e.to_string())? {
            self.commands
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let stats = app.writer_stats();
        for (queue, count) in [
            ("high", &stats.queued_high),
            ("sheddable", &stats.queued_sheddable),
        ] {
            let n = count.load(std::sync::atomic::Ordering::Relaxed);
            self.queued
                .get_or_create(&QueueLabel { queue })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let (waiting, wait) = app.check_in_backlog();
        self.checkins_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.checkin_wait_seconds
            .set(wait.map_or(0.0, |w| w.as_secs_f64()));
        let settings = app.writer_settings();
        self.batch_window_seconds.set(settings.window.as_secs_f64());
        self.batch_max_jobs
            .set(i64::try_from(settings.max_jobs).unwrap_or(i64::MAX));
        self.shed_after_seconds
            .set(settings.shed_after.as_secs_f64());
        self.set_expiry(app).await?;
        let mut text = String::new();
        encode(&mut text, &self.registry).map_err(|e| e.to_string())?;
        Ok(text)
    }
}

impl Metrics {
    async fn set_expiry(&self, app: &App) -> Result<(), String> {
        let now = app.now();
        let left = |der: &[u8]| {
            ward_certs::live::Validity::of(der).map(|v| v.seconds_left(now.to_datetime()))
        };
        if let Some(s) = left(app.ca().cert_der()) {
            self.ca_expiry_seconds.set(s);
        }
        if let Some(s) = app.server_certificate().and_then(|c| left(&c.leaf())) {
            self.server_cert_expiry_seconds.set(s);
        }
        // A failed read leaves the admin gauges as they were: the rest of the page (the audit
        // chain's health among it) is still served.
        match app.list_admins().await {
            Ok((admins, _)) => {
                let left: Vec<i64> = admins
                    .iter()
                    .filter(|a| a.revoked.is_none())
                    .filter_map(|a| a.expires_at)
                    .map(|expires| (expires.unix_ms() - now.unix_ms()) / 1000)
                    .collect();
                if let Some(soonest) = left.iter().min() {
                    self.admin_cert_soonest_expiry_seconds.set(*soonest);
                }
                let within_week = left.iter().filter(|s| **s < 7 * 24 * 3600).count();
                self.admin_certs_expiring_within_week
                    .set(i64::try_from(within_week).unwrap_or(i64::MAX));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the admins' certificate expiry for /metrics")
            }
        }
        Ok(())
    }
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    match app.metrics().render(&app).await {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics unavailable: {e}\n"),
        )
            .into_response(),
    }
}

/// 200 when the store answers, 503 otherwise: what a load balancer or Kubernetes probes.
async fn health(State(app): State<Arc<App>>) -> impl IntoResponse {
    if let Some(why) = app.cas().out_of_step() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
    }
    match app.count_commands().await {
        Ok(_) => (StatusCode::OK, "ok\n".to_owned()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        ),
    }
}

/// Serves `/metrics` and `/healthz` on `listen` until `shutdown` completes; returns the bound
/// address and the server's task, which ends once the port is closed and the requests in
/// flight are answered.
pub async fn serve(
    app: Arc<App>,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(health))
        .with_state(app);
    let task = tokio::spawn(async move {
        let serving = axum::serve(listener, router).with_graceful_shutdown(shutdown);
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    Ok((local, task))
}
