//! The PostgreSQL store, for production and for several controller replicas sharing one
//! database (`wardctl serve --database-url postgres://…`). The same behaviour as the SQLite
//! store; concurrency comes from row locks and conditional updates, not from a single writer.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The `LISTEN/NOTIFY` channel replicas talk on.
const CHANNEL: &str = "ward_events";

/// PostgreSQL's durability settings (`SHOW …`), each "on" when a commit survives a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgDurability {
    pub fsync: String,
    pub synchronous_commit: String,
    pub full_page_writes: String,
}

#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and applies pending migrations. Every session commits synchronously
    /// (`synchronous_commit=on`, whatever the server's or role's default), and a server
    /// running with `fsync=off` is refused: on either, a wipe the controller accepted could
    /// vanish in a power cut.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Database(format!("database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.options([("synchronous_commit", "on")]))
            .await
            .map_err(db)?;
        let store = Self { pool };
        let durability = store.durability().await?;
        if durability.fsync != "on" {
            return Err(StoreError::Database(
                "the PostgreSQL server runs with fsync=off, so committed commands can be lost in a crash; set fsync=on in postgresql.conf".into(),
            ));
        }
        MIGRATOR
            .run(&store.pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(store)
    }

    /// The durability settings of this store's sessions, as PostgreSQL reports them.
    pub async fn durability(&self) -> Result<PgDurability, StoreError> {
        let show = |name: &'static str| async move {
            sqlx::query_scalar::<_, String>(name)
                .fetch_one(&self.pool)
                .await
                .map_err(db)
        };
        Ok(PgDurability {
            fsync: show("SHOW fsync").await?,
            synchronous_commit: show("SHOW synchronous_commit").await?,
            full_page_writes: show("SHOW full_page_writes").await?,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn insert_certificate(
    tx: &mut Transaction<'_, Postgres>,
    cert: &CertificateRecord,
) -> Result<(), StoreError> {
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
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
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
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM enrollment_tokens WHERE token_hash = $1")
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The conditional UPDATE is the claim: SQLite serializes writers, so of concurrent
        // redemptions exactly one sees the row still unused.
        let claimed = sqlx::query(
            "UPDATE enrollment_tokens SET used_at = $1, device_id = $2
             WHERE token_hash = $3 AND used_at IS NULL AND expires_at > $4
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, $13)",
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
        sqlx::query("SELECT * FROM devices WHERE id = $1")
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
            "SELECT * FROM devices WHERE ($1::TEXT IS NULL OR user_email = $1)
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
        let result = sqlx::query(
            "UPDATE devices SET hostname = $1, os_name = $2, os_version = $3, kernel_version = $4,
                 arch = $5, agent_version = $6, last_seen = $7
             WHERE id = $8",
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let inserted = sqlx::query(
            "INSERT INTO admins (name, role, created_at, created_by) VALUES ($1, $2, $3, $4)
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
        sqlx::query("SELECT * FROM admins WHERE name = $1")
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
             WHERE used_at IS NULL AND expires_at > $1 AND ($2 IS NULL OR user_email = $3)
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
        let result = sqlx::query(
            "UPDATE enrollment_tokens SET expires_at = $1
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $3",
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
        let result = sqlx::query(
            "UPDATE enrollment_tokens SET expires_at = $1
             WHERE user_email = $2 AND used_at IS NULL AND expires_at > $3",
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
        policies::put(&self.pool, scope, policy, updated_by, now).await
    }

    async fn delete_policy(&self, scope: &PolicyScope) -> Result<bool, StoreError> {
        policies::delete(&self.pool, scope).await
    }

    async fn record_compliance(
        &self,
        device: DeviceId,
        compliance: &Compliance,
    ) -> Result<bool, StoreError> {
        policies::record_compliance(&self.pool, device, compliance).await
    }

    async fn append_audit(
        &self,
        event: &crate::core::audit::AuditEvent,
        at: Timestamp,
        sign: &crate::store::HeadSigner<'_>,
        verify_head: &crate::store::HeadVerifier<'_>,
    ) -> Result<crate::core::audit::AuditEntry, StoreError> {
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let found = sqlx::query(
            "UPDATE devices SET state = CASE WHEN state = 'retired' THEN state ELSE 'revoked' END
             WHERE id = $1",
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
            "UPDATE certificates SET revoked_at = $1 WHERE subject = $2 AND revoked_at IS NULL
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_certificate(&mut tx, certificate).await?;
        sqlx::query(
            "UPDATE devices SET certificate_serial = $1, certificate_expires_at = $2, public_key_der = $3
             WHERE id = $4",
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
            "SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > $1",
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
            PostureField::Inventory => "UPDATE devices SET inventory = $1 WHERE id = $2",
            PostureField::Disabled => "UPDATE devices SET disabled = $1 WHERE id = $2",
            PostureField::Enforcement => "UPDATE devices SET enforcement = $1 WHERE id = $2",
        };
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
                "UPDATE devices SET inventory = $1 WHERE id = $2 AND inventory IS NOT DISTINCT FROM $3"
            }
            PostureField::Disabled => {
                "UPDATE devices SET disabled = $1 WHERE id = $2 AND disabled IS NOT DISTINCT FROM $3"
            }
            PostureField::Enforcement => {
                "UPDATE devices SET enforcement = $1 WHERE id = $2 AND enforcement IS NOT DISTINCT FROM $3"
            }
        };
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
        let result = sqlx::query("UPDATE devices SET state = $1 WHERE id = $2")
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
        let result = sqlx::query(
            "UPDATE devices SET offline_wipe_at = $1, offline_wipe_verified = $2,
                 offline_wipe_receipt = $3, offline_wipe_signature = $4
             WHERE id = $5",
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

    async fn announce(&self, event: super::Announcement) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(event.to_payload())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn listen(&self) -> Result<Option<super::Announcements>, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(db)?;
        listener.listen(CHANNEL).await.map_err(db)?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(note) => {
                        if let Some(event) = super::Announcement::from_payload(note.payload())
                            && tx.send(event).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        // PgListener reconnects on the next recv; notifications sent meanwhile
                        // are lost, which the periodic refresh covers.
                        tracing::warn!(error = %e, "lost the PostgreSQL notification connection; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM certificates WHERE serial = $1")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(rows::certificate).transpose()
    }
}
