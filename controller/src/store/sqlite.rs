//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so a committed
//! command or enrollment survives a power cut.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use ward_certs::AdminName;

use super::{Redemption, Store, StoreError};
use crate::core::{
    Admin, CertificateRecord, Command, CommandId, CommandState, Compliance, Device, DeviceFacts,
    DeviceId, DeviceState, NewDevice, Policy, PolicyScope, StoredPolicy, Timestamp, TokenHash,
    TokenRecord, UserEmail,
};

mod audit;
mod commands;
mod policies;

use super::rows::{self, Columns, corrupt, db};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// SQLite lets one connection write at a time; a writer that finds the lock taken sleeps
    /// in SQLite's busy handler (1 to 100 ms at a time) before it tries again, so under load
    /// a write can wait hundreds of milliseconds for a lock that was free most of that time.
    /// This process's writers queue here instead and each takes the lock the moment the
    /// previous transaction ends. Durability is unchanged: every write still commits (and
    /// syncs) before it returns.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(db)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(Self {
            pool,
            writer: std::sync::Arc::default(),
        })
    }

    /// The durability settings in force, for tests and `doctor`-style checks:
    /// (journal_mode, synchronous) as SQLite reports them.
    pub async fn durability(&self) -> Result<(String, i64), StoreError> {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok((mode, sync))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_certificate(
    tx: &mut Transaction<'_, Sqlite>,
    cert: &CertificateRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO certificates (serial, subject, not_before, not_after, issued_at, revoked_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&cert.serial)
    .bind(&cert.subject)
    .bind(cert.not_before.unix_ms())
    .bind(cert.not_after.unix_ms())
    .bind(cert.issued_at.unix_ms())
    .bind(cert.revoked_at.map(Timestamp::unix_ms))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let _writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO enrollment_tokens
                 (token_hash, user_email, created_at, expires_at, created_by, used_at, device_id)
             VALUES (?, ?, ?, ?, ?, NULL, NULL)",
        )
        .bind(token.hash.to_hex())
        .bind(token.user.as_str())
        .bind(token.created_at.unix_ms())
        .bind(token.expires_at.unix_ms())
        .bind(&token.created_by)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM enrollment_tokens WHERE token_hash = ?")
            .bind(hash.to_hex())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(rows::token)
            .transpose()
    }

    async fn redeem_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        device: &NewDevice,
    ) -> Result<Redemption, StoreError> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The conditional UPDATE is the claim: SQLite serializes writers, so of concurrent
        // redemptions exactly one sees the row still unused.
        let claimed = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = ?, device_id = ?
             WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?
             RETURNING user_email",
        )
        .bind(now.unix_ms())
        .bind(device.id.to_string())
        .bind(hash.to_hex())
        .bind(now.unix_ms())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = claimed else {
            tx.rollback().await.map_err(db)?;
            return Ok(match self.find_token(hash).await? {
                None => Redemption::Unknown,
                Some(token) => Redemption::Refused(token.status(now)),
            });
        };
        let user: UserEmail = row.parsed("user_email")?;
        let facts = &device.facts;
        sqlx::query(
            "INSERT INTO devices (id, user_email, state, hostname, os_name, os_version,
                 kernel_version, arch, agent_version, enrolled_at, last_seen,
                 certificate_serial, certificate_expires_at, public_key_der)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
        )
        .bind(device.id.to_string())
        .bind(user.as_str())
        .bind(DeviceState::Active.as_str())
        .bind(&facts.hostname)
        .bind(&facts.os_name)
        .bind(&facts.os_version)
        .bind(&facts.kernel_version)
        .bind(&facts.arch)
        .bind(&facts.agent_version)
        .bind(now.unix_ms())
        .bind(&device.certificate.serial)
        .bind(device.certificate.not_after.unix_ms())
        .bind(&device.public_key_der)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        insert_certificate(&mut tx, &device.certificate).await?;
        tx.commit().await.map_err(db)?;
        Ok(Redemption::Enrolled { user })
    }

    async fn get_device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        sqlx::query("SELECT * FROM devices WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(rows::device)
            .transpose()
    }

    async fn list_devices(&self, user: Option<&UserEmail>) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM devices WHERE (?1 IS NULL OR user_email = ?1)
             ORDER BY user_email, enrolled_at, id",
        )
        .bind(user.map(UserEmail::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(rows::device).collect()
    }

    async fn record_check_in(
        &self,
        id: DeviceId,
        facts: &DeviceFacts,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let _writing = self.writer.lock().await;
        let result = sqlx::query(
            "UPDATE devices SET hostname = ?, os_name = ?, os_version = ?, kernel_version = ?,
                 arch = ?, agent_version = ?, last_seen = ?
             WHERE id = ?",
        )
        .bind(&facts.hostname)
        .bind(&facts.os_name)
        .bind(&facts.os_version)
        .bind(&facts.kernel_version)
        .bind(&facts.arch)
        .bind(&facts.agent_version)
        .bind(now.unix_ms())
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(result.rows_affected() == 1)
    }

    async fn insert_admin(
        &self,
        admin: &Admin,
        certificate: &CertificateRecord,
    ) -> Result<(), StoreError> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO admins (name, role, created_at, created_by) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(admin.name.as_str())
        .bind(admin.role.as_str())
        .bind(admin.created_at.unix_ms())
        .bind(&admin.created_by)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Err(StoreError::AlreadyExists(format!("admin {}", admin.name)));
        }
        insert_certificate(&mut tx, certificate).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn get_admin(&self, name: &AdminName) -> Result<Option<Admin>, StoreError> {
        sqlx::query("SELECT * FROM admins WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(rows::admin)
            .transpose()
    }

    async fn list_admins(&self) -> Result<Vec<Admin>, StoreError> {
        let rows = sqlx::query("SELECT * FROM admins ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(rows::admin).collect()
    }

    async fn insert_command(&self, command: &Command) -> Result<(Command, bool), StoreError> {
        let _writing = self.writer.lock().await;
        commands::insert(&self.pool, command).await
    }

    async fn count_commands(&self) -> Result<Vec<(CommandState, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM commands GROUP BY state")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.into_iter()
            .map(|(state, n)| {
                Ok((
                    state.parse().map_err(corrupt)?,
                    u64::try_from(n).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn get_command(&self, id: CommandId) -> Result<Option<Command>, StoreError> {
        commands::get(&self.pool, id).await
    }

    async fn command_by_key(&self, idempotency_key: &str) -> Result<Option<Command>, StoreError> {
        commands::by_key(&self.pool, idempotency_key).await
    }

    async fn list_usable_tokens(
        &self,
        user: Option<&UserEmail>,
        now: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM enrollment_tokens
             WHERE used_at IS NULL AND expires_at > ? AND (? IS NULL OR user_email = ?)
             ORDER BY created_at, token_hash",
        )
        .bind(now.unix_ms())
        .bind(user.map(UserEmail::as_str))
        .bind(user.map(UserEmail::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .iter()
        .map(rows::token)
        .collect()
    }

    async fn expire_token(&self, hash: &TokenHash, now: Timestamp) -> Result<bool, StoreError> {
        let _writing = self.writer.lock().await;
        let result = sqlx::query(
            "UPDATE enrollment_tokens SET expires_at = ?
             WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(now.unix_ms())
        .bind(hash.to_hex())
        .bind(now.unix_ms())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(result.rows_affected() == 1)
    }

    async fn expire_unused_tokens(
        &self,
        user: &UserEmail,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let _writing = self.writer.lock().await;
        let result = sqlx::query(
            "UPDATE enrollment_tokens SET expires_at = ?
             WHERE user_email = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(now.unix_ms())
        .bind(user.as_str())
        .bind(now.unix_ms())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(result.rows_affected())
    }

    async fn list_commands(
        &self,
        device: Option<DeviceId>,
        state: Option<CommandState>,
    ) -> Result<Vec<Command>, StoreError> {
        commands::list(&self.pool, device, state).await
    }

    async fn unfinished_commands(&self, device: DeviceId) -> Result<Vec<Command>, StoreError> {
        commands::unfinished(&self.pool, device).await
    }

    async fn update_command(
        &self,
        expected: CommandState,
        next: &Command,
    ) -> Result<bool, StoreError> {
        let _writing = self.writer.lock().await;
        commands::update(&self.pool, expected, next).await
    }

    async fn get_policy(&self, scope: &PolicyScope) -> Result<Option<StoredPolicy>, StoreError> {
        policies::get(&self.pool, scope).await
    }

    async fn put_policy(
        &self,
        scope: &PolicyScope,
        policy: &Policy,
        updated_by: &str,
        now: Timestamp,
    ) -> Result<StoredPolicy, StoreError> {
        let _writing = self.writer.lock().await;
        policies::put(&self.pool, scope, policy, updated_by, now).await
    }

    async fn delete_policy(&self, scope: &PolicyScope) -> Result<bool, StoreError> {
        let _writing = self.writer.lock().await;
        policies::delete(&self.pool, scope).await
    }

    async fn record_compliance(
        &self,
        device: DeviceId,
        compliance: &Compliance,
    ) -> Result<bool, StoreError> {
        let _writing = self.writer.lock().await;
        policies::record_compliance(&self.pool, device, compliance).await
    }

    async fn append_audit(
        &self,
        event: &crate::core::audit::AuditEvent,
        at: Timestamp,
        sign: &crate::store::HeadSigner<'_>,
        verify_head: &crate::store::HeadVerifier<'_>,
    ) -> Result<crate::core::audit::AuditEntry, StoreError> {
        let _writing = self.writer.lock().await;
        audit::append(&self.pool, event, at, sign, verify_head).await
    }

    async fn list_audit(
        &self,
        filter: &crate::store::AuditFilter,
    ) -> Result<Vec<crate::core::audit::AuditEntry>, StoreError> {
        audit::list(&self.pool, filter).await
    }

    async fn audit_head(&self) -> Result<crate::core::audit::AuditHead, StoreError> {
        audit::head(&self.pool).await
    }

    async fn revoke_device(
        &self,
        device: DeviceId,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let found = sqlx::query(
            "UPDATE devices SET state = CASE WHEN state = 'retired' THEN state ELSE 'revoked' END
             WHERE id = ?",
        )
        .bind(device.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if found.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(None);
        }
        let serials: Vec<String> = sqlx::query_scalar(
            "UPDATE certificates SET revoked_at = ? WHERE subject = ? AND revoked_at IS NULL
             RETURNING serial",
        )
        .bind(now.unix_ms())
        .bind(ward_certs::Identity::Device(device.0).to_uri())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(serials))
    }

    async fn record_renewal(
        &self,
        device: DeviceId,
        certificate: &CertificateRecord,
        public_key_der: &[u8],
    ) -> Result<(), StoreError> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_certificate(&mut tx, certificate).await?;
        sqlx::query(
            "UPDATE devices SET certificate_serial = ?, certificate_expires_at = ?, public_key_der = ?
             WHERE id = ?",
        )
        .bind(&certificate.serial)
        .bind(certificate.not_after.unix_ms())
        .bind(public_key_der)
        .bind(device.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn revoked_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > ?",
        )
        .bind(now.unix_ms())
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn set_device_posture(
        &self,
        device: DeviceId,
        field: crate::store::PostureField,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        use crate::store::PostureField;
        let sql = match field {
            PostureField::Inventory => "UPDATE devices SET inventory = ? WHERE id = ?",
            PostureField::Disabled => "UPDATE devices SET disabled = ? WHERE id = ?",
            PostureField::Enforcement => "UPDATE devices SET enforcement = ? WHERE id = ?",
        };
        let _writing = self.writer.lock().await;
        let result = sqlx::query(sql)
            .bind(json)
            .bind(device.to_string())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(result.rows_affected() == 1)
    }

    async fn swap_device_posture(
        &self,
        device: DeviceId,
        field: crate::store::PostureField,
        expected: Option<&str>,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        use crate::store::PostureField;
        let sql = match field {
            PostureField::Inventory => {
                "UPDATE devices SET inventory = ?1 WHERE id = ?2 AND inventory IS ?3"
            }
            PostureField::Disabled => {
                "UPDATE devices SET disabled = ?1 WHERE id = ?2 AND disabled IS ?3"
            }
            PostureField::Enforcement => {
                "UPDATE devices SET enforcement = ?1 WHERE id = ?2 AND enforcement IS ?3"
            }
        };
        let _writing = self.writer.lock().await;
        let result = sqlx::query(sql)
            .bind(json)
            .bind(device.to_string())
            .bind(expected)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(result.rows_affected() == 1)
    }

    async fn set_device_state(
        &self,
        device: DeviceId,
        state: crate::core::DeviceState,
    ) -> Result<bool, StoreError> {
        let _writing = self.writer.lock().await;
        let result = sqlx::query("UPDATE devices SET state = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(device.to_string())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(result.rows_affected() == 1)
    }

    async fn record_offline_wipe(
        &self,
        device: DeviceId,
        wipe: &crate::core::OfflineWipe,
        receipt: &ward_certs::receipt::SignedReceipt,
    ) -> Result<bool, StoreError> {
        let _writing = self.writer.lock().await;
        let result = sqlx::query(
            "UPDATE devices SET offline_wipe_at = ?, offline_wipe_verified = ?,
                 offline_wipe_receipt = ?, offline_wipe_signature = ?
             WHERE id = ?",
        )
        .bind(wipe.at.unix_ms())
        .bind(wipe.verified)
        .bind(&receipt.body)
        .bind(&receipt.signature)
        .bind(device.to_string())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(result.rows_affected() == 1)
    }

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM certificates WHERE serial = ?")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::certificate).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::AdminRole;

    #[tokio::test]
    async fn store_is_durable_wal_with_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ward.db"))
            .await
            .unwrap();
        let (journal, synchronous) = store.durability().await.unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(synchronous, 2, "PRAGMA synchronous must be FULL (2)");
    }

    #[tokio::test]
    async fn reopening_applies_no_migration_twice_and_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ward.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let admin = Admin {
            name: "root".parse().unwrap(),
            role: AdminRole::Admin,
            created_at: Timestamp::from_unix_ms(1),
            created_by: "init".into(),
        };
        let cert = CertificateRecord {
            serial: "01".into(),
            subject: "ward://admin/root".into(),
            not_before: Timestamp::from_unix_ms(0),
            not_after: Timestamp::from_unix_ms(10),
            issued_at: Timestamp::from_unix_ms(1),
            revoked_at: None,
        };
        store.insert_admin(&admin, &cert).await.unwrap();
        assert!(matches!(
            store.insert_admin(&admin, &cert).await,
            Err(StoreError::AlreadyExists(_))
        ));
        store.close().await;
        let again = SqliteStore::open(&path).await.unwrap();
        assert_eq!(again.list_admins().await.unwrap(), vec![admin]);
        assert_eq!(again.get_certificate("01").await.unwrap(), Some(cert));
    }
}
