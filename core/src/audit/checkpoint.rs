//! Signed checkpoints: the head of the chain (its seq and hash) at a moment, signed with the
//! controller's key and kept outside the database (a directory, the log stream, syslog).
//! Someone who holds the database and every backup can put an older signed head back; they
//! cannot take back a checkpoint that already left.
//!
//! The text form is one JSON object on one line, with its fields always in this order:
//!
//! ```text
//! {"ward_audit_checkpoint":1,"chain":"<hex>","seq":42,"hash":"<hex>","at":"2026-12-05T10:00:00.000Z","signer":"sha256:<hex>","signature":"<base64>"}
//! ```
//!
//! `chain` is the hash of the chain's first entry; `signer` the hash of the CA certificate whose
//! key signed (the key that also signs the head); `signature` covers [`Checkpoint::message`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The format's version, the first field of the text form.
pub const FORMAT: u32 = 1;

/// At most this many checkpoints go into one verification (the newest half, and an even
/// spread over the older ones; see [`select_for_verification`]).
pub const MAX_PER_VERIFICATION: usize = 2000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub chain: String,
    pub seq: u64,
    pub hash: String,
    pub at: Timestamp,
    pub signer: String,
    pub signature: Vec<u8>,
}

/// The text form's fields, in order.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Text {
    ward_audit_checkpoint: u32,
    chain: String,
    seq: u64,
    hash: String,
    at: String,
    signer: String,
    signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("not a Ward audit checkpoint ({0})")]
    NotACheckpoint(String),
    #[error("checkpoint format {0} is not supported (this wardctl reads format {FORMAT})")]
    Format(u32),
    #[error("the checkpoint's {field} is not valid: {why}")]
    Field { field: &'static str, why: String },
}

impl Checkpoint {
    /// The bytes the controller signs.
    pub fn message(chain: &str, seq: u64, hash: &str, at: Timestamp) -> Vec<u8> {
        format!(
            "ward-audit-checkpoint:{FORMAT}:{chain}:{seq}:{hash}:{}",
            at.unix_ms()
        )
        .into_bytes()
    }

    /// A checkpoint of `(seq, hash)` in `chain`, signed now by `sign` on behalf of `signer`.
    pub fn sign<E>(
        chain: &str,
        seq: u64,
        hash: &str,
        at: Timestamp,
        signer: &str,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Self, E> {
        // Millisecond precision, as the text form carries it.
        let at = Timestamp::from_unix_ms(at.unix_ms());
        let signature = sign(&Self::message(chain, seq, hash, at))?;
        Ok(Self {
            chain: chain.to_owned(),
            seq,
            hash: hash.to_owned(),
            at,
            signer: signer.to_owned(),
            signature,
        })
    }

    /// Whether `verify(message, signature)` accepts it.
    pub fn verifies(&self, verify: impl FnOnce(&[u8], &[u8]) -> bool) -> bool {
        verify(
            &Self::message(&self.chain, self.seq, &self.hash, self.at),
            &self.signature,
        )
    }

    /// A name for a file holding it: sorts by seq, unique per (seq, hash).
    pub fn file_name(&self) -> String {
        format!(
            "ward-audit-{:020}-{}.json",
            self.seq,
            self.hash.get(..16).unwrap_or(&self.hash)
        )
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = Text {
            ward_audit_checkpoint: FORMAT,
            chain: self.chain.clone(),
            seq: self.seq,
            hash: self.hash.clone(),
            at: self.at.rfc3339(),
            signer: self.signer.clone(),
            signature: BASE64.encode(&self.signature),
        };
        let json = serde_json::to_string(&text).map_err(|_| fmt::Error)?;
        f.write_str(&json)
    }
}

impl FromStr for Checkpoint {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text: Text = serde_json::from_str(s.trim()).map_err(|e| {
            let why = e.to_string();
            CheckpointError::NotACheckpoint(why.get(..200).unwrap_or(&why).to_owned())
        })?;
        if text.ward_audit_checkpoint != FORMAT {
            return Err(CheckpointError::Format(text.ward_audit_checkpoint));
        }
        let field = |field: &'static str, why: &str| CheckpointError::Field {
            field,
            why: why.to_owned(),
        };
        if !is_sha256_hex(&text.chain) {
            return Err(field("chain", "expected 64 lowercase hex digits"));
        }
        if !is_sha256_hex(&text.hash) {
            return Err(field("hash", "expected 64 lowercase hex digits"));
        }
        if text.seq == 0 {
            return Err(field("seq", "entries are numbered from 1"));
        }
        let at =
            time::OffsetDateTime::parse(&text.at, &time::format_description::well_known::Rfc3339)
                .map(Timestamp::from_datetime)
                .map_err(|_| field("at", "expected an RFC 3339 time"))?;
        if !text
            .signer
            .strip_prefix("sha256:")
            .is_some_and(is_sha256_hex)
        {
            return Err(field(
                "signer",
                "expected sha256: and 64 lowercase hex digits",
            ));
        }
        let signature = BASE64
            .decode(&text.signature)
            .ok()
            .filter(|s| (32..=256).contains(&s.len()))
            .ok_or_else(|| field("signature", "expected a base64 signature"))?;
        Ok(Self {
            chain: text.chain,
            seq: text.seq,
            hash: text.hash,
            at,
            signer: text.signer,
            signature,
        })
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// At most `max` of `checkpoints` for one verification, without duplicates: the newest half
/// (by seq) whole, and an even spread over the older ones, the oldest included. The newest
/// checkpoint that still matches vouches for everything before it (the chain links every
/// entry to the previous one); older ones only narrow down where damage starts.
pub fn select_for_verification(mut checkpoints: Vec<Checkpoint>, max: usize) -> Vec<Checkpoint> {
    checkpoints.sort_by(|a, b| (a.seq, &a.hash).cmp(&(b.seq, &b.hash)));
    checkpoints.dedup_by(|a, b| a.seq == b.seq && a.hash == b.hash && a.chain == b.chain);
    if checkpoints.len() <= max {
        return checkpoints;
    }
    if max < 2 {
        let keep_from = checkpoints.len() - max;
        return checkpoints.split_off(keep_from);
    }
    let newest = max / 2;
    let older = checkpoints.len() - newest;
    let spread = max - newest;
    let mut out: Vec<Checkpoint> = (0..spread)
        .map(|i| checkpoints[i * older / spread].clone())
        .collect();
    out.extend(checkpoints.drain(older..));
    out
}

/// A line of a checkpoint file that is not a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {error}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct BadCheckpoint {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub error: CheckpointError,
}

/// What a directory of checkpoints holds.
#[derive(Debug, Default)]
pub struct Read {
    pub checkpoints: Vec<Checkpoint>,
    pub bad: Vec<BadCheckpoint>,
}

/// The checkpoints in `files` (path and text), one per non-empty line, so checkpoints
/// collected from the log stream or syslog can be dropped in beside the controller's own
/// files; every line that is not one, with its line number when its file holds several.
pub fn read_files(files: impl IntoIterator<Item = (PathBuf, String)>) -> Read {
    let mut out = Read::default();
    for (path, text) in files {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        let several = lines.len() > 1;
        for (i, line) in lines {
            match line.parse::<Checkpoint>() {
                Ok(c) => out.checkpoints.push(c),
                Err(error) => out.bad.push(BadCheckpoint {
                    path: path.clone(),
                    line: several.then_some(i + 1),
                    error,
                }),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> Checkpoint {
        Checkpoint::sign(
            &"c".repeat(64),
            seq,
            &format!("{:064x}", seq),
            Timestamp::from_unix_ms(1_796_480_820_123),
            &format!("sha256:{}", "a".repeat(64)),
            |m: &[u8]| Ok::<_, ()>(m.iter().rev().copied().take(64).collect()),
        )
        .unwrap()
    }

    #[test]
    fn the_text_form_round_trips_and_keeps_its_field_order() {
        let c = sample(42);
        let text = c.to_string();
        assert!(
            text.starts_with("{\"ward_audit_checkpoint\":1,\"chain\":\"cccc"),
            "{text}"
        );
        assert!(text.contains("\"at\":\"2026-12-05T"), "{text}");
        assert_eq!(text.parse::<Checkpoint>().unwrap(), c);
        assert!(c.verifies(|m, s| s == m.iter().rev().copied().take(64).collect::<Vec<_>>()));
    }

    #[test]
    fn bad_text_is_refused_with_the_field_named() {
        let good = sample(1).to_string();
        for (bad, expect) in [
            ("hello".to_owned(), "not a Ward audit checkpoint"),
            (
                good.replace("\"ward_audit_checkpoint\":1", "\"ward_audit_checkpoint\":2"),
                "format 2",
            ),
            (good.replace("\"seq\":1", "\"seq\":0"), "seq"),
            (good.replace("cccc", "CCCC"), "chain"),
            (good.replace("2026-12-05T", "yesterday "), "at"),
            (good.replace("sha256:", "md5:"), "signer"),
            (
                good.replace("}", ",\"extra\":1}"),
                "not a Ward audit checkpoint",
            ),
        ] {
            let err = bad.parse::<Checkpoint>().unwrap_err().to_string();
            assert!(err.contains(expect), "{bad}: {err}");
        }
    }

    #[test]
    fn selection_keeps_the_newest_and_a_spread_of_the_rest() {
        let all: Vec<Checkpoint> = (1..=100).map(sample).collect();
        let mut twice = all.clone();
        twice.extend(all.clone());
        assert_eq!(select_for_verification(twice, 1000).len(), 100);
        let picked = select_for_verification(all, 20);
        assert_eq!(picked.len(), 20);
        let seqs: Vec<u64> = picked.iter().map(|c| c.seq).collect();
        assert_eq!(seqs[0], 1, "the oldest is kept: {seqs:?}");
        assert_eq!(&seqs[10..], &(91..=100).collect::<Vec<_>>()[..], "{seqs:?}");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
}
