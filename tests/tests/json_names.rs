//! The rules of `--output json` (README, "JSON output"), checked over the real output of the
//! main commands of a controller with one enrolled, running agent: one timestamp format, one
//! name per concept, and the deprecated aliases only next to their canonical names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

const DEADLINE: Duration = Duration::from_secs(60);

/// Subtrees that are signed or hashed text, shown exactly as the device or the audit log
/// stored them (`details`, a receipt's `body`, an attestation's `statement`): not ours to
/// rename.
const EXACT: &[&str] = &["details", "body", "statement"];

/// `2026-12-05T10:00:00.123Z`: RFC 3339, UTC, milliseconds.
fn is_rfc3339_ms_utc(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
        && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
}

struct Known {
    devices: BTreeSet<String>,
    commands: BTreeSet<String>,
}

/// Every breach of the rules in `value` (from `what`), as "what: path: problem".
fn check(what: &str, path: &str, value: &Value, known: &Known, problems: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(what, &format!("{path}[{i}]"), item, known, problems);
            }
        }
        Value::Object(map) => {
            let mut problem = |text: String| problems.push(format!("{what}: {path}: {text}"));
            for (key, v) in map {
                if (key == "at" || key.ends_with("_at"))
                    && !v.is_null()
                    && !v.as_str().is_some_and(is_rfc3339_ms_utc)
                {
                    problem(format!(
                        "`{key}` is {v}, not RFC 3339 UTC with milliseconds"
                    ));
                }
                if key == "device" && v.is_string() {
                    problem(format!("`device` holds a bare id ({v}): use `device_id`"));
                }
                if key == "server" && v.is_string() && map.get("server_url") != Some(v) {
                    problem("`server` without the same `server_url`".into());
                }
                if let Some(uri) = v.as_str().and_then(|s| s.strip_prefix("ward://admin/"))
                    && map.get("admin").and_then(Value::as_str) != Some(uri)
                {
                    problem(format!(
                        "`{key}` is an admin's URI without `admin: \"{uri}\"`"
                    ));
                }
            }
            if let Some(id) = map.get("id").and_then(Value::as_str) {
                if known.devices.contains(id) && map.get("device_id") != map.get("id") {
                    problem("a device's `id` without the same `device_id`".into());
                }
                if known.commands.contains(id) && map.get("command_id") != map.get("id") {
                    problem("a command's `id` without the same `command_id`".into());
                }
            }
            // `state` alone is only ever the object's own state: a device's view says
            // `device_state`, a wipe's `wipe_state`, a command's `command_state` as well.
            if map.contains_key("state") && map.contains_key("device_id") {
                let named = ["device_state", "wipe_state", "command_state"]
                    .iter()
                    .any(|k| map.get(*k) == map.get("state"));
                if !named {
                    problem(
                        "`state` without `device_state`, `wipe_state` or `command_state`".into(),
                    );
                }
            }
            for (key, v) in map {
                if !EXACT.contains(&key.as_str()) {
                    check(what, &format!("{path}.{key}"), v, known, problems);
                }
            }
        }
        _ => {}
    }
}

fn ctl_json(controller: &ControllerProcess, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    json(&controller.ctl(&all))
}

#[test]
fn every_main_command_follows_the_json_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let user = "jo@hospital.org";
    let device = AgentFixture::enroll(&controller, tmp.path(), "a", user);
    let _agent = device.run(&[]);
    let id = device.device_id.as_str();
    eventually_blocking("the device's first check-in", DEADLINE, || {
        controller
            .devices()
            .into_iter()
            .find(|d| d["user"] == user && !d["compliant"].is_null())
    });

    let mut outputs: Vec<(String, Value)> = Vec::new();
    let mut record = |what: &str, v: Value| outputs.push((what.to_owned(), v));
    record(
        "token create",
        ctl_json(
            &controller,
            &["token", "create", "--user", "spare@hospital.org"],
        ),
    );
    record("token list", ctl_json(&controller, &["token", "list"]));
    // A receiver nothing listens on: its deliveries fail and are logged with their attempts.
    record(
        "webhook add",
        ctl_json(
            &controller,
            &[
                "webhook",
                "add",
                "http://127.0.0.1:9/ward",
                "--events",
                "command.finished,user.offboarded",
            ],
        ),
    );
    record("device list", ctl_json(&controller, &["device", "list"]));
    record(
        "device show",
        ctl_json(&controller, &["device", "show", id]),
    );
    record(
        "device lock",
        ctl_json(&controller, &["device", "lock", id, "--ttl", "1h"]),
    );
    let wipe = ctl_json(
        &controller,
        &[
            "device",
            "wipe",
            id,
            "--scope",
            "messaging",
            "--reason",
            "json rules",
            "--wait",
        ],
    );
    let wipe_id = wipe["id"].as_str().unwrap().to_owned();
    record("device wipe --wait", wipe);
    record(
        "device wipe --user --dry-run",
        ctl_json(
            &controller,
            &[
                "device",
                "wipe",
                "--user",
                user,
                "--scope",
                "messaging",
                "--reason",
                "x",
                "--dry-run",
            ],
        ),
    );
    record("command list", ctl_json(&controller, &["command", "list"]));
    record(
        "command show",
        ctl_json(&controller, &["command", "show", &wipe_id]),
    );
    record(
        "command show --certificate",
        ctl_json(&controller, &["command", "show", &wipe_id, "--certificate"]),
    );
    let offboard = controller.ctl(&[
        "user",
        "offboard",
        user,
        "--reason",
        "left",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert!(
        matches!(offboard.status.code(), Some(0 | 5)),
        "{}",
        stderr(&offboard)
    );
    record(
        "user offboard",
        serde_json::from_slice(&offboard.stdout).unwrap(),
    );
    record(
        "device show (after)",
        ctl_json(&controller, &["device", "show", id]),
    );
    record("admin list", ctl_json(&controller, &["admin", "list"]));
    record(
        "admin list --requests",
        ctl_json(&controller, &["admin", "list", "--requests"]),
    );
    record(
        "scim token create",
        ctl_json(&controller, &["scim", "token", "create", "--name", "entra"]),
    );
    record(
        "scim token revoke",
        ctl_json(&controller, &["scim", "token", "revoke", "entra"]),
    );
    record(
        "scim token list",
        ctl_json(&controller, &["scim", "token", "list"]),
    );
    record("user list", ctl_json(&controller, &["user", "list"]));
    record("audit list", ctl_json(&controller, &["audit", "list"]));
    record("policy show", ctl_json(&controller, &["policy", "show"]));
    record("webhook list", ctl_json(&controller, &["webhook", "list"]));
    let deliveries = eventually_blocking("a webhook attempt", DEADLINE, || {
        let d = ctl_json(&controller, &["webhook", "deliveries"]);
        (d[0]["attempts"].as_u64() >= Some(1)).then_some(d)
    });
    record("webhook deliveries", deliveries);
    record("ca status", ctl_json(&controller, &["ca", "status"]));
    record(
        "ca rotate status",
        ctl_json(&controller, &["ca", "rotate", "status"]),
    );
    record("ward-agent status", device.status(&[]));

    let commands = ctl_json(&controller, &["command", "list"]);
    let known = Known {
        devices: BTreeSet::from([id.to_owned()]),
        commands: commands
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect(),
    };
    assert!(known.commands.contains(&wipe_id));

    let mut problems = Vec::new();
    for (what, value) in &outputs {
        check(what, "$", value, &known, &mut problems);
    }
    assert!(
        problems.is_empty(),
        "{} breaches of the JSON rules:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // The canonical names carry the same values as the deprecated ones they stand beside.
    let d = &outputs.iter().find(|(w, _)| w == "device show").unwrap().1;
    assert_eq!(d["device_id"], id);
    assert_eq!(d["device_state"], "active");
    assert!(d["last_seen_at"].is_string());
    let report = &outputs
        .iter()
        .find(|(w, _)| w == "user offboard")
        .unwrap()
        .1;
    let row = &report["devices"][0];
    assert_eq!(row["device_id"], id);
    assert_eq!(row["wipe_state"], row["state"]);
    let ca = &outputs.iter().find(|(w, _)| w == "ca status").unwrap().1;
    assert!(ca["server_url"].as_str().unwrap().starts_with("https://"));
    let agent = &outputs
        .iter()
        .find(|(w, _)| w == "ward-agent status")
        .unwrap()
        .1;
    let timer = &agent["offline_timer"];
    for (old, new) in [
        ("last_checkin", "last_checkin_at"),
        ("counted_until", "counted_until_at"),
        ("deadline", "deadline_at"),
    ] {
        assert!(timer.get(new).is_some(), "{timer}");
        assert_eq!(timer[old], timer[new], "{timer}");
    }
}
