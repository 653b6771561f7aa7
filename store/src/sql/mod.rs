//! The store in SQL, written once for SQLite and PostgreSQL (sqlx's `Any` driver; both bind
//! `$N` by number). Per backend there is only what truly differs: connection settings and
//! durability checks ([`sqlite`], [`postgres`]), how a policy revision is numbered, and
//! PostgreSQL's `LISTEN/NOTIFY` between replicas. Every write commits before it returns, so
//! an answer to a client is never ahead of the disk.

mod admins;
mod audit;
mod ca_rotation;
mod certificates;
mod commands;
mod device_keys;
mod devices;
mod engine;
mod export_cursor;
mod placeholders;
mod policies;
mod postgres;
mod scim;
mod sqlite;
mod tokens;
mod webhooks;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Transaction};
use sqlx::{AnyConnection, AnyPool};
use ward_certs::AdminName;

pub use postgres::PgDurability;

use super::{
    Announcement, Announcements, AuditFilter, BatchSettings, HeadSigner, HeadVerifier, Store,
    StoreError, Writer,
};
use crate::rows::db;
use ward_core::admins::AdminRequest;
use ward_core::audit::{Appended, AuditEntry, AuditEvent, AuditHead};
use ward_core::ca_rotation::CaRecord;
use ward_core::directory::{DirectoryUser, ScimClient};
use ward_core::{
    Admin, CertificateRecord, Command, CommandId, CommandState, Device, DeviceBrief, DeviceId,
    DeviceKey, PolicyRule, PolicyScope, Timestamp, TokenHash, TokenRecord, UserEmail,
};

/// Which database a [`SqlStore`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The durability settings in force, as the database reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durability {
    /// (journal_mode, synchronous); Ward runs "wal" and 2 (FULL).
    Sqlite {
        journal_mode: String,
        synchronous: i64,
    },
    Postgres(PgDurability),
}

/// The writer's lanes on PostgreSQL, each holding a connection of its own for its
/// transactions (the pool has one for each lane besides `postgres::READ_CONNECTIONS`): while one waits for a round trip, the others work. SQLite has one write lock,
/// so one lane. Lanes after the first yield to it on a contended row
/// ([`engine::SqlEngine::yielding`]): a check-in that meets one is refused as busy.
pub const POSTGRES_WRITER_LANES: usize = 4;

#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: the connections that listen for and send replica announcements.
    notify: Option<sqlx::PgPool>,
    /// Names this store's announcements, so it does not act on its own when they come back.
    origin: String,
    /// Every change goes through here (group commit).
    writer: Writer,
    keeper: super::AuditKeeperSlot,
    /// The audit appends that do not yet go through the writer queue here, so this process
    /// never sleeps in SQLite's busy handler waiting for its own lock.
    legacy: Arc<tokio::sync::Mutex<()>>,
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path` and applies pending
    /// migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        install_drivers();
        let pool = sqlite::open(path).await?;
        // One write lock: one lane.
        Ok(Self::with_writer(pool, Backend::Sqlite, None, 1))
    }

    /// Connects to the PostgreSQL database at `url` and applies pending migrations; its writer
    /// has [`POSTGRES_WRITER_LANES`] lanes.
    pub async fn connect_postgres(url: &str) -> Result<Self, StoreError> {
        Self::connect_postgres_with_lanes(url, POSTGRES_WRITER_LANES).await
    }

    /// The same with `lanes` writer lanes (1 to [`crate::writer::MAX_LANES`]; `wardctl serve
    /// --write-lanes`).
    pub async fn connect_postgres_with_lanes(url: &str, lanes: usize) -> Result<Self, StoreError> {
        if !(1..=crate::writer::MAX_LANES).contains(&lanes) {
            return Err(StoreError::Database(format!(
                "{lanes} writer lanes: 1 to {} are possible",
                crate::writer::MAX_LANES
            )));
        }
        install_drivers();
        let (pool, notify) = postgres::connect(url, lanes).await?;
        Ok(Self::with_writer(
            pool,
            Backend::Postgres,
            Some(notify),
            lanes,
        ))
    }

    fn with_writer(
        pool: AnyPool,
        backend: Backend,
        notify: Option<sqlx::PgPool>,
        lanes: usize,
    ) -> Self {
        let keeper = super::AuditKeeperSlot::default();
        // The first lane runs admin calls and command results and waits for any lock; the
        // others run only check-ins, which yield.
        let engines = (0..lanes)
            .map(|lane| {
                let engine = engine::SqlEngine::new(pool.clone(), backend, keeper.clone());
                if lane == 0 { engine } else { engine.yielding() }
            })
            .collect();
        Self {
            writer: Writer::start_lanes(engines, BatchSettings::default()),
            keeper,
            pool,
            backend,
            notify,
            origin: uuid::Uuid::new_v4().simple().to_string(),
            legacy: Arc::default(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn durability(&self) -> Result<Durability, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => {
                let (journal_mode, synchronous) = sqlite::durability(&self.pool).await?;
                Durability::Sqlite {
                    journal_mode,
                    synchronous,
                }
            }
            Backend::Postgres => Durability::Postgres(postgres::durability(&self.pool).await?),
        })
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
        if let Some(notify) = &self.notify {
            notify.close().await;
        }
    }

    async fn read(&self) -> Result<PoolConnection<Any>, StoreError> {
        self.pool.acquire().await.map_err(db)
    }

    /// A write transaction, holding this process's SQLite writer slot while it lives.
    async fn write(&self) -> Result<Write, StoreError> {
        let slot = match self.backend {
            Backend::Sqlite => Some(Arc::clone(&self.legacy).lock_owned().await),
            Backend::Postgres => None,
        };
        Ok(Write {
            tx: self.pool.begin().await.map_err(db)?,
            _slot: slot,
        })
    }
}

/// A write in progress; dropped without [`Write::commit`], it rolls back.
struct Write {
    tx: Transaction<'static, Any>,
    _slot: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Write {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db)
    }
}

fn install_drivers() {
    // Idempotent: only the first call installs.
    sqlx::any::install_default_drivers();
}

#[async_trait]
impl Store for SqlStore {
    fn writer(&self) -> &Writer {
        &self.writer
    }

    async fn close(&self) {
        SqlStore::close(self).await;
    }

    fn audit_keeper(&self) -> &super::AuditKeeperSlot {
        &self.keeper
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        tokens::find(&mut *self.read().await?, hash).await
    }

    async fn list_usable_tokens(
        &self,
        user: Option<&UserEmail>,
        now: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        tokens::list_usable(&mut *self.read().await?, user, now).await
    }

    async fn get_device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        devices::get(&mut *self.read().await?, id).await
    }

    async fn list_devices(&self, user: Option<&UserEmail>) -> Result<Vec<Device>, StoreError> {
        devices::list(&mut *self.read().await?, user).await
    }

    async fn device_briefs(&self, user: &UserEmail) -> Result<Vec<DeviceBrief>, StoreError> {
        devices::briefs(&mut *self.read().await?, user).await
    }

    async fn get_admin(&self, name: &AdminName) -> Result<Option<Admin>, StoreError> {
        admins::get(&mut *self.read().await?, name).await
    }

    async fn list_admins(&self) -> Result<Vec<Admin>, StoreError> {
        admins::list(&mut *self.read().await?).await
    }

    async fn admin_request(
        &self,
        name: &AdminName,
        now: Timestamp,
    ) -> Result<Option<AdminRequest>, StoreError> {
        admins::request(&mut *self.read().await?, name, now).await
    }

    async fn list_admin_requests(&self, now: Timestamp) -> Result<Vec<AdminRequest>, StoreError> {
        admins::requests(&mut *self.read().await?, now).await
    }

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        certificates::get(&mut *self.read().await?, serial).await
    }

    async fn device_keys_of(
        &self,
        devices: &[DeviceId],
    ) -> Result<HashMap<DeviceId, Vec<DeviceKey>>, StoreError> {
        device_keys::list_many(&mut *self.read().await?, devices).await
    }

    async fn get_command(&self, id: CommandId) -> Result<Option<Command>, StoreError> {
        commands::get(&mut *self.read().await?, id).await
    }

    async fn command_by_key(&self, idempotency_key: &str) -> Result<Option<Command>, StoreError> {
        commands::by_key(&mut *self.read().await?, idempotency_key).await
    }

    async fn commands_by_key_prefix(&self, prefix: &str) -> Result<Vec<Command>, StoreError> {
        commands::by_key_prefix(&mut *self.read().await?, prefix).await
    }

    async fn list_commands(
        &self,
        device: Option<DeviceId>,
        state: Option<CommandState>,
    ) -> Result<Vec<Command>, StoreError> {
        commands::list(&mut *self.read().await?, device, state).await
    }

    async fn succeeded_wipes(&self, device: Option<DeviceId>) -> Result<Vec<Command>, StoreError> {
        commands::succeeded_wipes(&mut *self.read().await?, device).await
    }

    async fn commands_past_deadline(&self, now: Timestamp) -> Result<Vec<Command>, StoreError> {
        commands::past_deadline(&mut *self.read().await?, now).await
    }

    async fn unfinished_commands(&self, device: DeviceId) -> Result<Vec<Command>, StoreError> {
        commands::unfinished(&mut *self.read().await?, device).await
    }

    async fn get_policy(&self, scope: &PolicyScope) -> Result<Option<PolicyRule>, StoreError> {
        policies::get(&mut *self.read().await?, scope).await
    }

    async fn list_policies(&self) -> Result<Vec<PolicyRule>, StoreError> {
        policies::list(&mut *self.read().await?).await
    }

    async fn revoked_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        certificates::revoked_serials(&mut *self.read().await?, now).await
    }

    async fn live_certificates(
        &self,
        now: Timestamp,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        certificates::live(&mut *self.read().await?, now).await
    }

    async fn ca_records(&self) -> Result<Vec<CaRecord>, StoreError> {
        ca_rotation::list(&mut *self.read().await?).await
    }

    async fn replaced_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let mut conn = self.read().await?;
        let mut serials = device_keys::replaced(&mut conn, now).await?;
        serials.extend(admins::replaced(&mut conn, now).await?);
        Ok(serials)
    }

    async fn append_audit(
        &self,
        event: &AuditEvent,
        at: Timestamp,
        sign: &HeadSigner<'_>,
        verify_head: &HeadVerifier<'_>,
    ) -> Result<Appended, StoreError> {
        let mut w = self.write().await?;
        let key = super::ClosureKey { sign, verify_head };
        let (appended, _) = audit::append_all(w.conn(), &[(event.clone(), at)], &key).await?;
        w.commit().await?;
        Ok(appended)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        audit::list(&mut *self.read().await?, filter).await
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        audit::head(&mut *self.read().await?).await
    }

    async fn export_cursor(&self, name: &str) -> Result<u64, StoreError> {
        export_cursor::get(&mut *self.read().await?, name).await
    }

    async fn try_export_lease(
        &self,
        name: &str,
    ) -> Result<Option<Box<dyn super::Lease>>, StoreError> {
        match self.backend {
            // One process per SQLite data directory (`serve` locks it).
            Backend::Sqlite => Ok(Some(Box::new(super::SoleProcess))),
            Backend::Postgres => {
                // A session of its own, outside the pool: the lock lives as long as it does.
                let conn = self.read().await?.detach();
                let lease = export_cursor::PgLease::try_take(conn, name).await?;
                Ok(lease.map(|l| Box::new(l) as Box<dyn super::Lease>))
            }
        }
    }

    async fn list_webhooks(&self) -> Result<Vec<ward_core::webhook::Webhook>, StoreError> {
        webhooks::list(&mut *self.read().await?).await
    }

    async fn due_webhook_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<(ward_core::webhook::Delivery, super::WebhookTarget)>, StoreError> {
        webhooks::due(&mut *self.read().await?, now, limit).await
    }

    async fn webhook_deliveries(
        &self,
        webhook_id: Option<&str>,
        limit: u32,
    ) -> Result<
        Vec<(
            ward_core::webhook::Delivery,
            Vec<ward_core::webhook::Attempt>,
        )>,
        StoreError,
    > {
        webhooks::deliveries(&mut *self.read().await?, webhook_id, limit).await
    }

    async fn count_commands(&self) -> Result<Vec<(CommandState, u64)>, StoreError> {
        commands::count_by_state(&mut *self.read().await?).await
    }

    async fn scim_client_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<ScimClient>, StoreError> {
        scim::client_by_hash(&mut *self.read().await?, token_hash).await
    }

    async fn list_scim_clients(&self) -> Result<Vec<ScimClient>, StoreError> {
        scim::clients(&mut *self.read().await?).await
    }

    async fn list_directory_users(&self) -> Result<Vec<DirectoryUser>, StoreError> {
        scim::users(&mut *self.read().await?).await
    }

    async fn get_directory_user(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        scim::user_by_id(&mut *self.read().await?, id).await
    }

    async fn find_directory_user(
        &self,
        user: &UserEmail,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        scim::user_named(&mut *self.read().await?, user).await
    }

    async fn announce_all(&self, events: &[Announcement]) -> Result<(), StoreError> {
        match &self.notify {
            Some(pool) => postgres::announce_all(pool, &self.origin, events).await,
            None => Ok(()),
        }
    }

    async fn listen(&self) -> Result<Option<Announcements>, StoreError> {
        match &self.notify {
            Some(pool) => postgres::listen(pool, &self.origin).await.map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_core::AdminRole;

    #[tokio::test]
    async fn sqlite_is_durable_wal_with_synchronous_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open_sqlite(&dir.path().join("ward.db"))
            .await
            .unwrap();
        assert_eq!(
            store.durability().await.unwrap(),
            Durability::Sqlite {
                journal_mode: "wal".into(),
                synchronous: 2
            },
            "PRAGMA synchronous must be FULL (2)"
        );
    }

    #[tokio::test]
    async fn reopening_applies_no_migration_twice_and_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ward.db");
        let store = SqlStore::open_sqlite(&path).await.unwrap();
        let admin = Admin::new(
            "root".parse().unwrap(),
            AdminRole::Admin,
            Timestamp::from_unix_ms(1),
            "init",
        );
        let cert = CertificateRecord {
            serial: "01".into(),
            subject: "ward://admin/root".into(),
            not_before: Timestamp::from_unix_ms(0),
            not_after: Timestamp::from_unix_ms(10),
            issued_at: Timestamp::from_unix_ms(1),
            revoked_at: None,
            der: None,
        };
        store.insert_admin(&admin, &cert).await.unwrap();
        assert!(matches!(
            store.insert_admin(&admin, &cert).await,
            Err(StoreError::AlreadyExists(_))
        ));
        store.close().await;
        let again = SqlStore::open_sqlite(&path).await.unwrap();
        // Listed with the expiry of its certificate.
        let listed = Admin {
            expires_at: Some(cert.not_after),
            not_before: Some(cert.not_before),
            ..admin
        };
        assert_eq!(again.list_admins().await.unwrap(), vec![listed]);
        assert_eq!(again.get_certificate("01").await.unwrap(), Some(cert));
    }
}
