//! The store in SQL, written once for SQLite and PostgreSQL (sqlx's `Any` driver; both bind
//! `$N` by number). Per backend there is only what truly differs: connection settings and
//! durability checks ([`sqlite`], [`postgres`]), how a policy revision is numbered, and
//! PostgreSQL's `LISTEN/NOTIFY` between replicas. Every write commits before it returns, so
//! an answer to a client is never ahead of the disk.

mod audit;
mod certificates;
mod commands;
mod devices;
mod policies;
mod postgres;
mod sqlite;
mod tokens;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Transaction};
use sqlx::{AnyConnection, AnyPool};
use ward_certs::AdminName;

pub use postgres::PgDurability;

use super::{
    Announcement, Announcements, AuditFilter, HeadSigner, HeadVerifier, PostureField, Redemption,
    Store, StoreError,
};
use crate::core::audit::{AuditEntry, AuditEvent, AuditHead};
use crate::core::{
    Admin, CertificateRecord, Command, CommandId, CommandState, Compliance, Device, DeviceFacts,
    DeviceId, DeviceState, NewDevice, OfflineWipe, Policy, PolicyScope, StoredPolicy, Timestamp,
    TokenHash, TokenRecord, UserEmail,
};
use crate::store::rows::db;

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

#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL: the connections that listen for and send replica announcements.
    notify: Option<sqlx::PgPool>,
    /// SQLite lets one connection write at a time; a writer that finds the lock taken sleeps
    /// in SQLite's busy handler (1 to 100 ms at a time), so under load a write could wait
    /// hundreds of milliseconds for a lock that was free most of that time. This process's
    /// writers queue here instead. PostgreSQL has row locks and needs no queue.
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path` and applies pending
    /// migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        install_drivers();
        Ok(Self {
            pool: sqlite::open(path).await?,
            backend: Backend::Sqlite,
            notify: None,
            writer: Arc::default(),
        })
    }

    /// Connects to the PostgreSQL database at `url` and applies pending migrations.
    pub async fn connect_postgres(url: &str) -> Result<Self, StoreError> {
        install_drivers();
        let (pool, notify) = postgres::connect(url).await?;
        Ok(Self {
            pool,
            backend: Backend::Postgres,
            notify: Some(notify),
            writer: Arc::default(),
        })
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
            Backend::Sqlite => Some(Arc::clone(&self.writer).lock_owned().await),
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
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        tokens::insert(w.conn(), token).await?;
        w.commit().await
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        tokens::find(&mut *self.read().await?, hash).await
    }

    async fn redeem_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        device: &NewDevice,
    ) -> Result<Redemption, StoreError> {
        let mut w = self.write().await?;
        match tokens::redeem(w.conn(), hash, now, device).await? {
            Some(user) => {
                w.commit().await?;
                Ok(Redemption::Enrolled { user })
            }
            None => tokens::refusal(w.conn(), hash, now).await,
        }
    }

    async fn get_device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        devices::get(&mut *self.read().await?, id).await
    }

    async fn list_devices(&self, user: Option<&UserEmail>) -> Result<Vec<Device>, StoreError> {
        devices::list(&mut *self.read().await?, user).await
    }

    async fn record_check_in(
        &self,
        id: DeviceId,
        facts: &DeviceFacts,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let found = devices::record_check_in(w.conn(), id, facts, now).await?;
        w.commit().await?;
        Ok(found)
    }

    async fn insert_admin(
        &self,
        admin: &Admin,
        certificate: &CertificateRecord,
    ) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        if !certificates::insert_admin(w.conn(), admin, certificate).await? {
            return Err(StoreError::AlreadyExists(format!("admin {}", admin.name)));
        }
        w.commit().await
    }

    async fn get_admin(&self, name: &AdminName) -> Result<Option<Admin>, StoreError> {
        certificates::get_admin(&mut *self.read().await?, name).await
    }

    async fn list_admins(&self) -> Result<Vec<Admin>, StoreError> {
        certificates::list_admins(&mut *self.read().await?).await
    }

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        certificates::get(&mut *self.read().await?, serial).await
    }

    async fn insert_command(&self, command: &Command) -> Result<(Command, bool), StoreError> {
        let mut w = self.write().await?;
        let inserted = commands::insert(w.conn(), command).await?;
        w.commit().await?;
        Ok(inserted)
    }

    async fn get_command(&self, id: CommandId) -> Result<Option<Command>, StoreError> {
        commands::get(&mut *self.read().await?, id).await
    }

    async fn command_by_key(&self, idempotency_key: &str) -> Result<Option<Command>, StoreError> {
        commands::by_key(&mut *self.read().await?, idempotency_key).await
    }

    async fn expire_unused_tokens(
        &self,
        user: &UserEmail,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut w = self.write().await?;
        let expired = tokens::expire_unused(w.conn(), user, now).await?;
        w.commit().await?;
        Ok(expired)
    }

    async fn list_commands(
        &self,
        device: Option<DeviceId>,
        state: Option<CommandState>,
    ) -> Result<Vec<Command>, StoreError> {
        commands::list(&mut *self.read().await?, device, state).await
    }

    async fn unfinished_commands(&self, device: DeviceId) -> Result<Vec<Command>, StoreError> {
        commands::unfinished(&mut *self.read().await?, device).await
    }

    async fn update_command(
        &self,
        expected: CommandState,
        next: &Command,
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let updated = commands::update(w.conn(), expected, next).await?;
        w.commit().await?;
        Ok(updated)
    }

    async fn get_policy(&self, scope: &PolicyScope) -> Result<Option<StoredPolicy>, StoreError> {
        policies::get(&mut *self.read().await?, scope).await
    }

    async fn put_policy(
        &self,
        scope: &PolicyScope,
        policy: &Policy,
        updated_by: &str,
        now: Timestamp,
    ) -> Result<StoredPolicy, StoreError> {
        let mut w = self.write().await?;
        let stored = policies::put(w.conn(), self.backend, scope, policy, updated_by, now).await?;
        w.commit().await?;
        Ok(stored)
    }

    async fn delete_policy(&self, scope: &PolicyScope) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let deleted = policies::delete(w.conn(), scope).await?;
        w.commit().await?;
        Ok(deleted)
    }

    async fn record_compliance(
        &self,
        device: DeviceId,
        compliance: &Compliance,
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let found = policies::record_compliance(w.conn(), device, compliance).await?;
        w.commit().await?;
        Ok(found)
    }

    async fn revoke_device(
        &self,
        device: DeviceId,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let mut w = self.write().await?;
        let serials = devices::revoke(w.conn(), device, now).await?;
        if serials.is_some() {
            w.commit().await?;
        }
        Ok(serials)
    }

    async fn record_renewal(
        &self,
        device: DeviceId,
        certificate: &CertificateRecord,
        public_key_der: &[u8],
    ) -> Result<(), StoreError> {
        let mut w = self.write().await?;
        devices::record_renewal(w.conn(), device, certificate, public_key_der).await?;
        w.commit().await
    }

    async fn revoked_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        certificates::revoked_serials(&mut *self.read().await?, now).await
    }

    async fn set_device_posture(
        &self,
        device: DeviceId,
        field: PostureField,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let found = devices::set_posture(w.conn(), device, field, json).await?;
        w.commit().await?;
        Ok(found)
    }

    async fn swap_device_posture(
        &self,
        device: DeviceId,
        field: PostureField,
        expected: Option<&str>,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let swapped = devices::swap_posture(w.conn(), device, field, expected, json).await?;
        w.commit().await?;
        Ok(swapped)
    }

    async fn set_device_state(
        &self,
        device: DeviceId,
        state: DeviceState,
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let found = devices::set_state(w.conn(), device, state).await?;
        w.commit().await?;
        Ok(found)
    }

    async fn record_offline_wipe(
        &self,
        device: DeviceId,
        wipe: &OfflineWipe,
        receipt: &ward_certs::receipt::SignedReceipt,
    ) -> Result<bool, StoreError> {
        let mut w = self.write().await?;
        let found = devices::record_offline_wipe(w.conn(), device, wipe, receipt).await?;
        w.commit().await?;
        Ok(found)
    }

    async fn append_audit(
        &self,
        event: &AuditEvent,
        at: Timestamp,
        sign: &HeadSigner<'_>,
        verify_head: &HeadVerifier<'_>,
    ) -> Result<AuditEntry, StoreError> {
        let mut w = self.write().await?;
        let entry = audit::append(w.conn(), event, at, sign, verify_head).await?;
        w.commit().await?;
        Ok(entry)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        audit::list(&mut *self.read().await?, filter).await
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        audit::head(&mut *self.read().await?).await
    }

    async fn count_commands(&self) -> Result<Vec<(CommandState, u64)>, StoreError> {
        commands::count_by_state(&mut *self.read().await?).await
    }

    async fn announce(&self, event: Announcement) -> Result<(), StoreError> {
        match &self.notify {
            Some(pool) => postgres::announce(pool, event).await,
            None => Ok(()),
        }
    }

    async fn listen(&self) -> Result<Option<Announcements>, StoreError> {
        match &self.notify {
            Some(pool) => postgres::listen(pool).await.map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::AdminRole;

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
        let again = SqlStore::open_sqlite(&path).await.unwrap();
        assert_eq!(again.list_admins().await.unwrap(), vec![admin]);
        assert_eq!(again.get_certificate("01").await.unwrap(), Some(cert));
    }
}
