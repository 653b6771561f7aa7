//! A real `ward-agent` renews its certificate by itself (its clock moved to the renewal time)
//! against a real `wardctl serve`: the certificate it enrolled with is revoked once the renewed
//! one is in use, the key history shows both, and the renewal is not mistaken for a clone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ward_certs::PrivateKeyDer;
use ward_e2e::clock::{AgentClock, env_refs};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json};
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::CheckInRequest;
use ward_proto::v1::agent_service_client::AgentServiceClient;

const DEADLINE: Duration = Duration::from_secs(90);

fn show(controller: &ControllerProcess, id: &str) -> serde_json::Value {
    json(&controller.ctl(&["device", "show", id, "--output", "json"]))
}

fn actions(controller: &ControllerProcess) -> Vec<String> {
    json(&controller.ctl(&["audit", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Whether a new connection with the pair is refused (handshake or first call).
async fn refused(controller: &ControllerProcess, cert: &[u8], key: &PrivateKeyDer) -> bool {
    let ca = std::fs::read_to_string(controller.data_dir.join("ca.pem")).unwrap();
    let ca = ward_certs::certificates_from_pem(&ca).unwrap().remove(0);
    let tls = ward_certs::tls::client_config(&ca, Some((&[cert.to_vec()], key))).unwrap();
    let url: ServerUrl = controller.url.parse().unwrap();
    match connect(&url, tls, ChannelOptions::default()).await {
        Err(_) => true,
        Ok(channel) => AgentServiceClient::new(channel)
            .check_in(CheckInRequest::default())
            .await
            .is_err(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_renews_and_its_enrollment_certificate_is_revoked_once_the_new_one_is_used()
{
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start_with(
        &tmp.path().join("controller"),
        "127.0.0.1:0",
        &["--device-cert-lifetime", "1h"],
    );
    let agent = AgentFixture::enroll(&controller, tmp.path(), "renewing", "ren@hospital.org");
    let state = ward_agent::state::StateDir::new(agent.state_dir.clone());
    let enrolled_pem = std::fs::read_to_string(state.certificate()).unwrap();
    let enrolled_cert = ward_certs::certificates_from_pem(&enrolled_pem)
        .unwrap()
        .remove(0);
    let enrolled_key =
        PrivateKeyDer::from_pem(&std::fs::read_to_string(state.key_file()).unwrap()).unwrap();
    let first_serial = show(&controller, &agent.device_id)["certificate_serial"]
        .as_str()
        .unwrap()
        .to_owned();

    // The agent's clock stands 50 minutes on: two thirds of the hour have passed, it renews.
    let clock = AgentClock::new(tmp.path());
    clock.set(50 * 60);
    let env = clock.env();
    let _running = agent.run(&env_refs(&env));
    let renewed = eventually_blocking("the renewed certificate in use", DEADLINE, || {
        let device = show(&controller, &agent.device_id);
        (device["certificate_serial"].as_str() != Some(first_serial.as_str())).then_some(device)
    });
    // Back to the real time, so it does not renew again at once.
    clock.set(0);

    assert!(refused(&controller, &enrolled_cert, &enrolled_key).await);
    let certificates = renewed["certificates"].as_array().unwrap();
    assert!(certificates.len() >= 2, "{renewed}");
    assert_eq!(certificates[0]["serial"], first_serial.as_str());
    assert!(certificates[0]["replaced_at"].is_string(), "{renewed}");
    assert!(renewed["renewal_conflict"].is_null(), "{renewed}");
    // The agent keeps checking in with its renewed certificate.
    let seen = show(&controller, &agent.device_id)["last_seen"].clone();
    eventually_blocking("a check-in with the renewed certificate", DEADLINE, || {
        (show(&controller, &agent.device_id)["last_seen"] != seen).then_some(())
    });
    let actions = actions(&controller);
    assert!(actions.iter().any(|a| a == "device.renew"), "{actions:?}");
    assert!(
        actions.iter().any(|a| a == "device.certificate_in_use"),
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| a == "device.renewal_conflict"),
        "a device renewing by itself is not a clone: {actions:?}"
    );
    assert!(
        show(&controller, &agent.device_id)["renewal_conflict"].is_null(),
        "a device renewing by itself is not flagged"
    );
}
