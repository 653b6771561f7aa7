//! `AddWebhook`, `ListWebhooks`, `RemoveWebhook`, `ListWebhookDeliveries`: the wire at the edge.

use ward_proto::v1;

use ward_core::webhook::{Attempt, Delivery, Webhook};

/// A receiver as clients see it: never its secret.
pub(super) fn webhook_to_wire(hook: &Webhook) -> v1::Webhook {
    v1::Webhook {
        id: hook.id.clone(),
        url: hook.url.clone(),
        events: hook.events.iter().map(|e| e.as_str().to_owned()).collect(),
        created_at_unix_ms: hook.created_at.unix_ms(),
        created_by: hook.created_by.clone(),
        own_ca: hook.ca_pem.is_some(),
    }
}

pub(super) fn delivery_to_wire(
    (delivery, attempts): &(Delivery, Vec<Attempt>),
) -> v1::WebhookDelivery {
    v1::WebhookDelivery {
        event_id: delivery.event_id.clone(),
        webhook_id: delivery.webhook_id.clone(),
        event_type: delivery.event.as_str().to_owned(),
        created_at_unix_ms: delivery.created_at.unix_ms(),
        state: delivery.state.as_str().to_owned(),
        attempts: delivery.attempts,
        next_attempt_at_unix_ms: delivery.next_attempt_at.unix_ms(),
        delivered_at_unix_ms: delivery.delivered_at.map_or(0, |t| t.unix_ms()),
        attempt_log: attempts
            .iter()
            .map(|a| v1::WebhookAttempt {
                attempt: a.attempt,
                at_unix_ms: a.at.unix_ms(),
                status_code: a.status_code.map_or(0, u32::from),
                error: a.error.clone().unwrap_or_default(),
                duration_ms: a.duration_ms,
            })
            .collect(),
    }
}
