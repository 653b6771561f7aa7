//! Transport limits, each exercised: per-client enrollment rate, the TLS handshake timeout
//! (silent sockets do not block anyone), and the maximum message size.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic::Code;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::EnrollRequest;

#[tokio::test]
async fn enrollment_is_rate_limited_per_client_address() {
    let controller = TestController::start_with(|c| {
        c.enroll_burst = 5;
        c.enroll_per_minute = 1;
    })
    .await;
    for _ in 0..5 {
        let err = controller.try_enroll("ward_guess").await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    let err = controller.try_enroll("ward_guess").await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("too many enrollment attempts"),
        "{}",
        err.message()
    );
    // Even a valid token waits: the limit is on attempts, before any token is looked at.
    let token = controller.create_token("ann@hospital.org", 0).await;
    assert_eq!(
        controller.try_enroll(&token).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    assert_eq!(controller.device_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_sockets_do_not_stop_a_real_enrollment() {
    let controller = TestController::start().await;
    let mut silent = Vec::new();
    for _ in 0..1000 {
        // Connect and never send a ClientHello.
        silent.push(
            tokio::net::TcpStream::connect(controller.addr)
                .await
                .unwrap(),
        );
    }
    let enrolled = tokio::time::timeout(
        Duration::from_secs(30),
        controller.enroll("ben@hospital.org"),
    )
    .await;
    assert!(
        enrolled.is_ok(),
        "a real device could not enroll while 1000 sockets sat silent"
    );
    assert_eq!(controller.device_count().await, 1);
    drop(silent);
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_the_controller_keeps_serving() {
    let controller = TestController::start().await;
    let huge = vec![0x30; 2 * 1024 * 1024];
    let err = controller
        .enrollment()
        .await
        .enroll(EnrollRequest {
            token: "ward_x".into(),
            csr_der: huge,
            facts: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    controller.enroll("cal@hospital.org").await;
    assert_eq!(controller.device_count().await, 1);
}
