//! A device whose clock is an hour behind or ahead of the controller's loses no wipe: a wipe
//! sent while it runs and one queued while it was off both complete with verified receipts.
//! The agent process runs under libfaketime (`FAKETIME=±1h`), so its TLS stack, ledger,
//! journal and receipt all see the skewed clock; the controller keeps the real one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

const DEADLINE: Duration = Duration::from_secs(60);

/// libfaketime, preloaded into the agent process itself (not through the `faketime` wrapper,
/// which would stand between the test and the process it must stop).
fn libfaketime() -> &'static str {
    let path = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
    assert!(
        std::path::Path::new(path).exists(),
        "this test needs libfaketime: apt-get install faketime (.ci/run installs it)"
    );
    path
}

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

fn skewed_agent_loses_no_wipe(skew: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let skewed_env = [("LD_PRELOAD", libfaketime()), ("FAKETIME", skew)];
    let online = AgentFixture::enroll(&controller, tmp.path(), "on", "oli@hospital.org");
    let offline = AgentFixture::enroll(&controller, tmp.path(), "off", "oli@hospital.org");

    // The skewed clock is real inside the agent process.
    let out = std::process::Command::new("date")
        .arg("+%s")
        .envs(skewed_env)
        .output()
        .unwrap();
    let skewed: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let real = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (skewed - real).abs() > 3000,
        "faketime did not move the clock"
    );

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
    skewed_agent_loses_no_wipe("-1h");
}

#[test]
fn an_agent_an_hour_ahead_loses_no_wipe() {
    skewed_agent_loses_no_wipe("+1h");
}
