//! The writer's side of the SQL store: one connection, one transaction per batch, and the
//! [`Tx`] jobs see, written over the same SQL functions as every other path.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};
use ward_certs::AdminName;

use super::{
    Backend, admins, audit, ca_rotation, certificates, commands, device_keys, devices,
    export_cursor, policies, scim, tokens, webhooks,
};
use crate::rows::db;
use crate::tx::{CheckInWrite, TokenClaim, Tx};
use crate::writer::Engine;
use crate::{AuditKeeperSlot, PostureField, StoreError};
use ward_core::admins::{AdminRequest, RevokeOutcome};
use ward_core::audit::AuditEvent;
use ward_core::ca_rotation::CaState;
use ward_core::directory::{DirectoryUser, ScimClient};
use ward_core::webhook::{Attempt, Delivery, Next, Webhook};
use ward_core::{
    Admin, CertificateRecord, Command, CommandId, CommandVersion, Compliance, Device, DeviceBrief,
    DeviceId, DeviceKey, DeviceState, KeySwitch, OfflineWipe, PolicyBody, PolicyRule, PolicyScope,
    RenewalConflict, Timestamp, TokenHash, TokenRecord, UserEmail,
};

/// How long a check-in lane's statement waits for a row lock ([`SqlEngine::yielding`]).
pub(super) const CHECK_IN_LOCK_WAIT: &str = "50ms";

pub(super) struct SqlEngine {
    pool: AnyPool,
    backend: Backend,
    conn: Option<PoolConnection<Any>>,
    audit: Vec<(AuditEvent, Timestamp)>,
    /// PostgreSQL: how long a statement may wait for a row lock before it fails (`lock_timeout`,
    /// for this lane's transactions only); `None` waits as long as the database lets it.
    lock_wait: Option<&'static str>,
    /// Signs the audit head when a batch recorded audit entries (set once the controller's
    /// key is known).
    keeper: AuditKeeperSlot,
}

impl SqlEngine {
    pub(super) fn new(pool: AnyPool, backend: Backend, keeper: AuditKeeperSlot) -> Self {
        Self {
            pool,
            backend,
            conn: None,
            audit: Vec::new(),
            lock_wait: None,
            keeper,
        }
    }

    /// A lane for check-ins (PostgreSQL): a statement that waits longer than
    /// [`CHECK_IN_LOCK_WAIT`] for a row another lane or replica holds fails, so the check-in
    /// is refused as busy (its agent tries again) rather than holding up, or deadlocking with,
    /// the lane that runs admin calls and command results.
    pub(super) fn yielding(mut self) -> Self {
        self.lock_wait = Some(CHECK_IN_LOCK_WAIT);
        self
    }

    fn conn(&mut self) -> Result<&mut sqlx::AnyConnection, StoreError> {
        self.conn
            .as_deref_mut()
            .ok_or_else(|| StoreError::Database("the writer has no connection".into()))
    }
}

#[async_trait]
impl Engine for SqlEngine {
    async fn begin(&mut self) -> Result<(), StoreError> {
        // SQLite: take the write lock now rather than at the first write, so a batch never
        // has to upgrade a read lock another process's write invalidated.
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        self.audit.clear();
        for attempt in 0..2 {
            if self.conn.is_none() {
                self.conn = Some(self.pool.acquire().await.map_err(db)?);
            }
            match sqlx::query(begin).execute(self.conn()?).await {
                Ok(_) => {
                    if let (Some(wait), Backend::Postgres) = (self.lock_wait, self.backend) {
                        // For this transaction only (`is_local`): the connection goes back to
                        // the pool as it came.
                        let set = sqlx::query("SELECT set_config('lock_timeout', $1, true)")
                            .bind(wait)
                            .execute(self.conn()?)
                            .await;
                        if let Err(e) = set {
                            // A transaction half begun: the next batch starts on a fresh
                            // connection.
                            self.conn = None;
                            return Err(db(e));
                        }
                    }
                    return Ok(());
                }
                // A broken connection: take a fresh one and try once more.
                Err(e) if attempt == 0 => {
                    tracing::warn!(error = %e, "the store writer's connection failed; reconnecting");
                    self.conn = None;
                }
                Err(e) => return Err(db(e)),
            }
        }
        Err(StoreError::Database("cannot begin a transaction".into()))
    }

    fn tx(&mut self) -> &mut dyn Tx {
        self
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        let events = std::mem::take(&mut self.audit);
        let appended = if events.is_empty() {
            None
        } else {
            let keeper = self.keeper.get().cloned().ok_or_else(|| {
                StoreError::Database("no key to sign the audit head with yet".into())
            })?;
            if self.lock_wait.is_some() {
                // A check-in lane yields rows, not the audit head: waiting for another lane's
                // or replica's commit to release it is the chain's order, and giving up would
                // refuse the whole batch.
                sqlx::query("SELECT set_config('lock_timeout', '0', true)")
                    .execute(self.conn()?)
                    .await
                    .map_err(db)?;
            }
            let (plan, entries) = audit::append_all(self.conn()?, &events, keeper.as_ref()).await?;
            // The events these changes raise, in their transaction: none without the other.
            webhooks::enqueue(self.conn()?, &entries).await?;
            Some((keeper, plan, entries.len() as u64))
        };
        sqlx::query("COMMIT")
            .execute(self.conn()?)
            .await
            .map_err(db)?;
        if let Some((keeper, plan, count)) = appended {
            let chain_break = plan.chain_break.as_ref().map(|(found, e)| (found, e.seq));
            keeper.appended(count, chain_break);
        }
        Ok(())
    }

    async fn rollback(&mut self) {
        self.audit.clear();
        let Some(conn) = self.conn.as_deref_mut() else {
            return;
        };
        if let Err(e) = sqlx::query("ROLLBACK").execute(conn).await {
            // The connection is in an unknown state: drop it, the next batch reconnects.
            tracing::warn!(error = %e, "the store writer could not roll back; reconnecting");
            self.conn = None;
        }
    }
}

#[async_trait]
impl Tx for SqlEngine {
    async fn device(&mut self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        devices::get(self.conn()?, id).await
    }

    async fn device_locked(&mut self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        // A lane without a wait of its own waits as long as it takes ('0').
        let (backend, lane_wait) = (self.backend, self.lock_wait.unwrap_or("0"));
        devices::get_locked(self.conn()?, backend, id, lane_wait).await
    }

    async fn device_briefs(&mut self, user: &UserEmail) -> Result<Vec<DeviceBrief>, StoreError> {
        devices::briefs(self.conn()?, user).await
    }

    async fn token(&mut self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        tokens::find(self.conn()?, hash).await
    }

    async fn admin(&mut self, name: &AdminName) -> Result<Option<Admin>, StoreError> {
        admins::get(self.conn()?, name).await
    }

    async fn certificate(&mut self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        certificates::get(self.conn()?, serial).await
    }

    async fn command(&mut self, id: CommandId) -> Result<Option<Command>, StoreError> {
        commands::get(self.conn()?, id).await
    }

    async fn device_keys(&mut self, device: DeviceId) -> Result<Vec<DeviceKey>, StoreError> {
        device_keys::list(self.conn()?, device).await
    }

    async fn command_by_key(&mut self, key: &str) -> Result<Option<Command>, StoreError> {
        commands::by_key(self.conn()?, key).await
    }

    async fn commands(&mut self, ids: &[CommandId]) -> Result<Vec<Command>, StoreError> {
        commands::get_many(self.conn()?, ids).await
    }

    async fn update_commands(
        &mut self,
        changes: &[(CommandVersion, Command)],
    ) -> Result<Vec<CommandId>, StoreError> {
        commands::update_many(self.conn()?, changes).await
    }

    async fn unfinished_commands(&mut self, device: DeviceId) -> Result<Vec<Command>, StoreError> {
        commands::unfinished(self.conn()?, device).await
    }

    async fn unfinished_commands_of(
        &mut self,
        devices: &[DeviceId],
    ) -> Result<HashMap<DeviceId, Vec<Command>>, StoreError> {
        commands::unfinished_of(self.conn()?, devices).await
    }

    async fn policy(&mut self, scope: &PolicyScope) -> Result<Option<PolicyRule>, StoreError> {
        policies::get(self.conn()?, scope).await
    }

    async fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        tokens::insert(self.conn()?, token).await
    }

    async fn redeem_tokens(
        &mut self,
        claims: &[TokenClaim<'_>],
    ) -> Result<Vec<Option<UserEmail>>, StoreError> {
        tokens::redeem_many(self.conn()?, claims).await
    }

    async fn expire_unused_tokens(
        &mut self,
        user: &UserEmail,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        tokens::expire_unused(self.conn()?, user, now).await
    }

    async fn expire_token(&mut self, hash: &TokenHash, now: Timestamp) -> Result<bool, StoreError> {
        tokens::expire_one(self.conn()?, hash, now).await
    }

    async fn record_check_ins(
        &mut self,
        writes: &[CheckInWrite<'_>],
    ) -> Result<Vec<Option<Device>>, StoreError> {
        CheckInWrite::each_device_once(writes)?;
        devices::check_in_many(self.conn()?, writes).await
    }

    async fn insert_admin(
        &mut self,
        admin: &Admin,
        certificate: &CertificateRecord,
    ) -> Result<bool, StoreError> {
        admins::insert(self.conn()?, admin, certificate).await
    }

    async fn insert_command(&mut self, command: &Command) -> Result<(Command, bool), StoreError> {
        commands::insert(self.conn()?, command).await
    }

    async fn insert_commands(
        &mut self,
        commands: &[Command],
    ) -> Result<Vec<(Command, bool)>, StoreError> {
        commands::insert_many(self.conn()?, commands).await
    }

    async fn update_command(
        &mut self,
        expected: CommandVersion,
        next: &Command,
    ) -> Result<bool, StoreError> {
        commands::update(self.conn()?, expected, next).await
    }

    async fn put_policy(
        &mut self,
        scope: &PolicyScope,
        body: &PolicyBody,
        updated_by: &str,
        now: Timestamp,
    ) -> Result<PolicyRule, StoreError> {
        let backend = self.backend;
        policies::put(self.conn()?, backend, scope, body, updated_by, now).await
    }

    async fn delete_policy(&mut self, scope: &PolicyScope) -> Result<bool, StoreError> {
        policies::delete(self.conn()?, scope).await
    }

    async fn record_compliance(
        &mut self,
        device: DeviceId,
        compliance: &Compliance,
    ) -> Result<bool, StoreError> {
        policies::record_compliance(self.conn()?, device, compliance).await
    }

    async fn revoke_devices(
        &mut self,
        devices: &[DeviceId],
        now: Timestamp,
    ) -> Result<HashMap<DeviceId, Vec<String>>, StoreError> {
        devices::revoke_many(self.conn()?, devices, now).await
    }

    async fn record_renewal(
        &mut self,
        device: DeviceId,
        certificate: &CertificateRecord,
        public_key_der: &[u8],
    ) -> Result<(), StoreError> {
        devices::record_renewal(self.conn()?, device, certificate, public_key_der).await
    }

    async fn switch_key(
        &mut self,
        device: DeviceId,
        serial: &str,
        now: Timestamp,
    ) -> Result<Option<KeySwitch>, StoreError> {
        device_keys::switch(self.conn()?, device, serial, now).await
    }

    async fn flag_renewal_conflict(
        &mut self,
        device: DeviceId,
        conflict: &RenewalConflict,
    ) -> Result<bool, StoreError> {
        device_keys::flag_conflict(self.conn()?, device, conflict).await
    }

    async fn set_device_posture(
        &mut self,
        device: DeviceId,
        field: PostureField,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        devices::set_posture(self.conn()?, device, field, json).await
    }

    async fn swap_device_posture(
        &mut self,
        device: DeviceId,
        field: PostureField,
        expected: Option<&str>,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        devices::swap_posture(self.conn()?, device, field, expected, json).await
    }

    async fn set_device_state(
        &mut self,
        device: DeviceId,
        state: DeviceState,
    ) -> Result<bool, StoreError> {
        devices::set_state(self.conn()?, device, state).await
    }

    async fn record_offline_wipe(
        &mut self,
        device: DeviceId,
        wipe: &OfflineWipe,
        receipt: &ward_certs::receipt::SignedReceipt,
    ) -> Result<bool, StoreError> {
        devices::record_offline_wipe(self.conn()?, device, wipe, receipt).await
    }

    async fn renew_admin(
        &mut self,
        name: &AdminName,
        certificate: &CertificateRecord,
        certificate_by: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError> {
        admins::renew(self.conn()?, name, certificate, certificate_by, now).await
    }

    async fn revoke_admin(
        &mut self,
        name: &AdminName,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<RevokeOutcome, StoreError> {
        let backend = self.backend;
        admins::revoke(self.conn()?, backend, name, by, reason, now).await
    }

    async fn open_admin_request(
        &mut self,
        request: &AdminRequest,
        now: Timestamp,
    ) -> Result<AdminRequest, StoreError> {
        let backend = self.backend;
        admins::open_request(self.conn()?, backend, request, now).await
    }

    async fn approve_admin_request(
        &mut self,
        id: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        admins::approve_request(self.conn()?, id, by, now).await
    }

    async fn use_admin_request(&mut self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        admins::use_request(self.conn()?, id, now).await
    }

    async fn withdraw_ca_rotation_requests(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let backend = self.backend;
        admins::withdraw_ca_rotation_requests(self.conn()?, backend, now).await
    }

    async fn set_export_cursor(
        &mut self,
        name: &str,
        seq: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        export_cursor::set(self.conn()?, name, seq, now).await
    }

    async fn ca_records(&mut self) -> Result<Vec<ward_core::ca_rotation::CaRecord>, StoreError> {
        ca_rotation::list(self.conn()?).await
    }

    async fn set_ca_state(
        &mut self,
        hash: &str,
        state: CaState,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        ca_rotation::set(self.conn()?, hash, state, now).await
    }

    async fn insert_webhook(&mut self, hook: &Webhook) -> Result<(), StoreError> {
        webhooks::insert(self.conn()?, hook).await
    }

    async fn delete_webhook(&mut self, id: &str) -> Result<bool, StoreError> {
        webhooks::delete(self.conn()?, id).await
    }

    async fn record_webhook_attempt(
        &mut self,
        delivery: &Delivery,
        attempt: &Attempt,
        next: Next,
    ) -> Result<(), StoreError> {
        webhooks::record_attempt(self.conn()?, delivery, attempt, next).await
    }

    async fn scim_client(&mut self, name: &AdminName) -> Result<Option<ScimClient>, StoreError> {
        scim::client_named(self.conn()?, name).await
    }

    async fn insert_scim_client(&mut self, client: &ScimClient) -> Result<bool, StoreError> {
        scim::insert_client(self.conn()?, client).await
    }

    async fn revoke_scim_client(
        &mut self,
        name: &AdminName,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        scim::revoke_client(self.conn()?, name, by, now).await
    }

    async fn directory_user(
        &mut self,
        id: uuid::Uuid,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        scim::user_by_id(self.conn()?, id).await
    }

    async fn directory_user_named(
        &mut self,
        user: &UserEmail,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        scim::user_named(self.conn()?, user).await
    }

    async fn directory_user_by_user_name(
        &mut self,
        user_name: &str,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        scim::user_by_user_name(self.conn()?, user_name).await
    }

    async fn put_directory_user(&mut self, user: &DirectoryUser) -> Result<(), StoreError> {
        scim::put_user(self.conn()?, user).await
    }

    fn audit(&mut self, event: AuditEvent, at: Timestamp) {
        self.audit.push((event, at));
    }
}
