//! A device's key history: every certificate renewal gave it, which one is in use, which were
//! replaced and when. Renewal does not fork the identity: a renewed certificate is *pending*
//! until the device first calls with it; then it becomes the device's one certificate and the
//! previous one (with any other pending renewal) is revoked. Receipts are verified against
//! the key of their time.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// One certificate a device was issued and the key it certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    pub serial: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    pub issued_at: Timestamp,
    /// The device's first call with it (enrollment: when it was issued); `None`: not yet.
    pub in_use_at: Option<Timestamp>,
    /// When a newer certificate came into use and this one was revoked.
    pub replaced_at: Option<Timestamp>,
}

impl DeviceKey {
    /// Issued by a renewal, not used yet, not replaced.
    pub fn is_pending(&self) -> bool {
        self.in_use_at.is_none() && self.replaced_at.is_none()
    }

    /// Whether this key may vouch for a wipe of a command created at `command_created_at`:
    /// it had not been replaced yet then. Whoever keeps a replaced key cannot make the device
    /// look wiped by a later command.
    pub fn covers_command(&self, command_created_at: Timestamp) -> bool {
        self.replaced_at.is_none_or(|r| command_created_at < r)
    }

    /// Whether this key may vouch for a wipe the device says it made at `signed_at` (its own
    /// clock, trusted within `tolerance_ms`): it had not been replaced yet then.
    pub fn covers_time(&self, signed_at: Timestamp, tolerance_ms: i64) -> bool {
        self.replaced_at
            .is_none_or(|r| signed_at.unix_ms() < r.unix_ms().saturating_add(tolerance_ms))
    }
}

/// A suspected clone, kept on the device for admins to see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalConflict {
    /// Unix ms.
    pub at: i64,
    /// The certificate presented: a replaced one, or a renewal that lost to another.
    pub serial: String,
    pub detail: String,
    /// Replaced certificates already reported as used before this one: each is reported
    /// (audited) once, however a copy alternates between them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reported: Vec<String>,
}

impl RenewalConflict {
    /// Whether a call with replaced certificate `serial` was already reported.
    pub fn covers(&self, serial: &str) -> bool {
        self.serial == serial || self.reported.iter().any(|s| s == serial)
    }

    /// The conflict that replaces `self` on the device: `serial` now, and what was reported
    /// before.
    pub fn then(&self, at: i64, serial: String, detail: String) -> Self {
        let mut reported = self.reported.clone();
        if !reported.contains(&self.serial) {
            reported.push(self.serial.clone());
        }
        reported.retain(|s| *s != serial);
        Self {
            at,
            serial,
            detail,
            reported,
        }
    }
}

/// What the first call with a pending certificate changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySwitch {
    /// The serials revoked: the previous certificate and every other pending renewal.
    pub revoked: Vec<String>,
    /// Of those, the pending renewals with another key than the one now in use: a second
    /// party renewed from the same certificate.
    pub other_parties: Vec<String>,
}

/// How many renewals with distinct keys may wait unused at once: an agent retries with the
/// key it made first, so more than this is someone else.
pub const MAX_PENDING_KEYS: usize = 3;

/// How long a renewal counts against [`MAX_PENDING_KEYS`] while unused: later it lapses, so
/// a limit reached by lost answers or by a copy of the key cannot stick. A lapsed renewal
/// may still come into use: an agent offline for a night after renewing is not locked out.
pub const PENDING_LAPSES_AFTER_MS: i64 = 3600 * 1000;

/// The window of [`MAX_RENEWALS_PER_WINDOW`].
pub const RENEWAL_WINDOW_MS: i64 = 3600 * 1000;

/// How many renewals a device may be issued per [`RENEWAL_WINDOW_MS`], whatever the key:
/// each costs a signature, a write and an audit entry.
pub const MAX_RENEWALS_PER_WINDOW: usize = 5;

impl DeviceKey {
    /// Pending, and issued less than [`PENDING_LAPSES_AFTER_MS`] before `now`.
    pub fn is_live_pending(&self, now: Timestamp) -> bool {
        self.is_pending()
            && now.unix_ms().saturating_sub(self.issued_at.unix_ms()) < PENDING_LAPSES_AFTER_MS
    }
}

/// The distinct keys of live pending renewals other than `key`.
pub fn live_pending_other_keys<'a>(
    keys: &'a [DeviceKey],
    key: &[u8],
    now: Timestamp,
) -> Vec<&'a DeviceKey> {
    let mut pending: Vec<&DeviceKey> = keys
        .iter()
        .filter(|k| k.is_live_pending(now) && k.public_key_der != key)
        .collect();
    pending.sort_unstable_by(|a, b| a.public_key_der.cmp(&b.public_key_der));
    pending.dedup_by(|a, b| a.public_key_der == b.public_key_der);
    pending
}

/// How many renewals were issued in the window ending at `now`: the device's keys issued in
/// it, less the first (the enrollment's).
pub fn renewals_in_window(keys: &[DeviceKey], now: Timestamp) -> usize {
    let in_window =
        |k: &DeviceKey| now.unix_ms().saturating_sub(k.issued_at.unix_ms()) < RENEWAL_WINDOW_MS;
    let issued = keys.iter().filter(|k| in_window(k)).count();
    let enrollment = keys.iter().min_by_key(|k| k.issued_at.unix_ms());
    issued.saturating_sub(usize::from(enrollment.is_some_and(in_window)))
}

/// The pending renewals `switch` revokes when `serial` comes into use, and which of them
/// were made with another key.
pub fn plan_switch(keys: &[DeviceKey], serial: &str) -> Option<(DeviceKey, Vec<DeviceKey>)> {
    let chosen = keys.iter().find(|k| k.serial == serial && k.is_pending())?;
    let others = keys
        .iter()
        .filter(|k| k.serial != serial && k.is_pending())
        .cloned()
        .collect();
    Some((chosen.clone(), others))
}

/// The pending renewals made with another key than `chosen`'s.
pub fn other_parties(chosen: &DeviceKey, others: &[DeviceKey]) -> Vec<String> {
    let mut serials: Vec<String> = others
        .iter()
        .filter(|k| k.public_key_der != chosen.public_key_der)
        .map(|k| k.serial.clone())
        .collect();
    serials.sort();
    serials
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(serial: &str, pk: u8, in_use: Option<i64>, replaced: Option<i64>) -> DeviceKey {
        DeviceKey {
            serial: serial.into(),
            public_key_der: vec![pk],
            issued_at: Timestamp::from_unix_ms(0),
            in_use_at: in_use.map(Timestamp::from_unix_ms),
            replaced_at: replaced.map(Timestamp::from_unix_ms),
        }
    }

    #[test]
    fn a_replaced_key_vouches_only_for_what_came_before_its_replacement() {
        let old = key("a", 1, Some(0), Some(100));
        assert!(old.covers_command(Timestamp::from_unix_ms(99)));
        assert!(!old.covers_command(Timestamp::from_unix_ms(100)));
        assert!(old.covers_time(Timestamp::from_unix_ms(109), 10));
        assert!(!old.covers_time(Timestamp::from_unix_ms(110), 10));
        let current = key("b", 2, Some(100), None);
        assert!(current.covers_command(Timestamp::from_unix_ms(i64::MAX)));
    }

    #[test]
    fn only_a_pending_key_is_switched_to_and_its_pending_siblings_go() {
        let keys = [
            key("a", 1, Some(0), None),
            key("b", 2, None, None),
            key("c", 3, None, None),
            key("d", 4, None, Some(5)),
        ];
        let (chosen, others) = plan_switch(&keys, "b").unwrap();
        assert_eq!(chosen.serial, "b");
        assert_eq!(
            others.iter().map(|k| k.serial.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert!(plan_switch(&keys, "a").is_none(), "in use already");
        assert!(plan_switch(&keys, "d").is_none(), "revoked unused");
        assert!(plan_switch(&keys, "x").is_none());
        let late = Timestamp::from_unix_ms(PENDING_LAPSES_AFTER_MS);
        assert!(
            plan_switch(&keys, "b").is_some() && !keys[1].is_live_pending(late),
            "a lapsed renewal no longer counts but may still come into use"
        );
    }

    #[test]
    fn lapsed_renewals_do_not_count_and_the_window_slides() {
        let keys = [
            key("a", 1, Some(0), None),
            key("b", 2, None, None),
            key("c", 3, None, None),
            key("d", 3, None, None),
        ];
        let now = Timestamp::from_unix_ms(10);
        assert_eq!(
            live_pending_other_keys(&keys, &[2], now).len(),
            1,
            "c and d: one key"
        );
        assert_eq!(live_pending_other_keys(&keys, &[9], now).len(), 2);
        let late = Timestamp::from_unix_ms(PENDING_LAPSES_AFTER_MS);
        assert!(live_pending_other_keys(&keys, &[9], late).is_empty());
        assert_eq!(
            renewals_in_window(&keys, now),
            3,
            "all but the enrollment's"
        );
        let later = Timestamp::from_unix_ms(RENEWAL_WINDOW_MS);
        assert_eq!(renewals_in_window(&keys, later), 0);
    }
}
