//! A device whose clock is an hour off from the controller's still enrolls: the controller
//! judges validity with its own clock; the agent's own check of the certificate it was just
//! issued tolerates the skew instead of refusing it after the one-time token is spent.
//! Moved either way: the controller's clock (its TLS stack keeps the real time), or the
//! device's own (the agent's clock, which its TLS stack and its check of the issued certificate
//! read).

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
        tpm: None,
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

async fn enroll_with_device_clock_moved(by: i64) -> ward_agent::state::AgentState {
    let controller = TestController::start().await;
    let token = controller.create_token("sol@hospital.org", 3 * 3600).await;
    let now = time::OffsetDateTime::now_utc();
    let clock = ward_agent::clock::ManualClock::new(now + time::Duration::seconds(by));
    let tmp = tempfile::tempdir().unwrap();
    let dir = StateDir::new(tmp.path().join("state"));
    let options = EnrollOptions {
        server: controller.url.clone(),
        token: zeroize::Zeroizing::new(token),
        ca_hash: controller.ca.hash(),
        secret_store: SecretStoreKind::File,
        tpm: None,
    };
    let state = ward_agent::enroll::enroll_with_clock(&dir, options, &clock.shared())
        .await
        .unwrap();
    // Stamped with the device's clock.
    let enrolled = time::OffsetDateTime::parse(
        &state.enrolled_at,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(enrolled, clock_now(&clock));
    state
}

fn clock_now(clock: &ward_agent::clock::ManualClock) -> time::OffsetDateTime {
    use ward_agent::clock::Clock;
    clock.now()
}

#[tokio::test]
async fn a_device_whose_own_clock_is_an_hour_behind_enrolls() {
    enroll_with_device_clock_moved(-3600).await;
}

#[tokio::test]
async fn a_device_whose_own_clock_is_an_hour_ahead_enrolls() {
    enroll_with_device_clock_moved(3600).await;
}

#[tokio::test]
async fn the_devices_tls_stack_reads_the_devices_clock() {
    // Two years ahead, the controller's one-year server certificate has expired for this
    // device: the handshake fails on its side, and the token is not spent.
    let controller = TestController::start().await;
    let token = controller.create_token("sid@hospital.org", 3 * 3600).await;
    let clock = ward_agent::clock::ManualClock::new(
        time::OffsetDateTime::now_utc() + Duration::from_secs(2 * 365 * 86_400),
    );
    let tmp = tempfile::tempdir().unwrap();
    let options = EnrollOptions {
        server: controller.url.clone(),
        token: zeroize::Zeroizing::new(token.clone()),
        ca_hash: controller.ca.hash(),
        secret_store: SecretStoreKind::File,
        tpm: None,
    };
    let dir = StateDir::new(tmp.path().join("state"));
    let err = ward_agent::enroll::enroll_with_clock(&dir, options, &clock.shared())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    assert_eq!(controller.device_count().await, 0);
    controller.try_enroll(&token).await.unwrap();
}
