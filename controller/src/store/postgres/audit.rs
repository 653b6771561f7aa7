//! The `audit_log` and `audit_head` tables. The chain's rules are in `core::audit`; this file
//! only reads what they need and writes what they decide, in one transaction.

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};

use crate::core::Timestamp;
use crate::core::audit::{
    AppendError, Appended, AuditEntry, AuditEvent, AuditHead, Tail, head_message, plan_append,
};
use crate::store::rows::{self, corrupt, db};
use crate::store::{AuditFilter, HeadSigner, HeadVerifier, StoreError};

pub async fn append(
    pool: &PgPool,
    event: &AuditEvent,
    at: Timestamp,
    sign: &HeadSigner<'_>,
    verify_head: &HeadVerifier<'_>,
) -> Result<Appended, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    // Write first: this locks the head row, so concurrent appends (on any replica) queue up
    // and form one linear chain.
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let head = read_head(&mut tx).await?;
    let tail: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    let tail = tail
        .map(|(seq, hash)| {
            u64::try_from(seq)
                .map(|seq| Tail { seq, hash })
                .map_err(|_| corrupt("negative audit seq"))
        })
        .transpose()?;
    let head_signed = !head.signature.is_empty()
        && verify_head(&head_message(head.seq, &head.hash), &head.signature);
    let plan = plan_append(event, at, &head, head_signed, tail.as_ref()).map_err(
        |AppendError::AlreadyStarted| StoreError::AlreadyExists("the audit log's genesis".into()),
    )?;
    for entry in plan.entries() {
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq_db(entry.seq)?)
        .bind(entry.at.unix_ms())
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.details)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    let signature = sign(&head_message(plan.entry.seq, &plan.entry.hash));
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, signature = $3 WHERE id = 1")
        .bind(seq_db(plan.entry.seq)?)
        .bind(&plan.entry.hash)
        .bind(signature)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(plan)
}

fn seq_db(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| corrupt("audit seq overflow"))
}

pub async fn list(pool: &PgPool, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
    // A device's trail: entries about the device, and about any of its commands.
    let rows = sqlx::query(
        "SELECT * FROM audit_log
         WHERE ($1::BIGINT IS NULL OR at >= $1) AND ($2::TEXT IS NULL OR actor = $2) AND ($3::TEXT IS NULL OR target = $3)
           AND seq > $4
           AND ($6::BIGINT IS NULL OR at < $6)
           AND ($7::TEXT IS NULL OR target = $7 OR target IN (SELECT id FROM commands WHERE device_id = $7))
         ORDER BY seq
         LIMIT $5",
    )
    .bind(filter.since.map(Timestamp::unix_ms))
    .bind(filter.actor.as_deref())
    .bind(filter.target.as_deref())
    .bind(i64::try_from(filter.after_seq.unwrap_or(0)).unwrap_or(i64::MAX))
    .bind(filter.limit.map(i64::from))
    .bind(filter.until.map(Timestamp::unix_ms))
    .bind(filter.device.map(|d| d.to_string()))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(rows::audit_entry).collect()
}

pub async fn head(pool: &PgPool) -> Result<AuditHead, StoreError> {
    let mut conn = pool.acquire().await.map_err(db)?;
    read_head(&mut conn).await
}

async fn read_head(conn: &mut PgConnection) -> Result<AuditHead, StoreError> {
    let row = sqlx::query("SELECT seq, hash, signature FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let seq: i64 = row.try_get("seq").map_err(db)?;
    Ok(AuditHead {
        seq: u64::try_from(seq).map_err(|_| corrupt("negative audit head"))?,
        hash: row.try_get("hash").map_err(db)?,
        signature: row.try_get("signature").map_err(db)?,
    })
}
