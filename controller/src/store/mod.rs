//! Persistence behind one trait. SQLite is the embedded default; every implementation must
//! commit before it returns, so an answer to a client is never ahead of the disk.

mod postgres;
mod rows;
mod sqlite;

use async_trait::async_trait;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::core::{
    Admin, CertificateRecord, Command, CommandId, CommandState, Compliance, Device, DeviceFacts,
    DeviceId, DeviceState, NewDevice, Policy, PolicyScope, StoredPolicy, Timestamp, TokenHash,
    TokenRecord, TokenStatus, UserEmail,
};
use ward_certs::AdminName;

/// What one controller replica tells the others through the database (PostgreSQL
/// `LISTEN/NOTIFY`). A lost announcement only delays: streams and the revocation list are
/// also refreshed periodically from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// The device has a new or changed command, or a new policy.
    DeviceWork(DeviceId),
    /// The device was revoked.
    Revoked(DeviceId),
    /// A policy changed for possibly many devices.
    PolicyChanged,
}

impl Announcement {
    pub fn to_payload(self) -> String {
        match self {
            Announcement::DeviceWork(id) => format!("work:{id}"),
            Announcement::Revoked(id) => format!("revoked:{id}"),
            Announcement::PolicyChanged => "policy".into(),
        }
    }

    pub fn from_payload(text: &str) -> Option<Self> {
        match text.split_once(':') {
            Some(("work", id)) => id.parse().ok().map(Announcement::DeviceWork),
            Some(("revoked", id)) => id.parse().ok().map(Announcement::Revoked),
            None if text == "policy" => Some(Announcement::PolicyChanged),
            _ => None,
        }
    }
}

/// Announcements from other replicas, as they arrive.
pub type Announcements = tokio::sync::mpsc::Receiver<Announcement>;

/// Signs the audit head's message (the controller's key).
pub type HeadSigner<'a> = dyn Fn(&[u8]) -> Vec<u8> + Send + Sync + 'a;

/// Checks a head signature (message, signature) against the controller's key.
pub type HeadVerifier<'a> = dyn Fn(&[u8], &[u8]) -> bool + Send + Sync + 'a;

/// Which audit entries to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub since: Option<Timestamp>,
    pub actor: Option<String>,
    pub target: Option<String>,
    /// Only entries with a greater sequence number (paging).
    pub after_seq: Option<u64>,
    /// At most this many entries; `None`: all.
    pub limit: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError>;

    /// Atomically: if the token exists, is unused and unexpired at `now`, mark it used by the
    /// new device, insert the device for the token's user and record its certificate. Of any
    /// number of concurrent redemptions of one token, exactly one returns `Enrolled`.
    async fn redeem_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        device: &NewDevice,
    ) -> Result<Redemption, StoreError>;

    async fn get_device(&self, id: DeviceId) -> Result<Option<Device>, StoreError>;

    async fn list_devices(&self, user: Option<&UserEmail>) -> Result<Vec<Device>, StoreError>;

    /// Updates the facts and last-seen time; false if the device does not exist.
    async fn record_check_in(
        &self,
        id: DeviceId,
        facts: &DeviceFacts,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Registers an admin and its first certificate; `AlreadyExists` if the name is taken.
    async fn insert_admin(
        &self,
        admin: &Admin,
        certificate: &CertificateRecord,
    ) -> Result<(), StoreError>;

    async fn get_admin(&self, name: &AdminName) -> Result<Option<Admin>, StoreError>;

    async fn list_admins(&self) -> Result<Vec<Admin>, StoreError>;

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError>;

    /// Inserts a new command, unless one with the same idempotency key exists: then that one
    /// is returned and `false` says nothing was inserted.
    async fn insert_command(&self, command: &Command) -> Result<(Command, bool), StoreError>;

    async fn get_command(&self, id: CommandId) -> Result<Option<Command>, StoreError>;

    async fn command_by_key(&self, idempotency_key: &str) -> Result<Option<Command>, StoreError>;

    /// Makes the user's unused, unexpired enrollment tokens expire now; returns how many.
    async fn expire_unused_tokens(
        &self,
        user: &UserEmail,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// The tokens that could still enroll a device at `now` (unused, unexpired), optionally
    /// of one user, oldest first.
    async fn list_usable_tokens(
        &self,
        user: Option<&UserEmail>,
        now: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError>;

    /// Makes one token expire now if it is still usable; false if it was not (used, expired
    /// or unknown).
    async fn expire_token(&self, hash: &TokenHash, now: Timestamp) -> Result<bool, StoreError>;

    /// Commands, newest first, optionally for one device and in one state.
    async fn list_commands(
        &self,
        device: Option<DeviceId>,
        state: Option<CommandState>,
    ) -> Result<Vec<Command>, StoreError>;

    /// The device's commands that have not reached a terminal state, oldest first.
    async fn unfinished_commands(&self, device: DeviceId) -> Result<Vec<Command>, StoreError>;

    /// Writes `next` if the stored command is still in state `expected`; false otherwise (a
    /// concurrent change won, and the caller re-reads and re-applies its event).
    async fn update_command(
        &self,
        expected: CommandState,
        next: &Command,
    ) -> Result<bool, StoreError>;

    async fn get_policy(&self, scope: &PolicyScope) -> Result<Option<StoredPolicy>, StoreError>;

    /// Stores the policy for `scope` with a new revision, higher than every earlier one.
    async fn put_policy(
        &self,
        scope: &PolicyScope,
        policy: &Policy,
        updated_by: &str,
        now: Timestamp,
    ) -> Result<StoredPolicy, StoreError>;

    /// Removes a policy; false if there was none.
    async fn delete_policy(&self, scope: &PolicyScope) -> Result<bool, StoreError>;

    /// Records a device's judged compliance report; false if the device does not exist.
    async fn record_compliance(
        &self,
        device: DeviceId,
        compliance: &Compliance,
    ) -> Result<bool, StoreError>;

    /// Marks the device revoked and revokes every certificate issued to it. Returns the
    /// serials newly revoked, or `None` if the device does not exist.
    async fn revoke_device(
        &self,
        device: DeviceId,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError>;

    /// Records a renewed certificate (and possibly new key) for a device.
    async fn record_renewal(
        &self,
        device: DeviceId,
        certificate: &CertificateRecord,
        public_key_der: &[u8],
    ) -> Result<(), StoreError>;

    /// Serials of every revoked certificate that has not expired by `now`.
    async fn revoked_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError>;

    /// Writes one of the device's posture columns (JSON; `None` clears it); false if the
    /// device does not exist.
    async fn set_device_posture(
        &self,
        device: DeviceId,
        field: PostureField,
        json: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Compare-and-set of one posture column: writes `json` only if the column still holds
    /// `expected` (`None`: NULL). False if it did not (or the device does not exist).
    async fn swap_device_posture(
        &self,
        device: DeviceId,
        field: PostureField,
        expected: Option<&str>,
        json: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Sets the device's lifecycle state; false if the device does not exist.
    async fn set_device_state(
        &self,
        device: DeviceId,
        state: DeviceState,
    ) -> Result<bool, StoreError>;

    /// Records that the device's offline timer wiped its messaging data.
    async fn record_offline_wipe(
        &self,
        device: DeviceId,
        wipe: &crate::core::OfflineWipe,
        receipt: &ward_certs::receipt::SignedReceipt,
    ) -> Result<bool, StoreError>;

    /// Appends an audit entry chained to the last one and re-signs the head, atomically;
    /// concurrent appends form one linear chain.
    async fn append_audit(
        &self,
        event: &crate::core::audit::AuditEvent,
        at: Timestamp,
        sign: &HeadSigner<'_>,
        verify_head: &HeadVerifier<'_>,
    ) -> Result<crate::core::audit::AuditEntry, StoreError>;

    async fn list_audit(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<crate::core::audit::AuditEntry>, StoreError>;

    async fn audit_head(&self) -> Result<crate::core::audit::AuditHead, StoreError>;

    /// How many commands are in each state.
    async fn count_commands(&self) -> Result<Vec<(CommandState, u64)>, StoreError>;

    /// Tells other replicas about `event`. Single-process stores have no one to tell.
    async fn announce(&self, _event: Announcement) -> Result<(), StoreError> {
        Ok(())
    }

    /// Starts listening for other replicas' announcements; `None` for single-process stores.
    async fn listen(&self) -> Result<Option<Announcements>, StoreError> {
        Ok(None)
    }
}
