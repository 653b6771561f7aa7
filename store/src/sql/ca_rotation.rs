//! The `ca_rotation` table: the state each rotation step gave a CA (by hash).

use sqlx::AnyConnection;

use crate::StoreError;
use crate::rows::{Columns, corrupt, db};
use ward_core::Timestamp;
use ward_core::ca_rotation::{CaRecord, CaState};

pub(super) async fn list(conn: &mut AnyConnection) -> Result<Vec<CaRecord>, StoreError> {
    sqlx::query("SELECT ca_hash, state, changed_at FROM ca_rotation ORDER BY changed_at, ca_hash")
        .fetch_all(conn)
        .await
        .map_err(db)?
        .iter()
        .map(|row| {
            Ok(CaRecord {
                hash: row.text("ca_hash")?,
                state: row.text("state")?.parse().map_err(corrupt)?,
                changed_at: row.time("changed_at")?,
            })
        })
        .collect()
}

pub(super) async fn set(
    conn: &mut AnyConnection,
    hash: &str,
    state: CaState,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ca_rotation (ca_hash, state, changed_at) VALUES ($1, $2, $3)
         ON CONFLICT (ca_hash) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at",
    )
    .bind(hash)
    .bind(state.as_str())
    .bind(now.unix_ms())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}
