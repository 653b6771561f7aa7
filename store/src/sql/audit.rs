//! The `audit_log` and `audit_head` tables.

use sqlx::AnyConnection;
use sqlx::Row;

use super::placeholders::{self, Numbering, ROWS_PER_STATEMENT};
use crate::rows::{self, corrupt, db, read_all};
use crate::{AuditFilter, HeadKey, StoreError};
use ward_core::Timestamp;
use ward_core::audit::{
    AppendError, Appended, AuditEntry, AuditEvent, AuditHead, Tail, extend, head_message,
    plan_append,
};

/// Appends `events`, in order, where the chain's rules say ([`plan_append`]: after the
/// table's real last row, behind an `audit.break` entry when the head does not match it), and
/// signs the new head once, in the caller's transaction. What the first event's plan found
/// (a break) is returned with the entries written.
pub(super) async fn append_all(
    conn: &mut AnyConnection,
    events: &[(AuditEvent, Timestamp)],
    key: &dyn HeadKey,
) -> Result<(Appended, Vec<AuditEntry>), StoreError> {
    let numbering = Numbering::of(conn);
    let Some(((first, first_at), rest)) = events.split_first() else {
        return Err(StoreError::Corrupt("an audit append with no event".into()));
    };
    // Write first: this takes SQLite's write lock or PostgreSQL's row lock on the head, so
    // concurrent appends (on any replica) queue up and form one linear chain.
    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1")
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let current = head(conn).await?;
    let tail = tail(conn).await?;
    let head_signed = !current.signature.is_empty()
        && key.verify(
            &head_message(current.seq, &current.hash),
            &current.signature,
        );
    let plan = plan_append(first, *first_at, &current, head_signed, tail.as_ref()).map_err(
        |AppendError::AlreadyStarted| StoreError::AlreadyExists("the audit log's genesis".into()),
    )?;
    let mut entries: Vec<AuditEntry> = plan.entries().cloned().collect();
    entries.extend(extend(plan.entry.seq, &plan.entry.hash, rest));
    // Many rows a statement (bound parameters, as every query): a batch of thousands of
    // entries costs tens of statements, not thousands.
    for chunk in entries.chunks(ROWS_PER_STATEMENT) {
        let statement = [
            "INSERT INTO audit_log (seq, at, actor, action, target, details, prev_hash, hash) \
             VALUES ",
            &placeholders::tuples(numbering, chunk.len(), 8),
        ]
        .concat();
        let mut insert = sqlx::query(&statement);
        for entry in chunk {
            insert = insert
                .bind(seq_db(entry.seq)?)
                .bind(entry.at.unix_ms())
                .bind(&entry.actor)
                .bind(&entry.action)
                .bind(&entry.target)
                .bind(&entry.details)
                .bind(&entry.prev_hash)
                .bind(&entry.hash);
        }
        insert.execute(&mut *conn).await.map_err(db)?;
    }
    let last = entries.last().unwrap_or(&plan.entry);
    let signature = key.sign(&head_message(last.seq, &last.hash))?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, signature = $3 WHERE id = 1")
        .bind(seq_db(last.seq)?)
        .bind(&last.hash)
        .bind(signature)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok((plan, entries))
}

fn seq_db(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| corrupt("audit seq overflow"))
}

/// The table's last row. A `hash` that does not read as text (the row edited to another
/// type, or to bytes that are not UTF-8) is damage like any other edit of it: the append finds
/// it does not match the signed head, records the break and goes on. Failing here instead would
/// stop every audited write (wipes, results, enrollments) until the row was repaired by hand.
async fn tail(conn: &mut AnyConnection) -> Result<Option<Tail>, StoreError> {
    let (seq, hash) = match sqlx::query_as::<_, (i64, String)>(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)
    {
        Ok(Some(row)) => row,
        Ok(None) => return Ok(None),
        // The row's values are decoded as it is fetched: read its number alone.
        Err(StoreError::Corrupt(_)) => {
            let seq: i64 =
                sqlx::query_scalar("SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db)?;
            (seq, UNREADABLE_HASH.to_owned())
        }
        Err(e) => return Err(e),
    };
    let seq = u64::try_from(seq).map_err(|_| corrupt("negative audit seq"))?;
    Ok(Some(Tail { seq, hash }))
}

/// What an unreadable last hash is taken as: never a hash (those are hex).
const UNREADABLE_HASH: &str = "(unreadable)";

pub(super) async fn list(
    conn: &mut AnyConnection,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, StoreError> {
    // A device's trail: entries about the device, and about any of its commands.
    let query = sqlx::query(
        "SELECT * FROM audit_log
         WHERE ($1 IS NULL OR at >= $1) AND ($2 IS NULL OR actor = $2)
           AND ($3 IS NULL OR target = $3) AND seq > $4
           AND ($6 IS NULL OR at < $6)
           AND ($7 IS NULL OR target = $7
                OR target IN (SELECT id FROM commands WHERE device_id = $7))
         ORDER BY seq
         LIMIT $5",
    )
    .bind(filter.since.map(Timestamp::unix_ms))
    .bind(filter.actor.clone())
    .bind(filter.target.clone())
    .bind(i64::try_from(filter.after_seq.unwrap_or(0)).unwrap_or(i64::MAX))
    .bind(filter.limit.map_or(i64::MAX, i64::from))
    .bind(filter.until.map(Timestamp::unix_ms))
    .bind(filter.device.map(|d| d.to_string()));
    read_all(conn, query, rows::audit_entry).await
}

pub(super) async fn head(conn: &mut AnyConnection) -> Result<AuditHead, StoreError> {
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
