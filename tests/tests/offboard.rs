//! `wardctl user offboard` and `device lost` with real processes, as an HR script would run
//! them: an offboarding-role certificate, `--wait`, JSON receipts and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr, wardctl};

const DEADLINE: Duration = Duration::from_secs(60);

fn lenient(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn offboarding_wipes_and_revokes_every_device_and_a_rerun_issues_nothing_new() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let devices: Vec<AgentFixture> = ["a", "b", "c"]
        .iter()
        .map(|n| AgentFixture::enroll(&controller, tmp.path(), n, "quinn@hospital.org"))
        .collect();
    let spare_token = controller.token("quinn@hospital.org", "1h");
    let _online: Vec<_> = devices[..2].iter().map(|d| d.run(&[])).collect();

    // The HR script's own, least-privileged credential.
    let hr = tmp.path().join("hr.pem");
    json(&controller.ctl(&[
        "admin",
        "issue",
        "--no-passphrase",
        "hr-script",
        "--role",
        "offboarding",
        "--out",
        hr.to_str().unwrap(),
        "--output",
        "json",
    ]));
    let offboard = |timeout: &str| {
        wardctl(&[
            "user",
            "offboard",
            "quinn@hospital.org",
            "--reason",
            "left the hospital",
            "--wait",
            "--timeout",
            timeout,
            "--output",
            "json",
            "--server",
            &controller.url,
            "--admin-cert",
            hr.to_str().unwrap(),
        ])
    };

    // The third device is offline: exit 5, it is pending, the other two are done.
    let out = offboard("8s");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let report = lenient(&out);
    assert_eq!(report["complete"], false);
    assert_eq!(report["tokens_invalidated"], 1);
    let by_id = |r: &Value, id: &str| {
        r["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
            .unwrap()
    };
    for d in &devices[..2] {
        let entry = by_id(&report, &d.device_id);
        assert_eq!(entry["state"], "succeeded");
        assert_eq!(entry["receipt_verified"], true);
        assert_eq!(entry["revoked"], true);
        assert!(d.canary_files().is_empty());
    }
    assert_ne!(by_id(&report, &devices[2].device_id)["state"], "succeeded");
    assert!(stderr(&out).contains(&devices[2].device_id));

    // The spare token no longer enrolls anything.
    let state = tmp.path().join("late");
    let late = ward_e2e::process::agent(&[
        "enroll",
        "--server",
        spare_token["server_url"].as_str().unwrap(),
        "--token",
        spare_token["token"].as_str().unwrap(),
        "--ca-hash",
        spare_token["ca_hash"].as_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(late.status.code(), Some(2));

    // The offline device comes back: it completes; a rerun exits 0 and issues nothing new.
    let _third = devices[2].run(&[]);
    eventually_blocking("the third device to be wiped and revoked", DEADLINE, || {
        let r =
            json(&controller.ctl(&["device", "show", &devices[2].device_id, "--output", "json"]));
        (r["state"] == "revoked").then_some(())
    });
    let commands_before = json(&controller.ctl(&["command", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .len();
    let out = offboard("60s");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = lenient(&out);
    assert_eq!(report["complete"], true);
    assert!(
        report["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["receipt_verified"] == true && d["revoked"] == true)
    );
    let commands_after = json(&controller.ctl(&["command", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        commands_before, commands_after,
        "a rerun must issue nothing new"
    );
    assert!(devices[2].canary_files().is_empty());

    // The audit trail is intact.
    assert_eq!(
        json(&controller.ctl(&["audit", "verify", "--output", "json"]))["ok"],
        true
    );
}

#[test]
fn offboarding_an_unknown_user_exits_3_and_helpdesk_may_not_offboard() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let out = controller.ctl(&["user", "offboard", "nobody@hospital.org", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = controller.ctl(&["user", "offboard", "nobody@hospital.org", "--reason", ""]);
    assert_eq!(out.status.code(), Some(2));

    let desk = tmp.path().join("desk.pem");
    json(&controller.ctl(&[
        "admin",
        "issue",
        "--no-passphrase",
        "desk",
        "--role",
        "helpdesk",
        "--out",
        desk.to_str().unwrap(),
        "--output",
        "json",
    ]));
    let out = wardctl(&[
        "user",
        "offboard",
        "nobody@hospital.org",
        "--reason",
        "x",
        "--server",
        &controller.url,
        "--admin-cert",
        desk.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("needs role admin or offboarding"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn lost_mode_locks_wipes_and_then_revokes() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "l", "rae@hospital.org");
    // No session manager here: the lock fails with its reason; the wipe still happens.
    let _agent = device.run(&[("WARD_AGENT_LOGINCTL", "/nonexistent/loginctl")]);
    let out = controller.ctl(&[
        "device",
        "lost",
        &device.device_id,
        "--reason",
        "left in a taxi",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let both = json(&out);
    let wipe_id = both["wipe"]["id"].as_str().unwrap().to_owned();
    eventually_blocking("the device to be revoked after its wipe", DEADLINE, || {
        let d = json(&controller.ctl(&["device", "show", &device.device_id, "--output", "json"]));
        (d["state"] == "revoked").then_some(())
    });
    let wipe = json(&controller.ctl(&["command", "show", &wipe_id, "--output", "json"]));
    assert_eq!(wipe["state"], "succeeded");
    assert_eq!(wipe["receipt"]["verified"], true);
    assert!(device.canary_files().is_empty());
    // Lost mode on a revoked device is refused: nothing can reach it.
    let again = controller.ctl(&["device", "lost", &device.device_id, "--reason", "again"]);
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn the_example_hr_script_offboards_a_csv_and_reports_every_leaver() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "s", "sam@hospital.org");
    let _agent = device.run(&[]);
    let hr = tmp.path().join("hr.pem");
    json(&controller.ctl(&[
        "admin",
        "issue",
        "--no-passphrase",
        "hr",
        "--role",
        "offboarding",
        "--out",
        hr.to_str().unwrap(),
        "--output",
        "json",
    ]));
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/hr-offboard.sh");
    let run = |csv: &str| {
        let file = tmp.path().join("leavers.csv");
        std::fs::write(&file, csv).unwrap();
        std::process::Command::new("bash")
            .arg(&script)
            .arg(&file)
            .env("WARDCTL", ward_e2e::process::bin("wardctl"))
            .env("WARD_SERVER", &controller.url)
            .env("WARD_ADMIN_CERT", &hr)
            .env("RECEIPTS_DIR", tmp.path().join("receipts"))
            .env("OFFBOARD_TIMEOUT", "60s")
            .output()
            .unwrap()
    };
    let out = run("email,reason\nsam@hospital.org,\"Left 2026-11-30, ticket 4711\"\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let receipt: Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("receipts/sam@hospital.org.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(receipt["complete"], true);
    assert!(device.canary_files().is_empty());

    // A CSV saved on Windows (CRLF), and a leaver with no devices and no tokens: the batch
    // goes on, says what each leaver came to, and a leaver with nothing to offboard is not a
    // failure.
    let out = run("email,reason\r\nnobody@hospital.org,gone\r\nsam@hospital.org,\"again\"\r\n");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("nobody@hospital.org: nothing to offboard"),
        "{err}"
    );
    assert!(err.contains("sam@hospital.org: done"), "{err}");
    let audit = ward_e2e::process::json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let reasons: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user.offboard")
        .map(|e| {
            e["details"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        reasons.contains(&"again".to_owned()),
        "no stray quote or CR: {reasons:?}"
    );
}
