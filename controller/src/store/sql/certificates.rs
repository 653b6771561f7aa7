//! The `certificates` and `admins` tables: what this controller issued, to whom, and what it
//! revoked.

use sqlx::AnyConnection;
use ward_certs::AdminName;

use crate::core::{Admin, CertificateRecord, Timestamp};
use crate::store::StoreError;
use crate::store::rows::{self, db};

pub async fn insert(conn: &mut AnyConnection, cert: &CertificateRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO certificates (serial, subject, not_before, not_after, issued_at, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&cert.serial)
    .bind(&cert.subject)
    .bind(cert.not_before.unix_ms())
    .bind(cert.not_after.unix_ms())
    .bind(cert.issued_at.unix_ms())
    .bind(cert.revoked_at.map(Timestamp::unix_ms))
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

pub async fn get(
    conn: &mut AnyConnection,
    serial: &str,
) -> Result<Option<CertificateRecord>, StoreError> {
    sqlx::query("SELECT * FROM certificates WHERE serial = $1")
        .bind(serial)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::certificate)
        .transpose()
}

/// Revokes every unrevoked certificate of `subject`; the serials it revoked.
pub async fn revoke_subject(
    conn: &mut AnyConnection,
    subject: &str,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "UPDATE certificates SET revoked_at = $1 WHERE subject = $2 AND revoked_at IS NULL
         RETURNING serial",
    )
    .bind(now.unix_ms())
    .bind(subject)
    .fetch_all(conn)
    .await
    .map_err(db)
}

pub async fn revoked_serials(
    conn: &mut AnyConnection,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > $1",
    )
    .bind(now.unix_ms())
    .fetch_all(conn)
    .await
    .map_err(db)
}

/// Registers an admin and its first certificate; false if the name is taken.
pub async fn insert_admin(
    conn: &mut AnyConnection,
    admin: &Admin,
    certificate: &CertificateRecord,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO admins (name, role, created_at, created_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(admin.name.as_str())
    .bind(admin.role.as_str())
    .bind(admin.created_at.unix_ms())
    .bind(&admin.created_by)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    insert(conn, certificate).await?;
    Ok(true)
}

pub async fn get_admin(
    conn: &mut AnyConnection,
    name: &AdminName,
) -> Result<Option<Admin>, StoreError> {
    sqlx::query("SELECT * FROM admins WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .as_ref()
        .map(rows::admin)
        .transpose()
}

pub async fn list_admins(conn: &mut AnyConnection) -> Result<Vec<Admin>, StoreError> {
    let rows = sqlx::query("SELECT * FROM admins ORDER BY name")
        .fetch_all(conn)
        .await
        .map_err(db)?;
    rows.iter().map(rows::admin).collect()
}
