//! The `commands` table.

use sqlx::postgres::PgPool;

use crate::core::{Command, CommandId, CommandKind, CommandState, DeviceId, Timestamp};
use crate::store::StoreError;
use crate::store::rows::{self, db};

fn scope_of(kind: &CommandKind) -> Option<&'static str> {
    match kind {
        CommandKind::Wipe { scope } => Some(scope.as_str()),
        _ => None,
    }
}

fn message_of(kind: &CommandKind) -> Option<&str> {
    match kind {
        CommandKind::Lock { message } => Some(message.as_str()),
        _ => None,
    }
}

pub async fn insert(pool: &PgPool, c: &Command) -> Result<(Command, bool), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO commands (id, device_id, kind, scope, lock_message, state, reason,
             failure_reason, idempotency_key, created_by, created_at, deadline, delivered_at,
             acknowledged_at, finished_at, deliveries, revoke_after)
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10, $11, NULL, NULL, NULL, 0, $12)
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(c.id.to_string())
    .bind(c.device_id.to_string())
    .bind(c.kind.name())
    .bind(scope_of(&c.kind))
    .bind(message_of(&c.kind))
    .bind(c.state.as_str())
    .bind(&c.reason)
    .bind(&c.idempotency_key)
    .bind(&c.created_by)
    .bind(c.created_at.unix_ms())
    .bind(c.deadline.map(Timestamp::unix_ms))
    .bind(c.revoke_after)
    .execute(pool)
    .await
    .map_err(db)?;
    let row = sqlx::query("SELECT * FROM commands WHERE idempotency_key = $1")
        .bind(&c.idempotency_key)
        .fetch_one(pool)
        .await
        .map_err(db)?;
    Ok((rows::command(&row)?, inserted.rows_affected() == 1))
}

pub async fn get(pool: &PgPool, id: CommandId) -> Result<Option<Command>, StoreError> {
    sqlx::query("SELECT * FROM commands WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::command)
        .transpose()
}

pub async fn by_key(pool: &PgPool, key: &str) -> Result<Option<Command>, StoreError> {
    sqlx::query("SELECT * FROM commands WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::command)
        .transpose()
}

pub async fn list(
    pool: &PgPool,
    device: Option<DeviceId>,
    state: Option<CommandState>,
) -> Result<Vec<Command>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM commands
         WHERE ($1::TEXT IS NULL OR device_id = $1) AND ($2::TEXT IS NULL OR state = $2)
         ORDER BY created_at DESC, id",
    )
    .bind(device.map(|d| d.to_string()))
    .bind(state.map(CommandState::as_str))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(rows::command).collect()
}

pub async fn unfinished(pool: &PgPool, device: DeviceId) -> Result<Vec<Command>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM commands
         WHERE device_id = $1 AND state IN ('queued', 'delivered', 'acknowledged')
         ORDER BY created_at, id",
    )
    .bind(device.to_string())
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(rows::command).collect()
}

pub async fn update(
    pool: &PgPool,
    expected: CommandState,
    c: &Command,
) -> Result<bool, StoreError> {
    let receipt = c.receipt.as_ref();
    let result = sqlx::query(
        "UPDATE commands SET state = $1, failure_reason = $2, delivered_at = $3, acknowledged_at = $4,
             finished_at = $5, deliveries = $6, receipt_body = $7, receipt_signature = $8,
             receipt_verified = $9, receipt_error = $10, approved_by = $11
         WHERE id = $12 AND state = $13",
    )
    .bind(c.state.as_str())
    .bind(&c.failure_reason)
    .bind(c.delivered_at.map(Timestamp::unix_ms))
    .bind(c.acknowledged_at.map(Timestamp::unix_ms))
    .bind(c.finished_at.map(Timestamp::unix_ms))
    .bind(i64::from(c.deliveries))
    .bind(receipt.map(|r| r.body.clone()))
    .bind(receipt.map(|r| r.signature.clone()))
    .bind(receipt.map(|r| r.verified))
    .bind(receipt.and_then(|r| r.error.clone()))
    .bind(&c.approved_by)
    .bind(c.id.to_string())
    .bind(expected.as_str())
    .execute(pool)
    .await
    .map_err(db)?;
    Ok(result.rows_affected() == 1)
}
