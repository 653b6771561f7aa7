//! Delivering the webhook outbox: every pending delivery whose time has come is POSTed, signed,
//! and its attempt recorded with what follows (delivered, another try later with exponential
//! backoff and jitter, or given up after the retry period). A delivery leaves the outbox only
//! once the receiver answered 2xx and that was recorded: a controller killed in between sends
//! it again after its restart (at least once; receivers dedupe on the event id). One replica
//! delivers at a time: the one holding the store's `webhooks` lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tracing::{info, warn};

use super::App;
use crate::core::Clock;
use crate::core::webhook::{
    self, Attempt, Delivery, EVENT_ID_HEADER, EVENT_TYPE_HEADER, Next, SIGNATURE_HEADER,
};
use crate::store::{Store, WEBHOOK_LEASE, WebhookTarget};
use crate::webhook_sender::Sender;

/// How the outbox is delivered.
#[derive(Debug)]
pub struct DeliveryConfig {
    pub sender: Sender,
    /// How often the outbox is read for due deliveries.
    pub poll: Duration,
    /// At most this many deliveries at once.
    pub batch: u32,
    /// Retry delays: doubling from the first to the last, each drawn between its half and
    /// itself.
    pub backoff: (Duration, Duration),
    /// A delivery still not taken this long after its event is given up (`abandoned`).
    pub give_up_after: Duration,
    /// How often a replica without the lease tries to take it.
    pub lease_retry: Duration,
}

impl DeliveryConfig {
    pub fn new(sender: Sender) -> Self {
        Self {
            sender,
            poll: Duration::from_millis(500),
            batch: 32,
            backoff: (Duration::from_secs(1), Duration::from_secs(3600)),
            give_up_after: Duration::from_secs(3 * 86_400),
            lease_retry: Duration::from_secs(5),
        }
    }
}

impl App {
    /// Starts delivering the webhook outbox, until [`App::stop_background`].
    pub fn start_webhook_delivery(self: &Arc<Self>, config: DeliveryConfig) {
        let worker = Worker {
            store: Arc::clone(&self.store),
            metrics: Arc::clone(&self.metrics),
            clock: Arc::clone(&self.clock),
            config,
        };
        self.background.spawn(worker.run());
    }
}

struct Worker {
    store: Arc<dyn Store>,
    metrics: Arc<crate::metrics::Metrics>,
    clock: Arc<dyn Clock>,
    config: DeliveryConfig,
}

impl Worker {
    async fn run(self) {
        loop {
            let retry = self.config.lease_retry;
            let mut lease =
                super::lease::acquire(&*self.store, WEBHOOK_LEASE, || tokio::time::sleep(retry))
                    .await;
            info!("delivering webhooks");
            while lease.held().await {
                let due = match self
                    .store
                    .due_webhook_deliveries(self.clock.now(), self.config.batch)
                    .await
                {
                    Ok(due) => due,
                    Err(e) => {
                        warn!(error = %e, "cannot read the webhook outbox");
                        Vec::new()
                    }
                };
                let full = due.len() == self.config.batch as usize;
                join_all(due.into_iter().map(|(d, target)| self.deliver(d, target))).await;
                if !full {
                    tokio::time::sleep(self.config.poll).await;
                }
            }
            warn!("lost the webhook delivery lease; another replica may deliver now");
        }
    }

    async fn deliver(&self, delivery: Delivery, target: WebhookTarget) {
        let number = delivery.attempts.saturating_add(1);
        let now = self.clock.now();
        let t = now.unix_ms().div_euclid(1000);
        let headers = [
            (
                SIGNATURE_HEADER,
                webhook::sign(&target.secret, t, delivery.body.as_bytes()),
            ),
            (EVENT_ID_HEADER, delivery.event_id.clone()),
            (EVENT_TYPE_HEADER, delivery.event.as_str().to_owned()),
            ("Ward-Delivery-Attempt", number.to_string()),
        ];
        let started = Instant::now();
        let answer = self
            .config
            .sender
            .post(
                &target.url,
                target.ca_pem.as_deref(),
                &headers,
                &delivery.body,
            )
            .await;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (status_code, error) = match answer {
            Ok(code) if (200..300).contains(&code) => (Some(code), None),
            Ok(code) => (
                Some(code),
                Some(format!("the receiver answered HTTP {code}")),
            ),
            Err(e) => (None, Some(e)),
        };
        let next = match &error {
            None => Next::Delivered,
            Some(_) => webhook::after_failure(
                number,
                delivery.created_at,
                self.clock.now(),
                self.config.backoff,
                self.config.give_up_after,
                rand::random::<f64>(),
            ),
        };
        match (&error, next) {
            (None, _) => self.metrics.webhook_delivered.inc(),
            (Some(_), Next::GiveUp) => {
                self.metrics.webhook_failed_attempts.inc();
                self.metrics.webhook_abandoned.inc()
            }
            (Some(_), _) => self.metrics.webhook_failed_attempts.inc(),
        };
        match (&error, next) {
            (None, _) => {
                info!(webhook_id = %delivery.webhook_id, event_id = %delivery.event_id, attempt = number, "webhook delivered")
            }
            (Some(e), Next::GiveUp) => {
                warn!(webhook_id = %delivery.webhook_id, event_id = %delivery.event_id, attempt = number, error = %e, "webhook delivery given up: the retry period is over")
            }
            (Some(e), _) => {
                warn!(webhook_id = %delivery.webhook_id, event_id = %delivery.event_id, attempt = number, error = %e, "webhook delivery failed; it will be retried")
            }
        }
        let attempt = Attempt {
            attempt: number,
            at: now,
            status_code,
            error,
            duration_ms,
        };
        if let Err(e) = self
            .store
            .record_webhook_attempt(&delivery, &attempt, next)
            .await
        {
            warn!(webhook_id = %delivery.webhook_id, event_id = %delivery.event_id, error = %e, "cannot record the webhook attempt; the delivery stays pending and is sent again");
        }
    }
}
