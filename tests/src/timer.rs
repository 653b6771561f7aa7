//! Helpers for the offline-timer tests: a one-hour policy, and waits on what the agent and
//! the controller record.

use std::time::Duration;

use serde_json::Value;

use crate::eventually_blocking;
use crate::process::{AgentFixture, ControllerProcess, json};

pub const DEADLINE: Duration = Duration::from_secs(90);

/// Sets the default policy's offline wipe to one hour (the shortest the controller allows).
pub fn offline_wipe_after_an_hour(controller: &ControllerProcess) {
    let out = controller.ctl(&["policy", "set", "--offline-wipe-after", "1h"]);
    assert!(out.status.success(), "{}", crate::process::stderr(&out));
}

/// Waits until the agent holds the one-hour policy and has checked in since.
pub fn wait_for_policy_and_check_in(agent: &AgentFixture) {
    eventually_blocking("the agent to store the policy", DEADLINE, || {
        let text = std::fs::read_to_string(agent.state_dir.join("policy.json")).ok()?;
        let policy: Value = serde_json::from_str(&text).ok()?;
        (policy["offline_wipe_after_seconds"] == 3600).then_some(())
    });
    let stored_at = time::OffsetDateTime::now_utc();
    eventually_blocking("a check-in after the policy", DEADLINE, || {
        let text = std::fs::read_to_string(agent.state_dir.join("state.json")).ok()?;
        let state: Value = serde_json::from_str(&text).ok()?;
        let last = time::OffsetDateTime::parse(
            state["last_checkin"].as_str()?,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()?;
        (last > stored_at).then_some(())
    });
}

/// Waits until the messaging data is gone and the offline timer has recorded its wipe with a
/// signed receipt (`offline-timer.json`). The receipt's own file (`offline-wipe.json`) is no
/// proof either way: where the controller answers, the agent may report the receipt and remove
/// the file before a poll sees it.
pub fn wait_for_offline_wipe(agent: &AgentFixture) {
    eventually_blocking("the offline timer to wipe", DEADLINE, || {
        let text = std::fs::read_to_string(agent.state_dir.join("offline-timer.json")).ok()?;
        let record: Value = serde_json::from_str(&text).ok()?;
        let signed = matches!(record["receipt"].as_str(), Some("pending" | "reported"));
        (agent.canary_files().is_empty() && record["wiped_at"].is_string() && signed).then_some(())
    });
}

/// Waits until the controller shows the device's offline-wipe receipt, kept as a claim but
/// not verified (the device was revoked before it came).
pub fn wait_for_claim_on_controller(controller: &ControllerProcess, agent: &AgentFixture) -> Value {
    eventually_blocking(
        "the receipt to reach the controller as a claim",
        DEADLINE,
        || {
            let device =
                json(&controller.ctl(&["device", "show", &agent.device_id, "--output", "json"]));
            (device["offline_wipe_at"].is_string()
                && device["offline_wipe_receipt_verified"] == false)
                .then_some(device)
        },
    )
}

/// Waits until the controller shows the device's offline wipe with a verified receipt.
pub fn wait_for_receipt_on_controller(
    controller: &ControllerProcess,
    agent: &AgentFixture,
) -> Value {
    eventually_blocking("the receipt to reach the controller", DEADLINE, || {
        let device =
            json(&controller.ctl(&["device", "show", &agent.device_id, "--output", "json"]));
        (device["offline_wipe_receipt_verified"] == true).then_some(device)
    })
}
