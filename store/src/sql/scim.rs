//! The `scim_tokens` and `scim_users` tables (SCIM provisioning).

use sqlx::AnyConnection;
use ward_certs::AdminName;

use crate::StoreError;
use crate::rows::{Columns, corrupt, db, read_all, read_optional};
use ward_core::directory::{DirectoryUser, ScimClient};
use ward_core::{Timestamp, UserEmail};

fn client(row: &impl Columns) -> Result<ScimClient, StoreError> {
    Ok(ScimClient {
        name: row.parsed("name")?,
        token_hash: row.text("token_hash")?,
        created_at: row.time("created_at")?,
        created_by: row.text("created_by")?,
        revoked_at: row.opt_time("revoked_at")?,
        revoked_by: row.opt_text("revoked_by")?,
    })
}

fn user(row: &impl Columns) -> Result<DirectoryUser, StoreError> {
    Ok(DirectoryUser {
        id: row.parsed("id")?,
        user_name: row.text("user_name")?,
        user: row.parsed("user_email")?,
        external_id: row.opt_text("external_id")?,
        active: row
            .opt_bool("active")?
            .ok_or_else(|| corrupt("scim_users.active is NULL"))?,
        attributes: row.text("attributes")?,
        created_at: row.time("created_at")?,
        created_by: row.text("created_by")?,
        updated_at: row.time("updated_at")?,
        updated_by: row.text("updated_by")?,
        deactivated_at: row.opt_time("deactivated_at")?,
        deleted_at: row.opt_time("deleted_at")?,
    })
}

pub(super) async fn client_named(
    conn: &mut AnyConnection,
    name: &AdminName,
) -> Result<Option<ScimClient>, StoreError> {
    let query = sqlx::query("SELECT * FROM scim_tokens WHERE name = $1").bind(name.as_str());
    read_optional(conn, query, client).await
}

pub(super) async fn client_by_hash(
    conn: &mut AnyConnection,
    hash: &str,
) -> Result<Option<ScimClient>, StoreError> {
    let query =
        sqlx::query("SELECT * FROM scim_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(hash);
    read_optional(conn, query, client).await
}

pub(super) async fn clients(conn: &mut AnyConnection) -> Result<Vec<ScimClient>, StoreError> {
    let query = sqlx::query("SELECT * FROM scim_tokens ORDER BY name");
    read_all(conn, query, client).await
}

pub(super) async fn insert_client(
    conn: &mut AnyConnection,
    c: &ScimClient,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO scim_tokens (name, token_hash, created_at, created_by, revoked_at, revoked_by)
         VALUES ($1, $2, $3, $4, NULL, NULL)
         ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash,
             created_at = excluded.created_at, created_by = excluded.created_by,
             revoked_at = NULL, revoked_by = NULL
         WHERE scim_tokens.revoked_at IS NOT NULL",
    )
    .bind(c.name.as_str())
    .bind(&c.token_hash)
    .bind(c.created_at.unix_ms())
    .bind(&c.created_by)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn revoke_client(
    conn: &mut AnyConnection,
    name: &AdminName,
    by: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE scim_tokens SET revoked_at = $1, revoked_by = $2
         WHERE name = $3 AND revoked_at IS NULL",
    )
    .bind(now.unix_ms())
    .bind(by)
    .bind(name.as_str())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn user_by_id(
    conn: &mut AnyConnection,
    id: uuid::Uuid,
) -> Result<Option<DirectoryUser>, StoreError> {
    let query = sqlx::query("SELECT * FROM scim_users WHERE id = $1").bind(id.to_string());
    read_optional(conn, query, user).await
}

pub(super) async fn user_named(
    conn: &mut AnyConnection,
    email: &UserEmail,
) -> Result<Option<DirectoryUser>, StoreError> {
    let query = sqlx::query("SELECT * FROM scim_users WHERE user_email = $1").bind(email.as_str());
    read_optional(conn, query, user).await
}

pub(super) async fn user_by_user_name(
    conn: &mut AnyConnection,
    user_name: &str,
) -> Result<Option<DirectoryUser>, StoreError> {
    let query =
        sqlx::query("SELECT * FROM scim_users WHERE lower(user_name) = lower($1)").bind(user_name);
    read_optional(conn, query, user).await
}

pub(super) async fn users(conn: &mut AnyConnection) -> Result<Vec<DirectoryUser>, StoreError> {
    let query = sqlx::query("SELECT * FROM scim_users ORDER BY user_email");
    read_all(conn, query, user).await
}

pub(super) async fn put_user(
    conn: &mut AnyConnection,
    u: &DirectoryUser,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO scim_users (id, user_email, external_id, active, attributes, created_at,
             created_by, updated_at, updated_by, deactivated_at, deleted_at, user_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET user_email = excluded.user_email,
             user_name = excluded.user_name,
             external_id = excluded.external_id, active = excluded.active,
             attributes = excluded.attributes, updated_at = excluded.updated_at,
             updated_by = excluded.updated_by, deactivated_at = excluded.deactivated_at,
             deleted_at = excluded.deleted_at",
    )
    .bind(u.id.to_string())
    .bind(u.user.as_str())
    .bind(u.external_id.clone())
    .bind(u.active)
    .bind(&u.attributes)
    .bind(u.created_at.unix_ms())
    .bind(&u.created_by)
    .bind(u.updated_at.unix_ms())
    .bind(&u.updated_by)
    .bind(u.deactivated_at.map(Timestamp::unix_ms))
    .bind(u.deleted_at.map(Timestamp::unix_ms))
    .bind(&u.user_name)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}
