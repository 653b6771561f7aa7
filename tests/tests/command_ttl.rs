//! `device lock --ttl`: a lock that waits longer than its time-to-live for an absent device
//! ends `expired` and is never run; the range is checked at the flag; wipes have no TTL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

#[test]
fn a_lock_with_a_time_to_live_shows_when_it_expires_and_bad_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let agent = AgentFixture::enroll(&controller, tmp.path(), "laptop", "ty@hospital.org");

    let out = controller.ctl(&[
        "device",
        "lock",
        &agent.device_id,
        "--ttl",
        "8h",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let command = json(&out);
    assert_eq!(command["state"], "queued");
    let expires = time::OffsetDateTime::parse(
        command["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let created = time::OffsetDateTime::parse(
        command["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires - created).whole_hours(), 8);

    // Without --ttl it waits for ever.
    let out = controller.ctl(&["device", "unlock", &agent.device_id, "--output", "json"]);
    assert!(json(&out)["expires_at"].is_null());

    for bad in ["0", "-5m", "31d"] {
        let out = controller.ctl(&["device", "lock", &agent.device_id, "--ttl", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("1m to 30d"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    let out = controller.ctl(&[
        "device",
        "wipe",
        &agent.device_id,
        "--scope",
        "messaging",
        "--reason",
        "x",
        "--ttl",
        "1h",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let commands = json(&controller.ctl(&["command", "list", "--output", "json"]));
    assert_eq!(commands.as_array().unwrap().len(), 2, "{commands}");
}
