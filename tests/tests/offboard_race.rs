//! Offboarding and enrollment serialize: while a user is being offboarded, each of their
//! enrollments in flight either enrolled a device that the offboarding wipes, or is refused.
//! No token is redeemed after the offboarding withdrew it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ward_e2e::inprocess::TestController;
use ward_proto::v1::*;

const ROUNDS: usize = 8;
const TOKENS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_token_is_redeemed_after_offboarding_withdrew_it() {
    let controller = Arc::new(
        TestController::start_with(|c| {
            c.enroll_burst = 1000;
            c.enroll_per_minute = 10_000;
        })
        .await,
    );
    // The clock moves as real time does, so an enrollment that began before the offboarding
    // can end after it.
    let clock = controller.clock.clone();
    let ticking = tokio::spawn(async move {
        loop {
            clock.advance(Duration::from_millis(1));
            tokio::time::sleep(Duration::from_micros(250)).await;
        }
    });
    let mut refused = 0;
    for round in 0..ROUNDS {
        let user = format!("leaver{round}@hospital.org");
        let mut tokens = Vec::new();
        for _ in 0..TOKENS {
            tokens.push(controller.create_token(&user, 0).await);
        }
        let start = Arc::new(tokio::sync::Barrier::new(TOKENS + 1));
        let mut enrollments = Vec::new();
        for token in tokens {
            let (controller, start) = (controller.clone(), start.clone());
            enrollments.push(tokio::spawn(async move {
                start.wait().await;
                controller
                    .try_enroll(&token)
                    .await
                    .map(|(r, _)| r.device_id)
            }));
        }
        let mut admin = controller.admin().await;
        start.wait().await;
        admin
            .offboard_user(OffboardUserRequest {
                user: user.clone(),
                reason: "left".into(),
            })
            .await
            .unwrap();
        let mut enrolled = Vec::new();
        for e in enrollments {
            match e.await.unwrap() {
                Ok(id) => enrolled.push(id),
                Err(status) => {
                    assert!(
                        status.message().contains("withdrawn"),
                        "{}",
                        status.message()
                    );
                    refused += 1;
                }
            }
        }
        // Every device that enrolled is one the offboarding found and wipes.
        let report = admin
            .get_offboard_report(GetOffboardReportRequest { user: user.clone() })
            .await
            .map(|r| r.into_inner().devices)
            .unwrap_or_default();
        for id in &enrolled {
            let entry = report.iter().find(|d| &d.device_id == id);
            assert!(
                entry.is_some_and(|d| !d.command_id.is_empty()),
                "round {round}: device {id} of {user} enrolled during the offboarding and got no wipe: {report:?}"
            );
        }
    }
    ticking.abort();
    eprintln!("{refused} of {} enrollments were refused", ROUNDS * TOKENS);
}
