//! `wardctl audit export`: the audit log as JSON lines an archive or a SIEM takes, complete,
//! in order, and enough to recompute the hash chain without Ward's database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;
use ward_controller::core::Timestamp;
use ward_controller::core::audit::entry_hash;
use ward_e2e::process::{ControllerProcess, json, stderr};

fn lines(text: &[u8]) -> Vec<Value> {
    String::from_utf8(text.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn the_export_holds_every_entry_once_in_order_and_its_hashes_recompute() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    for user in ["ann", "bob", "cy"] {
        controller.token(&format!("{user}@hospital.org"), "1h");
    }
    let listed = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let listed = listed.as_array().unwrap();

    let out = controller.ctl(&["audit", "export"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let exported = lines(&out.stdout);
    // The export itself is audited as reads after the list's; every listed entry is there.
    assert!(exported.len() >= listed.len(), "{exported:?}");
    let mut prev = ward_controller::core::audit::GENESIS.to_owned();
    for (i, entry) in exported.iter().enumerate() {
        assert_eq!(entry["seq"], i as u64 + 1, "{entry}");
        if i < listed.len() {
            assert_eq!(entry["hash"], listed[i]["hash"]);
        }
        let at = time::OffsetDateTime::parse(
            entry["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let details = entry["details_json"].as_str().unwrap();
        assert_eq!(entry["prev_hash"], prev.as_str());
        let recomputed = entry_hash(
            entry["seq"].as_u64().unwrap(),
            Timestamp::from_datetime(at),
            entry["actor"].as_str().unwrap(),
            entry["action"].as_str().unwrap(),
            entry["target"].as_str().unwrap(),
            details,
            &prev,
        );
        assert_eq!(entry["hash"], recomputed.as_str(), "{entry}");
        prev = recomputed;
    }
    assert!(
        exported
            .iter()
            .filter(|e| e["action"] == "token.create")
            .count()
            == 3
    );
}

#[test]
fn an_export_to_a_file_is_private_and_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    controller.token("dee@hospital.org", "1h");
    let file = tmp.path().join("audit.jsonl");
    let path = file.to_str().unwrap();

    let out = controller.ctl(&["audit", "export", "--out", path, "--since", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!tmp.path().join("audit.jsonl.partial").exists());
    let first = std::fs::read(&file).unwrap();
    assert!(
        lines(&first).iter().any(|e| e["action"] == "token.create"),
        "{}",
        String::from_utf8_lossy(&first)
    );

    // Again to the same file: refused, the first export untouched.
    let again = controller.ctl(&["audit", "export", "--out", path]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("never overwrites"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(&file).unwrap(), first);

    // A symbolic link at --out (to a file someone wants overwritten): refused, untouched.
    let target = tmp.path().join("precious");
    std::fs::write(&target, b"keep").unwrap();
    let link = tmp.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = controller.ctl(&["audit", "export", "--out", link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");

    // A bad time: refused before anything is created.
    let other = tmp.path().join("other.jsonl");
    let bad = controller.ctl(&[
        "audit",
        "export",
        "--out",
        other.to_str().unwrap(),
        "--since",
        "last tuesday",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(!other.exists());
}
