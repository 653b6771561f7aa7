//! Fuzz check: audit-log entries → chain verification (`core/audit.rs`).

use crate::core::Timestamp;
use crate::core::audit::{
    AuditEntry, AuditEvent, AuditHead, BREAK_ACTION, GENESIS, GENESIS_ACTION, Tail, entry_hash,
    head_message, plan_append, verify,
};

/// Reads the input front to back; past its end every read is zero or empty.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }

    fn bytes(&mut self, max: usize) -> &[u8] {
        let len = usize::from(self.byte()).min(max).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken
    }

    fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    fn int(&mut self) -> u64 {
        let mut value = [0; 8];
        for (slot, byte) in value.iter_mut().zip(self.bytes(8)) {
            *slot = *byte;
        }
        u64::from_le_bytes(value)
    }
}

/// The stand-in for the controller's head signature: the checks are about the chain, and a
/// real signature would be the same bytes-in, bool-out function.
fn head_valid(head: &AuditHead) -> bool {
    head.signature == head_message(head.seq, &head.hash)
}

fn entry(seq: u64, at: Timestamp, fields: [String; 4], prev_hash: String) -> AuditEntry {
    let [actor, action, target, details] = fields;
    let hash = entry_hash(seq, at, &actor, &action, &target, &details, &prev_hash);
    AuditEntry {
        seq,
        at,
        actor,
        action,
        target,
        details,
        prev_hash,
        hash,
    }
}

fn fields(input: &mut Reader<'_>) -> [String; 4] {
    let mut action = input.text(24);
    // The chain's own entries (a genesis after the first, a recorded break) are findings of
    // their own, not something an honest caller writes.
    if action == BREAK_ACTION || action == GENESIS_ACTION {
        action.push('x');
    }
    [input.text(40), action, input.text(40), input.text(64)]
}

/// The first input byte chooses: even — an honestly built chain (up to 8 entries, fields
/// from the input) that must verify, then one mutation from the input that must be found,
/// at the entry it touched where that is well defined; odd — entries and head taken
/// as they come, which must not panic and may verify only if they are a consistent chain.
pub fn audit_chain(data: &[u8]) {
    let mut input = Reader(data);
    if input.byte() % 2 == 0 {
        honest_then_mutated(&mut input);
    } else {
        arbitrary_entries(&mut input);
    }
}

fn honest_then_mutated(input: &mut Reader<'_>) {
    let n = u64::from(input.byte() % 9);
    let mut entries: Vec<AuditEntry> = Vec::new();
    for seq in 1..=n {
        let at = Timestamp::from_unix_ms(input.int() as i64);
        let prev = entries
            .last()
            .map_or(GENESIS.to_owned(), |e| e.hash.clone());
        entries.push(entry(seq, at, fields(input), prev));
    }
    let last_hash = entries.last().map_or(String::new(), |e| e.hash.clone());
    let head = AuditHead {
        seq: n,
        signature: head_message(n, &last_hash),
        hash: last_hash,
    };
    let honest = verify(&entries, &head, head_valid);
    if n == 0 {
        // An empty log never verifies: a chain starts with its signed genesis.
        assert_eq!(honest.first_bad_seq, Some(1), "an empty log verified");
        return;
    }
    assert!(honest.ok, "an honest chain fails: {:?}", honest.problem);
    assert_eq!(honest.entries, n);

    let (kind, pick, extra) = (input.byte() % 15, input.byte(), input.byte());
    let (mut entries, mut head) = (entries, head);
    let len = entries.len();
    let expected_bad = mutate(&mut entries, &mut head, (kind, pick, extra), input);
    let Some(expected_bad) = expected_bad else {
        return;
    };
    let found = verify(&entries, &head, head_valid);
    assert!(
        !found.ok,
        "mutation {kind} of a {len}-entry chain went unnoticed"
    );
    if let Some(seq) = expected_bad {
        assert_eq!(
            found.first_bad_seq,
            Some(seq),
            "mutation {kind}: wrong entry blamed"
        );
    }
    append_after_damage(&mut entries, &head, kind);
}

/// Appending to a damaged chain never collides with a stored entry, and never hides the
/// damage: verification still fails afterwards.
fn append_after_damage(entries: &mut Vec<AuditEntry>, head: &AuditHead, kind: u8) {
    let last = entries.iter().map(|e| e.seq).max().unwrap_or(0);
    let tail = entries.last().map(|e| Tail {
        seq: e.seq,
        hash: e.hash.clone(),
    });
    let event = AuditEvent {
        actor: "a".into(),
        action: "x".into(),
        target: "t".into(),
        details: serde_json::json!({}),
    };
    let Ok(plan) = plan_append(
        &event,
        Timestamp::from_unix_ms(0),
        head,
        head_valid(head),
        tail.as_ref(),
    ) else {
        panic!("mutation {kind}: an ordinary event could not be appended");
    };
    let written: Vec<AuditEntry> = plan.entries().cloned().collect();
    let tail_seq = tail.as_ref().map_or(0, |t| t.seq);
    assert!(
        written.iter().all(|e| e.seq > tail_seq),
        "mutation {kind}: an append collides with the stored entries (last {last})"
    );
    entries.extend(written);
    let new_head = AuditHead {
        seq: plan.entry.seq,
        hash: plan.entry.hash.clone(),
        signature: head_message(plan.entry.seq, &plan.entry.hash),
    };
    assert!(
        !verify(entries, &new_head, head_valid).ok,
        "mutation {kind}: appending made the damage disappear"
    );
}

/// Applies one mutation. `None`: not applicable to this chain; `Some(None)`: must be
/// detected; `Some(Some(seq))`: must be detected at `seq`.
fn mutate(
    entries: &mut Vec<AuditEntry>,
    head: &mut AuditHead,
    (kind, pick, extra): (u8, u8, u8),
    input: &mut Reader<'_>,
) -> Option<Option<u64>> {
    let len = entries.len();
    let i = if len == 0 { 0 } else { usize::from(pick) % len };
    let seq = i as u64 + 1;
    let suffix = char::from(b'a' + extra % 26);
    let needs_entry = kind <= 9 || kind == 14;
    if needs_entry && len == 0 || kind == 9 && len < 2 || kind == 12 && len == 0 {
        return None;
    }
    match kind {
        0 => entries[i].actor.push(suffix),
        1 => entries[i].action.push(suffix),
        2 => entries[i].target.push(suffix),
        3 => entries[i].details.push(suffix),
        4 => {
            let at = entries[i].at.unix_ms().wrapping_add(1 + i64::from(extra));
            entries[i].at = Timestamp::from_unix_ms(at);
        }
        5 => entries[i].seq = entries[i].seq.wrapping_add(1 + u64::from(extra)),
        6 => entries[i].prev_hash.push(suffix),
        7 => entries[i].hash.push(suffix),
        8 => {
            entries.remove(i);
        }
        9 => {
            let j = (i + 1 + usize::from(extra) % (len - 1)) % len;
            entries.swap(i, j);
            return Some(Some(i.min(j) as u64 + 1));
        }
        10 => {
            let keep = usize::from(extra) % (len + 1);
            if keep == len {
                return None;
            }
            entries.truncate(keep);
            return Some(Some(keep as u64 + 1));
        }
        11 => {
            let prev = entries
                .last()
                .map_or(GENESIS.to_owned(), |e| e.hash.clone());
            let at = Timestamp::from_unix_ms(input.int() as i64);
            entries.push(entry(len as u64 + 1, at, fields(input), prev));
            return Some(Some(len as u64 + 1));
        }
        12 => head.signature.push(extra),
        13 => {
            head.seq = head.seq.wrapping_add(1 + u64::from(extra));
            return Some(None);
        }
        _ => {
            // Rewrite entry i and re-chain everything after it, as someone with the database
            // but without the CA key would: only the signed head can tell.
            entries[i].details.push(suffix);
            for k in i..len {
                let prev = if k == 0 {
                    GENESIS.to_owned()
                } else {
                    entries[k - 1].hash.clone()
                };
                let e = &entries[k];
                let fields = [
                    e.actor.clone(),
                    e.action.clone(),
                    e.target.clone(),
                    e.details.clone(),
                ];
                entries[k] = entry(e.seq, e.at, fields, prev);
            }
            return Some(None);
        }
    }
    if kind == 12 {
        // Nothing vouches for the end of the log any more.
        return Some(Some(entries.last().map_or(0, |e| e.seq) + 1));
    }
    Some(Some(seq))
}

fn arbitrary_entries(input: &mut Reader<'_>) {
    let n = usize::from(input.byte() % 9);
    let mut entries: Vec<AuditEntry> = Vec::new();
    for _ in 0..n {
        let flags = input.byte();
        let seq = if flags & 1 == 0 {
            entries.len() as u64 + 1
        } else {
            input.int()
        };
        let at = Timestamp::from_unix_ms(input.int() as i64);
        let chained = entries
            .last()
            .map_or(GENESIS.to_owned(), |e| e.hash.clone());
        let prev = if flags & 2 == 0 {
            chained
        } else {
            input.text(80)
        };
        let mut e = entry(seq, at, fields(input), prev);
        if flags & 4 != 0 {
            e.hash = input.text(80);
        }
        entries.push(e);
    }
    let flags = input.byte();
    let seq = if flags & 1 == 0 {
        entries.len() as u64
    } else {
        input.int()
    };
    let hash = if flags & 2 == 0 {
        entries.last().map_or(String::new(), |e| e.hash.clone())
    } else {
        input.text(80)
    };
    let signature = if flags & 4 == 0 {
        head_message(seq, &hash)
    } else {
        input.bytes(80).to_vec()
    };
    let head = AuditHead {
        seq,
        hash,
        signature,
    };
    let result = verify(&entries, &head, head_valid);
    assert_eq!(result.ok, result.first_bad_seq.is_none());
    assert_eq!(result.entries, entries.len() as u64);
    if result.ok {
        assert_consistent(&entries, &head);
    }
}

fn assert_consistent(entries: &[AuditEntry], head: &AuditHead) {
    let mut prev = GENESIS;
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "a verified chain is numbered 1..n");
        assert_eq!(e.prev_hash, prev, "a verified chain is linked");
        let hash = entry_hash(
            e.seq, e.at, &e.actor, &e.action, &e.target, &e.details, prev,
        );
        assert_eq!(e.hash, hash, "a verified entry hashes to its hash");
        prev = &e.hash;
    }
    assert!(!entries.is_empty(), "a verified chain is not empty");
    assert!(head_valid(head), "a verified chain has a valid head");
    assert_eq!(head.seq, entries.len() as u64);
    assert_eq!(Some(&head.hash), entries.last().map(|e| &e.hash));
}

/// Seeds: an honest chain of four entries under each mutation, and a consistent and an
/// inconsistent set of raw entries.
pub fn audit_chain_seeds() -> Vec<(String, Vec<u8>)> {
    #[allow(clippy::cast_possible_truncation)] // the seeds' strings are short literals
    let text = |s: &str| [&[s.len() as u8], s.as_bytes()].concat();
    let entry = |at: u8, action: &str| {
        [
            vec![1, at],
            text("ward://admin/alice"),
            text(action),
            text("6f1c0000-4000-8000-0000-000000000001"),
            text("{\"reason\":\"lost\"}"),
        ]
        .concat()
    };
    let chain = [
        vec![0, 4],
        entry(1, "device.enroll"),
        entry(2, "command.issue"),
        entry(3, "command.acknowledge"),
        entry(4, "command.succeed"),
    ]
    .concat();
    let mut seeds: Vec<(String, Vec<u8>)> = (0..15u8)
        .map(|kind| {
            let seed = [chain.as_slice(), &[kind, 2, 1]].concat();
            (format!("honest-mutation-{kind}"), seed)
        })
        .collect();
    let raw = |flags: u8| {
        [
            vec![1, 2],
            [&[0u8][..], &entry(1, "token.create")[..]].concat(),
            [&[flags][..], &entry(2, "device.revoke")[..]].concat(),
            vec![0],
        ]
        .concat()
    };
    seeds.push(("raw-consistent".into(), raw(0)));
    seeds.push(("raw-broken-link".into(), raw(2)));
    seeds
}
