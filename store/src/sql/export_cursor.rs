//! The `audit_export_cursor` table, and the lease that lets one replica stream at a time.

use sqlx::AnyConnection;

use crate::StoreError;
use crate::rows::{corrupt, db};
use ward_core::Timestamp;

/// The last sequence number the export's collector took; 0 before the first.
pub(super) async fn get(conn: &mut AnyConnection, name: &str) -> Result<u64, StoreError> {
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM audit_export_cursor WHERE name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await
            .map_err(db)?;
    u64::try_from(seq.unwrap_or(0)).map_err(|_| corrupt("negative audit export cursor"))
}

/// Moves the cursor to `seq` (never backwards: a slower replica that lost its lease cannot
/// undo a newer one's progress).
pub(super) async fn set(
    conn: &mut AnyConnection,
    name: &str,
    seq: u64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let seq = i64::try_from(seq).map_err(|_| corrupt("audit export cursor overflow"))?;
    sqlx::query(
        "INSERT INTO audit_export_cursor (name, seq, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at
         WHERE audit_export_cursor.seq < excluded.seq",
    )
    .bind(name)
    .bind(seq)
    .bind(now.unix_ms())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// The PostgreSQL advisory lock key of an export's lease (one per name).
pub(super) fn lease_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("ward.audit-export:{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// A PostgreSQL session holding the export's advisory lock; dropping it closes the session,
/// which releases the lock.
pub(super) struct PgLease {
    conn: AnyConnection,
}

impl PgLease {
    /// Takes the lock if no other session holds it.
    pub(super) async fn try_take(
        mut conn: AnyConnection,
        name: &str,
    ) -> Result<Option<Self>, StoreError> {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lease_key(name))
            .fetch_one(&mut conn)
            .await
            .map_err(db)?;
        Ok(taken.then_some(Self { conn }))
    }
}

#[async_trait::async_trait]
impl crate::Lease for PgLease {
    async fn held(&mut self) -> bool {
        // The lock lives as long as the session: a session that still answers still holds it.
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .is_ok()
    }
}
