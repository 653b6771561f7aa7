//! What every agent call reads, kept in memory: the client certificates already validated
//! (by the SHA-256 of their DER, so a connection's certificate is checked against the store
//! once, not per call), the devices behind them (active, or the state that refuses them), and
//! the effective policies by user; also the device certificates found revoked on record,
//! refused again without a look at the store (a revocation is never undone, so that entry
//! cannot go stale).
//!
//! Entries are dropped by the events that change them — a revocation, a policy change, work
//! for a device — whether they happen here or are announced by another replica; policies
//! also at the periodic refresh that covers a lost announcement. A certificate found here is
//! still checked at every call against the in-memory revocation list and its expiry, so a
//! revocation takes effect at the next call. A read that raced with an invalidation is not
//! kept (each cache has a generation number that every invalidation bumps).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

use time::OffsetDateTime;
use ward_certs::Identity;

use super::ActiveDevice;
use crate::core::{DeviceId, DeviceState, StoredPolicy, UserEmail};

/// The most entries one cache holds; past it the cache starts again empty (a fleet larger
/// than this only reads the store more often).
const MAX_ENTRIES: usize = 200_000;

/// A client certificate that was validated and found on record, unrevoked.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub identity: Identity,
    /// Lower-case hex, as the revocation list holds it.
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// The SHA-256 of a certificate's DER.
pub(super) type CertHash = [u8; 32];

/// A device as last read from the store.
#[derive(Clone, Debug)]
pub(super) enum KnownDevice {
    Active(ActiveDevice),
    /// Revoked or retired: its calls are refused. Kept too, so that the streams and the
    /// calls of a thousand devices revoked at once (a mass offboarding) do not each read the
    /// store to learn it again.
    Refused(DeviceState),
}

#[derive(Debug, Default)]
pub(super) struct Reads {
    peers: Mutex<Generations<CertHash, Peer>>,
    devices: Mutex<Generations<DeviceId, KnownDevice>>,
    policies: Mutex<Generations<UserEmail, StoredPolicy>>,
    refused: Mutex<HashSet<CertHash>>,
}

#[derive(Debug)]
struct Generations<K, V> {
    number: u64,
    entries: HashMap<K, V>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Self {
            number: 0,
            entries: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Generations<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.entries.get(key).cloned()
    }

    /// Keeps `value`, read from the store after generation `since`, unless something was
    /// invalidated since (the read may predate the change).
    fn fill(&mut self, since: u64, key: K, value: V) {
        if self.number != since {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        self.entries.insert(key, value);
    }

    fn forget(&mut self, key: &K) -> Option<V> {
        self.number += 1;
        self.entries.remove(key)
    }

    fn clear(&mut self) {
        self.number += 1;
        self.entries.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Reads {
    pub(super) fn peer(&self, hash: &CertHash) -> Option<Peer> {
        lock(&self.peers).get(hash)
    }

    pub(super) fn peer_generation(&self) -> u64 {
        lock(&self.peers).number
    }

    pub(super) fn remember_peer(&self, since: u64, hash: CertHash, peer: Peer) {
        lock(&self.peers).fill(since, hash, peer);
    }

    pub(super) fn forget_peer(&self, hash: &CertHash) {
        lock(&self.peers).forget(hash);
    }

    /// Whether the certificate was found revoked on record before.
    pub(super) fn refused(&self, hash: &CertHash) -> bool {
        lock(&self.refused).contains(hash)
    }

    /// The certificate was found revoked on record, and what a call with it sets off was done:
    /// its next calls are refused at once (a revoked device's agent asks again at its
    /// backoff's pace, thousands at once after a mass offboarding).
    pub(super) fn remember_refused(&self, hash: CertHash) {
        let mut refused = lock(&self.refused);
        if refused.len() >= MAX_ENTRIES {
            refused.clear();
        }
        refused.insert(hash);
    }

    /// Forgets every certificate seen: each is checked in full at its next call (the CAs
    /// trusted changed).
    pub(super) fn forget_peers(&self) {
        lock(&self.peers).clear();
    }

    pub(super) fn device(&self, id: DeviceId) -> Option<KnownDevice> {
        lock(&self.devices).get(&id)
    }

    pub(super) fn device_generation(&self) -> u64 {
        lock(&self.devices).number
    }

    pub(super) fn remember_device(&self, since: u64, id: DeviceId, device: KnownDevice) {
        lock(&self.devices).fill(since, id, device);
    }

    pub(super) fn policy(&self, user: &UserEmail) -> Option<StoredPolicy> {
        lock(&self.policies).get(user)
    }

    pub(super) fn policy_generation(&self) -> u64 {
        lock(&self.policies).number
    }

    pub(super) fn remember_policy(&self, since: u64, user: UserEmail, policy: StoredPolicy) {
        lock(&self.policies).fill(since, user, policy);
    }

    /// The device's state may have changed (revoked, retired).
    pub(super) fn device_changed(&self, id: DeviceId) {
        lock(&self.devices).forget(&id);
    }

    /// A job this replica committed left the device in `state`: kept as refused at once
    /// (after a generation step, so a read older than the commit cannot replace it), so its
    /// stream and its agent's next calls need not read the store to learn it.
    pub(super) fn device_now(&self, id: DeviceId, state: DeviceState) {
        let mut devices = lock(&self.devices);
        devices.forget(&id);
        let now = devices.number;
        devices.fill(now, id, KnownDevice::Refused(state));
    }

    /// Something concerns the device: a command, or a change of its user's policy override
    /// (announced as work for each of the user's devices). Its user's policy is read again;
    /// every user's, when the device is not known here.
    pub(super) fn device_work(&self, id: DeviceId) {
        let known = lock(&self.devices).forget(&id);
        let mut policies = lock(&self.policies);
        match known {
            Some(KnownDevice::Active(device)) => {
                policies.forget(&device.user);
            }
            Some(KnownDevice::Refused(_)) | None => policies.clear(),
        }
    }

    /// A policy changed for possibly every device.
    pub(super) fn policy_changed(&self) {
        lock(&self.policies).clear();
    }
}
