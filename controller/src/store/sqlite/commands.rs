//! The `commands` table.

use sqlx::sqlite::SqlitePool;

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

pub async fn insert(pool: &SqlitePool, c: &Command) -> Result<(Command, bool), StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO commands (id, device_id, kind, scope, lock_message, state, reason,
             failure_reason, idempotency_key, created_by, created_at, deadline, delivered_at,
             acknowledged_at, finished_at, deliveries, revoke_after)
         VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, NULL, NULL, NULL, 0, ?)
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
    let row = sqlx::query("SELECT * FROM commands WHERE idempotency_key = ?")
        .bind(&c.idempotency_key)
        .fetch_one(pool)
        .await
        .map_err(db)?;
    Ok((rows::command(&row)?, inserted.rows_affected() == 1))
}

pub async fn get(pool: &SqlitePool, id: CommandId) -> Result<Option<Command>, StoreError> {
    sqlx::query("SELECT * FROM commands WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::command)
        .transpose()
}

pub async fn by_key(pool: &SqlitePool, key: &str) -> Result<Option<Command>, StoreError> {
    sqlx::query("SELECT * FROM commands WHERE idempotency_key = ?")
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::command)
        .transpose()
}

pub async fn list(
    pool: &SqlitePool,
    device: Option<DeviceId>,
    state: Option<CommandState>,
) -> Result<Vec<Command>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM commands
         WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR state = ?2)
         ORDER BY created_at DESC, id",
    )
    .bind(device.map(|d| d.to_string()))
    .bind(state.map(CommandState::as_str))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(rows::command).collect()
}

pub async fn unfinished(pool: &SqlitePool, device: DeviceId) -> Result<Vec<Command>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM commands
         WHERE device_id = ? AND state IN ('queued', 'delivered', 'acknowledged')
         ORDER BY created_at, id",
    )
    .bind(device.to_string())
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(rows::command).collect()
}

pub async fn update(
    pool: &SqlitePool,
    expected: CommandState,
    c: &Command,
) -> Result<bool, StoreError> {
    let receipt = c.receipt.as_ref();
    let result = sqlx::query(
        "UPDATE commands SET state = ?, failure_reason = ?, delivered_at = ?, acknowledged_at = ?,
             finished_at = ?, deliveries = ?, receipt_body = ?, receipt_signature = ?,
             receipt_verified = ?, receipt_error = ?, approved_by = ?
         WHERE id = ? AND state = ?",
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
