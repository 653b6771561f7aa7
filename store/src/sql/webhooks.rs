//! The `webhook`, `webhook_delivery` (the outbox) and `webhook_attempt` tables.

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::rows::{Columns, corrupt, db, read_all};
use crate::{StoreError, WebhookTarget};
use ward_core::Timestamp;
use ward_core::audit::AuditEntry;
use ward_core::webhook::{
    self, Attempt, Delivery, DeliveryState, EventType, Next, Webhook, WebhookSecret,
};

pub(super) async fn insert(conn: &mut AnyConnection, hook: &Webhook) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook (id, url, events, secret, ca_pem, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&hook.id)
    .bind(&hook.url)
    .bind(events_text(&hook.events))
    .bind(hook.secret.expose())
    .bind(hook.ca_pem.as_deref())
    .bind(hook.created_at.unix_ms())
    .bind(&hook.created_by)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Removes the receiver with its outbox rows and attempts; false if there was none.
pub(super) async fn delete(conn: &mut AnyConnection, id: &str) -> Result<bool, StoreError> {
    for statement in [
        "DELETE FROM webhook_attempt WHERE webhook_id = $1",
        "DELETE FROM webhook_delivery WHERE webhook_id = $1",
    ] {
        sqlx::query(statement)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    let removed = sqlx::query("DELETE FROM webhook WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(removed.rows_affected() > 0)
}

pub(super) async fn list(conn: &mut AnyConnection) -> Result<Vec<Webhook>, StoreError> {
    let query = sqlx::query("SELECT * FROM webhook ORDER BY created_at, id");
    read_all(conn, query, hook).await
}

/// Puts the events the audit entries raise in the outbox, one row per subscribed receiver,
/// in the caller's transaction (the one that commits the entries and their changes).
pub(super) async fn enqueue(
    conn: &mut AnyConnection,
    entries: &[AuditEntry],
) -> Result<u64, StoreError> {
    let events: Vec<_> = entries
        .iter()
        .filter_map(|e| webhook::event_for(e).map(|(kind, data)| (e, kind, data)))
        .collect();
    if events.is_empty() {
        return Ok(0);
    }
    let hooks: Vec<(String, Vec<EventType>)> =
        sqlx::query("SELECT id, events FROM webhook ORDER BY id")
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?
            .iter()
            .map(|row| Ok((row.text("id")?, parse_events(&row.text("events")?)?)))
            .collect::<Result<_, StoreError>>()?;
    let mut queued = 0;
    for (entry, kind, data) in events {
        let subscribed: Vec<&str> = hooks
            .iter()
            .filter(|(_, events)| events.contains(&kind))
            .map(|(id, _)| id.as_str())
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        let event_id = uuid::Uuid::new_v4().to_string();
        let body = webhook::body(&event_id, kind, entry, data);
        for hook in subscribed {
            sqlx::query(
                "INSERT INTO webhook_delivery
                     (event_id, webhook_id, event, body, created_at, state, attempts,
                      next_attempt_at, delivered_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $5, NULL)",
            )
            .bind(&event_id)
            .bind(hook)
            .bind(kind.as_str())
            .bind(&body)
            .bind(entry.at.unix_ms())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// Pending deliveries whose time has come, oldest first, with where they go.
pub(super) async fn due(
    conn: &mut AnyConnection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<(Delivery, WebhookTarget)>, StoreError> {
    sqlx::query(
        "SELECT d.*, w.url, w.secret, w.ca_pem FROM webhook_delivery d
         JOIN webhook w ON w.id = d.webhook_id
         WHERE d.state = 'pending' AND d.next_attempt_at <= $1
         ORDER BY d.next_attempt_at, d.created_at LIMIT $2",
    )
    .bind(now.unix_ms())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await
    .map_err(db)?
    .iter()
    .map(|row| {
        Ok((
            delivery(row)?,
            WebhookTarget {
                url: row.text("url")?,
                secret: WebhookSecret::from_stored(row.text("secret")?),
                ca_pem: row.opt_text("ca_pem")?,
            },
        ))
    })
    .collect()
}

/// Records an attempt and what it leads to, if the delivery is still pending (a replica that
/// lost its lease meanwhile records nothing over a newer outcome).
pub(super) async fn record_attempt(
    conn: &mut AnyConnection,
    delivery: &Delivery,
    attempt: &Attempt,
    next: Next,
) -> Result<(), StoreError> {
    // Only for a delivery still on record: its webhook may have been removed meanwhile.
    sqlx::query(
        "INSERT INTO webhook_attempt
             (event_id, webhook_id, attempt, at, status_code, error, duration_ms)
         SELECT $1, $2, $3, $4, $5, $6, $7
         WHERE EXISTS (SELECT 1 FROM webhook_delivery WHERE event_id = $1 AND webhook_id = $2)
         ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING",
    )
    .bind(&delivery.event_id)
    .bind(&delivery.webhook_id)
    .bind(i64::from(attempt.attempt))
    .bind(attempt.at.unix_ms())
    .bind(attempt.status_code.map(i64::from))
    .bind(attempt.error.as_deref())
    .bind(i64::try_from(attempt.duration_ms).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let (state, next_at, delivered_at) = match next {
        Next::Delivered => (DeliveryState::Delivered, attempt.at, Some(attempt.at)),
        Next::RetryAt(at) => (DeliveryState::Pending, at, None),
        Next::GiveUp => (DeliveryState::Abandoned, attempt.at, None),
    };
    sqlx::query(
        "UPDATE webhook_delivery SET state = $1, attempts = $2, next_attempt_at = $3,
             delivered_at = $4
         WHERE event_id = $5 AND webhook_id = $6 AND state = 'pending'",
    )
    .bind(state.as_str())
    .bind(i64::from(attempt.attempt))
    .bind(next_at.unix_ms())
    .bind(delivered_at.map(Timestamp::unix_ms))
    .bind(&delivery.event_id)
    .bind(&delivery.webhook_id)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// The newest deliveries (of one receiver, or all), newest first, each with its attempts.
pub(super) async fn deliveries(
    conn: &mut AnyConnection,
    webhook_id: Option<&str>,
    limit: u32,
) -> Result<Vec<(Delivery, Vec<Attempt>)>, StoreError> {
    let rows = match webhook_id {
        Some(id) => {
            sqlx::query(
                "SELECT * FROM webhook_delivery WHERE webhook_id = $1
                 ORDER BY created_at DESC, event_id LIMIT $2",
            )
            .bind(id)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
        }
        None => {
            sqlx::query(
                "SELECT * FROM webhook_delivery ORDER BY created_at DESC, event_id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await
        }
    }
    .map_err(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let d = delivery(row)?;
        let attempts = sqlx::query(
            "SELECT * FROM webhook_attempt WHERE event_id = $1 AND webhook_id = $2
             ORDER BY attempt",
        )
        .bind(&d.event_id)
        .bind(&d.webhook_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?
        .iter()
        .map(attempt)
        .collect::<Result<Vec<_>, _>>()?;
        out.push((d, attempts));
    }
    Ok(out)
}

fn events_text(events: &[EventType]) -> String {
    events
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_events(text: &str) -> Result<Vec<EventType>, StoreError> {
    text.split(',')
        .map(|e| {
            e.parse()
                .map_err(|e| corrupt(format!("webhook events: {e}")))
        })
        .collect()
}

fn hook(row: &AnyRow) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        id: row.text("id")?,
        url: row.text("url")?,
        events: parse_events(&row.text("events")?)?,
        secret: WebhookSecret::from_stored(row.text("secret")?),
        ca_pem: row.opt_text("ca_pem")?,
        created_at: row.time("created_at")?,
        created_by: row.text("created_by")?,
    })
}

fn delivery(row: &AnyRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        event_id: row.text("event_id")?,
        webhook_id: row.text("webhook_id")?,
        event: row
            .text("event")?
            .parse()
            .map_err(|e| corrupt(format!("webhook delivery: {e}")))?,
        body: row.text("body")?,
        created_at: row.time("created_at")?,
        state: row.parsed("state")?,
        attempts: u32::try_from(row.int("attempts")?)
            .map_err(|_| corrupt("webhook delivery: attempts out of range"))?,
        next_attempt_at: row.time("next_attempt_at")?,
        delivered_at: row.opt_time("delivered_at")?,
    })
}

fn attempt(row: &AnyRow) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        attempt: u32::try_from(row.int("attempt")?)
            .map_err(|_| corrupt("webhook attempt: number out of range"))?,
        at: row.time("at")?,
        status_code: row
            .opt_int("status_code")?
            .map(|c| u16::try_from(c).map_err(|_| corrupt("webhook attempt: status code")))
            .transpose()?,
        error: row.opt_text("error")?,
        duration_ms: u64::try_from(row.int("duration_ms")?).unwrap_or(0),
    })
}
