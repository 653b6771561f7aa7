//! Revocation: refused at the TLS handshake and on every call, the open stream closed at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic::Code;
use ward_e2e::eventually;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::*;

#[tokio::test]
async fn a_revoked_device_fails_at_the_handshake_and_its_stream_closes() {
    let controller = TestController::start().await;
    let device = controller.enroll("kim@hospital.org").await;
    let other = controller.enroll("lee@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let mut stream = agent
        .commands(CommandsRequest {})
        .await
        .unwrap()
        .into_inner();
    // The first push is the policy.
    assert!(stream.message().await.unwrap().is_some());

    let revoked = controller
        .admin()
        .await
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.state, DeviceState::Revoked as i32);

    // The open stream ends with the reason, promptly.
    let end = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("stream still open 1 s after revocation");
    let status = end.expect_err("the stream must end with an error");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(status.message().contains("revoked"), "{}", status.message());

    // A new connection with the revoked certificate fails in the TLS handshake: the call never
    // reaches the service (which would answer Unauthenticated).
    let outcome = match controller
        .agent_with(&device.certificate_der, &device.key)
        .await
    {
        Err(_) => None,
        Ok(mut fresh) => Some(fresh.check_in(CheckInRequest::default()).await),
    };
    match outcome {
        None => {}
        Some(Ok(_)) => panic!("a revoked certificate checked in"),
        Some(Err(status)) => assert_ne!(
            status.code(),
            Code::Unauthenticated,
            "refused by the service, not the handshake: {status:?}"
        ),
    }

    // Other devices are unaffected; revoking again is harmless.
    let mut fine = controller
        .agent_with(&other.certificate_der, &other.key)
        .await
        .unwrap();
    fine.check_in(CheckInRequest::default()).await.unwrap();
    controller
        .admin()
        .await
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn an_open_connection_is_refused_on_its_next_call_after_revocation() {
    let controller = TestController::start().await;
    let device = controller.enroll("max@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    agent.check_in(CheckInRequest::default()).await.unwrap();
    controller
        .admin()
        .await
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    // Same HTTP/2 connection, already past its handshake: refused per call.
    let err = agent.check_in(CheckInRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    eventually(
        "device list to show it revoked",
        Duration::from_secs(5),
        || async {
            let d = controller
                .admin()
                .await
                .get_device(GetDeviceRequest {
                    device_id: device.device_id.clone(),
                })
                .await
                .ok()?
                .into_inner();
            (d.state == DeviceState::Revoked as i32).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn revocation_survives_a_controller_restart() {
    // The list is loaded from the store at start: a fresh App over the same store refuses it.
    let controller = TestController::start().await;
    let device = controller.enroll("ned@hospital.org").await;
    controller
        .admin()
        .await
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let app = ward_controller::app::App::new(
        std::sync::Arc::new(controller.store.clone()),
        controller.ca.clone(),
        std::sync::Arc::new(ward_controller::core::SystemClock),
        ward_controller::app::AppConfig::with_public_url("https://127.0.0.1:1".into()),
    );
    assert_eq!(app.load_revocations().await.unwrap(), 1);
    let serial = ward_certs::tls::serial_of(&device.certificate_der).unwrap();
    assert!(app.revoked_serials().contains(&serial));
}

/// Attack by circumstance: the admin's call hangs up (a dropped VPN, a script's timeout) while
/// the revocation waits in the store's writer. The revocation commits; what follows the commit
/// on this replica (the device's serial in the list the handshake checks, its cached record,
/// its open stream) must happen as well, at once, not at the next reload 30 s later. Before
/// calls ran to their end, the handler was dropped with the client and none of it happened.
#[tokio::test]
async fn a_revocation_whose_admin_hangs_up_refuses_the_device_at_once() {
    use ward_controller::store::{BatchSettings, Store as _};
    let controller = TestController::start().await;
    let device = controller.enroll("ola@hospital.org").await;
    let serial = ward_certs::tls::serial_of(&device.certificate_der).unwrap();
    let mut admin = controller.admin().await;
    // The writer gathers for 2 s after its first job: the call waits there.
    let writer = controller.store.writer();
    let settings = writer.settings();
    writer.configure(BatchSettings {
        window: Duration::from_secs(2),
        ..settings
    });
    let hung_up = tokio::time::timeout(
        Duration::from_millis(300),
        admin.revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "laptop left in a taxi".into(),
        }),
    )
    .await;
    assert!(hung_up.is_err(), "the call was meant to hang up first");
    writer.configure(settings);

    let id: ward_controller::core::DeviceId = device.device_id.parse().unwrap();
    eventually(
        "the revocation to commit",
        Duration::from_secs(10),
        || async {
            let stored = controller.store.get_device(id).await.unwrap().unwrap();
            (stored.state == ward_controller::core::DeviceState::Revoked).then_some(())
        },
    )
    .await;
    eventually(
        "this replica to refuse the serial",
        Duration::from_secs(5),
        || async {
            controller
                .app
                .revoked_serials()
                .contains(&serial)
                .then_some(())
        },
    )
    .await;
    let outcome = match controller
        .agent_with(&device.certificate_der, &device.key)
        .await
    {
        Err(_) => None,
        Ok(mut fresh) => Some(fresh.check_in(CheckInRequest::default()).await),
    };
    assert!(
        !matches!(outcome, Some(Ok(_))),
        "a revoked certificate checked in"
    );
}
