//! A store in memory, for fast tests of the application without a database or TLS. It keeps
//! the same promises as the SQL store (group commit through the same [`Writer`], a failed
//! job rolled back alone, compare-and-set updates, one linear audit chain) and passes the same
//! store suite; it keeps nothing across a restart, so `wardctl serve` never uses it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use ward_certs::AdminName;

use super::tx::{CheckInWrite, TokenClaim, Tx};
use super::writer::{BatchSettings, Engine, Writer};
use super::{AuditFilter, HeadKey, HeadSigner, HeadVerifier, PostureField, Store, StoreError};
use ward_core::admins::{AdminRequest, AdminRevocation, RevokeOutcome};
use ward_core::audit::{
    AppendError, Appended, AuditEntry, AuditEvent, AuditHead, Tail, extend, head_message,
    plan_append,
};
use ward_core::directory::{DirectoryUser, ScimClient};
use ward_core::keys::{other_parties, plan_switch};
use ward_core::{
    Admin, AdminRole, CertificateRecord, Command, CommandId, CommandState, CommandVersion,
    Compliance, Device, DeviceBrief, DeviceId, DeviceKey, DeviceState, KeySwitch, NewDevice,
    OfflineWipe, PolicyBody, PolicyRule, PolicyScope, RenewalConflict, Timestamp, TokenHash,
    TokenRecord, UserEmail,
};

/// A device as stored: the record, and its posture columns as the JSON the controller wrote
/// (compare-and-set compares that text, as the SQL store does).
#[derive(Clone, Debug)]
struct DeviceRow {
    device: Device,
    posture: HashMap<PostureKey, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PostureKey {
    Inventory,
    Disabled,
    Enforcement,
    TrustedCas,
}

impl From<PostureField> for PostureKey {
    fn from(field: PostureField) -> Self {
        match field {
            PostureField::Inventory => PostureKey::Inventory,
            PostureField::Disabled => PostureKey::Disabled,
            PostureField::Enforcement => PostureKey::Enforcement,
            PostureField::TrustedCas => PostureKey::TrustedCas,
        }
    }
}

impl DeviceRow {
    /// The record with its posture parsed from the stored JSON.
    fn read(&self) -> Result<Device, StoreError> {
        fn parse<T: serde::de::DeserializeOwned>(
            row: &DeviceRow,
            key: PostureKey,
        ) -> Result<Option<T>, StoreError> {
            row.posture
                .get(&key)
                .map(|json| {
                    serde_json::from_str(json)
                        .map_err(|e| StoreError::Corrupt(format!("posture {key:?}: {e}")))
                })
                .transpose()
        }
        let mut device = self.device.clone();
        device.inventory = parse(self, PostureKey::Inventory)?;
        device.disabled = parse(self, PostureKey::Disabled)?;
        device.enforcement = parse(self, PostureKey::Enforcement)?.unwrap_or_default();
        device.trusted_cas = parse(self, PostureKey::TrustedCas)?.unwrap_or_default();
        Ok(device)
    }
}

#[derive(Clone, Debug)]
struct State {
    tokens: BTreeMap<[u8; 32], TokenRecord>,
    devices: BTreeMap<DeviceId, DeviceRow>,
    admins: BTreeMap<String, Admin>,
    admin_requests: BTreeMap<String, AdminRequest>,
    certificates: BTreeMap<String, CertificateRecord>,
    /// By serial: the device and the key.
    device_keys: BTreeMap<String, (DeviceId, DeviceKey)>,
    commands: BTreeMap<CommandId, Command>,
    command_keys: HashMap<String, CommandId>,
    policies: BTreeMap<String, PolicyRule>,
    last_revision: u64,
    audit: Vec<AuditEntry>,
    head: AuditHead,
    export_cursors: BTreeMap<String, u64>,
    ca_records: Vec<ward_core::ca_rotation::CaRecord>,
    scim_clients: BTreeMap<String, ScimClient>,
    directory: BTreeMap<uuid::Uuid, DirectoryUser>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            tokens: BTreeMap::new(),
            devices: BTreeMap::new(),
            admins: BTreeMap::new(),
            admin_requests: BTreeMap::new(),
            certificates: BTreeMap::new(),
            device_keys: BTreeMap::new(),
            commands: BTreeMap::new(),
            command_keys: HashMap::new(),
            policies: BTreeMap::new(),
            last_revision: 0,
            audit: Vec::new(),
            head: AuditHead {
                seq: 0,
                hash: String::new(),
                signature: Vec::new(),
            },
            export_cursors: BTreeMap::new(),
            ca_records: Vec::new(),
            scim_clients: BTreeMap::new(),
            directory: BTreeMap::new(),
        }
    }
}

impl State {
    /// Appends `events` where the chain's rules say and signs the new head, as the SQL store
    /// does.
    fn append_audit(
        &mut self,
        events: &[(AuditEvent, Timestamp)],
        key: &dyn HeadKey,
    ) -> Result<Appended, StoreError> {
        let Some(((first, first_at), rest)) = events.split_first() else {
            return Err(StoreError::Corrupt("an audit append with no event".into()));
        };
        let head_signed = !self.head.signature.is_empty()
            && key.verify(
                &head_message(self.head.seq, &self.head.hash),
                &self.head.signature,
            );
        let tail = self.audit.last().map(|e| Tail {
            seq: e.seq,
            hash: e.hash.clone(),
        });
        let plan = plan_append(first, *first_at, &self.head, head_signed, tail.as_ref()).map_err(
            |AppendError::AlreadyStarted| {
                StoreError::AlreadyExists("the audit log's genesis".into())
            },
        )?;
        let mut entries: Vec<AuditEntry> = plan.entries().cloned().collect();
        entries.extend(extend(plan.entry.seq, &plan.entry.hash, rest));
        let last = entries.last().unwrap_or(&plan.entry);
        self.head = AuditHead {
            seq: last.seq,
            hash: last.hash.clone(),
            signature: key.sign(&head_message(last.seq, &last.hash))?,
        };
        self.audit.extend(entries);
        Ok(plan)
    }

    /// The admin with the expiry and start of its newest certificate that is not revoked, as
    /// the SQL store reads it.
    fn admin(&self, name: &str) -> Option<Admin> {
        let admin = self.admins.get(name)?;
        let subject = format!("ward://admin/{name}");
        let newest = self
            .certificates
            .values()
            .filter(|c| c.subject == subject && c.revoked_at.is_none())
            .max_by_key(|c| c.not_after);
        Some(Admin {
            expires_at: newest.map(|c| c.not_after),
            not_before: newest.map(|c| c.not_before),
            ..admin.clone()
        })
    }

    fn revoke_subject(&mut self, subject: &str, now: Timestamp) -> Vec<String> {
        let mut serials = Vec::new();
        for cert in self.certificates.values_mut() {
            if cert.subject == subject && cert.revoked_at.is_none() {
                cert.revoked_at = Some(now);
                serials.push(cert.serial.clone());
            }
        }
        serials
    }

    fn open_request(&self, name: &AdminName, now: Timestamp) -> Option<AdminRequest> {
        self.admin_requests
            .values()
            .filter(|r| &r.name == name && r.is_open(now))
            .max_by_key(|r| r.requested_at)
            .cloned()
    }

    /// The device's keys, oldest first (as the SQL store orders them).
    fn keys_of(&self, device: DeviceId) -> Vec<DeviceKey> {
        let mut keys: Vec<DeviceKey> = self
            .device_keys
            .values()
            .filter(|(d, _)| *d == device)
            .map(|(_, k)| k.clone())
            .collect();
        keys.sort_by(|a, b| (a.issued_at, &a.serial).cmp(&(b.issued_at, &b.serial)));
        keys
    }

    fn insert_key(
        &mut self,
        device: DeviceId,
        certificate: &CertificateRecord,
        public_key_der: &[u8],
        in_use_at: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        if self.device_keys.contains_key(&certificate.serial) {
            return Err(StoreError::AlreadyExists(format!(
                "device key {}",
                certificate.serial
            )));
        }
        self.device_keys.insert(
            certificate.serial.clone(),
            (
                device,
                DeviceKey {
                    serial: certificate.serial.clone(),
                    public_key_der: public_key_der.to_vec(),
                    issued_at: certificate.issued_at,
                    in_use_at,
                    replaced_at: None,
                },
            ),
        );
        Ok(())
    }

    fn unfinished(&self, device: DeviceId) -> Vec<Command> {
        let mut out: Vec<Command> = self
            .commands
            .values()
            .filter(|c| c.device_id == device && !c.state.is_terminal())
            .filter(|c| c.state != CommandState::AwaitingApproval)
            .cloned()
            .collect();
        out.sort_by_key(|c| (c.created_at, c.id.0));
        out
    }
}

#[derive(Debug)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    writer: Writer,
    /// Held by the writer from the start of a batch to its end, so an append outside the
    /// writer never lands between a batch's copy of the state and its commit.
    batch: Arc<tokio::sync::Mutex<()>>,
    keeper: super::AuditKeeperSlot,
    /// A write the next job fails (tests of all-or-nothing jobs).
    #[cfg(any(test, feature = "faults"))]
    fault: Fault,
    /// Commands read by id, inside jobs or not (tests of what a path reads).
    command_reads: Arc<AtomicUsize>,
}

/// The name of the [`Tx`] write that fails once, for tests.
#[cfg(any(test, feature = "faults"))]
/// The [`Tx`] write to fail, and how many more of its calls.
type Fault = Arc<Mutex<Option<(&'static str, usize)>>>;

impl MemoryStore {
    pub fn new() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let batch = Arc::new(tokio::sync::Mutex::new(()));
        let keeper = super::AuditKeeperSlot::default();
        #[cfg(any(test, feature = "faults"))]
        let fault = Fault::default();
        let command_reads = Arc::new(AtomicUsize::new(0));
        let engine = MemoryEngine {
            committed: Arc::clone(&state),
            batch: Arc::clone(&batch),
            in_batch: None,
            working: None,
            audit: Vec::new(),
            keeper: keeper.clone(),
            #[cfg(any(test, feature = "faults"))]
            fault: Arc::clone(&fault),
            command_reads: Arc::clone(&command_reads),
        };
        Self {
            state,
            writer: Writer::start(engine, BatchSettings::default()),
            batch,
            keeper,
            #[cfg(any(test, feature = "faults"))]
            fault,
            command_reads,
        }
    }

    /// Makes the next call of the [`Tx`] write `what` (e.g. `"insert_command"`), or of the
    /// read `"find_token"`, fail, so a test can see that the job holding it changes nothing.
    #[cfg(any(test, feature = "faults"))]
    pub fn fail_next(&self, what: &'static str) {
        self.fail_next_times(what, 1);
    }

    /// [`MemoryStore::fail_next`] for the next `times` calls (a write that fails in its batch
    /// and again when it runs alone).
    #[cfg(any(test, feature = "faults"))]
    pub fn fail_next_times(&self, what: &'static str, times: usize) {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = Some((what, times));
    }

    /// How many commands were read by id so far, in jobs and out of them.
    #[cfg(any(test, feature = "faults"))]
    pub fn command_reads(&self) -> usize {
        self.command_reads.load(Ordering::Relaxed)
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

struct MemoryEngine {
    committed: Arc<Mutex<State>>,
    batch: Arc<tokio::sync::Mutex<()>>,
    in_batch: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// A copy of the committed state the batch works on; it replaces the committed state at
    /// commit and is thrown away at rollback.
    working: Option<State>,
    audit: Vec<(AuditEvent, Timestamp)>,
    keeper: super::AuditKeeperSlot,
    #[cfg(any(test, feature = "faults"))]
    fault: Fault,
    command_reads: Arc<AtomicUsize>,
}

/// Fails if a test asked for `what` to fail ([`MemoryStore::fail_next`]), as many times as
/// it asked.
#[cfg(any(test, feature = "faults"))]
fn injected(fault: &Fault, what: &'static str) -> Result<(), StoreError> {
    let mut fault = fault.lock().unwrap_or_else(PoisonError::into_inner);
    match *fault {
        Some((failing, times)) if failing == what => {
            *fault = (times > 1).then_some((what, times - 1));
            Err(StoreError::Database(format!("injected fault in {what}")))
        }
        _ => Ok(()),
    }
}

impl MemoryEngine {
    /// Fails if a test asked for `what` to fail (once).
    #[cfg(any(test, feature = "faults"))]
    fn fault(&self, what: &'static str) -> Result<(), StoreError> {
        injected(&self.fault, what)
    }

    #[cfg(not(any(test, feature = "faults")))]
    #[allow(clippy::unused_self)]
    fn fault(&self, _what: &'static str) -> Result<(), StoreError> {
        Ok(())
    }

    fn state(&mut self) -> Result<&mut State, StoreError> {
        self.working
            .as_mut()
            .ok_or_else(|| StoreError::Database("no transaction is open".into()))
    }

    /// One claim of [`Tx::redeem_tokens`].
    fn redeem(
        &mut self,
        hash: &TokenHash,
        now: Timestamp,
        device: &NewDevice,
    ) -> Result<Option<UserEmail>, StoreError> {
        let state = self.state()?;
        let Some(token) = state.tokens.get_mut(&hash.0) else {
            return Ok(None);
        };
        if token.used_at.is_some() || token.withdrawn_at.is_some() || token.expires_at <= now {
            return Ok(None);
        }
        if state.devices.contains_key(&device.id)
            || state.certificates.contains_key(&device.certificate.serial)
        {
            return Err(StoreError::AlreadyExists(format!("device {}", device.id)));
        }
        token.used_at = Some(now);
        token.device_id = Some(device.id);
        let user = token.user.clone();
        state.devices.insert(
            device.id,
            DeviceRow {
                device: Device {
                    id: device.id,
                    user: user.clone(),
                    state: DeviceState::Active,
                    facts: device.facts.clone(),
                    enrolled_at: now,
                    last_seen: None,
                    certificate_serial: device.certificate.serial.clone(),
                    certificate_expires_at: device.certificate.not_after,
                    public_key_der: Some(device.public_key_der.clone()),
                    compliance: None,
                    offline_wipe: None,
                    inventory: None,
                    disabled: None,
                    enforcement: Vec::new(),
                    renewal_conflict: None,
                    trusted_cas: Vec::new(),
                },
                posture: HashMap::new(),
            },
        );
        state.certificates.insert(
            device.certificate.serial.clone(),
            device.certificate.clone(),
        );
        state.insert_key(
            device.id,
            &device.certificate,
            &device.public_key_der,
            Some(now),
        )?;
        Ok(Some(user))
    }
}

#[async_trait]
impl Engine for MemoryEngine {
    async fn begin(&mut self) -> Result<(), StoreError> {
        self.in_batch = Some(Arc::clone(&self.batch).lock_owned().await);
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.working = Some(committed);
        self.audit.clear();
        Ok(())
    }

    fn tx(&mut self) -> &mut dyn Tx {
        self
    }

    async fn commit(&mut self) -> Result<(), StoreError> {
        if !self.audit.is_empty() {
            self.fault("audit")?;
        }
        let events = std::mem::take(&mut self.audit);
        let keeper = self.keeper.get().cloned();
        let state = self.state()?;
        let appended = if events.is_empty() {
            None
        } else {
            let keeper = keeper
                .ok_or_else(|| StoreError::Database("no key to sign the audit head".into()))?;
            let plan = state.append_audit(&events, keeper.as_ref())?;
            let count = events.len() as u64 + u64::from(plan.chain_break.is_some());
            Some((keeper, plan, count))
        };
        let next = self.working.take().unwrap_or_default();
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next;
        self.in_batch = None;
        if let Some((keeper, plan, count)) = appended {
            let chain_break = plan.chain_break.as_ref().map(|(found, e)| (found, e.seq));
            keeper.appended(count, chain_break);
        }
        Ok(())
    }

    async fn rollback(&mut self) {
        self.working = None;
        self.audit.clear();
        self.in_batch = None;
    }
}

#[async_trait]
impl Tx for MemoryEngine {
    async fn device(&mut self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        self.state()?
            .devices
            .get(&id)
            .map(DeviceRow::read)
            .transpose()
    }

    async fn device_briefs(&mut self, user: &UserEmail) -> Result<Vec<DeviceBrief>, StoreError> {
        Ok(briefs(self.state()?, user))
    }

    async fn token(&mut self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.state()?.tokens.get(&hash.0).cloned())
    }

    async fn admin(&mut self, name: &AdminName) -> Result<Option<Admin>, StoreError> {
        Ok(self.state()?.admin(name.as_str()))
    }

    async fn certificate(&mut self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        Ok(self.state()?.certificates.get(serial).cloned())
    }

    async fn command(&mut self, id: CommandId) -> Result<Option<Command>, StoreError> {
        self.command_reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.state()?.commands.get(&id).cloned())
    }

    async fn device_keys(&mut self, device: DeviceId) -> Result<Vec<DeviceKey>, StoreError> {
        Ok(self.state()?.keys_of(device))
    }

    async fn command_by_key(&mut self, key: &str) -> Result<Option<Command>, StoreError> {
        let state = self.state()?;
        Ok(state
            .command_keys
            .get(key)
            .and_then(|id| state.commands.get(id))
            .cloned())
    }

    async fn unfinished_commands(&mut self, device: DeviceId) -> Result<Vec<Command>, StoreError> {
        Ok(self.state()?.unfinished(device))
    }

    async fn policy(&mut self, scope: &PolicyScope) -> Result<Option<PolicyRule>, StoreError> {
        Ok(self.state()?.policies.get(&scope.to_string()).cloned())
    }

    async fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError> {
        let state = self.state()?;
        if state.tokens.contains_key(&token.hash.0) {
            return Err(StoreError::AlreadyExists("token".into()));
        }
        state.tokens.insert(token.hash.0, token.clone());
        Ok(())
    }

    async fn redeem_tokens(
        &mut self,
        claims: &[TokenClaim<'_>],
    ) -> Result<Vec<Option<UserEmail>>, StoreError> {
        self.fault("redeem_tokens")?;
        // In turn: a token's second claim finds it used.
        claims
            .iter()
            .map(|claim| self.redeem(claim.hash, claim.now, claim.device))
            .collect()
    }

    async fn expire_token(&mut self, hash: &TokenHash, now: Timestamp) -> Result<bool, StoreError> {
        match self.state()?.tokens.get_mut(&hash.0) {
            Some(token)
                if token.used_at.is_none()
                    && token.withdrawn_at.is_none()
                    && token.expires_at > now =>
            {
                token.expires_at = now;
                token.withdrawn_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn expire_unused_tokens(
        &mut self,
        user: &UserEmail,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut withdrawn = 0;
        for token in self.state()?.tokens.values_mut() {
            if &token.user == user && token.used_at.is_none() && token.withdrawn_at.is_none() {
                if token.expires_at > now {
                    token.expires_at = now;
                    withdrawn += 1;
                }
                token.withdrawn_at = Some(now);
            }
        }
        Ok(withdrawn)
    }

    async fn record_check_ins(
        &mut self,
        writes: &[CheckInWrite<'_>],
    ) -> Result<Vec<Option<Device>>, StoreError> {
        self.fault("record_check_ins")?;
        CheckInWrite::each_device_once(writes)?;
        let state = self.state()?;
        let mut written = Vec::with_capacity(writes.len());
        for write in writes {
            written.push(match state.devices.get_mut(&write.id) {
                Some(row) if row.device.state == DeviceState::Active => {
                    if let Some(facts) = write.facts {
                        row.device.facts = facts.clone();
                    }
                    if let Some(compliance) = write.compliance {
                        row.device.compliance = Some(compliance.clone());
                    }
                    row.device.last_seen = Some(write.now);
                    Some(row.read()?)
                }
                _ => None,
            });
        }
        Ok(written)
    }

    async fn insert_admin(
        &mut self,
        admin: &Admin,
        certificate: &CertificateRecord,
    ) -> Result<bool, StoreError> {
        let state = self.state()?;
        if state.admins.contains_key(admin.name.as_str()) {
            return Ok(false);
        }
        if state.certificates.contains_key(&certificate.serial) {
            return Err(StoreError::AlreadyExists(format!(
                "certificate {}",
                certificate.serial
            )));
        }
        state
            .admins
            .insert(admin.name.as_str().to_owned(), admin.clone());
        state
            .certificates
            .insert(certificate.serial.clone(), certificate.clone());
        Ok(true)
    }

    async fn insert_command(&mut self, command: &Command) -> Result<(Command, bool), StoreError> {
        self.fault("insert_command")?;
        let state = self.state()?;
        if let Some(existing) = state
            .command_keys
            .get(&command.idempotency_key)
            .and_then(|id| state.commands.get(id))
        {
            return Ok((existing.clone(), false));
        }
        if !state.devices.contains_key(&command.device_id) {
            return Err(StoreError::Database(format!(
                "no device {} for the command",
                command.device_id
            )));
        }
        if state.commands.contains_key(&command.id) {
            return Err(StoreError::AlreadyExists(format!("command {}", command.id)));
        }
        // What the SQL store writes on insert: no history yet.
        let stored = command.as_inserted();
        state
            .command_keys
            .insert(stored.idempotency_key.clone(), stored.id);
        state.commands.insert(stored.id, stored.clone());
        Ok((stored, true))
    }

    async fn commands(&mut self, ids: &[CommandId]) -> Result<Vec<Command>, StoreError> {
        self.command_reads.fetch_add(ids.len(), Ordering::Relaxed);
        let state = self.state()?;
        Ok(ids
            .iter()
            .filter_map(|id| state.commands.get(id))
            .cloned()
            .collect())
    }

    async fn update_commands(
        &mut self,
        changes: &[(CommandVersion, Command)],
    ) -> Result<Vec<CommandId>, StoreError> {
        let mut written = Vec::new();
        for (expected, next) in changes {
            if self.update_command(*expected, next).await? {
                written.push(next.id);
            }
        }
        Ok(written)
    }

    async fn update_command(
        &mut self,
        expected: CommandVersion,
        next: &Command,
    ) -> Result<bool, StoreError> {
        Ok(match self.state()?.commands.get_mut(&next.id) {
            Some(stored) if stored.version() == expected && stored.is_same_instruction(next) => {
                // The columns an update writes; the rest is fixed at insert.
                stored.state = next.state;
                stored.failure_reason = next.failure_reason.clone();
                stored.delivered_at = next.delivered_at;
                stored.acknowledged_at = next.acknowledged_at;
                stored.finished_at = next.finished_at;
                stored.deliveries = next.deliveries;
                stored.receipt = next.receipt.clone();
                stored.approved_by = next.approved_by.clone();
                true
            }
            _ => false,
        })
    }

    async fn put_policy(
        &mut self,
        scope: &PolicyScope,
        body: &PolicyBody,
        updated_by: &str,
        now: Timestamp,
    ) -> Result<PolicyRule, StoreError> {
        let state = self.state()?;
        state.last_revision += 1;
        let stored = PolicyRule {
            scope: scope.clone(),
            body: body.clone(),
            revision: state.last_revision,
            updated_at: now,
            updated_by: updated_by.to_owned(),
        };
        state.policies.insert(scope.to_string(), stored.clone());
        Ok(stored)
    }

    async fn delete_policy(&mut self, scope: &PolicyScope) -> Result<bool, StoreError> {
        Ok(self.state()?.policies.remove(&scope.to_string()).is_some())
    }

    async fn record_compliance(
        &mut self,
        device: DeviceId,
        compliance: &Compliance,
    ) -> Result<bool, StoreError> {
        self.fault("record_compliance")?;
        Ok(match self.state()?.devices.get_mut(&device) {
            Some(row) => {
                row.device.compliance = Some(compliance.clone());
                true
            }
            None => false,
        })
    }

    async fn revoke_devices(
        &mut self,
        devices: &[DeviceId],
        now: Timestamp,
    ) -> Result<HashMap<DeviceId, Vec<String>>, StoreError> {
        self.fault("revoke_device")?;
        let state = self.state()?;
        let mut revoked: HashMap<DeviceId, Vec<String>> = HashMap::with_capacity(devices.len());
        for &device in devices {
            let Some(row) = state.devices.get_mut(&device) else {
                continue;
            };
            if row.device.state != DeviceState::Retired {
                row.device.state = DeviceState::Revoked;
            }
            let serials =
                state.revoke_subject(&ward_certs::Identity::Device(device.0).to_uri(), now);
            revoked.entry(device).or_default().extend(serials);
        }
        Ok(revoked)
    }

    async fn record_renewal(
        &mut self,
        device: DeviceId,
        certificate: &CertificateRecord,
        public_key_der: &[u8],
    ) -> Result<(), StoreError> {
        let state = self.state()?;
        if state.certificates.contains_key(&certificate.serial) {
            return Err(StoreError::AlreadyExists(format!(
                "certificate {}",
                certificate.serial
            )));
        }
        state
            .certificates
            .insert(certificate.serial.clone(), certificate.clone());
        state.insert_key(device, certificate, public_key_der, None)
    }

    async fn switch_key(
        &mut self,
        device: DeviceId,
        serial: &str,
        now: Timestamp,
    ) -> Result<Option<KeySwitch>, StoreError> {
        let state = self.state()?;
        let keys = state.keys_of(device);
        let Some((chosen, others)) = plan_switch(&keys, serial) else {
            return Ok(None);
        };
        let Some(not_after) = state.certificates.get(serial).map(|c| c.not_after) else {
            return Err(StoreError::Corrupt(format!(
                "device key {serial} has no certificate record"
            )));
        };
        let mut revoked = Vec::new();
        for (owner, key) in state.device_keys.values_mut() {
            if *owner != device {
                continue;
            }
            if key.serial == serial {
                key.in_use_at = Some(now);
            } else if key.replaced_at.is_none() {
                key.replaced_at = Some(now);
                if let Some(cert) = state.certificates.get_mut(&key.serial)
                    && cert.revoked_at.is_none()
                {
                    cert.revoked_at = Some(now);
                    revoked.push(key.serial.clone());
                }
            }
        }
        if let Some(row) = state.devices.get_mut(&device) {
            row.device.certificate_serial = serial.to_owned();
            row.device.certificate_expires_at = not_after;
            row.device.public_key_der = Some(chosen.public_key_der.clone());
        }
        revoked.sort();
        Ok(Some(KeySwitch {
            revoked,
            other_parties: other_parties(&chosen, &others),
        }))
    }

    async fn flag_renewal_conflict(
        &mut self,
        device: DeviceId,
        conflict: &RenewalConflict,
    ) -> Result<bool, StoreError> {
        Ok(match self.state()?.devices.get_mut(&device) {
            Some(row) => {
                row.device.renewal_conflict = Some(conflict.clone());
                true
            }
            None => false,
        })
    }

    async fn set_device_posture(
        &mut self,
        device: DeviceId,
        field: PostureField,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.fault("set_device_posture")?;
        Ok(match self.state()?.devices.get_mut(&device) {
            Some(row) => {
                set_posture(row, field, json);
                true
            }
            None => false,
        })
    }

    async fn swap_device_posture(
        &mut self,
        device: DeviceId,
        field: PostureField,
        expected: Option<&str>,
        json: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.fault("swap_device_posture")?;
        Ok(match self.state()?.devices.get_mut(&device) {
            Some(row) if row.posture.get(&field.into()).map(String::as_str) == expected => {
                set_posture(row, field, json);
                true
            }
            _ => false,
        })
    }

    async fn set_device_state(
        &mut self,
        device: DeviceId,
        state: DeviceState,
    ) -> Result<bool, StoreError> {
        Ok(match self.state()?.devices.get_mut(&device) {
            Some(row) => {
                row.device.state = state;
                true
            }
            None => false,
        })
    }

    async fn record_offline_wipe(
        &mut self,
        device: DeviceId,
        wipe: &OfflineWipe,
        _receipt: &ward_certs::receipt::SignedReceipt,
    ) -> Result<bool, StoreError> {
        Ok(match self.state()?.devices.get_mut(&device) {
            Some(row) => {
                row.device.offline_wipe = Some(wipe.clone());
                true
            }
            None => false,
        })
    }

    async fn renew_admin(
        &mut self,
        name: &AdminName,
        certificate: &CertificateRecord,
        certificate_by: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let state = self.state()?;
        match state.admins.get_mut(name.as_str()) {
            Some(admin) if admin.revoked.is_none() => {
                admin.certificate_by = certificate_by.map(str::to_owned);
            }
            _ => return Ok(None),
        }
        let revoked =
            state.revoke_subject(&ward_certs::Identity::Admin(name.clone()).to_uri(), now);
        if state.certificates.contains_key(&certificate.serial) {
            return Err(StoreError::AlreadyExists(format!(
                "certificate {}",
                certificate.serial
            )));
        }
        state
            .certificates
            .insert(certificate.serial.clone(), certificate.clone());
        Ok(Some(revoked))
    }

    async fn revoke_admin(
        &mut self,
        name: &AdminName,
        by: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<RevokeOutcome, StoreError> {
        let state = self.state()?;
        let Some(admin) = state.admin(name.as_str()) else {
            return Ok(RevokeOutcome::NotFound);
        };
        if let Some(revocation) = admin.revoked {
            return Ok(RevokeOutcome::AlreadyRevoked(revocation));
        }
        if admin.role == AdminRole::Admin {
            let others = state
                .admins
                .values()
                .filter(|a| {
                    a.role == AdminRole::Admin && a.revoked.is_none() && a.name != admin.name
                })
                .filter(|a| {
                    let subject = format!("ward://admin/{}", a.name);
                    state.certificates.values().any(|c| {
                        c.subject == subject && c.revoked_at.is_none() && c.not_after > now
                    })
                })
                .count();
            if others == 0 {
                return Ok(RevokeOutcome::LastAdmin);
            }
        }
        if let Some(stored) = state.admins.get_mut(name.as_str()) {
            stored.revoked = Some(AdminRevocation {
                at: now,
                by: by.to_owned(),
                reason: reason.to_owned(),
            });
        }
        Ok(RevokeOutcome::Revoked(state.revoke_subject(
            &ward_certs::Identity::Admin(name.clone()).to_uri(),
            now,
        )))
    }

    async fn open_admin_request(
        &mut self,
        request: &AdminRequest,
        now: Timestamp,
    ) -> Result<AdminRequest, StoreError> {
        let state = self.state()?;
        if let Some(open) = state.open_request(&request.name, now) {
            return Ok(open);
        }
        state
            .admin_requests
            .insert(request.id.clone(), request.clone());
        Ok(request.clone())
    }

    async fn approve_admin_request(
        &mut self,
        id: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(match self.state()?.admin_requests.get_mut(id) {
            Some(r) if r.approved_by.is_none() && r.is_open(now) => {
                r.approved_by = Some(by.to_owned());
                r.approved_at = Some(now);
                true
            }
            _ => false,
        })
    }

    async fn use_admin_request(&mut self, id: &str, now: Timestamp) -> Result<bool, StoreError> {
        Ok(match self.state()?.admin_requests.get_mut(id) {
            Some(r) if r.approved_by.is_some() && r.is_open(now) => {
                r.used_at = Some(now);
                true
            }
            _ => false,
        })
    }

    async fn withdraw_ca_rotation_requests(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<String>, StoreError> {
        let mut withdrawn = Vec::new();
        for request in self.state()?.admin_requests.values_mut() {
            if request.kind.is_ca_rotation() && request.is_open(now) {
                request.expires_at = now;
                withdrawn.push(request.id.clone());
            }
        }
        withdrawn.sort();
        Ok(withdrawn)
    }

    async fn set_export_cursor(
        &mut self,
        name: &str,
        seq: u64,
        _now: Timestamp,
    ) -> Result<(), StoreError> {
        let cursor = self
            .state()?
            .export_cursors
            .entry(name.to_owned())
            .or_insert(0);
        *cursor = (*cursor).max(seq);
        Ok(())
    }

    async fn ca_records(&mut self) -> Result<Vec<ward_core::ca_rotation::CaRecord>, StoreError> {
        Ok(self.state()?.ca_records.clone())
    }

    async fn set_ca_state(
        &mut self,
        hash: &str,
        state: ward_core::ca_rotation::CaState,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let records = &mut self.state()?.ca_records;
        records.retain(|r| r.hash != hash);
        records.push(ward_core::ca_rotation::CaRecord {
            hash: hash.to_owned(),
            state,
            changed_at: now,
        });
        Ok(())
    }

    async fn scim_client(&mut self, name: &AdminName) -> Result<Option<ScimClient>, StoreError> {
        Ok(self.state()?.scim_clients.get(name.as_str()).cloned())
    }

    async fn insert_scim_client(&mut self, client: &ScimClient) -> Result<bool, StoreError> {
        let clients = &mut self.state()?.scim_clients;
        if clients
            .get(client.name.as_str())
            .is_some_and(|c| c.revoked_at.is_none())
        {
            return Ok(false);
        }
        clients.insert(client.name.to_string(), client.clone());
        Ok(true)
    }

    async fn revoke_scim_client(
        &mut self,
        name: &AdminName,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        match self.state()?.scim_clients.get_mut(name.as_str()) {
            Some(c) if c.revoked_at.is_none() => {
                c.revoked_at = Some(now);
                c.revoked_by = Some(by.to_owned());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn directory_user(
        &mut self,
        id: uuid::Uuid,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        Ok(self.state()?.directory.get(&id).cloned())
    }

    async fn directory_user_named(
        &mut self,
        user: &UserEmail,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        Ok(self
            .state()?
            .directory
            .values()
            .find(|u| &u.user == user)
            .cloned())
    }

    async fn directory_user_by_user_name(
        &mut self,
        user_name: &str,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        Ok(self
            .state()?
            .directory
            .values()
            .find(|u| u.user_name.to_lowercase() == user_name.to_lowercase())
            .cloned())
    }

    async fn put_directory_user(&mut self, user: &DirectoryUser) -> Result<(), StoreError> {
        let directory = &mut self.state()?.directory;
        if directory.values().any(|u| {
            u.id != user.id
                && (u.user == user.user
                    || u.user_name.to_lowercase() == user.user_name.to_lowercase())
        }) {
            return Err(StoreError::AlreadyExists(format!(
                "directory user {}",
                user.user
            )));
        }
        directory.insert(user.id, user.clone());
        Ok(())
    }

    fn audit(&mut self, event: AuditEvent, at: Timestamp) {
        self.audit.push((event, at));
    }
}

fn set_posture(row: &mut DeviceRow, field: PostureField, json: Option<&str>) {
    match json {
        Some(json) => row.posture.insert(field.into(), json.to_owned()),
        None => row.posture.remove(&field.into()),
    };
}

/// [`devices`] in brief, from the columns alone (as SQL reads them: no posture is parsed).
fn briefs(state: &State, user: &UserEmail) -> Vec<DeviceBrief> {
    let mut rows: Vec<&Device> = state
        .devices
        .values()
        .map(|row| &row.device)
        .filter(|d| &d.user == user)
        .collect();
    rows.sort_by_key(|d| (d.enrolled_at, d.id.0));
    rows.into_iter().map(DeviceBrief::from).collect()
}

fn devices(state: &State, user: Option<&UserEmail>) -> Result<Vec<Device>, StoreError> {
    let mut out: Vec<Device> = state
        .devices
        .values()
        .filter(|row| user.is_none_or(|u| &row.device.user == u))
        .map(DeviceRow::read)
        .collect::<Result<_, _>>()?;
    out.sort_by(|a, b| {
        (a.user.as_str(), a.enrolled_at, a.id.0).cmp(&(b.user.as_str(), b.enrolled_at, b.id.0))
    });
    Ok(out)
}

#[async_trait]
impl Store for MemoryStore {
    fn writer(&self) -> &Writer {
        &self.writer
    }

    fn audit_keeper(&self) -> &super::AuditKeeperSlot {
        &self.keeper
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        #[cfg(any(test, feature = "faults"))]
        injected(&self.fault, "find_token")?;
        Ok(self.read(|s| s.tokens.get(&hash.0).cloned()))
    }

    async fn list_usable_tokens(
        &self,
        user: Option<&UserEmail>,
        now: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let mut usable: Vec<TokenRecord> = self.read(|s| {
            s.tokens
                .values()
                .filter(|t| t.used_at.is_none() && t.withdrawn_at.is_none() && t.expires_at > now)
                .filter(|t| user.is_none_or(|u| &t.user == u))
                .cloned()
                .collect()
        });
        usable.sort_by_key(|t| (t.created_at, t.hash.to_hex()));
        Ok(usable)
    }

    async fn get_device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        self.read(|s| s.devices.get(&id).map(DeviceRow::read).transpose())
    }

    async fn list_devices(&self, user: Option<&UserEmail>) -> Result<Vec<Device>, StoreError> {
        self.read(|s| devices(s, user))
    }

    async fn device_briefs(&self, user: &UserEmail) -> Result<Vec<DeviceBrief>, StoreError> {
        Ok(self.read(|s| briefs(s, user)))
    }

    async fn get_admin(&self, name: &AdminName) -> Result<Option<Admin>, StoreError> {
        Ok(self.read(|s| s.admin(name.as_str())))
    }

    async fn list_admins(&self) -> Result<Vec<Admin>, StoreError> {
        Ok(self.read(|s| s.admins.keys().filter_map(|n| s.admin(n)).collect()))
    }

    async fn admin_request(
        &self,
        name: &AdminName,
        now: Timestamp,
    ) -> Result<Option<AdminRequest>, StoreError> {
        Ok(self.read(|s| s.open_request(name, now)))
    }

    async fn list_admin_requests(&self, now: Timestamp) -> Result<Vec<AdminRequest>, StoreError> {
        let mut open: Vec<AdminRequest> = self.read(|s| {
            s.admin_requests
                .values()
                .filter(|r| r.is_open(now))
                .cloned()
                .collect()
        });
        open.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        Ok(open)
    }

    async fn get_certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        Ok(self.read(|s| s.certificates.get(serial).cloned()))
    }

    async fn device_keys_of(
        &self,
        devices: &[DeviceId],
    ) -> Result<HashMap<DeviceId, Vec<DeviceKey>>, StoreError> {
        Ok(self.read(|s| {
            devices
                .iter()
                .map(|&device| (device, s.keys_of(device)))
                .filter(|(_, keys)| !keys.is_empty())
                .collect()
        }))
    }

    async fn get_command(&self, id: CommandId) -> Result<Option<Command>, StoreError> {
        self.command_reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.read(|s| s.commands.get(&id).cloned()))
    }

    async fn command_by_key(&self, idempotency_key: &str) -> Result<Option<Command>, StoreError> {
        Ok(self.read(|s| {
            s.command_keys
                .get(idempotency_key)
                .and_then(|id| s.commands.get(id))
                .cloned()
        }))
    }

    async fn commands_by_key_prefix(&self, prefix: &str) -> Result<Vec<Command>, StoreError> {
        let mut found: Vec<Command> = self.read(|s| {
            s.commands
                .values()
                .filter(|c| c.idempotency_key.starts_with(prefix))
                .cloned()
                .collect()
        });
        found.sort_by_key(|c| (c.created_at, c.id.0));
        Ok(found)
    }

    async fn commands_past_deadline(&self, now: Timestamp) -> Result<Vec<Command>, StoreError> {
        Ok(self.read(|s| {
            s.commands
                .values()
                .filter(|c| c.state == CommandState::Queued && c.deadline.is_some_and(|d| d <= now))
                .cloned()
                .collect()
        }))
    }

    async fn list_commands(
        &self,
        device: Option<DeviceId>,
        state: Option<CommandState>,
    ) -> Result<Vec<Command>, StoreError> {
        let mut out: Vec<Command> = self.read(|s| {
            s.commands
                .values()
                .filter(|c| device.is_none_or(|d| c.device_id == d))
                .filter(|c| state.is_none_or(|st| c.state == st))
                .cloned()
                .collect()
        });
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.0.cmp(&b.id.0)));
        Ok(out)
    }

    async fn unfinished_commands(&self, device: DeviceId) -> Result<Vec<Command>, StoreError> {
        Ok(self.read(|s| s.unfinished(device)))
    }

    async fn get_policy(&self, scope: &PolicyScope) -> Result<Option<PolicyRule>, StoreError> {
        Ok(self.read(|s| s.policies.get(&scope.to_string()).cloned()))
    }

    async fn list_policies(&self) -> Result<Vec<PolicyRule>, StoreError> {
        Ok(self.read(|s| s.policies.values().cloned().collect()))
    }

    async fn revoked_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        Ok(self.read(|s| {
            s.certificates
                .values()
                .filter(|c| c.revoked_at.is_some() && c.not_after > now)
                .map(|c| c.serial.clone())
                .collect()
        }))
    }

    async fn live_certificates(
        &self,
        now: Timestamp,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        Ok(self.read(|s| {
            s.certificates
                .values()
                .filter(|c| c.revoked_at.is_none() && c.not_after > now)
                .cloned()
                .collect()
        }))
    }

    async fn ca_records(&self) -> Result<Vec<ward_core::ca_rotation::CaRecord>, StoreError> {
        Ok(self.read(|s| s.ca_records.clone()))
    }

    async fn replaced_serials(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let prefix = ward_certs::Identity::admin_uri_prefix();
        Ok(self.read(|s| {
            let since = now.unix_ms() - ward_core::admins::RENEWED_CONNECTION_GRACE_MS;
            let admins = s.certificates.values().filter(|c| {
                c.revoked_at.is_some_and(|at| at.unix_ms() > since)
                    && c.not_after > now
                    && c.subject
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|name| s.admins.get(name).is_some_and(|a| a.revoked.is_none()))
            });
            let admins: Vec<String> = admins.map(|c| c.serial.clone()).collect();
            s.device_keys
                .values()
                .filter(|(device, key)| {
                    key.replaced_at.is_some()
                        && s.certificates
                            .get(&key.serial)
                            .is_some_and(|c| c.not_after > now)
                        && s.devices
                            .get(device)
                            .is_some_and(|d| d.device.state == DeviceState::Active)
                })
                .map(|(_, key)| key.serial.clone())
                .chain(admins)
                .collect()
        }))
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.read(|s| {
            s.audit
                .iter()
                .filter(|e| filter.since.is_none_or(|t| e.at >= t))
                .filter(|e| filter.actor.as_ref().is_none_or(|a| &e.actor == a))
                .filter(|e| filter.target.as_ref().is_none_or(|t| &e.target == t))
                .filter(|e| e.seq > filter.after_seq.unwrap_or(0))
                .filter(|e| filter.until.is_none_or(|t| e.at < t))
                .filter(|e| {
                    filter.device.is_none_or(|d| {
                        let id = d.to_string();
                        e.target == id
                            || e.target
                                .parse()
                                .ok()
                                .and_then(|c| s.commands.get(&c))
                                .is_some_and(|c| c.device_id == d)
                    })
                })
                .take(filter.limit.map_or(usize::MAX, |l| l as usize))
                .cloned()
                .collect()
        }))
    }

    async fn audit_head(&self) -> Result<AuditHead, StoreError> {
        Ok(self.read(|s| s.head.clone()))
    }

    async fn export_cursor(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.read(|s| s.export_cursors.get(name).copied().unwrap_or(0)))
    }

    async fn scim_client_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<ScimClient>, StoreError> {
        Ok(self.read(|s| {
            s.scim_clients
                .values()
                .find(|c| c.token_hash == token_hash && c.revoked_at.is_none())
                .cloned()
        }))
    }

    async fn list_scim_clients(&self) -> Result<Vec<ScimClient>, StoreError> {
        Ok(self.read(|s| s.scim_clients.values().cloned().collect()))
    }

    async fn list_directory_users(&self) -> Result<Vec<DirectoryUser>, StoreError> {
        let mut users: Vec<DirectoryUser> = self.read(|s| s.directory.values().cloned().collect());
        users.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(users)
    }

    async fn get_directory_user(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        Ok(self.read(|s| s.directory.get(&id).cloned()))
    }

    async fn find_directory_user(
        &self,
        user: &UserEmail,
    ) -> Result<Option<DirectoryUser>, StoreError> {
        Ok(self.read(|s| s.directory.values().find(|u| &u.user == user).cloned()))
    }

    async fn count_commands(&self) -> Result<Vec<(CommandState, u64)>, StoreError> {
        Ok(self.read(|s| {
            let mut counts: BTreeMap<&'static str, (CommandState, u64)> = BTreeMap::new();
            for c in s.commands.values() {
                counts.entry(c.state.as_str()).or_insert((c.state, 0)).1 += 1;
            }
            counts.into_values().collect()
        }))
    }

    async fn append_audit(
        &self,
        event: &AuditEvent,
        at: Timestamp,
        sign: &HeadSigner<'_>,
        verify_head: &HeadVerifier<'_>,
    ) -> Result<Appended, StoreError> {
        // Between two batches, never inside one.
        let _between = self.batch.lock().await;
        let key = super::ClosureKey { sign, verify_head };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.append_audit(&[(event.clone(), at)], &key)
    }
}
