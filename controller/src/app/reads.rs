//! What every agent call reads, kept in memory: the client certificates already validated
//! (by the SHA-256 of their DER, so a connection's certificate is checked against the store
//! once, not per call), the active devices behind them, and the effective policies by user.
//!
//! Entries are dropped by the events that change them — a revocation, a policy change, work
//! for a device — whether they happen here or are announced by another replica; policies
//! also at the periodic refresh that covers a lost announcement. A certificate found here is
//! still checked at every call against the in-memory revocation list and its expiry, so a
//! revocation takes effect at the next call. A read that raced with an invalidation is not
//! kept (each cache has a generation number that every invalidation bumps).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

use time::OffsetDateTime;
use ward_certs::Identity;

use super::ActiveDevice;
use crate::core::{DeviceId, StoredPolicy, UserEmail};

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

#[derive(Debug, Default)]
pub(super) struct Reads {
    peers: Mutex<Generations<CertHash, Peer>>,
    devices: Mutex<Generations<DeviceId, ActiveDevice>>,
    policies: Mutex<Generations<UserEmail, StoredPolicy>>,
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

    /// Forgets every certificate seen: each is checked in full at its next call (the CAs
    /// trusted changed).
    pub(super) fn forget_peers(&self) {
        lock(&self.peers).clear();
    }

    pub(super) fn device(&self, id: DeviceId) -> Option<ActiveDevice> {
        lock(&self.devices).get(&id)
    }

    pub(super) fn device_generation(&self) -> u64 {
        lock(&self.devices).number
    }

    pub(super) fn remember_device(&self, since: u64, device: ActiveDevice) {
        lock(&self.devices).fill(since, device.id, device);
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

    /// Something concerns the device: a command, or a change of its user's policy override
    /// (announced as work for each of the user's devices). Its user's policy is read again;
    /// every user's, when the device is not known here.
    pub(super) fn device_work(&self, id: DeviceId) {
        let known = lock(&self.devices).forget(&id);
        let mut policies = lock(&self.policies);
        match known {
            Some(device) => {
                policies.forget(&device.user);
            }
            None => policies.clear(),
        }
    }

    /// A policy changed for possibly every device.
    pub(super) fn policy_changed(&self) {
        lock(&self.policies).clear();
    }
}
