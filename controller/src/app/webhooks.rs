//! Managing webhook receivers (`wardctl webhook add | list | remove | deliveries`). Each
//! change commits with its audit entry; the audit entry names the receiver's scheme, host and
//! port only (a path or query may hold a credential of the receiver's) and never the secret.

use serde_json::json;

use super::audit::admin_actor;
use super::{App, AppError};
use crate::core::Admin;
use crate::core::refs::{NoSuchWebhook, WebhookId};
use crate::core::webhook::{
    Attempt, Delivery, EventList, ReceiverUrl, Scheme, Webhook, WebhookError, WebhookSecret,
};
use crate::store::Priority;

/// The most deliveries one `webhook deliveries` call shows.
pub const MAX_DELIVERIES_LISTED: u32 = 1000;

impl App {
    /// Adds a receiver; it comes back with its secret, which is shown this once. Nothing is
    /// stored when the CA is refused.
    pub async fn add_webhook(
        &self,
        actor: &Admin,
        parsed: &ReceiverUrl,
        events: EventList,
        ca_pem: Option<String>,
    ) -> Result<Webhook, AppError> {
        let bad = |e: WebhookError| AppError::InvalidArgument(e.to_string());
        if let Some(pem) = &ca_pem {
            if parsed.scheme == Scheme::Http {
                return Err(bad(WebhookError::CaForHttp(parsed.to_string())));
            }
            crate::syslog_transport::tls_config(pem.as_bytes())
                .map_err(|_| bad(WebhookError::BadCa))?;
        }
        let hook = Webhook {
            id: WebhookId::generate().to_string(),
            url: parsed.to_string(),
            events: events.into_vec(),
            secret: WebhookSecret::generate(),
            ca_pem,
            created_at: self.now(),
            created_by: actor.name.to_string(),
        };
        let (job_hook, actor_uri) = (hook.clone(), admin_actor(actor));
        let origin = format!(
            "{}://{}",
            match parsed.scheme {
                Scheme::Https => "https",
                Scheme::Http => "http",
            },
            parsed.authority()
        );
        self.store
            .write(Priority::High, move |tx| {
                let (hook, actor, origin) = (job_hook.clone(), actor_uri.clone(), origin.clone());
                Box::pin(async move {
                    tx.insert_webhook(&hook).await?;
                    tx.audit(
                        crate::core::audit::AuditEvent {
                            actor,
                            action: "webhook.add".into(),
                            target: format!("webhook/{}", hook.id),
                            details: json!({
                                "receiver": origin,
                                "events": hook.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                                "own_ca": hook.ca_pem.is_some(),
                            }),
                        },
                        hook.created_at,
                    );
                    Ok::<_, AppError>(())
                })
            })
            .await?;
        Ok(hook)
    }

    /// Removes a receiver, its undelivered events and its delivery log.
    pub async fn remove_webhook(&self, actor: &Admin, id: &WebhookId) -> Result<Webhook, AppError> {
        let hook = self
            .store
            .list_webhooks()
            .await?
            .into_iter()
            .find(|h| h.id == id.as_str())
            .ok_or_else(|| not_found(id.as_str()))?;
        let (id, actor_uri, now) = (id.to_string(), admin_actor(actor), self.now());
        let removed = self
            .store
            .write(Priority::High, move |tx| {
                let (id, actor) = (id.clone(), actor_uri.clone());
                Box::pin(async move {
                    if !tx.delete_webhook(&id).await? {
                        return Ok::<_, AppError>(false);
                    }
                    tx.audit(
                        crate::core::audit::AuditEvent {
                            actor,
                            action: "webhook.remove".into(),
                            target: format!("webhook/{id}"),
                            details: json!({}),
                        },
                        now,
                    );
                    Ok(true)
                })
            })
            .await?;
        if removed {
            Ok(hook)
        } else {
            Err(not_found(&hook.id))
        }
    }

    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, AppError> {
        Ok(self.store.list_webhooks().await?)
    }

    /// The newest deliveries, of one receiver (which must exist) or all.
    pub async fn webhook_deliveries(
        &self,
        id: Option<&WebhookId>,
        limit: u32,
    ) -> Result<Vec<(Delivery, Vec<Attempt>)>, AppError> {
        let id = id.map(WebhookId::as_str);
        if let Some(id) = id
            && !self.store.list_webhooks().await?.iter().any(|h| h.id == id)
        {
            return Err(not_found(id));
        }
        let limit = limit.clamp(1, MAX_DELIVERIES_LISTED);
        Ok(self.store.webhook_deliveries(id, limit).await?)
    }
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(NoSuchWebhook(id.to_owned()).to_string())
}
