//! Admin identities and the requests that wait for a second admin's approval. PostgreSQL
//! takes a table lock for the read-then-write steps (the last-admin check of a revocation,
//! one open request per name), which serializes them across replicas; SQLite's single writer
//! already does. Both are rare administrative acts.

use sqlx::AnyConnection;
use ward_certs::{AdminName, Identity};

use super::{Backend, certificates};
use crate::StoreError;
use crate::rows::{self, db, read_all, read_optional};
use ward_core::admins::{AdminRequest, RevokeOutcome};
use ward_core::{Admin, AdminRole, CertificateRecord, Timestamp};

/// Admins with the expiry (and start) of their newest certificate that is not revoked.
const SELECT_ADMIN: &str = "SELECT a.*,
        (SELECT MAX(c.not_after) FROM certificates c
          WHERE c.subject = 'ward://admin/' || a.name AND c.revoked_at IS NULL) AS expires_at,
        (SELECT c.not_before FROM certificates c
          WHERE c.subject = 'ward://admin/' || a.name AND c.revoked_at IS NULL
          ORDER BY c.not_after DESC LIMIT 1) AS not_before
     FROM admins a WHERE a.name = $1";

const SELECT_ADMINS: &str = "SELECT a.*,
        (SELECT MAX(c.not_after) FROM certificates c
          WHERE c.subject = 'ward://admin/' || a.name AND c.revoked_at IS NULL) AS expires_at,
        (SELECT c.not_before FROM certificates c
          WHERE c.subject = 'ward://admin/' || a.name AND c.revoked_at IS NULL
          ORDER BY c.not_after DESC LIMIT 1) AS not_before
     FROM admins a ORDER BY a.name";

/// How many identities with role `admin` other than `$1` are active at `$2`: not revoked,
/// with a certificate that is neither revoked nor expired.
const OTHER_ACTIVE_ADMINS: &str = "SELECT COUNT(*) FROM admins a
     WHERE a.role = 'admin' AND a.revoked_at IS NULL AND a.name <> $1
       AND EXISTS (SELECT 1 FROM certificates c
                    WHERE c.subject = 'ward://admin/' || a.name
                      AND c.revoked_at IS NULL AND c.not_after > $2)";

/// The open (unused, unexpired at `$2`) request for the name `$1`.
const OPEN_REQUEST: &str = "SELECT * FROM admin_requests
     WHERE name = $1 AND used_at IS NULL AND expires_at > $2
     ORDER BY requested_at DESC LIMIT 1";

async fn lock(conn: &mut AnyConnection, backend: Backend, table: Table) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        let statement = match table {
            Table::Admins => "LOCK TABLE admins IN SHARE ROW EXCLUSIVE MODE",
            Table::Requests => "LOCK TABLE admin_requests IN SHARE ROW EXCLUSIVE MODE",
        };
        sqlx::query(statement).execute(conn).await.map_err(db)?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Table {
    Admins,
    Requests,
}

/// Registers an admin and its first certificate; false if the name is taken.
pub(super) async fn insert(
    conn: &mut AnyConnection,
    admin: &Admin,
    certificate: &CertificateRecord,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO admins
             (name, role, created_at, created_by, approved_by, certificate_by, break_glass)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(admin.name.as_str())
    .bind(admin.role.as_str())
    .bind(admin.created_at.unix_ms())
    .bind(&admin.created_by)
    .bind(&admin.approved_by)
    .bind(&admin.certificate_by)
    .bind(admin.break_glass)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    certificates::insert(conn, certificate).await?;
    Ok(true)
}

pub(super) async fn get(
    conn: &mut AnyConnection,
    name: &AdminName,
) -> Result<Option<Admin>, StoreError> {
    let query = sqlx::query(SELECT_ADMIN).bind(name.as_str());
    read_optional(conn, query, rows::admin).await
}

pub(super) async fn list(conn: &mut AnyConnection) -> Result<Vec<Admin>, StoreError> {
    let query = sqlx::query(SELECT_ADMINS);
    read_all(conn, query, rows::admin).await
}

/// Gives the admin a new certificate and revokes its others; `None` when there is no such
/// admin or it is revoked.
pub(super) async fn renew(
    conn: &mut AnyConnection,
    name: &AdminName,
    certificate: &CertificateRecord,
    certificate_by: Option<&str>,
    now: Timestamp,
) -> Result<Option<Vec<String>>, StoreError> {
    let found =
        sqlx::query("UPDATE admins SET certificate_by = $2 WHERE name = $1 AND revoked_at IS NULL")
            .bind(name.as_str())
            .bind(certificate_by.map(str::to_owned))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    if found.rows_affected() == 0 {
        return Ok(None);
    }
    let subject = Identity::Admin(name.clone()).to_uri();
    let revoked = certificates::revoke_subject(conn, &subject, now).await?;
    certificates::insert(conn, certificate).await?;
    Ok(Some(revoked))
}

/// The certificates of active admins that a renewal replaced in the last
/// [`ward_core::admins::RENEWED_CONNECTION_GRACE_MS`] (an admin revoked with `admin revoke` is
/// not active): long enough to answer the renewing call, not to keep a leaked bundle's
/// session for the rest of its lifetime.
pub(super) async fn replaced(
    conn: &mut AnyConnection,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let prefix = Identity::admin_uri_prefix();
    let since = now.unix_ms() - ward_core::admins::RENEWED_CONNECTION_GRACE_MS;
    sqlx::query_scalar(
        "SELECT c.serial FROM certificates c JOIN admins a ON c.subject = $2 || a.name
         WHERE c.revoked_at > $3 AND c.not_after > $1 AND a.revoked_at IS NULL",
    )
    .bind(now.unix_ms())
    .bind(prefix)
    .bind(since)
    .fetch_all(conn)
    .await
    .map_err(db)
}

/// Revokes the admin and its certificates, unless it is the last active `admin`-role identity.
pub(super) async fn revoke(
    conn: &mut AnyConnection,
    backend: Backend,
    name: &AdminName,
    by: &str,
    reason: &str,
    now: Timestamp,
) -> Result<RevokeOutcome, StoreError> {
    lock(conn, backend, Table::Admins).await?;
    let Some(admin) = get(conn, name).await? else {
        return Ok(RevokeOutcome::NotFound);
    };
    if let Some(revocation) = admin.revoked {
        return Ok(RevokeOutcome::AlreadyRevoked(revocation));
    }
    if admin.role == AdminRole::Admin {
        let others: i64 = sqlx::query_scalar(OTHER_ACTIVE_ADMINS)
            .bind(name.as_str())
            .bind(now.unix_ms())
            .fetch_one(&mut *conn)
            .await
            .map_err(db)?;
        if others == 0 {
            return Ok(RevokeOutcome::LastAdmin);
        }
    }
    sqlx::query(
        "UPDATE admins SET revoked_at = $2, revoked_by = $3, revoke_reason = $4
         WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name.as_str())
    .bind(now.unix_ms())
    .bind(by)
    .bind(reason)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let subject = Identity::Admin(name.clone()).to_uri();
    let serials = certificates::revoke_subject(conn, &subject, now).await?;
    Ok(RevokeOutcome::Revoked(serials))
}

/// The open request for the name if there is one, else `request`, stored.
pub(super) async fn open_request(
    conn: &mut AnyConnection,
    backend: Backend,
    request: &AdminRequest,
    now: Timestamp,
) -> Result<AdminRequest, StoreError> {
    lock(conn, backend, Table::Requests).await?;
    if let Some(open) = self::request(conn, &request.name, now).await? {
        return Ok(open);
    }
    sqlx::query(
        "INSERT INTO admin_requests (id, kind, name, role, requested_by, requested_at,
             expires_at, approved_by, approved_at, used_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL)",
    )
    .bind(&request.id)
    .bind(request.kind.as_str())
    .bind(request.name.as_str())
    .bind(request.role.as_str())
    .bind(&request.requested_by)
    .bind(request.requested_at.unix_ms())
    .bind(request.expires_at.unix_ms())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(request.clone())
}

pub(super) async fn request(
    conn: &mut AnyConnection,
    name: &AdminName,
    now: Timestamp,
) -> Result<Option<AdminRequest>, StoreError> {
    let query = sqlx::query(OPEN_REQUEST)
        .bind(name.as_str())
        .bind(now.unix_ms());
    read_optional(conn, query, rows::admin_request).await
}

pub(super) async fn requests(
    conn: &mut AnyConnection,
    now: Timestamp,
) -> Result<Vec<AdminRequest>, StoreError> {
    let query = sqlx::query(
        "SELECT * FROM admin_requests WHERE used_at IS NULL AND expires_at > $1 ORDER BY name",
    )
    .bind(now.unix_ms());
    read_all(conn, query, rows::admin_request).await
}

/// Approves the open request, if it is not approved yet.
pub(super) async fn approve_request(
    conn: &mut AnyConnection,
    id: &str,
    by: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE admin_requests SET approved_by = $2, approved_at = $3
         WHERE id = $1 AND approved_by IS NULL AND used_at IS NULL AND expires_at > $3",
    )
    .bind(id)
    .bind(by)
    .bind(now.unix_ms())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}

/// Uses the approved request, once.
/// Closes every open request for a forced CA rotation step, as expired at `now`.
pub(super) async fn withdraw_ca_rotation_requests(
    conn: &mut AnyConnection,
    backend: Backend,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    lock(conn, backend, Table::Requests).await?;
    let mut ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM admin_requests
         WHERE kind IN ('ca-activate', 'ca-retire') AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now.unix_ms())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for id in &ids {
        sqlx::query("UPDATE admin_requests SET expires_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now.unix_ms())
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    ids.sort();
    Ok(ids)
}

pub(super) async fn use_request(
    conn: &mut AnyConnection,
    id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE admin_requests SET used_at = $2
         WHERE id = $1 AND approved_by IS NOT NULL AND used_at IS NULL AND expires_at > $2",
    )
    .bind(id)
    .bind(now.unix_ms())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() == 1)
}
