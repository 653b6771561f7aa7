//! `wardctl device wipe --user | --noncompliant | --stdin` with real processes: a dry run that
//! changes nothing, a list with a bad entry refused whole (exit 2), a wipe followed with
//! `--wait` to verified receipts, and a rerun with the same key that issues nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ward_e2e::process::{AgentFixture, ControllerProcess, bin, json, stderr};

const USER: &str = "kim@hospital.org";

fn wipe_from_stdin(controller: &ControllerProcess, list: &str) -> Output {
    let mut child = Command::new(bin("wardctl"))
        .args([
            "device",
            "wipe",
            "--stdin",
            "--scope",
            "messaging",
            "--reason",
            "cart stolen",
            "--output",
            "json",
            "--data-dir",
            controller.data_dir.to_str().unwrap(),
        ])
        .env_remove("WARD_SERVER")
        .env_remove("WARD_ADMIN_CERT")
        .env_remove("WARD_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn commands(controller: &ControllerProcess) -> usize {
    json(&controller.ctl(&["command", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn a_users_devices_are_wiped_in_bulk_after_a_dry_run_and_a_bad_list_issues_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let devices: Vec<AgentFixture> = ["a", "b"]
        .iter()
        .map(|n| AgentFixture::enroll(&controller, tmp.path(), n, USER))
        .collect();
    let _running: Vec<_> = devices.iter().map(|d| d.run(&[])).collect();
    let by_user = |extra: &[&str]| {
        let mut args = vec![
            "device",
            "wipe",
            "--user",
            USER,
            "--scope",
            "messaging",
            "--reason",
            "ransomware alert",
            "--output",
            "json",
        ];
        args.extend_from_slice(extra);
        controller.ctl(&args)
    };

    // The dry run lists both devices and issues nothing.
    let dry = json(&by_user(&["--dry-run"]));
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["needs_approval"], false);
    let listed = dry["devices"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|d| d["outcome"] == "would-issue"));
    assert_eq!(commands(&controller), 0);

    // One unknown id in the list: exit 2, the entry named, nothing issued.
    let list = format!("{}\n\nno-such-host\n", devices[0].device_id);
    let out = wipe_from_stdin(&controller, &list);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no-such-host"), "{}", stderr(&out));
    let out = wipe_from_stdin(&controller, "\n \n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(commands(&controller), 0);

    // Usage: nothing selected, or a device and a selection together.
    for args in [
        vec!["device", "wipe", "--scope", "messaging", "--reason", "r"],
        vec![
            "device",
            "wipe",
            "x",
            "--user",
            USER,
            "--scope",
            "messaging",
            "--reason",
            "r",
        ],
        vec![
            "device",
            "wipe",
            "--user",
            USER,
            "--scope",
            "messaging",
            "--reason",
            "r",
            "--dry-run",
            "--wait",
        ],
    ] {
        assert_eq!(controller.ctl(&args).status.code(), Some(2), "{args:?}");
    }

    // The wipe, followed to the end: every device wiped with a verified receipt.
    let out = by_user(&["--wait", "--timeout", "60s", "--idempotency-key", "kim-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["batch"], "admin:kim-1");
    assert_eq!(report["complete"], true);
    let wiped = report["devices"].as_array().unwrap();
    assert_eq!(wiped.len(), 2);
    for d in wiped {
        assert_eq!(d["state"], "succeeded", "{d}");
        assert_eq!(d["receipt_verified"], true, "{d}");
        assert_eq!(d["outcome"], "issued", "{d}");
    }
    for d in &devices {
        assert!(d.canary_files().is_empty(), "the messaging data is gone");
    }

    // Again with the same key: nothing new.
    let again = json(&by_user(&["--idempotency-key", "kim-1"]));
    assert_eq!(again["issued"], 0);
    assert!(
        again["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["outcome"] == "already-issued")
    );
    assert_eq!(commands(&controller), 2);
}
