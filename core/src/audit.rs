//! The audit log's chain: each entry's hash covers its fields and the previous entry's hash;
//! the head (last seq and hash) is signed by the controller. A chain starts with a signed
//! genesis entry, so an emptied log never verifies. Verification ([`verify`]) finds the first
//! entry that was edited, deleted, reordered or cut off; signed [`Checkpoint`]s kept outside the
//! database also find a rollback to an older signed head.
//!
//! Appending never stops on a damaged chain: [`plan_append`] continues after the table's real
//! last row and, when the head does not match it, first writes an `audit.break` entry that
//! records what was found. Verification reports that break (the first bad seq), and everything
//! after it verifies as its own signed segment.

pub mod checkpoint;
pub mod ocsf;
pub mod refusals;
pub mod syslog;
pub mod syslog_target;
mod verify;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Timestamp;

pub use checkpoint::Checkpoint;

/// The actor of what the controller does by itself (timers, renewals, expiries).
pub const CONTROLLER: &str = "controller";
/// The actor of enrollment calls: whoever holds the token.
pub const ENROLLMENT: &str = "enrollment-token";
pub use verify::{Problem, Verification, verify, verify_with_checkpoints};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The action of a chain's first entry, written and signed at `init`.
pub const GENESIS_ACTION: &str = "audit.genesis";

/// The action of an entry that records damage the controller found in its own chain.
pub const BREAK_ACTION: &str = "audit.break";

/// The actor of the entries the audit machinery writes itself.
pub const AUDIT_ACTOR: &str = "controller";

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

impl AuditEntry {
    /// The entry for `event` at position `seq` after an entry hashing to `prev_hash`.
    pub fn new(seq: u64, at: Timestamp, event: &AuditEvent, prev_hash: &str) -> Self {
        let details = event.details.to_string();
        let hash = entry_hash(
            seq,
            at,
            &event.actor,
            &event.action,
            &event.target,
            &details,
            prev_hash,
        );
        Self {
            seq,
            at,
            actor: event.actor.clone(),
            action: event.action.clone(),
            target: event.target.clone(),
            details,
            prev_hash: prev_hash.to_owned(),
            hash,
        }
    }
}

/// The signed head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
    pub signature: Vec<u8>,
}

impl AuditHead {
    /// The head of a store no entry was ever appended to (or one reset to look like it).
    pub fn is_blank(&self) -> bool {
        self.seq == 0 && self.hash.is_empty()
    }
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
    let canonical = json!([seq, at.unix_ms(), actor, action, target, details, prev_hash]);
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

/// Why a chain was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenesisOrigin {
    /// `wardctl init` (or `serve` initializing a data directory).
    Init,
    /// The first start of a controller whose store had no audit entries and no admins yet.
    FirstStart,
}

/// The first entry of a chain. `nonce` (random) makes every chain's genesis, and so the
/// chain's id (the genesis hash), unique; `ca` names the key that signs its heads.
pub fn genesis_event(ca: &str, nonce: &[u8; 16], origin: GenesisOrigin) -> AuditEvent {
    AuditEvent {
        actor: AUDIT_ACTOR.into(),
        action: GENESIS_ACTION.into(),
        target: "audit log".into(),
        details: json!({
            "ca": ca,
            "nonce": hex::encode(nonce),
            "origin": match origin {
                GenesisOrigin::Init => "init",
                GenesisOrigin::FirstStart => "first start with an empty log",
            },
        }),
    }
}

/// Where the stored entries end: the table's last row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    pub seq: u64,
    pub hash: String,
}

/// Damage the controller found in its own chain: from `first_bad_seq` on, entries may have
/// been removed, rewritten or added by someone without its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub first_bad_seq: u64,
    pub problem: String,
}

impl ChainBreak {
    /// The `audit.break` entry that records it; `found` says what the controller saw.
    pub fn event(&self, found: Value) -> AuditEvent {
        AuditEvent {
            actor: AUDIT_ACTOR.into(),
            action: BREAK_ACTION.into(),
            target: "audit log".into(),
            details: json!({
                "first_bad_seq": self.first_bad_seq,
                "problem": self.problem,
                "found": found,
            }),
        }
    }

    /// The break an `audit.break` entry records (`None` for other entries, or details that
    /// are not a break's).
    pub fn recorded_in(entry: &AuditEntry) -> Option<Self> {
        if entry.action != BREAK_ACTION {
            return None;
        }
        let details: Value = serde_json::from_str(&entry.details).ok()?;
        Some(Self {
            first_bad_seq: details.get("first_bad_seq")?.as_u64()?,
            problem: details.get("problem")?.as_str()?.to_owned(),
        })
    }
}

/// What one append writes, in order: an `audit.break` entry first when the chain was found
/// damaged, then the event's entry. The head is then signed over the last one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub chain_break: Option<(ChainBreak, AuditEntry)>,
    pub entry: AuditEntry,
}

impl Appended {
    /// Every entry to insert, in order.
    pub fn entries(&self) -> impl Iterator<Item = &AuditEntry> {
        self.chain_break
            .as_ref()
            .map(|(_, e)| e)
            .into_iter()
            .chain(std::iter::once(&self.entry))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppendError {
    #[error("the audit log already has entries; a genesis only starts an empty chain")]
    AlreadyStarted,
}

/// Where and how to append `event`, given the stored head (and whether its signature is the
/// controller's) and the table's last row. Never collides with a stored entry: after damage
/// the chain continues after the real last row, behind an `audit.break` entry.
pub fn plan_append(
    event: &AuditEvent,
    at: Timestamp,
    head: &AuditHead,
    head_signed: bool,
    tail: Option<&Tail>,
) -> Result<Appended, AppendError> {
    if event.action == GENESIS_ACTION {
        if tail.is_some() || !head.is_blank() {
            return Err(AppendError::AlreadyStarted);
        }
        return Ok(Appended {
            chain_break: None,
            entry: AuditEntry::new(1, at, event, GENESIS),
        });
    }
    let intact = head_signed && tail.is_some_and(|t| t.seq == head.seq && t.hash == head.hash);
    let (next_seq, prev_hash) = tail.map_or((1, GENESIS), |t| (t.seq + 1, t.hash.as_str()));
    if intact {
        return Ok(Appended {
            chain_break: None,
            entry: AuditEntry::new(next_seq, at, event, prev_hash),
        });
    }
    let found_break = find_break(head, head_signed, tail);
    // A signed head further on than the table: the gap stays visible (entries are numbered
    // after the head), so verification also names the missing entries.
    let break_seq = if head_signed {
        next_seq.max(head.seq + 1)
    } else {
        next_seq
    };
    let found = json!({
        "head": { "seq": head.seq, "hash": head.hash, "signature_valid": head_signed },
        "last_entry": tail.map(|t| json!({ "seq": t.seq, "hash": t.hash })),
    });
    let break_entry = AuditEntry::new(break_seq, at, &found_break.event(found), prev_hash);
    let entry = AuditEntry::new(break_seq + 1, at, event, &break_entry.hash);
    Ok(Appended {
        chain_break: Some((found_break, break_entry)),
        entry,
    })
}

/// What is wrong when the head and the table's end disagree.
fn find_break(head: &AuditHead, head_signed: bool, tail: Option<&Tail>) -> ChainBreak {
    let last = tail.map_or(0, |t| t.seq);
    let (first_bad_seq, problem) = match tail {
        None if head.is_blank() => (
            1,
            "the audit log is empty and has no signed genesis: it was emptied or reset".to_owned(),
        ),
        _ if !head_signed => (
            last + 1,
            format!(
                "the stored head (seq {}) is not signed by the controller: it was rewritten; entries after {last} may have been removed",
                head.seq
            ),
        ),
        _ if head.seq > last => (
            last + 1,
            format!(
                "entries {}–{} were removed from the end (the signed head is at {})",
                last + 1,
                head.seq,
                head.seq
            ),
        ),
        _ if head.seq < last => (
            head.seq + 1,
            format!(
                "entries {}–{last} were not signed by the controller: added behind its back, or the head was rolled back to an older one",
                head.seq + 1
            ),
        ),
        _ => (
            head.seq,
            format!("entry {} differs from the signed head", head.seq),
        ),
    };
    ChainBreak {
        first_bad_seq,
        problem,
    }
}

#[cfg(test)]
mod tests;
