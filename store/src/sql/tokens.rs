//! The `enrollment_tokens` table.

use sqlx::AnyConnection;

use super::devices;
use crate::StoreError;
use crate::rows::{self, Columns, db, read_optional};
use ward_core::{NewDevice, Timestamp, TokenHash, TokenRecord, UserEmail};

pub(super) async fn insert(
    conn: &mut AnyConnection,
    token: &TokenRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO enrollment_tokens
             (token_hash, user_email, created_at, expires_at, created_by, used_at, device_id)
         VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
    )
    .bind(token.hash.to_hex())
    .bind(token.user.as_str())
    .bind(token.created_at.unix_ms())
    .bind(token.expires_at.unix_ms())
    .bind(&token.created_by)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn find(
    conn: &mut AnyConnection,
    hash: &TokenHash,
) -> Result<Option<TokenRecord>, StoreError> {
    let query =
        sqlx::query("SELECT * FROM enrollment_tokens WHERE token_hash = $1").bind(hash.to_hex());
    read_optional(conn, query, rows::token).await
}

/// Claims the token and records the device, in the caller's transaction. The conditional
/// UPDATE is the claim: of concurrent redemptions exactly one sees the row still unused
/// (SQLite serializes writers; PostgreSQL locks the row for the rest of the transaction).
pub(super) async fn redeem(
    conn: &mut AnyConnection,
    hash: &TokenHash,
    now: Timestamp,
    device: &NewDevice,
) -> Result<Option<UserEmail>, StoreError> {
    let claimed = sqlx::query(
        "UPDATE enrollment_tokens SET used_at = $1, device_id = $2
         WHERE token_hash = $3 AND used_at IS NULL AND withdrawn_at IS NULL AND expires_at > $4
         RETURNING user_email",
    )
    .bind(now.unix_ms())
    .bind(device.id.to_string())
    .bind(hash.to_hex())
    .bind(now.unix_ms())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    let Some(row) = claimed else {
        return Ok(None);
    };
    let user: UserEmail = row.parsed("user_email")?;
    devices::insert(conn, device, &user, now).await?;
    Ok(Some(user))
}

/// Withdraws the user's unused tokens for good (offboarding): the unexpired ones end now and
/// are counted; the others (expired by this clock, perhaps not by that of an enrollment under
/// way) are marked too, so a redemption refuses them whatever its clock says.
pub(super) async fn expire_unused(
    conn: &mut AnyConnection,
    user: &UserEmail,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let withdrawn = sqlx::query(
        "UPDATE enrollment_tokens SET withdrawn_at = $1, expires_at = $1
         WHERE user_email = $2 AND used_at IS NULL AND withdrawn_at IS NULL AND expires_at > $1",
    )
    .bind(now.unix_ms())
    .bind(user.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db)?
    .rows_affected();
    sqlx::query(
        "UPDATE enrollment_tokens SET withdrawn_at = $1
         WHERE user_email = $2 AND used_at IS NULL AND withdrawn_at IS NULL",
    )
    .bind(now.unix_ms())
    .bind(user.as_str())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(withdrawn)
}

/// The tokens that could still enroll a device at `now`, optionally of one user, oldest first.
pub(super) async fn list_usable(
    conn: &mut AnyConnection,
    user: Option<&UserEmail>,
    now: Timestamp,
) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = match user {
        Some(user) => {
            sqlx::query(
                "SELECT * FROM enrollment_tokens
                 WHERE used_at IS NULL AND withdrawn_at IS NULL AND expires_at > $1
                   AND user_email = $2
                 ORDER BY created_at, token_hash",
            )
            .bind(now.unix_ms())
            .bind(user.as_str())
            .fetch_all(conn)
            .await
        }
        None => {
            sqlx::query(
                "SELECT * FROM enrollment_tokens
                 WHERE used_at IS NULL AND withdrawn_at IS NULL AND expires_at > $1
                 ORDER BY created_at, token_hash",
            )
            .bind(now.unix_ms())
            .fetch_all(conn)
            .await
        }
    }
    .map_err(db)?;
    rows.iter().map(rows::token).collect()
}

/// Makes one token expire now if it is still usable.
pub(super) async fn expire_one(
    conn: &mut AnyConnection,
    hash: &TokenHash,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "UPDATE enrollment_tokens SET expires_at = $1, withdrawn_at = $1
         WHERE token_hash = $2 AND used_at IS NULL AND withdrawn_at IS NULL AND expires_at > $3",
    )
    .bind(now.unix_ms())
    .bind(hash.to_hex())
    .bind(now.unix_ms())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(result.rows_affected() == 1)
}
