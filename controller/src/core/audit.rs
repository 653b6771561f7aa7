//! The audit log's chain: each entry's hash covers its fields and the previous entry's hash;
//! the head (last seq and hash) is signed by the controller. Verification finds the first
//! entry that was edited, deleted, reordered, or cut off.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Timestamp;

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the application asks to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who: `ward://admin/<name>`, `ward://device/<id>`, or `controller`.
    pub actor: String,
    /// What, e.g. `command.issue`, `device.revoke`, `denied`.
    pub action: String,
    /// On what: a device, command, user, admin or policy scope.
    pub target: String,
    pub details: Value,
}

/// A stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The details as stored (JSON text): hashed exactly as kept.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The signed head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
    pub signature: Vec<u8>,
}

/// The hash of an entry with these fields.
pub fn entry_hash(
    seq: u64,
    at: Timestamp,
    actor: &str,
    action: &str,
    target: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    // A JSON array: unambiguous field boundaries, stable across implementations.
    let canonical =
        serde_json::json!([seq, at.unix_ms(), actor, action, target, details, prev_hash]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The entries that record `events`, in order, after the entry `(seq, hash)` (`(0, GENESIS)`
/// for an empty log): each numbered one higher than the last and chained to its hash.
pub fn extend(seq: u64, hash: &str, events: &[(AuditEvent, Timestamp)]) -> Vec<AuditEntry> {
    let mut prev_hash = hash.to_owned();
    events
        .iter()
        .zip(seq + 1..)
        .map(|((event, at), seq)| {
            let details = event.details.to_string();
            let hash = entry_hash(
                seq,
                *at,
                &event.actor,
                &event.action,
                &event.target,
                &details,
                &prev_hash,
            );
            AuditEntry {
                seq,
                at: *at,
                actor: event.actor.clone(),
                action: event.action.clone(),
                target: event.target.clone(),
                details,
                prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
                hash,
            }
        })
        .collect()
}

/// The bytes the controller signs for a head.
pub fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    format!("ward-audit-head:{seq}:{hash}").into_bytes()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub ok: bool,
    pub entries: u64,
    /// The first entry that does not check out (for truncation: the first missing seq).
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
}

/// Verifies `entries` (in stored order) against the chain rules and the signed `head`.
/// `head_valid` checks the head's signature.
pub fn verify(
    entries: &[AuditEntry],
    head: &AuditHead,
    head_valid: impl Fn(&AuditHead) -> bool,
) -> Verification {
    let bad = |seq: u64, problem: String| Verification {
        ok: false,
        entries: entries.len() as u64,
        first_bad_seq: Some(seq),
        problem: Some(problem),
    };
    let mut prev = GENESIS.to_owned();
    for (i, e) in entries.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        if e.seq != expected_seq {
            return bad(
                expected_seq,
                format!(
                    "entry {expected_seq} is missing or out of order (found {})",
                    e.seq
                ),
            );
        }
        if e.prev_hash != prev {
            return bad(
                e.seq,
                format!("entry {} does not follow entry {}", e.seq, e.seq - 1),
            );
        }
        let hash = entry_hash(
            e.seq,
            e.at,
            &e.actor,
            &e.action,
            &e.target,
            &e.details,
            &e.prev_hash,
        );
        if hash != e.hash {
            return bad(
                e.seq,
                format!("entry {} was changed after it was written", e.seq),
            );
        }
        prev = hash;
    }
    let last = entries.last().map_or(0, |e| e.seq);
    if head.seq == 0 && entries.is_empty() {
        return Verification {
            ok: true,
            entries: 0,
            first_bad_seq: None,
            problem: None,
        };
    }
    if !head_valid(head) {
        return bad(
            head.seq.max(1),
            "the signed head's signature does not verify".into(),
        );
    }
    if head.seq > last {
        return bad(
            last + 1,
            format!(
                "entries {}–{} were removed from the end",
                last + 1,
                head.seq
            ),
        );
    }
    if head.seq < last || entries.last().is_some_and(|e| e.hash != head.hash) {
        return bad(
            head.seq + 1,
            format!(
                "entries after {} were not signed by the controller",
                head.seq
            ),
        );
    }
    Verification {
        ok: true,
        entries: entries.len() as u64,
        first_bad_seq: None,
        problem: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> (Vec<AuditEntry>, AuditHead) {
        let mut prev = GENESIS.to_owned();
        let mut out = Vec::new();
        for seq in 1..=n {
            let at = Timestamp::from_unix_ms(seq as i64);
            let details = format!("{{\"n\":{seq}}}");
            let hash = entry_hash(seq, at, "a", "x", "t", &details, &prev);
            out.push(AuditEntry {
                seq,
                at,
                actor: "a".into(),
                action: "x".into(),
                target: "t".into(),
                details,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        let head = AuditHead {
            seq: n,
            hash: prev,
            signature: vec![1],
        };
        (out, head)
    }

    fn ok(_: &AuditHead) -> bool {
        true
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (entries, head) = chain(5);
        assert!(verify(&entries, &head, ok).ok);
        assert!(
            verify(
                &[],
                &AuditHead {
                    seq: 0,
                    hash: String::new(),
                    signature: vec![]
                },
                ok
            )
            .ok
        );
    }

    #[test]
    fn edits_deletions_reordering_and_truncation_are_found() {
        let (entries, head) = chain(5);
        let mut edited = entries.clone();
        edited[2].details = "{\"n\":99}".into();
        assert_eq!(verify(&edited, &head, ok).first_bad_seq, Some(3));

        let mut deleted = entries.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted, &head, ok).first_bad_seq, Some(2));

        let mut reordered = entries.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(&reordered, &head, ok).first_bad_seq, Some(2));

        let truncated = entries[..3].to_vec();
        assert_eq!(verify(&truncated, &head, ok).first_bad_seq, Some(4));

        assert!(!verify(&entries, &head, |_| false).ok);
    }
}
