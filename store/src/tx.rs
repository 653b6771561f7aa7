//! A unit of work in the writer's transaction.
//!
//! Every change to the store is a [`Job`]: a function over a [`Tx`] that reads what it needs,
//! writes, and records its audit entries. The writer runs many callers' jobs in one
//! transaction and commits once (group commit); a caller is answered only after the commit
//! that holds its change, and a change commits together with its audit entries or not at all.
//!
//! A job may run more than once: when another job of its batch fails, the batch is rolled
//! back and run again without the failed one. Jobs therefore do nothing but store work (no
//! network, no signing, no side effects outside the [`Tx`]); what must happen after the
//! commit (waking a device's stream, telling other replicas) the caller does once `write`
//! returns.

use std::collections::HashMap;

use async_trait::async_trait;
use futures::future::BoxFuture;
use ward_certs::AdminName;

use super::{PostureField, StoreError};
use ward_core::admins::{AdminRequest, RevokeOutcome};
use ward_core::audit::AuditEvent;
use ward_core::directory::{DirectoryUser, ScimClient};
use ward_core::webhook::{Attempt, Delivery, Next, Webhook};
use ward_core::{
    Admin, CertificateRecord, Command, CommandId, CommandVersion, Compliance, Device, DeviceBrief,
    DeviceFacts, DeviceId, DeviceKey, DeviceState, KeySwitch, NewDevice, OfflineWipe, PolicyBody,
    PolicyRule, PolicyScope, RenewalConflict, Timestamp, TokenHash, TokenRecord, UserEmail,
};

/// One device's check-in, as [`Tx::record_check_ins`] writes it.
#[derive(Clone, Copy, Debug)]
pub struct CheckInWrite<'a> {
    pub id: DeviceId,
    /// `None` keeps the facts on record.
    pub facts: Option<&'a DeviceFacts>,
    /// `None` keeps the report on record.
    pub compliance: Option<&'a Compliance>,
    /// The device's last-seen time.
    pub now: Timestamp,
}

impl CheckInWrite<'_> {
    /// Refuses `writes` that name a device twice (its two writes' order would be the
    /// database's to choose).
    pub fn each_device_once(writes: &[Self]) -> Result<(), StoreError> {
        let mut seen = std::collections::HashSet::with_capacity(writes.len());
        if writes.iter().all(|w| seen.insert(w.id)) {
            Ok(())
        } else {
            Err(StoreError::Database(
                "a device's check-in was written twice in one statement".into(),
            ))
        }
    }
}

/// One enrollment's claim of its token, as [`Tx::redeem_tokens`] writes it.
#[derive(Clone, Copy, Debug)]
pub struct TokenClaim<'a> {
    pub hash: &'a TokenHash,
    /// The device to record for the token's user.
    pub device: &'a NewDevice,
    /// The time of the claim: the token must be unexpired then, and the device is enrolled
    /// then.
    pub now: Timestamp,
}

/// What a job may read and change. Reads see the writes of the jobs before it in the batch.
#[async_trait]
pub trait Tx: Send {
    // ----- reads ------------------------------------------------------------------------
    async fn device(&mut self, id: DeviceId) -> Result<Option<Device>, StoreError>;
    /// [`Tx::device`], and no other writer may insert a command for the device or change it
    /// until this job's batch commits; one that started first has committed before this reads
    /// (a row lock, where replicas write at once). A decision on the device's commands taken
    /// after this read (a renewal refused while an offboarding's wipe is pending) cannot miss
    /// one another replica is committing. A store with one writer needs no lock.
    async fn device_locked(&mut self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        self.device(id).await
    }
    /// Each of the user's devices in brief, in [`crate::Store::list_devices`]' order.
    async fn device_briefs(&mut self, user: &UserEmail) -> Result<Vec<DeviceBrief>, StoreError>;
    async fn token(&mut self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError>;
    async fn admin(&mut self, name: &AdminName) -> Result<Option<Admin>, StoreError>;
    async fn certificate(&mut self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;
    async fn command(&mut self, id: CommandId) -> Result<Option<Command>, StoreError>;
    /// The device's keys and certificates, oldest first.
    async fn device_keys(&mut self, device: DeviceId) -> Result<Vec<DeviceKey>, StoreError>;
    async fn command_by_key(&mut self, key: &str) -> Result<Option<Command>, StoreError>;
    /// The commands among `ids` that exist, in no particular order (one read for many).
    async fn commands(&mut self, ids: &[CommandId]) -> Result<Vec<Command>, StoreError>;
    async fn unfinished_commands(&mut self, device: DeviceId) -> Result<Vec<Command>, StoreError>;
    /// [`Tx::unfinished_commands`] of each of `devices`, in one read where the store can (a
    /// few hundred devices a statement); a device with none is left out.
    async fn unfinished_commands_of(
        &mut self,
        devices: &[DeviceId],
    ) -> Result<HashMap<DeviceId, Vec<Command>>, StoreError> {
        let mut unfinished = HashMap::new();
        for device in devices {
            let commands = self.unfinished_commands(*device).await?;
            if !commands.is_empty() {
                unfinished.insert(*device, commands);
            }
        }
        Ok(unfinished)
    }
    async fn policy(&mut self, scope: &PolicyScope) -> Result<Option<PolicyRule>, StoreError>;

    // ----- writes -----------------------------------------------------------------------
    async fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError>;
    /// For each claim, in order: claims its token if the token exists, is unused, not
    /// withdrawn and unexpired at the claim's time, and records the claim's device (with its
    /// certificate and key) for the token's user; the user, or `None` when the token cannot
    /// be claimed (nothing is written for that claim). A token named by two claims is
    /// claimed by the first only. In as few statements as the store can.
    async fn redeem_tokens(
        &mut self,
        claims: &[TokenClaim<'_>],
    ) -> Result<Vec<Option<UserEmail>>, StoreError>;
    /// Makes one token expire now if it is still usable; false if not.
    async fn expire_token(&mut self, hash: &TokenHash, now: Timestamp) -> Result<bool, StoreError>;
    /// Makes the user's unused, unexpired tokens expire now; how many.
    async fn expire_unused_tokens(
        &mut self,
        user: &UserEmail,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Check-ins' writes, in as few statements as the store can (a few hundred devices a
    /// statement): for each active device of `writes` (each device at most once, or nothing
    /// is written and the job fails), facts (the ones on record when `None`), last-seen and
    /// the compliance report (the one on record when `None`). For each write, in order, the
    /// device as written, or `None` when it is not enrolled or not active (then nothing is
    /// written for it).
    async fn record_check_ins(
        &mut self,
        writes: &[CheckInWrite<'_>],
    ) -> Result<Vec<Option<Device>>, StoreError>;
    /// False if the name is taken.
    async fn insert_admin(
        &mut self,
        admin: &Admin,
        certificate: &CertificateRecord,
    ) -> Result<bool, StoreError>;
    /// Inserts unless a command with the same idempotency key exists; the stored command and
    /// whether it is new.
    async fn insert_command(&mut self, command: &Command) -> Result<(Command, bool), StoreError>;
    /// [`Tx::insert_command`] for each of `commands`, in order (a key taken earlier in the
    /// list counts as taken): an offboarding's or a bulk wipe's commands, which the SQL store
    /// writes a few hundred rows a statement.
    async fn insert_commands(
        &mut self,
        commands: &[Command],
    ) -> Result<Vec<(Command, bool)>, StoreError> {
        let mut stored = Vec::with_capacity(commands.len());
        for command in commands {
            stored.push(self.insert_command(command).await?);
        }
        Ok(stored)
    }
    /// Writes `next` if the stored command still has version `expected` (its state and
    /// delivery count, [`CommandVersion`]) and is still `next`'s instruction (its device and
    /// action, [`Command::is_same_instruction`]): a change committed since the read `next`
    /// was computed from makes it miss, even one that kept the state (another replica's
    /// redelivery), so none is overwritten with the values read; and a row edited by hand to
    /// another device or action is never finished by what was judged on the first.
    async fn update_command(
        &mut self,
        expected: CommandVersion,
        next: &Command,
    ) -> Result<bool, StoreError>;
    /// Writes each `next` whose stored command still has its `expected` version; the ids
    /// written (a compare-and-set per command, many in one statement).
    async fn update_commands(
        &mut self,
        changes: &[(CommandVersion, Command)],
    ) -> Result<Vec<CommandId>, StoreError>;
    async fn put_policy(
        &mut self,
        scope: &PolicyScope,
        body: &PolicyBody,
        updated_by: &str,
        now: Timestamp,
    ) -> Result<PolicyRule, StoreError>;
    async fn delete_policy(&mut self, scope: &PolicyScope) -> Result<bool, StoreError>;
    async fn record_compliance(
        &mut self,
        device: DeviceId,
        compliance: &Compliance,
    ) -> Result<bool, StoreError>;
    /// Marks the device revoked and revokes its certificates; the serials newly revoked, or
    /// `None` if there is no such device.
    async fn revoke_device(
        &mut self,
        device: DeviceId,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError> {
        Ok(self.revoke_devices(&[device], now).await?.remove(&device))
    }
    /// [`Tx::revoke_device`] for many devices at once (a few statements for hundreds, when
    /// thousands of offboarding wipes finish together): for each device found, the serials
    /// newly revoked. A device named twice has its serials under its first naming only.
    async fn revoke_devices(
        &mut self,
        devices: &[DeviceId],
        now: Timestamp,
    ) -> Result<HashMap<DeviceId, Vec<String>>, StoreError>;
    /// Records a renewed certificate and its key, pending until the device uses it.
    async fn record_renewal(
        &mut self,
        device: DeviceId,
        certificate: &CertificateRecord,
        public_key_der: &[u8],
    ) -> Result<(), StoreError>;
    /// Makes the pending certificate `serial` the device's one and revokes the previous one
    /// and the other pending renewals; `None` when `serial` is not pending for the device.
    async fn switch_key(
        &mut self,
        device: DeviceId,
        serial: &str,
        now: Timestamp,
    ) -> Result<Option<KeySwitch>, StoreError>;
    /// Marks the device as a suspected clone; false if there is no such device.
    async fn flag_renewal_conflict(
        &mut self,
        device: DeviceId,
        conflict: &RenewalConflict,
    ) -> Result<bool, StoreError>;
    async fn set_device_posture(
        &mut self,
        device: DeviceId,
        field: PostureField,
        json: Option<&str>,
    ) -> Result<bool, StoreError>;
    async fn swap_device_posture(
        &mut self,
        device: DeviceId,
        field: PostureField,
        expected: Option<&str>,
        json: Option<&str>,
    ) -> Result<bool, StoreError>;
    async fn set_device_state(
        &mut self,
        device: DeviceId,
        state: DeviceState,
    ) -> Result<bool, StoreError>;
    async fn record_offline_wipe(
        &mut self,
        device: DeviceId,
        wipe: &OfflineWipe,
        receipt: &ward_certs::receipt::SignedReceipt,
    ) -> Result<bool, StoreError>;

    /// Gives admin `name` the new certificate and revokes its others; `None` when there is
    /// no such admin or it is revoked, else the serials revoked.
    async fn renew_admin(
        &mut self,
        name: &AdminName,
        certificate: &CertificateRecord,
        certificate_by: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError>;
    /// Revokes the admin and its certificates unless it is the last active `admin`-role
    /// identity.
    async fn revoke_admin(
        &mut self,
        name: &AdminName,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<RevokeOutcome, StoreError>;
    /// The open request for the name if there is one, else `request`, stored.
    async fn open_admin_request(
        &mut self,
        request: &AdminRequest,
        now: Timestamp,
    ) -> Result<AdminRequest, StoreError>;
    async fn approve_admin_request(
        &mut self,
        id: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn use_admin_request(&mut self, id: &str, now: Timestamp) -> Result<bool, StoreError>;
    /// Closes every open request for a forced CA rotation step (kind `ca-activate` or
    /// `ca-retire`), approved or not, as expired at `now`: a rotation step taken changes the
    /// standing they were asked on. Returns their ids.
    async fn withdraw_ca_rotation_requests(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError>;
    /// Records that the export `name`'s collector took every audit entry up to `seq`.
    async fn set_export_cursor(
        &mut self,
        name: &str,
        seq: u64,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// The states CA rotation steps recorded, as this transaction sees them.
    async fn ca_records(&mut self) -> Result<Vec<ward_core::ca_rotation::CaRecord>, StoreError>;
    /// Records the state a CA rotation step gave the CA `hash`.
    async fn set_ca_state(
        &mut self,
        hash: &str,
        state: ward_core::ca_rotation::CaState,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Adds a webhook receiver.
    async fn insert_webhook(&mut self, _hook: &Webhook) -> Result<(), StoreError> {
        Err(no_webhooks())
    }
    /// Removes a receiver with its outbox rows and attempts; false if there was none.
    async fn delete_webhook(&mut self, _id: &str) -> Result<bool, StoreError> {
        Err(no_webhooks())
    }
    /// Records a delivery attempt and what it leads to, if the delivery is still pending.
    async fn record_webhook_attempt(
        &mut self,
        _delivery: &Delivery,
        _attempt: &Attempt,
        _next: Next,
    ) -> Result<(), StoreError> {
        Err(no_webhooks())
    }
    // ----- SCIM provisioning ---------------------------------------------------------------
    async fn scim_client(&mut self, name: &AdminName) -> Result<Option<ScimClient>, StoreError>;
    /// Stores a new client; false when an unrevoked one has the name (a revoked one's name
    /// may be reused: its row is replaced, its history stays in the audit log).
    async fn insert_scim_client(&mut self, client: &ScimClient) -> Result<bool, StoreError>;
    /// Revokes the client's token; false when there is no such unrevoked client.
    async fn revoke_scim_client(
        &mut self,
        name: &AdminName,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn directory_user(&mut self, id: uuid::Uuid)
    -> Result<Option<DirectoryUser>, StoreError>;
    async fn directory_user_named(
        &mut self,
        user: &UserEmail,
    ) -> Result<Option<DirectoryUser>, StoreError>;
    /// The user whose SCIM userName is `user_name`, compared without regard to case.
    async fn directory_user_by_user_name(
        &mut self,
        user_name: &str,
    ) -> Result<Option<DirectoryUser>, StoreError>;
    /// Inserts the user, or replaces the stored one with the same id.
    async fn put_directory_user(&mut self, user: &DirectoryUser) -> Result<(), StoreError>;

    // ----- audit ------------------------------------------------------------------------
    /// Records an audit entry for this job's change. Entries are chained in the order their
    /// jobs ran and the head is signed once, when the batch commits.
    fn audit(&mut self, event: AuditEvent, at: Timestamp);
}

/// A job as the writer holds it: its result and its own error are type-erased, so jobs of
/// every kind share one queue.
pub type Job =
    Box<dyn for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<Erased, Erased>> + Send + Sync>;

pub type Erased = Box<dyn std::any::Any + Send>;

/// Why a job's caller did not get the job's own answer.
#[derive(Debug)]
pub enum Failure {
    /// The job returned this error (its own type, erased); its changes were rolled back.
    Job(Erased),
    /// The job ran, but its batch could not be committed (or the writer is gone).
    Store(StoreError),
}

/// Runs `job` through `writer` and returns its own result once the batch that holds it has
/// committed. `E` is the job's error type (the store's, or the caller's own).
pub async fn write<T, E, F>(
    writer: &super::writer::Writer,
    priority: super::writer::Priority,
    job: F,
) -> Result<T, E>
where
    F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, E>> + Send + Sync + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    write_apart(writer, priority, job).await?
}

/// [`write`], with the two ways a job can fail apart: `Ok(Err(_))` when the job itself
/// failed (its own error, its neighbours in the batch committed without it), `Err(_)` when
/// the store failed as a whole (the transaction could not begin or commit: every job in the
/// batch failed the same way, and would again without its neighbours).
pub async fn write_apart<T, E, F>(
    writer: &super::writer::Writer,
    priority: super::writer::Priority,
    job: F,
) -> Result<Result<T, E>, StoreError>
where
    F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, E>> + Send + Sync + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let erased: Job = Box::new(move |tx| {
        let run = job(tx);
        Box::pin(async move {
            match run.await {
                Ok(value) => Ok(Box::new(value) as Erased),
                Err(error) => Err(Box::new(error) as Erased),
            }
        })
    });
    match writer.submit(erased, priority).await {
        Ok(value) => Ok(Ok(*value.downcast::<T>().map_err(|_| mismatch())?)),
        Err(Failure::Job(error)) => Ok(Err(*error.downcast::<E>().map_err(|_| mismatch())?)),
        Err(Failure::Store(error)) => Err(error),
    }
}

/// What a store without webhook tables (the in-memory one) answers.
pub fn no_webhooks() -> StoreError {
    StoreError::Database("webhooks need the SQL store (SQLite or PostgreSQL)".into())
}

fn mismatch() -> StoreError {
    StoreError::Database("a store job answered with a value of another type".into())
}
