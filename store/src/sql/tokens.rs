//! The `enrollment_tokens` table.

use std::collections::{HashMap, HashSet};

use sqlx::AnyConnection;

use super::devices;
use super::placeholders::{self, Numbering, ROWS_PER_STATEMENT};
use crate::StoreError;
use crate::rows::{self, corrupt, db, read_optional};
use crate::tx::TokenClaim;
use ward_core::{DeviceId, Timestamp, TokenHash, TokenRecord, UserEmail};

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

/// Claims each token of `claims` and records its claim's device for the token's user, in the
/// caller's transaction, a few hundred claims a statement; for each claim, in order, the user,
/// or `None` when its token is unknown, used, withdrawn or expired at the claim's time. The
/// conditional UPDATE is the claim: of concurrent redemptions of one token exactly one sees
/// its row still unused (SQLite serializes writers; PostgreSQL locks the row for the rest of
/// the transaction). A token named by two claims is claimed by the first only.
pub(super) async fn redeem_many(
    conn: &mut AnyConnection,
    claims: &[TokenClaim<'_>],
) -> Result<Vec<Option<UserEmail>>, StoreError> {
    let numbering = Numbering::of(conn);
    let mut named = HashSet::with_capacity(claims.len());
    let first: Vec<&TokenClaim<'_>> = claims.iter().filter(|c| named.insert(c.hash)).collect();
    // The claim that took a token is the one whose device the row now names.
    let mut users: HashMap<DeviceId, UserEmail> = HashMap::with_capacity(first.len());
    for chunk in first.chunks(ROWS_PER_STATEMENT) {
        // The list of hashes again, for the primary key: joined only with the VALUES list,
        // PostgreSQL's planner trusts the table's statistics, which an enrollment wave makes
        // stale (they said almost no token was unused), and compared every unused token with
        // every claim (20-40 ms for 30 claims among 2,000 tokens).
        let statement = [
            "UPDATE enrollment_tokens SET used_at = v.column2, device_id = v.column3
             FROM (VALUES ",
            &placeholders::tuples(numbering, chunk.len(), 3),
            ") AS v
             WHERE enrollment_tokens.token_hash = v.column1
               AND enrollment_tokens.token_hash IN (",
            &placeholders::list_from(numbering, chunk.len() * 3 + 1, chunk.len()),
            ")
               AND enrollment_tokens.used_at IS NULL
               AND enrollment_tokens.withdrawn_at IS NULL
               AND enrollment_tokens.expires_at > v.column2
             RETURNING enrollment_tokens.device_id, enrollment_tokens.user_email",
        ]
        .concat();
        let mut query = sqlx::query_as::<_, (String, String)>(&statement);
        for claim in chunk {
            query = query
                .bind(claim.hash.to_hex())
                .bind(claim.now.unix_ms())
                .bind(claim.device.id.to_string());
        }
        for claim in chunk {
            query = query.bind(claim.hash.to_hex());
        }
        for (device, user) in query.fetch_all(&mut *conn).await.map_err(db)? {
            users.insert(
                device.parse().map_err(corrupt)?,
                user.parse().map_err(corrupt)?,
            );
        }
    }
    let enrolled: Vec<devices::Enrolled<'_>> = claims
        .iter()
        .filter_map(|claim| {
            users.get(&claim.device.id).map(|user| devices::Enrolled {
                device: claim.device,
                user,
                now: claim.now,
            })
        })
        .collect();
    devices::insert_many(conn, &enrolled).await?;
    Ok(claims
        .iter()
        .map(|claim| users.get(&claim.device.id).cloned())
        .collect())
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
