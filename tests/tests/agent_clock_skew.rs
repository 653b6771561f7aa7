//! A device whose clock is an hour behind or ahead of the controller's loses no wipe: a wipe
//! sent while it runs and one queued while it was off both complete with verified receipts.
//! The agent processes run on a clock an hour off (the agent's test clock: its TLS stack,
//! ledger, journal and receipts all see it); the controller keeps the real one. No system
//! library is needed (`WARD_TEST_AGENT_CLOCK=faketime` runs the same test under libfaketime).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ward_e2e::clock::{AgentClock, env_refs};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

const DEADLINE: Duration = Duration::from_secs(60);

fn wipe(controller: &ControllerProcess, device: &AgentFixture) -> String {
    json(&controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "clock skew",
        "--output",
        "json",
    ]))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn skewed_agent_loses_no_wipe(skew: i64) {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let clock = AgentClock::new(tmp.path());
    clock.set(skew);
    let skewed = clock.env();
    let skewed_env = env_refs(&skewed);
    let online = AgentFixture::enroll(&controller, tmp.path(), "on", "oli@hospital.org");
    let offline = AgentFixture::enroll(&controller, tmp.path(), "off", "oli@hospital.org");

    let queued = wipe(&controller, &offline);
    let _online = online.run(&skewed_env);
    let _offline = offline.run(&skewed_env);
    eventually_blocking("the online agent's messaging key", DEADLINE, || {
        online
            .state_dir
            .join("messaging.key")
            .exists()
            .then_some(())
    });
    let sent = wipe(&controller, &online);
    for (id, device) in [(&queued, &offline), (&sent, &online)] {
        let command = eventually_blocking("the wipe to finish", DEADLINE, || {
            let out = controller.ctl(&["command", "show", id, "--output", "json"]);
            assert_eq!(out.status.code(), Some(0), "{skew}: {}", stderr(&out));
            let command = json(&out);
            ["succeeded", "failed", "cancelled", "expired"]
                .contains(&command["state"].as_str().unwrap())
                .then_some(command)
        });
        assert_eq!(command["state"], "succeeded", "{skew}: {command}");
        assert_eq!(command["receipt"]["verified"], true, "{skew}: {command}");
        assert!(device.canary_files().is_empty(), "{skew}: canary survived");
        // The agent really ran on the skewed clock: its ledger is stamped with it.
        let entry = ward_agent::ledger::Ledger::open(&device.state_dir)
            .unwrap()
            .get(id)
            .unwrap()
            .unwrap();
        let stamped = time::OffsetDateTime::parse(
            &entry.updated_at,
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let off = (stamped - time::OffsetDateTime::now_utc()).whole_seconds();
        assert!(
            (3000..=3700).contains(&off.abs()),
            "{skew}: the agent's clock was {off} s off"
        );
    }
}

#[test]
fn an_agent_an_hour_behind_loses_no_wipe() {
    skewed_agent_loses_no_wipe(-3600);
}

#[test]
fn an_agent_an_hour_ahead_loses_no_wipe() {
    skewed_agent_loses_no_wipe(3600);
}
