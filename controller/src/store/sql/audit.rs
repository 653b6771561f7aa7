//! The `audit_log` and `audit_head` tables.

use sqlx::AnyConnection;
use sqlx::Row;

use crate::core::Timestamp;
use crate::core::audit::{AuditEntry, AuditEvent, AuditHead, GENESIS, extend, head_message};
use crate::store::rows::{self, corrupt, db};
use crate::store::{AuditFilter, HeadKey, StoreError};

/// Appends `events` after the signed head, in order, and signs the new head once, in the
/// caller's transaction.
pub async fn append_all(
    conn: &mut AnyConnection,
    events: &[(AuditEvent, Timestamp)],
    key: &dyn HeadKey,
) -> Result<Vec<AuditEntry>, StoreError> {
    // Write first: this takes SQLite's write lock or PostgreSQL's row lock on the head, so
    // concurrent appends (on any replica) queue up and form one linear chain.
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    // The signed head, not the table's last row, says where the chain ends: an entry appended
    // after rows were cut from the end still leaves the gap for `verify` to find.
    let current = head(conn).await?;
    // A head the controller did not sign is never re-signed: the entries are still kept
    // (nothing is lost), but `verify` keeps reporting the tampering until someone looks.
    let head_trusted = current.seq == 0
        || key.verify(
            &head_message(current.seq, &current.hash),
            &current.signature,
        );
    let (seq, hash) = match current.seq {
        0 => (0, GENESIS),
        n => (n, current.hash.as_str()),
    };
    let appended = extend(seq, hash, events);
    for entry in &appended {
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(i64::try_from(entry.seq).map_err(|_| corrupt("audit seq overflow"))?)
        .bind(entry.at.unix_ms())
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&entry.details)
        .bind(&entry.prev_hash)
        .bind(&entry.hash)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    let (seq, prev_hash) = appended
        .last()
        .map_or((current.seq, current.hash.clone()), |e| {
            (e.seq, e.hash.clone())
        });
    if head_trusted {
        let signature = key.sign(&head_message(seq, &prev_hash))?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, signature = $3 WHERE id = 1")
            .bind(i64::try_from(seq).map_err(|_| corrupt("audit seq overflow"))?)
            .bind(&prev_hash)
            .bind(signature)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    } else {
        tracing::error!(
            seq,
            "the audit head's signature does not verify: not re-signing it; run wardctl audit verify"
        );
    }
    Ok(appended)
}

pub async fn list(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM audit_log
         WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR actor = $2)
           AND ($3 IS NULL OR target = $3) AND seq > $4
         ORDER BY seq
         LIMIT $5",
    )
    .bind(filter.since.map(Timestamp::unix_ms))
    .bind(filter.actor.clone())
    .bind(filter.target.clone())
    .bind(i64::try_from(filter.after_seq.unwrap_or(0)).unwrap_or(i64::MAX))
    .bind(filter.limit.map_or(i64::MAX, i64::from))
    .fetch_all(conn)
    .await
    .map_err(db)?;
    rows.iter().map(rows::audit_entry).collect()
}

pub async fn head(conn: &mut AnyConnection) -> Result<AuditHead, StoreError> {
    let row = sqlx::query("SELECT seq, hash, signature FROM audit_head WHERE id = 1")
        .fetch_one(conn)
        .await
        .map_err(db)?;
    let seq: i64 = row.try_get("seq").map_err(db)?;
    Ok(AuditHead {
        seq: u64::try_from(seq).map_err(|_| corrupt("negative audit head"))?,
        hash: row.try_get("hash").map_err(db)?,
        signature: row.try_get("signature").map_err(db)?,
    })
}
