//! Issue 16: after a messaging wipe `device list` showed just "active". With real processes
//! (`wardctl serve`, `ward-agent run` with a messaging directory): the list (table and JSON)
//! and `device show` say the messaging data was wiped, and `device return` puts a found device
//! back into service where it can (a disabled one) and otherwise refuses with the way out,
//! changing nothing: a wiped device is retired and enrolled again with a new token, a revoked
//! certificate is never trusted again. Also `device revoke --reason` and `device lost --wait`
//! (issue 16 item 12).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, local_api, stderr};

const DEADLINE: Duration = Duration::from_secs(60);
const KEY: &str = r#"{"op":"key"}"#;
const STATUS: &str = r#"{"op":"status"}"#;

fn exit_code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn device<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("device {id} not in {list:?}"))
}

/// The device's row of the `device list` table.
fn table_row(controller: &ControllerProcess, id: &str) -> String {
    let out = controller.ctl(&["device", "list", "--output", "table"]);
    assert_eq!(exit_code(&out), Some(0), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .find(|l| l.contains(id))
        .unwrap_or_else(|| panic!("no row for {id}: {}", stdout(&out)))
        .to_owned()
}

/// What a refusal must leave as it was: the commands and the audited changes.
fn stored(controller: &ControllerProcess) -> (Value, Vec<Value>) {
    let commands = json(&controller.ctl(&["command", "list", "--output", "json"]));
    let changes = json(&controller.ctl(&["audit", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] != "read")
        .cloned()
        .collect();
    (commands, changes)
}

fn wait_key(fixture: &AgentFixture) -> String {
    eventually_blocking("the agent to hand out the data key", DEADLINE, || {
        local_api(&fixture.state_dir, KEY)["key"]
            .as_str()
            .map(str::to_owned)
    })
}

fn command_state(controller: &ControllerProcess, id: &str) -> Value {
    eventually_blocking(&format!("command {id} to finish"), DEADLINE, || {
        let c = json(&controller.ctl(&["command", "show", id, "--output", "json"]));
        matches!(c["state"].as_str(), Some("succeeded" | "failed")).then_some(c)
    })
}

#[test]
fn a_wiped_device_shows_it_and_goes_back_into_service_only_by_enrolling_again() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let user = "wen@hospital.org";
    let fixture = AgentFixture::enroll(&controller, tmp.path(), "w", user);
    let id = fixture.device_id.clone();
    let agent = fixture.run(&[]);
    wait_key(&fixture);

    // Before any wipe: nothing said about it.
    assert_eq!(
        device(&controller.devices(), &id)["messaging_wipe"],
        Value::Null
    );
    let row = table_row(&controller, &id);
    assert!(row.contains("active") && !row.contains("wiped"), "{row}");

    let out = controller.ctl(&[
        "device",
        "wipe",
        &id,
        "--scope",
        "messaging",
        "--reason",
        "phone left in a taxi",
        "--wait",
        "--output",
        "json",
    ]);
    assert_eq!(exit_code(&out), Some(0), "{}", stderr(&out));
    let wipe = json(&out);
    assert_eq!(wipe["state"], "succeeded", "{wipe}");
    let wipe_id = wipe["id"].as_str().unwrap().to_owned();

    // The list says so: JSON keeps the state and adds the wipe; the table's state says it.
    let listed = controller.devices();
    let shown = device(&listed, &id);
    assert_eq!(shown["state"], "active", "{shown}");
    assert_eq!(shown["messaging_wipe"]["by"], "wipe", "{shown}");
    assert_eq!(shown["messaging_wipe"]["command_id"], wipe_id.as_str());
    assert_eq!(
        shown["messaging_wipe"]["at"], wipe["finished_at"],
        "{shown}"
    );
    let row = table_row(&controller, &id);
    assert!(row.contains("active, messaging wiped"), "{row}");
    let out = controller.ctl(&["device", "show", &id, "--output", "table"]);
    assert!(
        stdout(&out).contains(&format!("by wipe command {wipe_id}")),
        "{}",
        stdout(&out)
    );
    let status = local_api(&fixture.state_dir, STATUS);
    assert_eq!(status["state"], "wiped", "{status}");

    // `device return` cannot bring the data key back: refused with the way out, nothing
    // stored changes.
    let before = stored(&controller);
    let out = controller.ctl(&["device", "return", &id, "--reason", "found in the taxi"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    let why = stderr(&out);
    for needle in [
        "messaging data was wiped at",
        &wipe_id,
        "withholds the data key for good",
        "device retire",
        "enroll it again with a new token",
        &format!("wardctl token create --user {user}"),
    ] {
        assert!(why.contains(needle), "{needle:?} missing: {why}");
    }
    // Bad input: no reason, an empty one, an unknown device.
    let out = controller.ctl(&["device", "return", &id]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    let out = controller.ctl(&["device", "return", &id, "--reason", "  "]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--reason must not be empty"),
        "{}",
        stderr(&out)
    );
    let out = controller.ctl(&[
        "device",
        "return",
        "0b6f0000-0000-4000-8000-000000000000",
        "--reason",
        "found",
    ]);
    assert_eq!(exit_code(&out), Some(3), "{}", stderr(&out));
    assert_eq!(
        stored(&controller),
        before,
        "a refusal changed what is stored"
    );

    // The way out, as the refusal says: retire the record (the agent destroys the wiped
    // identity's state and stops), then enroll again with a new token.
    let out = controller.ctl(&[
        "device",
        "retire",
        &id,
        "--reason",
        "back into service after a wipe",
        "--wait",
        "--output",
        "json",
    ]);
    assert_eq!(exit_code(&out), Some(0), "{}", stderr(&out));
    let mut agent = agent;
    eventually_blocking("the retired agent to stop", DEADLINE, || {
        (!agent.is_running()).then_some(())
    });
    let out = controller.ctl(&["device", "return", &id, "--reason", "found"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is retired"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("enroll it again with a new token"),
        "{}",
        stderr(&out)
    );

    let again = AgentFixture::enroll_at(
        &controller,
        fixture.state_dir.clone(),
        fixture.messaging_dir.clone(),
        tmp.path().join("w-again.log"),
        user,
    );
    assert_ne!(
        again.device_id, id,
        "a new enrollment is a new device record"
    );
    let _agent = again.run(&[]);
    wait_key(&again);
    assert_eq!(local_api(&again.state_dir, STATUS)["state"], "ok");
    let listed = controller.devices();
    let new = device(&listed, &again.device_id);
    assert_eq!(new["state"], "active");
    assert_eq!(new["messaging_wipe"], Value::Null, "{new}");
    let old = device(&listed, &id);
    assert_eq!(old["state"], "retired");
    assert_eq!(old["messaging_wipe"]["by"], "retire", "{old}");
    let row = table_row(&controller, &id);
    assert!(row.contains("retired, messaging wiped"), "{row}");
    let row = table_row(&controller, &again.device_id);
    assert!(!row.contains("wiped"), "{row}");
}

#[test]
fn a_found_disabled_device_is_returned_and_a_revoked_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let user = "bee@hospital.org";
    let fixture = AgentFixture::enroll(&controller, tmp.path(), "b", user);
    let id = fixture.device_id.clone();
    let _agent = fixture.run(&[]);
    let key = wait_key(&fixture);

    // In service: nothing to return.
    let out = controller.ctl(&["device", "return", &id, "--reason", "found"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("in service already"),
        "{}",
        stderr(&out)
    );

    let out = controller.ctl(&[
        "device", "disable", &id, "--reason", "mislaid", "--output", "json",
    ]);
    assert_eq!(exit_code(&out), Some(0), "{}", stderr(&out));
    let disable = json(&out)["command"]["id"].as_str().unwrap().to_owned();
    assert_eq!(command_state(&controller, &disable)["state"], "succeeded");

    // Found: returned, and the app gets the same key back (the data was kept).
    let out = controller.ctl(&[
        "device",
        "return",
        &id,
        "--reason",
        "found in the nurses' station",
        "--output",
        "json",
    ]);
    assert_eq!(exit_code(&out), Some(0), "{}", stderr(&out));
    let returned = json(&out);
    assert_eq!(returned["command"]["kind"], "enable", "{returned}");
    assert_eq!(returned["device"]["disabled"], Value::Null, "{returned}");
    let enable = returned["command"]["id"].as_str().unwrap().to_owned();
    assert_eq!(command_state(&controller, &enable)["state"], "succeeded");
    let answer = eventually_blocking("the key to come back", DEADLINE, || {
        let a = local_api(&fixture.state_dir, KEY);
        a["key"].is_string().then_some(a)
    });
    assert_eq!(answer["key"], key.as_str());
    let audit = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "device.enable"
                && e["details"]["reason"] == "found in the nurses' station"),
        "{audit}"
    );

    // Revoke takes a reason (required, audited), like every lifecycle action.
    let before = stored(&controller);
    let out = controller.ctl(&["device", "revoke", &id]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--reason"), "{}", stderr(&out));
    let out = controller.ctl(&["device", "revoke", &id, "--reason", " "]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert_eq!(
        stored(&controller),
        before,
        "a refused revoke changed what is stored"
    );
    assert_eq!(device(&controller.devices(), &id)["state"], "active");
    let out = controller.ctl(&[
        "device",
        "revoke",
        &id,
        "--reason",
        "certificate copied to a USB stick",
        "--output",
        "json",
    ]);
    assert_eq!(exit_code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["state"], "revoked");
    assert!(stderr(&out).contains("never wiped"), "{}", stderr(&out));
    let audit = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let revoked = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "device.revoke")
        .unwrap_or_else(|| panic!("no device.revoke entry: {audit}"));
    assert_eq!(
        revoked["details"]["reason"], "certificate copied to a USB stick",
        "{revoked}"
    );

    // A revoked certificate is never trusted again: refused, with the way out.
    let before = stored(&controller);
    let out = controller.ctl(&["device", "return", &id, "--reason", "found"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    let why = stderr(&out);
    assert!(why.contains("is revoked"), "{why}");
    assert!(why.contains("enroll it again with a new token"), "{why}");
    assert!(
        why.contains(&format!("wardctl token create --user {user}")),
        "{why}"
    );
    assert_eq!(
        stored(&controller),
        before,
        "a refusal changed what is stored"
    );
}

#[test]
fn lost_waits_for_its_wipe_and_the_list_shows_the_device_revoked_and_wiped() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let fixture = AgentFixture::enroll(&controller, tmp.path(), "l", "lou@hospital.org");
    let id = fixture.device_id.clone();
    let _agent = fixture.run(&[]);
    wait_key(&fixture);

    let out = controller.ctl(&[
        "device",
        "lost",
        &id,
        "--reason",
        "stolen from ward 3B",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(exit_code(&out), Some(0), "{}", stderr(&out));
    let wipe = json(&out);
    assert_eq!(wipe["kind"], "wipe", "{wipe}");
    assert_eq!(wipe["state"], "succeeded", "{wipe}");
    assert_eq!(wipe["receipt"]["verified"], true, "{wipe}");
    assert!(fixture.canary_files().is_empty());

    let listed = eventually_blocking("the device to be revoked", DEADLINE, || {
        let d = device(&controller.devices(), &id).clone();
        (d["state"] == "revoked").then_some(d)
    });
    assert_eq!(
        listed["messaging_wipe"]["command_id"], wipe["id"],
        "{listed}"
    );
    let row = table_row(&controller, &id);
    assert!(row.contains("revoked, messaging wiped"), "{row}");
    let out = controller.ctl(&["device", "return", &id, "--reason", "found"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is revoked"), "{}", stderr(&out));

    // --timeout without --wait is refused before anything is sent.
    let out = controller.ctl(&["device", "lost", &id, "--reason", "x", "--timeout", "5m"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
}
