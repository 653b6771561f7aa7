//! Verification of a stored chain: the hash links, the signed head, the breaks the controller
//! recorded, and (when given) signed checkpoints kept outside the database.

use std::collections::BTreeMap;

use super::{AuditEntry, AuditHead, ChainBreak, Checkpoint, GENESIS, GENESIS_ACTION, entry_hash};

/// At most this many problems are listed (the first bad seq is always the smallest).
pub(super) const MAX_PROBLEMS: usize = 100;

/// One thing that does not check out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The first entry it concerns; `None` for a problem with a checkpoint itself.
    pub seq: Option<u64>,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub ok: bool,
    pub entries: u64,
    /// The first entry that does not check out (for truncation: the first missing seq).
    pub first_bad_seq: Option<u64>,
    /// What is wrong at `first_bad_seq` (or, without one, the first problem found).
    pub problem: Option<String>,
    /// Every problem found, in the order found, at most [`MAX_PROBLEMS`].
    pub problems: Vec<Problem>,
    /// Checkpoints whose signature verified and that were compared with the log.
    pub checkpoints: u64,
    /// The chain's id: the hash of its first entry.
    pub chain: Option<String>,
}

/// Verifies `entries` (in stored order) against the chain rules and the signed `head`.
/// `head_valid` checks the head's signature.
pub fn verify(
    entries: &[AuditEntry],
    head: &AuditHead,
    head_valid: impl Fn(&AuditHead) -> bool,
) -> Verification {
    verify_with_checkpoints(entries, head, head_valid, &[], |_| false)
}

/// [`verify`], and each checkpoint whose signature `checkpoint_valid` accepts must match the
/// log: its entry present with the hash it was signed with, in the same chain. That finds a
/// log cut back, or rolled back to an older backup, even with a head the controller signed.
pub fn verify_with_checkpoints(
    entries: &[AuditEntry],
    head: &AuditHead,
    head_valid: impl Fn(&AuditHead) -> bool,
    checkpoints: &[Checkpoint],
    checkpoint_valid: impl Fn(&Checkpoint) -> bool,
) -> Verification {
    let mut found = Vec::new();
    check_links(entries, &mut found);
    let last_seq = entries.last().map_or(0, |e| e.seq);
    if !(entries.is_empty() && head.is_blank()) {
        check_head(entries, head, head_valid(head), &mut found);
    }
    let valid: Vec<&Checkpoint> = checkpoints
        .iter()
        .filter(|c| {
            let ok = checkpoint_valid(c);
            if !ok {
                found.push(Problem {
                    seq: None,
                    text: format!(
                        "the checkpoint for entry {} ({}) is not signed by this controller: its signature does not verify",
                        c.seq, c.at
                    ),
                });
            }
            ok
        })
        .collect();
    check_checkpoints(entries, last_seq, &valid, &mut found);

    let first = found
        .iter()
        .filter_map(|p| p.seq.map(|s| (s, p.text.clone())))
        .min_by_key(|(s, _)| *s);
    let problem = first
        .as_ref()
        .map(|(_, text)| text.clone())
        .or_else(|| found.first().map(|p| p.text.clone()));
    found.truncate(MAX_PROBLEMS);
    Verification {
        ok: found.is_empty(),
        entries: entries.len() as u64,
        first_bad_seq: first.map(|(s, _)| s),
        problem,
        problems: found,
        checkpoints: valid.len() as u64,
        chain: entries.first().map(|e| e.hash.clone()),
    }
}

fn check_links(entries: &[AuditEntry], found: &mut Vec<Problem>) {
    let mut add = |seq: u64, text: String| {
        found.push(Problem {
            seq: Some(seq),
            text,
        })
    };
    if entries.is_empty() {
        add(
            1,
            "the audit log is empty: a chain starts with a signed genesis entry, so it was emptied or reset".into(),
        );
    }
    let mut prev = GENESIS;
    let mut next = 1u64;
    for e in entries {
        if e.seq > next {
            let missing = if e.seq - 1 == next {
                format!("entry {next} is missing")
            } else {
                format!("entries {next}–{} are missing", e.seq - 1)
            };
            add(next, missing);
        } else if e.seq < next {
            add(
                e.seq,
                format!(
                    "entry {} is out of order (it follows entry {})",
                    e.seq,
                    next - 1
                ),
            );
        } else if e.prev_hash != prev {
            add(
                e.seq,
                format!(
                    "entry {} does not follow entry {}",
                    e.seq,
                    e.seq.saturating_sub(1)
                ),
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
            add(
                e.seq,
                format!("entry {} was changed after it was written", e.seq),
            );
        }
        if e.action == GENESIS_ACTION && e.seq != 1 {
            add(
                e.seq,
                format!(
                    "entry {} starts a second chain (a genesis after entry 1)",
                    e.seq
                ),
            );
        }
        if let Some(b) = ChainBreak::recorded_in(e) {
            add(
                b.first_bad_seq,
                format!(
                    "entry {} records damage the controller found: {}",
                    e.seq, b.problem
                ),
            );
        }
        prev = &e.hash;
        next = next.max(e.seq.saturating_add(1));
    }
}

fn check_head(entries: &[AuditEntry], head: &AuditHead, signed: bool, found: &mut Vec<Problem>) {
    let last = entries.last();
    let last_seq = last.map_or(0, |e| e.seq);
    let (seq, text) = if !signed {
        (
            last_seq + 1,
            format!(
                "the stored head (seq {}) does not carry the controller's signature: it was rewritten; entries after {last_seq} may have been removed, and earlier ones are covered only by checkpoints",
                head.seq
            ),
        )
    } else if head.seq > last_seq {
        (
            last_seq + 1,
            format!(
                "entries {}–{} were removed from the end (the signed head is at {})",
                last_seq + 1,
                head.seq,
                head.seq
            ),
        )
    } else if head.seq < last_seq {
        (
            head.seq + 1,
            format!(
                "entries after {} were not signed by the controller",
                head.seq
            ),
        )
    } else if last.is_some_and(|e| e.hash != head.hash) {
        (
            head.seq,
            format!("entry {} differs from the signed head", head.seq),
        )
    } else {
        return;
    };
    found.push(Problem {
        seq: Some(seq),
        text,
    });
}

fn check_checkpoints(
    entries: &[AuditEntry],
    last_seq: u64,
    checkpoints: &[&Checkpoint],
    found: &mut Vec<Problem>,
) {
    let chain = entries.first().map(|e| e.hash.as_str());
    let stored: BTreeMap<u64, &str> = entries.iter().map(|e| (e.seq, e.hash.as_str())).collect();
    let matches = |c: &Checkpoint| {
        Some(c.chain.as_str()) == chain && stored.get(&c.seq) == Some(&c.hash.as_str())
    };
    for c in checkpoints {
        if matches(c) {
            continue;
        }
        if Some(c.chain.as_str()) != chain {
            found.push(Problem {
                seq: Some(1),
                text: format!(
                    "the signed checkpoint for entry {} ({}) belongs to a chain that starts with {}, not this log's: the log was replaced or reset",
                    c.seq,
                    c.at,
                    short(&c.chain)
                ),
            });
            continue;
        }
        // The damage lies after the last checkpoint that still matches.
        let good = checkpoints
            .iter()
            .filter(|o| o.seq < c.seq && matches(o))
            .map(|o| o.seq)
            .max()
            .unwrap_or(0);
        let what = match stored.get(&c.seq) {
            None if c.seq > last_seq => format!(
                "the log ends at entry {last_seq}, but the controller signed a checkpoint at entry {} ({}): entries were cut off or the log was rolled back",
                c.seq, c.at
            ),
            None => format!(
                "entry {} is missing, but the controller signed a checkpoint for it ({})",
                c.seq, c.at
            ),
            Some(_) => format!(
                "entry {} differs from the controller's signed checkpoint ({}): the log was rewritten or rolled back to an older state",
                c.seq, c.at
            ),
        };
        found.push(Problem {
            seq: Some(good + 1),
            text: format!("{what}; the last checkpoint that still matches is at entry {good}"),
        });
    }
}

fn short(hash: &str) -> String {
    format!("{}…", hash.get(..12).unwrap_or(hash))
}
