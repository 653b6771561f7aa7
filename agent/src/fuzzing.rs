//! Checks shared by the coverage-guided fuzz targets in `fuzz/` and the corpus replay in the
//! ordinary test suite (`tests/tests/fuzz_corpus.rs`).
//!
//! The check takes arbitrary bytes. It must return normally for every input; it panics, on
//! purpose, only when one of the invariants it states is broken — that panic is what the
//! fuzzer reports. Not part of Ward's API.

use std::ffi::OsString;

use clap::Parser;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ward_certs::CaHash;
use ward_proto::transport::ServerUrl;
use ward_vocab::Check;

use crate::cli::Cli;
use crate::ledger::Entry;
use crate::offline::PendingReport;
use crate::policy::AgentPolicy;
use crate::state::AgentState;
use crate::vault::WipeJournal;

/// Agent-side configuration: the `ward-agent` command line (one argument a line), the files
/// it keeps in its state directory (`state.json`, `policy.json`, ledger entries, the wipe
/// journal, the pending offline-wipe report), and the server URL and CA pin it is given.
///
/// Invariants: nothing panics; whatever parses is written back by the agent's own
/// serialization to text that parses to the same value.
pub fn agent_config(data: &[u8]) {
    if let Err(e) = Cli::try_parse_from(arguments(data)) {
        // What the user would see must render, too.
        let _ = e.render().to_string();
    }
    round_trips::<AgentState>(data);
    round_trips::<Entry>(data);
    round_trips::<WipeJournal>(data);
    round_trips::<PendingReport>(data);
    if let Some(policy) = round_trips::<AgentPolicy>(data) {
        // Any of the checks may be required (a policy may require all of them): each once, in
        // report order. With nothing reported, each fails as not checked, which is never a
        // definite failure (so never a wipe).
        let required = policy.required_checks();
        let order = |check: &Check| Check::ALL.iter().position(|c| c == check);
        assert!(required.windows(2).all(|w| order(&w[0]) < order(&w[1])));
        let failures = policy.failures(&[]);
        let failing: Vec<Check> = failures.iter().map(|f| f.check).collect();
        assert_eq!(failing, required);
        assert!(failures.iter().all(|f| !f.definite));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = text.parse::<ServerUrl>() {
        assert_eq!(url.to_string().parse::<ServerUrl>().as_ref(), Ok(&url));
    }
    if let Ok(hash) = text.parse::<CaHash>() {
        assert_eq!(hash.to_string().parse::<CaHash>(), Ok(hash));
    }
}

fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    data: &[u8],
) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let written = match serde_json::to_vec_pretty(&value) {
        Ok(written) => written,
        Err(e) => panic!("cannot write back what was read: {e}"),
    };
    let again: Option<T> = serde_json::from_slice(&written).ok();
    assert_eq!(
        again.as_ref(),
        Some(&value),
        "a saved file reads back changed"
    );
    Some(value)
}

fn arguments(data: &[u8]) -> Vec<OsString> {
    let mut args = vec![OsString::from("ward-agent")];
    args.extend(data.split(|b| *b == b'\n').map(os_string));
    args
}

#[cfg(unix)]
fn os_string(bytes: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes).to_owned()
}

#[cfg(not(unix))]
fn os_string(bytes: &[u8]) -> OsString {
    OsString::from(String::from_utf8_lossy(bytes).into_owned())
}

/// Seeds: the files an enrolled agent keeps, command lines as the docs show them, a server
/// URL and a CA pin.
pub fn agent_config_seeds() -> Vec<(String, Vec<u8>)> {
    let lines = |args: &[&str]| args.join("\n").into_bytes();
    let hash = format!("sha256:{}", "ab".repeat(32));
    let state = br#"{
  "version": 1,
  "device_id": "6f1c0000-4000-8000-0000-000000000001",
  "user": "alice@hospital.org",
  "server_url": "https://ward.hospital.org:7443",
  "ca_hash": "sha256:abababababababababababababababababababababababababababababababab",
  "secret_store": "file",
  "enrolled_at": "2026-01-01T00:00:00Z",
  "certificate_expires_at": "2026-01-08T00:00:00Z",
  "checkin_interval_seconds": 60,
  "last_checkin": null
}"#;
    let policy = br#"{"password_min_length":12,"password_min_classes":3,"auto_lock_seconds":300,
"require_disk_encryption":true,"offline_wipe_after_seconds":259200,"enforce":true,"revision":7,
"scope":"user:alice@hospital.org"}"#;
    let ledger = br#"{"command_id":"6f1c0000-4000-8000-0000-0000000000c1","action":{"kind":"wipe","scope":"messaging"},
"status":{"status":"finished","succeeded":true,"failure_reason":"","receipt_body":"e30=","receipt_signature":"MEQ="},
"reported":false,"updated_at":"2026-01-01T00:00:00Z"}"#;
    let journal =
        br#"{"cause":"offline-timer","step":"key_destroyed","files_removed":3,"bytes_removed":4096,
"verified_empty":false,"completed_at":null}"#;
    vec![
        (
            "argv-enroll".into(),
            lines(&[
                "enroll",
                "--server",
                "https://ward.hospital.org:7443",
                "--token",
                "ward_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "--ca-hash",
                &hash,
                "--secret-store",
                "file",
                "--state-dir",
                "/var/lib/ward-agent",
            ]),
        ),
        (
            "argv-run".into(),
            lines(&[
                "run",
                "--server",
                "https://a.hospital.org",
                "--server",
                "https://[::1]:7443",
                "--messaging-dir",
                "/home/alice/.messaging",
                "--log-format",
                "json",
            ]),
        ),
        ("argv-status".into(), lines(&["status", "-o", "json"])),
        ("state-json".into(), state.to_vec()),
        ("policy-json".into(), policy.to_vec()),
        ("ledger-entry".into(), ledger.to_vec()),
        ("wipe-journal".into(), journal.to_vec()),
        (
            "pending-report".into(),
            br#"{"body":"e30=","signature":"MEQ="}"#.to_vec(),
        ),
        (
            "server-url".into(),
            b"https://ward.hospital.org:7443".to_vec(),
        ),
        ("ca-hash".into(), hash.into_bytes()),
    ]
}
