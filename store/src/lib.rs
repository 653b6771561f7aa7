//! Persistence behind one trait. SQLite is the embedded default; every implementation must
//! commit before it returns, so an answer to a client is never ahead of the disk.
//!
//! It holds the [`Store`] trait, its SQL implementation (SQLite and PostgreSQL through sqlx,
//! with the migrations of both dialects in `migrations/`), the in-memory [`MemoryStore`], the
//! batching [`Writer`] and the rows' mapping to `ward-core` values.
//!
//! It may depend on `ward-core`, `ward-certs`, sqlx and tokio, and NOT on tonic, prost or the
//! controller (its operations, its gRPC services, its CLI): the store keeps values, the rules
//! that decide them live in `ward-core` and the operations that call it one layer up.

#![forbid(unsafe_code)]

// The fault hook (`MemoryStore::fail_next`) is for tests: a release build that turns it on is
// refused rather than shipped.
#[cfg(all(not(debug_assertions), feature = "faults"))]
compile_error!("the `faults` feature is for test builds, not release builds");

pub mod commit_runtime;
mod memory;
mod rows;
mod sql;
pub mod tx;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;

pub use memory::MemoryStore;
pub use sql::{Backend, Durability, POSTGRES_WRITER_LANES, PgDurability, SqlStore};

use ward_certs::AdminName;
use ward_core::admins::{AdminRequest, RevokeOutcome};
use ward_core::directory::{DirectoryUser, ScimClient};
use ward_core::{
    Admin, CertificateRecord, Command, CommandId, CommandKind, CommandState, CommandVersion,
    Compliance, Device, DeviceBrief, DeviceId, DeviceState, NewDevice, PolicyBody, PolicyRule,
    PolicyScope, Timestamp, TokenHash, TokenRecord, TokenStatus, UserEmail,
};

use self::tx::{TokenClaim, Tx};
use self::writer::Priority::{High, Sheddable};
pub use self::writer::{BatchSettings, Priority, Writer};

/// What one controller replica tells the others through the database (PostgreSQL
/// `LISTEN/NOTIFY`). A lost announcement only delays: streams and the revocation list are
/// also refreshed periodically from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// The device has a new or changed command, or a new policy.
    DeviceWork(DeviceId),
    /// The device was revoked.
    Revoked(DeviceId),
    /// Certificates other than a device's were revoked (an admin's): reload the list.
    RevocationsChanged,
    /// A policy changed for possibly many devices.
    PolicyChanged,
}

impl Announcement {
    pub fn to_payload(self) -> String {
        match self {
            Announcement::DeviceWork(id) => format!("work:{id}"),
            Announcement::Revoked(id) => format!("revoked:{id}"),
            Announcement::RevocationsChanged => "revocations".into(),
            Announcement::PolicyChanged => "policy".into(),
        }
    }

    pub fn from_payload(text: &str) -> Option<Self> {
        match text.split_once(':') {
            Some(("work", id)) => id.parse().ok().map(Announcement::DeviceWork),
            Some(("revoked", id)) => id.parse().ok().map(Announcement::Revoked),
            None if text == "policy" => Some(Announcement::PolicyChanged),
            None if text == "revocations" => Some(Announcement::RevocationsChanged),
            _ => None,
        }
    }
}

/// Announcements from other replicas, as they arrive.
pub type Announcements = tokio::sync::mpsc::Receiver<Announcement>;

/// Signs the audit head's message (the controller's key); the error says why it could not.
pub type HeadSigner<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync + 'a;

/// Checks a head signature (message, signature) against the controller's key.
pub type HeadVerifier<'a> = dyn Fn(&[u8], &[u8]) -> bool + Send + Sync + 'a;

/// The key that signs the audit head (the controller's).
pub trait HeadKey: Send + Sync {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, StoreError>;
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool;
}

/// What the writer needs to append the audit entries its batches record: the controller's
/// key, and someone to tell what was appended (damage found, entries counted for the next
/// checkpoint). Set once the controller's key is loaded ([`Store::keep_audit_with`]).
pub trait AuditKeeper: HeadKey + std::fmt::Debug {
    /// `entries` were appended in one batch; `chain_break` is the damage the append found and
    /// recorded, with the sequence number of its `audit.break` entry.
    fn appended(&self, entries: u64, chain_break: Option<(&ward_core::audit::ChainBreak, u64)>);
}

/// Where a store's writer finds its [`AuditKeeper`].
pub type AuditKeeperSlot = Arc<std::sync::OnceLock<Arc<dyn AuditKeeper>>>;

/// A [`HeadKey`] made of the two closures [`Store::append_audit`] takes.
pub(crate) struct ClosureKey<'a, 'b> {
    pub sign: &'a HeadSigner<'b>,
    pub verify_head: &'a HeadVerifier<'b>,
}

impl HeadKey for ClosureKey<'_, '_> {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, StoreError> {
        (self.sign)(message)
            .map_err(|e| StoreError::Database(format!("the audit head could not be signed: {e}")))
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        (self.verify_head)(message, signature)
    }
}

/// The right to stream an audit export, held by one replica at a time.
#[async_trait]
pub trait Lease: Send {
    /// Whether it is still held (PostgreSQL: its session still answers).
    async fn held(&mut self) -> bool;
}

/// The lease of a store only one process uses (SQLite, whose data directory `serve` locks,
/// and the in-memory store): always held.
#[derive(Debug)]
pub struct SoleProcess;

#[async_trait]
impl Lease for SoleProcess {
    async fn held(&mut self) -> bool {
        true
    }
}

/// The name of the `serve --audit-syslog` export's cursor and lease.
pub const SYSLOG_EXPORT: &str = "syslog";

/// The name of the lease of webhook delivery (one replica delivers).
pub const WEBHOOK_LEASE: &str = "webhooks";

/// Where a delivery goes: the receiver's URL, the secret it is signed with, the trust for it.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: ward_core::webhook::WebhookSecret,
    pub ca_pem: Option<String>,
}

/// Which audit entries to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub since: Option<Timestamp>,
    pub actor: Option<String>,
    pub target: Option<String>,
    /// Only entries before this time.
    pub until: Option<Timestamp>,
    /// Only the device's trail: entries targeted at it or at one of its commands.
    pub device: Option<DeviceId>,
    /// Only entries with a greater sequence number (paging).
    pub after_seq: Option<u64>,
    /// At most this many entries; `None`: all.
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The writer is further behind than a sheddable call may wait: try again later.
    #[error("the controller is busy; try again shortly")]
    Overloaded,
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("database migration failed: {0}")]
    Migration(String),
}

/// The outcome of redeeming a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redemption {
    /// The token was claimed and the device recorded, in one transaction.
    Enrolled {
        user: UserEmail,
    },
    Unknown,
    Refused(TokenStatus),
}

/// The posture columns of a device, each holding JSON the controller wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostureField {
    Inventory,
    Disabled,
    Enforcement,
    /// The CAs the device's agent reported trusting.
    TrustedCas,
}

/// The store: reads of committed state, and writes through its [`Writer`] (group commit).
///
/// The write methods below are single-operation jobs; an operation that changes several
/// things, or a change with its audit entry, runs as one job through [`Store::write`] so it
/// commits all together or not at all.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The writer every change goes through.
    fn writer(&self) -> &Writer;

    /// Finishes the writer's queue and closes the connections, so SQLite folds its
    /// write-ahead log into the database file (a copy of `ward.db` taken after a stop is then
    /// whole). Called once at shutdown; later calls fail.
    async fn close(&self) {}

    // ----- reads ------------------------------------------------------------------------

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError>;

    async fn get_device(&self, id: DeviceId) -> Result<Option<Device>, StoreError>;

    async fn list_devices(&self, user: Option<&UserEmail>) -> Result<Vec<Device>, StoreError>;

    /// Each of the user's devices in brief, in [`Store::list_devices`]' order: what an
    /// offboarding's report shows.
    async fn device_briefs(&self, user: &UserEmail) -> Result<Vec<DeviceBrief>, StoreError>;

    async fn get_admin(&self, name: &AdminName) -> Result<Option<Admin>, StoreError>;

    async fn list_admins(&self) -> Result<Vec<Admin>, StoreError>;

    /// The open (unused, unexpired) request for the name.
    async fn admin_request(
        &self,
        name: &AdminName,
        now: Timestamp,
    ) -> Result<Option<AdminRequest>, StoreError>;

    /// Every open request, by name.
    async fn list_admin_requests(&self, now: Timestamp) -> Result<Vec<AdminRequest>, StoreError>;

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;

    /// The device's keys and certificates, oldest first.
    async fn device_keys(&self, device: DeviceId) -> Result<Vec<ward_core::DeviceKey>, StoreError> {
        Ok(self
            .device_keys_of(&[device])
            .await?
            .remove(&device)
            .unwrap_or_default())
    }

    /// [`Store::device_keys`] of many devices in one read (the receipts of thousands of wipes
    /// finishing at once); a device with no key on record is left out.
    async fn device_keys_of(
        &self,
        devices: &[DeviceId],
    ) -> Result<HashMap<DeviceId, Vec<ward_core::DeviceKey>>, StoreError>;

    async fn get_command(&self, id: CommandId) -> Result<Option<Command>, StoreError>;

    async fn command_by_key(&self, idempotency_key: &str) -> Result<Option<Command>, StoreError>;

    /// Commands whose stored idempotency key starts with `prefix`: every command of one bulk
    /// action (an offboarding), in one read.
    async fn commands_by_key_prefix(&self, prefix: &str) -> Result<Vec<Command>, StoreError>;

    /// The tokens that could still enroll a device at `now` (unused, unexpired), optionally
    /// of one user, oldest first.
    async fn list_usable_tokens(
        &self,
        user: Option<&UserEmail>,
        now: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError>;

    /// Commands, newest first, optionally for one device and in one state.
    async fn list_commands(
        &self,
        device: Option<DeviceId>,
        state: Option<CommandState>,
    ) -> Result<Vec<Command>, StoreError>;

    /// The wipes and retirements that succeeded, for one device or all: what shows that a
    /// device's messaging data was wiped (`core::service::messaging_wipe`).
    async fn succeeded_wipes(&self, device: Option<DeviceId>) -> Result<Vec<Command>, StoreError> {
        Ok(self
            .list_commands(device, Some(CommandState::Succeeded))
            .await?
            .into_iter()
            .filter(|c| matches!(c.kind, CommandKind::Wipe { .. } | CommandKind::Retire))
            .collect())
    }

    /// Queued commands whose deadline (a lock's or unlock's time-to-live) has passed.
    async fn commands_past_deadline(&self, now: Timestamp) -> Result<Vec<Command>, StoreError>;

    /// The device's commands that have not reached a terminal state, oldest first.
    async fn unfinished_commands(&self, device: DeviceId) -> Result<Vec<Command>, StoreError>;

    async fn get_policy(&self, scope: &PolicyScope) -> Result<Option<PolicyRule>, StoreError>;

    /// Every stored policy rule: the default and the users' overrides.
    async fn list_policies(&self) -> Result<Vec<PolicyRule>, StoreError>;

    /// Serials of every revoked certificate that has not expired by `now`.
    async fn revoked_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError>;

    /// Of those, the certificates a renewal replaced whose holder is still active (a device
    /// or an admin): their open connections are kept, and every call on them is refused.
    /// A device's copy still calling is seen as a suspected clone; an admin who renewed their
    /// own certificate gets the answer on the connection the old one opened.
    async fn replaced_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError>;

    async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<ward_core::audit::AuditEntry>, StoreError>;

    async fn audit_head(&self) -> Result<ward_core::audit::AuditHead, StoreError>;

    /// Certificates neither expired nor revoked (a CA is retired only once none of them was
    /// issued by it).
    async fn live_certificates(&self, now: Timestamp)
    -> Result<Vec<CertificateRecord>, StoreError>;

    /// The states CA rotation steps recorded.
    async fn ca_records(&self) -> Result<Vec<ward_core::ca_rotation::CaRecord>, StoreError>;

    /// The last audit sequence number the export `name`'s collector took; 0 before the first.
    async fn export_cursor(&self, name: &str) -> Result<u64, StoreError>;

    /// The export's lease, if no other replica holds it. Stores used by one process always
    /// grant it.
    async fn try_export_lease(&self, _name: &str) -> Result<Option<Box<dyn Lease>>, StoreError> {
        Ok(Some(Box::new(SoleProcess)))
    }

    /// Every webhook receiver, oldest first.
    async fn list_webhooks(&self) -> Result<Vec<ward_core::webhook::Webhook>, StoreError> {
        Err(tx::no_webhooks())
    }

    /// Pending deliveries due at `now` (at most `limit`), with where each goes.
    async fn due_webhook_deliveries(
        &self,
        _now: Timestamp,
        _limit: u32,
    ) -> Result<Vec<(ward_core::webhook::Delivery, WebhookTarget)>, StoreError> {
        Err(tx::no_webhooks())
    }

    /// The newest deliveries (of one receiver, or all), newest first, with their attempts.
    async fn webhook_deliveries(
        &self,
        _webhook_id: Option<&str>,
        _limit: u32,
    ) -> Result<
        Vec<(
            ward_core::webhook::Delivery,
            Vec<ward_core::webhook::Attempt>,
        )>,
        StoreError,
    > {
        Err(tx::no_webhooks())
    }

    /// How many commands are in each state.
    async fn count_commands(&self) -> Result<Vec<(CommandState, u64)>, StoreError>;

    /// The unrevoked SCIM client whose token hashes to `token_hash` (hex).
    async fn scim_client_by_hash(&self, token_hash: &str)
    -> Result<Option<ScimClient>, StoreError>;

    /// Every SCIM client, revoked ones included, by name.
    async fn list_scim_clients(&self) -> Result<Vec<ScimClient>, StoreError>;

    /// Every user an identity provider provisioned (deleted ones included), by e-mail.
    async fn list_directory_users(&self) -> Result<Vec<DirectoryUser>, StoreError>;

    async fn get_directory_user(&self, id: uuid::Uuid)
    -> Result<Option<DirectoryUser>, StoreError>;

    async fn find_directory_user(
        &self,
        user: &UserEmail,
    ) -> Result<Option<DirectoryUser>, StoreError>;

    /// Appends an audit entry where `core::audit::plan_append` says (after the table's last
    /// row, behind an `audit.break` entry when the head does not match it) and re-signs the
    /// head, atomically; concurrent appends form one linear chain. A genesis event on a log
    /// that already has entries is `AlreadyExists`.
    async fn append_audit(
        &self,
        event: &ward_core::audit::AuditEvent,
        at: Timestamp,
        sign: &HeadSigner<'_>,
        verify_head: &HeadVerifier<'_>,
    ) -> Result<ward_core::audit::Appended, StoreError>;

    /// Where the writer finds the audit keeper; see [`Store::keep_audit_with`].
    fn audit_keeper(&self) -> &AuditKeeperSlot;

    /// Gives the writer the controller's key for the audit head (once; later calls are
    /// ignored). Until then a job that records an audit entry fails its batch.
    fn keep_audit_with(&self, keeper: Arc<dyn AuditKeeper>) {
        let _ = self.audit_keeper().set(keeper);
    }

    /// Appends an audit entry through the writer: chained with the other entries of its
    /// batch, the head signed once for the batch.
    async fn audit(
        &self,
        event: &ward_core::audit::AuditEvent,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let event = event.clone();
        tx::write(self.writer(), High, move |tx| {
            tx.audit(event.clone(), at);
            Box::pin(async { Ok(()) })
        })
        .await
    }

    // ----- replicas ---------------------------------------------------------------------

    /// Tells other replicas about `events`, in as few messages as the channel allows.
    /// Single-process stores have no one to tell.
    async fn announce_all(&self, _events: &[Announcement]) -> Result<(), StoreError> {
        Ok(())
    }

    /// Starts listening for other replicas' announcements; `None` for single-process stores.
    async fn listen(&self) -> Result<Option<Announcements>, StoreError> {
        Ok(None)
    }

    // ----- writes -----------------------------------------------------------------------

    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let token = token.clone();
        tx::write(self.writer(), High, move |tx| {
            let token = token.clone();
            Box::pin(async move { tx.insert_token(&token).await })
        })
        .await
    }

    /// Atomically: if the token exists, is unused and unexpired at `now`, mark it used by the
    /// new device, insert the device for the token's user and record its certificate. Of any
    /// number of concurrent redemptions of one token, exactly one returns `Enrolled`.
    async fn redeem_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        device: &NewDevice,
    ) -> Result<Redemption, StoreError> {
        let (hash, device) = (*hash, device.clone());
        tx::write(self.writer(), High, move |tx| {
            let device = device.clone();
            Box::pin(async move {
                let claim = TokenClaim {
                    hash: &hash,
                    device: &device,
                    now,
                };
                let user = tx.redeem_tokens(&[claim]).await?.pop().flatten();
                Ok(match user {
                    Some(user) => Redemption::Enrolled { user },
                    None => match tx.token(&hash).await? {
                        None => Redemption::Unknown,
                        Some(token) => Redemption::Refused(token.status(now)),
                    },
                })
            })
        })
        .await
    }

    /// Registers an admin and its first certificate; `AlreadyExists` if the name is taken.
    async fn insert_admin(
        &self,
        admin: &Admin,
        certificate: &CertificateRecord,
    ) -> Result<(), StoreError> {
        let (admin, certificate) = (admin.clone(), certificate.clone());
        tx::write(self.writer(), High, move |tx| {
            let (admin, certificate) = (admin.clone(), certificate.clone());
            Box::pin(async move {
                if tx.insert_admin(&admin, &certificate).await? {
                    Ok(())
                } else {
                    Err(StoreError::AlreadyExists(format!("admin {}", admin.name)))
                }
            })
        })
        .await
    }

    /// Inserts a new command, unless one with the same idempotency key exists: then that one
    /// is returned and `false` says nothing was inserted.
    async fn insert_command(&self, command: &Command) -> Result<(Command, bool), StoreError> {
        let command = command.clone();
        tx::write(self.writer(), High, move |tx| {
            let command = command.clone();
            Box::pin(async move { tx.insert_command(&command).await })
        })
        .await
    }

    /// Makes one token expire now if it is still usable; false if it was not (used, expired
    /// or unknown).
    async fn expire_token(&self, hash: &TokenHash, now: Timestamp) -> Result<bool, StoreError> {
        let hash = *hash;
        tx::write(self.writer(), High, move |tx| {
            Box::pin(async move { tx.expire_token(&hash, now).await })
        })
        .await
    }

    /// Withdraws the user's unused enrollment tokens (offboarding): refused from now on, even
    /// by a redemption already under way. Returns how many had not expired yet.
    async fn expire_unused_tokens(
        &self,
        user: &UserEmail,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let user = user.clone();
        tx::write(self.writer(), High, move |tx| {
            let user = user.clone();
            Box::pin(async move { tx.expire_unused_tokens(&user, now).await })
        })
        .await
    }

    /// Writes `next` if the stored command still has version `expected`; false otherwise (a
    /// concurrent change won, and the caller re-reads and re-applies its event).
    async fn update_command(
        &self,
        expected: CommandVersion,
        next: &Command,
    ) -> Result<bool, StoreError> {
        let next = next.clone();
        tx::write(self.writer(), High, move |tx| {
            let next = next.clone();
            Box::pin(async move { tx.update_command(expected, &next).await })
        })
        .await
    }

    /// Stores the policy for `scope` with a new revision, higher than every earlier one.
    async fn put_policy(
        &self,
        scope: &PolicyScope,
        body: &PolicyBody,
        updated_by: &str,
        now: Timestamp,
    ) -> Result<PolicyRule, StoreError> {
        let (scope, body, by) = (scope.clone(), body.clone(), updated_by.to_owned());
        tx::write(self.writer(), High, move |tx| {
            let (scope, body, by) = (scope.clone(), body.clone(), by.clone());
            Box::pin(async move { tx.put_policy(&scope, &body, &by, now).await })
        })
        .await
    }

    /// Removes a policy; false if there was none.
    async fn delete_policy(&self, scope: &PolicyScope) -> Result<bool, StoreError> {
        let scope = scope.clone();
        tx::write(self.writer(), High, move |tx| {
            let scope = scope.clone();
            Box::pin(async move { tx.delete_policy(&scope).await })
        })
        .await
    }

    /// Records a device's judged compliance report; false if the device does not exist.
    async fn record_compliance(
        &self,
        device: DeviceId,
        compliance: &Compliance,
    ) -> Result<bool, StoreError> {
        let compliance = compliance.clone();
        tx::write(self.writer(), Sheddable, move |tx| {
            let compliance = compliance.clone();
            Box::pin(async move { tx.record_compliance(device, &compliance).await })
        })
        .await
    }

    /// Marks the device revoked and revokes every certificate issued to it. Returns the
    /// serials newly revoked, or `None` if the device does not exist.
    async fn revoke_device(
        &self,
        device: DeviceId,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError> {
        tx::write(self.writer(), High, move |tx| {
            Box::pin(async move { tx.revoke_device(device, now).await })
        })
        .await
    }

    /// Records a renewed certificate and its key for a device, pending until the device
    /// calls with it.
    async fn record_renewal(
        &self,
        device: DeviceId,
        certificate: &CertificateRecord,
        public_key_der: &[u8],
    ) -> Result<(), StoreError> {
        let (certificate, key) = (certificate.clone(), public_key_der.to_vec());
        tx::write(self.writer(), High, move |tx| {
            let (certificate, key) = (certificate.clone(), key.clone());
            Box::pin(async move { tx.record_renewal(device, &certificate, &key).await })
        })
        .await
    }

    /// Writes one of the device's posture columns (JSON; `None` clears it); false if the
    /// device does not exist.
    async fn set_device_posture(
        &self,
        device: DeviceId,
        field: PostureField,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        let json = json.map(str::to_owned);
        tx::write(self.writer(), High, move |tx| {
            let json = json.clone();
            Box::pin(async move { tx.set_device_posture(device, field, json.as_deref()).await })
        })
        .await
    }

    /// Compare-and-set of one posture column: writes `json` only if the column still holds
    /// `expected` (`None`: NULL). False if it did not (or the device does not exist).
    async fn swap_device_posture(
        &self,
        device: DeviceId,
        field: PostureField,
        expected: Option<&str>,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (expected, json) = (expected.map(str::to_owned), json.map(str::to_owned));
        tx::write(self.writer(), High, move |tx| {
            let (expected, json) = (expected.clone(), json.clone());
            Box::pin(async move {
                tx.swap_device_posture(device, field, expected.as_deref(), json.as_deref())
                    .await
            })
        })
        .await
    }

    /// Sets the device's lifecycle state; false if the device does not exist.
    async fn set_device_state(
        &self,
        device: DeviceId,
        state: DeviceState,
    ) -> Result<bool, StoreError> {
        tx::write(self.writer(), High, move |tx| {
            Box::pin(async move { tx.set_device_state(device, state).await })
        })
        .await
    }

    /// Records that the device's offline timer wiped its messaging data.
    async fn record_offline_wipe(
        &self,
        device: DeviceId,
        wipe: &ward_core::OfflineWipe,
        receipt: &ward_certs::receipt::SignedReceipt,
    ) -> Result<bool, StoreError> {
        let (wipe, receipt) = (wipe.clone(), receipt.clone());
        tx::write(self.writer(), High, move |tx| {
            let (wipe, receipt) = (wipe.clone(), receipt.clone());
            Box::pin(async move { tx.record_offline_wipe(device, &wipe, &receipt).await })
        })
        .await
    }

    /// Gives admin `name` the new `certificate`, asked for by `certificate_by` (`None`: by the
    /// admin itself), and revokes its other certificates, atomically. `None` when there is no
    /// such admin or it is revoked; else the serials revoked.
    async fn renew_admin(
        &self,
        name: &AdminName,
        certificate: &CertificateRecord,
        certificate_by: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let (name, certificate) = (name.clone(), certificate.clone());
        let by = certificate_by.map(str::to_owned);
        tx::write(self.writer(), High, move |tx| {
            let (name, certificate, by) = (name.clone(), certificate.clone(), by.clone());
            Box::pin(async move {
                tx.renew_admin(&name, &certificate, by.as_deref(), now)
                    .await
            })
        })
        .await
    }

    /// Revokes admin `name` and every certificate it has, unless it is the last active
    /// identity with role `admin` (checked and changed atomically, across replicas too).
    async fn revoke_admin(
        &self,
        name: &AdminName,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<RevokeOutcome, StoreError> {
        let (name, by, reason) = (name.clone(), by.to_owned(), reason.to_owned());
        tx::write(self.writer(), High, move |tx| {
            let (name, by, reason) = (name.clone(), by.clone(), reason.clone());
            Box::pin(async move { tx.revoke_admin(&name, &by, &reason, now).await })
        })
        .await
    }

    /// The open request for `request.name` if there is one, else `request`, now stored.
    async fn open_admin_request(
        &self,
        request: &AdminRequest,
        now: Timestamp,
    ) -> Result<AdminRequest, StoreError> {
        let request = request.clone();
        tx::write(self.writer(), High, move |tx| {
            let request = request.clone();
            Box::pin(async move { tx.open_admin_request(&request, now).await })
        })
        .await
    }

    /// Records that the export `name`'s collector took every audit entry up to `seq` (the
    /// cursor never moves back).
    async fn set_export_cursor(
        &self,
        name: &str,
        seq: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        tx::write(self.writer(), High, move |tx| {
            let name = name.clone();
            Box::pin(async move { tx.set_export_cursor(&name, seq, now).await })
        })
        .await
    }

    /// Records a delivery attempt and what it leads to (through the writer).
    async fn record_webhook_attempt(
        &self,
        delivery: &ward_core::webhook::Delivery,
        attempt: &ward_core::webhook::Attempt,
        next: ward_core::webhook::Next,
    ) -> Result<(), StoreError> {
        let (delivery, attempt) = (delivery.clone(), attempt.clone());
        tx::write(self.writer(), High, move |tx| {
            let (delivery, attempt) = (delivery.clone(), attempt.clone());
            Box::pin(async move { tx.record_webhook_attempt(&delivery, &attempt, next).await })
        })
        .await
    }

    /// Approves the open request `id`; false when it is no longer open or already approved.
    async fn approve_admin_request(
        &self,
        id: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, by) = (id.to_owned(), by.to_owned());
        tx::write(self.writer(), High, move |tx| {
            let (id, by) = (id.clone(), by.clone());
            Box::pin(async move { tx.approve_admin_request(&id, &by, now).await })
        })
        .await
    }

    /// Uses the approved request `id` (once); false when it is not approved, used or expired.
    async fn use_admin_request(&self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let id = id.to_owned();
        tx::write(self.writer(), High, move |tx| {
            let id = id.clone();
            Box::pin(async move { tx.use_admin_request(&id, now).await })
        })
        .await
    }
}

impl dyn Store {
    /// Runs `job` in the writer's transaction and answers after the commit that holds it.
    pub async fn write<T, E, F>(&self, priority: Priority, job: F) -> Result<T, E>
    where
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, E>> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        tx::write(self.writer(), priority, job).await
    }

    /// [`tx::write_apart`]: the job's own failure apart from the store's as a whole.
    pub async fn write_apart<T, E, F>(
        &self,
        priority: Priority,
        job: F,
    ) -> Result<Result<T, E>, StoreError>
    where
        F: for<'t> Fn(&'t mut dyn Tx) -> BoxFuture<'t, Result<T, E>> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        tx::write_apart(self.writer(), priority, job).await
    }
}
