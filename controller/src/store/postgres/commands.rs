//! The `commands` table.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use super::{corrupt, db, parse};
use crate::core::{
    Command, CommandId, CommandKind, CommandState, DeviceId, Receipt, Timestamp, WipeScope,
};
use crate::store::StoreError;

fn time(row: &PgRow, column: &str) -> Result<Option<Timestamp>, StoreError> {
    Ok(row
        .try_get::<Option<i64>, _>(column)
        .map_err(db)?
        .map(Timestamp::from_unix_ms))
}

fn from_row(row: &PgRow) -> Result<Command, StoreError> {
    let kind_name: String = row.try_get("kind").map_err(db)?;
    let kind = match kind_name.as_str() {
        "lock" => CommandKind::Lock {
            message: row
                .try_get::<Option<String>, _>("lock_message")
                .map_err(db)?
                .unwrap_or_default(),
        },
        "unlock" => CommandKind::Unlock,
        "wipe" => CommandKind::Wipe {
            scope: parse::<WipeScope>(row, "scope")?,
        },
        other => return Err(corrupt(format!("unknown command kind {other:?}"))),
    };
    let body: Option<Vec<u8>> = row.try_get("receipt_body").map_err(db)?;
    let receipt = match body {
        None => None,
        Some(body) => Some(Receipt {
            body,
            signature: row
                .try_get::<Option<Vec<u8>>, _>("receipt_signature")
                .map_err(db)?
                .unwrap_or_default(),
            verified: row
                .try_get::<Option<bool>, _>("receipt_verified")
                .map_err(db)?
                .unwrap_or(false),
            error: row.try_get("receipt_error").map_err(db)?,
        }),
    };
    let deliveries: i64 = row.try_get("deliveries").map_err(db)?;
    Ok(Command {
        id: parse(row, "id")?,
        device_id: parse(row, "device_id")?,
        kind,
        state: parse(row, "state")?,
        reason: row.try_get("reason").map_err(db)?,
        failure_reason: row.try_get("failure_reason").map_err(db)?,
        idempotency_key: row.try_get("idempotency_key").map_err(db)?,
        created_by: row.try_get("created_by").map_err(db)?,
        created_at: Timestamp::from_unix_ms(row.try_get("created_at").map_err(db)?),
        deadline: time(row, "deadline")?,
        delivered_at: time(row, "delivered_at")?,
        acknowledged_at: time(row, "acknowledged_at")?,
        finished_at: time(row, "finished_at")?,
        deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
        receipt,
        approved_by: row.try_get("approved_by").map_err(db)?,
    })
}

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
             acknowledged_at, finished_at, deliveries)
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10, $11, NULL, NULL, NULL, 0)
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
    .execute(pool)
    .await
    .map_err(db)?;
    let row = sqlx::query("SELECT * FROM commands WHERE idempotency_key = $1")
        .bind(&c.idempotency_key)
        .fetch_one(pool)
        .await
        .map_err(db)?;
    Ok((from_row(&row)?, inserted.rows_affected() == 1))
}

pub async fn get(pool: &PgPool, id: CommandId) -> Result<Option<Command>, StoreError> {
    sqlx::query("SELECT * FROM commands WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(from_row)
        .transpose()
}

pub async fn by_key(pool: &PgPool, key: &str) -> Result<Option<Command>, StoreError> {
    sqlx::query("SELECT * FROM commands WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .as_ref()
        .map(from_row)
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
    rows.iter().map(from_row).collect()
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
    rows.iter().map(from_row).collect()
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
