//! A device whose clock is an hour off from the controller's still enrolls: the controller
//! judges validity with its own clock; the agent's own check of the certificate it was just
//! issued tolerates the skew instead of refusing it after the one-time token is spent.
//! (The controller's clock is moved here; in this one process the TLS stack keeps the real
//! time, so the device side is the one being tested.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ward_agent::enroll::{EnrollOptions, enroll};
use ward_agent::secrets::SecretStoreKind;
use ward_agent::state::StateDir;
use ward_e2e::inprocess::TestController;

async fn enroll_with_controller_clock_moved(ahead: bool) -> ward_agent::state::AgentState {
    let controller = TestController::start().await;
    let token = controller.create_token("sky@hospital.org", 3 * 3600).await;
    let hour = Duration::from_secs(3600);
    if ahead {
        controller.clock.advance(hour);
    } else {
        controller.clock.rewind(hour);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::new(tmp.path().join("state"));
    let options = EnrollOptions {
        server: controller.url.clone(),
        token: zeroize::Zeroizing::new(token),
        ca_hash: controller.ca.hash(),
        secret_store: SecretStoreKind::File,
    };
    let state = enroll(&dir, options).await.unwrap();
    assert!(dir.certificate().exists());
    assert_eq!(controller.device_count().await, 1);
    state
}

#[tokio::test]
async fn a_device_an_hour_behind_the_controller_enrolls() {
    // The certificate is valid from (controller time − 5 min): 55 minutes in this device's
    // future. Refusing it would strand the device with a spent token.
    enroll_with_controller_clock_moved(true).await;
}

#[tokio::test]
async fn a_device_an_hour_ahead_of_the_controller_enrolls() {
    enroll_with_controller_clock_moved(false).await;
}
