//! A revoked agent knows it is revoked, also after the controller restarts (when the refusal
//! comes as a TLS alert in the handshake, no longer in the controller's own words): its log
//! and `ward-agent status` say so and what to do, and its offline timer keeps running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::clock::{AgentClock, env_refs};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, stderr};
use ward_e2e::timer::{
    DEADLINE, offline_wipe_after_an_hour, wait_for_claim_on_controller, wait_for_offline_wipe,
    wait_for_policy_and_check_in,
};

#[test]
fn a_revoked_agent_says_so_after_the_controller_restarts_and_its_timer_still_wipes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("controller");
    let controller = ControllerProcess::start(&data);
    offline_wipe_after_an_hour(&controller);
    let agent = AgentFixture::enroll(&controller, tmp.path(), "stolen", "rae@hospital.org");
    let clock = AgentClock::new(tmp.path());
    let env = clock.env();
    let _running = agent.run(&env_refs(&env));
    wait_for_policy_and_check_in(&agent);
    // A healthy device: no problem to report.
    let status = agent.status(&env_refs(&env));
    assert_eq!(status["connection"]["state"], "checked_in", "{status}");
    assert_eq!(status["problems"], serde_json::json!([]), "{status}");
    assert!(status["offline_timer"]["deadline"].is_string(), "{status}");

    let out = controller.ctl(&["device", "revoke", &agent.device_id, "--reason", "test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listen = controller.listen_addr();
    drop(controller);
    let logged_before = agent.log_text().len();
    let restarted = ControllerProcess::start_on(&data, &listen);

    // Only the handshake refuses it now.
    let log = eventually_blocking("the agent to log that it is revoked", DEADLINE, || {
        let log = agent.log_text();
        log[logged_before..]
            .contains("its certificate was revoked")
            .then_some(log)
    });
    assert!(log[logged_before..].contains("Enroll it again"), "{log}");
    let status = eventually_blocking("status to say it is revoked", DEADLINE, || {
        let status = agent.status(&env_refs(&env));
        (status["connection"]["state"] == "revoked").then_some(status)
    });
    let problems = status["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["code"] == "revoked"
            && p["message"].as_str().unwrap().contains("Enroll it again")),
        "{status}"
    );
    let table = agent.status_output("table", &env_refs(&env));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("revoked"), "{table}");
    assert!(table.contains("problem"), "{table}");

    // The timer is still running: two hours on, the data is wiped. The receipt reaches the
    // controller, which keeps it as the device's claim only: revoked, its key is presumed in
    // other hands, and a thief holding it could sign the same receipt.
    clock.set(2 * 3600);
    wait_for_offline_wipe(&agent);
    let device = wait_for_claim_on_controller(&restarted, &agent);
    assert_eq!(device["state"], "revoked", "{device}");
    let audit = ward_e2e::process::json(&restarted.ctl(&["audit", "list", "--output", "json"]));
    assert!(
        audit.to_string().contains("presumed in other hands"),
        "the audit trail says why it is not a wipe: {audit}"
    );
}
