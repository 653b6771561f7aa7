//! SQL for admin identities, certificates and requests, shared by both backends (`$N`
//! placeholders, which sqlx also binds for SQLite). Each backend wraps it in its own
//! transactions; PostgreSQL adds row locks where SQLite's single writer already serializes.

/// Admins with the expiry of their newest certificate that is not revoked.
pub const SELECT_ADMINS: &str = "SELECT a.*,
        (SELECT MAX(c.not_after) FROM certificates c
          WHERE c.subject = 'ward://admin/' || a.name AND c.revoked_at IS NULL) AS expires_at
     FROM admins a";

pub const INSERT_ADMIN: &str = "INSERT INTO admins
         (name, role, created_at, created_by, approved_by, certificate_by, break_glass)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (name) DO NOTHING";

/// Marks the admin `$1` as having a new certificate asked for by `$2`, unless revoked.
pub const RENEW_ADMIN: &str =
    "UPDATE admins SET certificate_by = $2 WHERE name = $1 AND revoked_at IS NULL";

/// Revokes every certificate of subject `$2` not yet revoked, at `$1`.
pub const REVOKE_SUBJECT: &str = "UPDATE certificates SET revoked_at = $1
     WHERE subject = $2 AND revoked_at IS NULL
     RETURNING serial";

/// How many identities with role `admin` other than `$1` are active at `$2`: not revoked,
/// with a certificate that is neither revoked nor expired.
pub const OTHER_ACTIVE_ADMINS: &str = "SELECT COUNT(*) FROM admins a
     WHERE a.role = 'admin' AND a.revoked_at IS NULL AND a.name <> $1
       AND EXISTS (SELECT 1 FROM certificates c
                    WHERE c.subject = 'ward://admin/' || a.name
                      AND c.revoked_at IS NULL AND c.not_after > $2)";

pub const MARK_ADMIN_REVOKED: &str = "UPDATE admins SET revoked_at = $2, revoked_by = $3,
     revoke_reason = $4 WHERE name = $1 AND revoked_at IS NULL";

pub const INSERT_REQUEST: &str = "INSERT INTO admin_requests (id, kind, name, role,
         requested_by, requested_at, expires_at, approved_by, approved_at, used_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, NULL)";

/// The open (unused, unexpired at `$2`) request for the name `$1`.
pub const OPEN_REQUEST: &str = "SELECT * FROM admin_requests
     WHERE name = $1 AND used_at IS NULL AND expires_at > $2
     ORDER BY requested_at DESC LIMIT 1";

pub const OPEN_REQUESTS: &str = "SELECT * FROM admin_requests
     WHERE used_at IS NULL AND expires_at > $1 ORDER BY name";

/// Approves request `$1` by `$2` at `$3`, if it is open and not approved yet.
pub const APPROVE_REQUEST: &str = "UPDATE admin_requests SET approved_by = $2, approved_at = $3
     WHERE id = $1 AND approved_by IS NULL AND used_at IS NULL AND expires_at > $3";

/// Uses approved request `$1` at `$2`, once.
pub const USE_REQUEST: &str = "UPDATE admin_requests SET used_at = $2
     WHERE id = $1 AND approved_by IS NOT NULL AND used_at IS NULL AND expires_at > $2";

/// The admin operations over one backend's pool, from the SQL above. `$lock_admins` and
/// `$lock_requests` serialize the read-then-write steps on PostgreSQL (SQLite's callers hold
/// the store's single-writer lock).
macro_rules! admin_operations {
    ($db:ty, $lock_admins:expr, $lock_requests:expr) => {
        use sqlx::Pool;
        use ward_certs::{AdminName, Identity};

        use crate::core::admins::{AdminRequest, RevokeOutcome};
        use crate::core::{Admin, CertificateRecord, Timestamp};
        use crate::store::StoreError;
        use crate::store::admins::*;
        use crate::store::rows::{self, db};

        async fn lock(
            tx: &mut sqlx::Transaction<'_, $db>,
            statement: Option<&str>,
        ) -> Result<(), StoreError> {
            if let Some(statement) = statement {
                sqlx::query(statement)
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
            }
            Ok(())
        }

        pub async fn insert(
            pool: &Pool<$db>,
            admin: &Admin,
            certificate: &CertificateRecord,
        ) -> Result<(), StoreError> {
            let mut tx = pool.begin().await.map_err(db)?;
            let inserted = sqlx::query(INSERT_ADMIN)
                .bind(admin.name.as_str())
                .bind(admin.role.as_str())
                .bind(admin.created_at.unix_ms())
                .bind(&admin.created_by)
                .bind(&admin.approved_by)
                .bind(&admin.certificate_by)
                .bind(admin.break_glass)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if inserted.rows_affected() == 0 {
                tx.rollback().await.map_err(db)?;
                return Err(StoreError::AlreadyExists(format!("admin {}", admin.name)));
            }
            super::insert_certificate(&mut tx, certificate).await?;
            tx.commit().await.map_err(db)?;
            Ok(())
        }

        pub async fn get(pool: &Pool<$db>, name: &AdminName) -> Result<Option<Admin>, StoreError> {
            sqlx::query(&format!("{SELECT_ADMINS} WHERE a.name = $1"))
                .bind(name.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db)?
                .as_ref()
                .map(rows::admin)
                .transpose()
        }

        pub async fn list(pool: &Pool<$db>) -> Result<Vec<Admin>, StoreError> {
            sqlx::query(&format!("{SELECT_ADMINS} ORDER BY a.name"))
                .fetch_all(pool)
                .await
                .map_err(db)?
                .iter()
                .map(rows::admin)
                .collect()
        }

        pub async fn renew(
            pool: &Pool<$db>,
            name: &AdminName,
            certificate: &CertificateRecord,
            certificate_by: Option<&str>,
            now: Timestamp,
        ) -> Result<Option<Vec<String>>, StoreError> {
            let mut tx = pool.begin().await.map_err(db)?;
            let found = sqlx::query(RENEW_ADMIN)
                .bind(name.as_str())
                .bind(certificate_by)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if found.rows_affected() == 0 {
                tx.rollback().await.map_err(db)?;
                return Ok(None);
            }
            let revoked: Vec<String> = sqlx::query_scalar(REVOKE_SUBJECT)
                .bind(now.unix_ms())
                .bind(Identity::Admin(name.clone()).to_uri())
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            super::insert_certificate(&mut tx, certificate).await?;
            tx.commit().await.map_err(db)?;
            Ok(Some(revoked))
        }

        pub async fn revoke(
            pool: &Pool<$db>,
            name: &AdminName,
            by: &str,
            reason: &str,
            now: Timestamp,
        ) -> Result<RevokeOutcome, StoreError> {
            let mut tx = pool.begin().await.map_err(db)?;
            lock(&mut tx, $lock_admins).await?;
            let Some(admin) = sqlx::query(&format!("{SELECT_ADMINS} WHERE a.name = $1"))
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .as_ref()
                .map(rows::admin)
                .transpose()?
            else {
                tx.rollback().await.map_err(db)?;
                return Ok(RevokeOutcome::NotFound);
            };
            if let Some(revocation) = admin.revoked {
                tx.rollback().await.map_err(db)?;
                return Ok(RevokeOutcome::AlreadyRevoked(revocation));
            }
            if admin.role == crate::core::AdminRole::Admin {
                let others: i64 = sqlx::query_scalar(OTHER_ACTIVE_ADMINS)
                    .bind(name.as_str())
                    .bind(now.unix_ms())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db)?;
                if others == 0 {
                    tx.rollback().await.map_err(db)?;
                    return Ok(RevokeOutcome::LastAdmin);
                }
            }
            sqlx::query(MARK_ADMIN_REVOKED)
                .bind(name.as_str())
                .bind(now.unix_ms())
                .bind(by)
                .bind(reason)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let serials: Vec<String> = sqlx::query_scalar(REVOKE_SUBJECT)
                .bind(now.unix_ms())
                .bind(Identity::Admin(name.clone()).to_uri())
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(RevokeOutcome::Revoked(serials))
        }

        pub async fn open_request(
            pool: &Pool<$db>,
            request: &AdminRequest,
            now: Timestamp,
        ) -> Result<AdminRequest, StoreError> {
            let mut tx = pool.begin().await.map_err(db)?;
            lock(&mut tx, $lock_requests).await?;
            let open = sqlx::query(OPEN_REQUEST)
                .bind(request.name.as_str())
                .bind(now.unix_ms())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .as_ref()
                .map(rows::admin_request)
                .transpose()?;
            if let Some(open) = open {
                tx.rollback().await.map_err(db)?;
                return Ok(open);
            }
            sqlx::query(INSERT_REQUEST)
                .bind(&request.id)
                .bind(request.kind.as_str())
                .bind(request.name.as_str())
                .bind(request.role.as_str())
                .bind(&request.requested_by)
                .bind(request.requested_at.unix_ms())
                .bind(request.expires_at.unix_ms())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok(request.clone())
        }

        pub async fn request(
            pool: &Pool<$db>,
            name: &AdminName,
            now: Timestamp,
        ) -> Result<Option<AdminRequest>, StoreError> {
            sqlx::query(OPEN_REQUEST)
                .bind(name.as_str())
                .bind(now.unix_ms())
                .fetch_optional(pool)
                .await
                .map_err(db)?
                .as_ref()
                .map(rows::admin_request)
                .transpose()
        }

        pub async fn requests(
            pool: &Pool<$db>,
            now: Timestamp,
        ) -> Result<Vec<AdminRequest>, StoreError> {
            sqlx::query(OPEN_REQUESTS)
                .bind(now.unix_ms())
                .fetch_all(pool)
                .await
                .map_err(db)?
                .iter()
                .map(rows::admin_request)
                .collect()
        }

        pub async fn approve_request(
            pool: &Pool<$db>,
            id: &str,
            by: &str,
            now: Timestamp,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(APPROVE_REQUEST)
                .bind(id)
                .bind(by)
                .bind(now.unix_ms())
                .execute(pool)
                .await
                .map_err(db)?;
            Ok(done.rows_affected() == 1)
        }

        pub async fn use_request(
            pool: &Pool<$db>,
            id: &str,
            now: Timestamp,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(USE_REQUEST)
                .bind(id)
                .bind(now.unix_ms())
                .execute(pool)
                .await
                .map_err(db)?;
            Ok(done.rows_affected() == 1)
        }
    };
}

pub(crate) use admin_operations;
