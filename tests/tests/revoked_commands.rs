//! Revoke first, wipe later (issue 16 item 2): a revoked or retired device is refused at
//! every handshake, so a command for it could never arrive. The controller refuses it with
//! the reason and the way out instead of queueing it, and `device revoke` warns when the
//! device's messaging data was never wiped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use ward_e2e::inprocess::TestController;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};
use ward_proto::v1::*;

fn wipe(device: &str, key: &str) -> IssueCommandRequest {
    IssueCommandRequest {
        device_id: device.to_owned(),
        action: Some(issue_command_request::Action::Wipe(WipeAction {
            scope: WipeScope::Messaging as i32,
        })),
        reason: "lost in the car park".into(),
        idempotency_key: key.into(),
        ttl_seconds: 0,
    }
}

fn lock(device: &str, key: &str) -> IssueCommandRequest {
    IssueCommandRequest {
        device_id: device.to_owned(),
        action: Some(issue_command_request::Action::Lock(LockAction {
            message: "locked".into(),
        })),
        reason: String::new(),
        idempotency_key: key.into(),
        ttl_seconds: 0,
    }
}

#[tokio::test]
async fn a_command_for_a_revoked_device_is_refused_with_the_way_out_and_nothing_is_queued() {
    let controller = TestController::start().await;
    let device = controller.enroll("ann@hospital.org").await;
    let mut admin = controller.admin().await;
    // A command issued while the device was active is found again by its key after the
    // revocation: a retry is not a new request.
    let before = admin
        .issue_command(lock(&device.device_id, "before-revoke"))
        .await
        .unwrap()
        .into_inner();
    admin
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();

    for (what, request) in [
        ("wipe", wipe(&device.device_id, "after-revoke-wipe")),
        ("lock", lock(&device.device_id, "after-revoke-lock")),
    ] {
        let status = admin.issue_command(request).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{what}: {status:?}"
        );
        let message = status.message();
        assert!(message.contains("revoked"), "{what}: {message}");
        assert!(
            message.contains("can never reach it"),
            "{what}: says why: {message}"
        );
        assert!(
            message.contains("enroll") && message.contains("device lost"),
            "{what}: says the way out: {message}"
        );
    }

    let again = admin
        .issue_command(lock(&device.device_id, "before-revoke"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, before.id);

    let listed = admin
        .list_commands(ListCommandsRequest {
            device_id: device.device_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.commands.len(),
        1,
        "only the command issued before the revocation: {listed:?}"
    );
}

#[test]
fn device_revoke_warns_when_the_messaging_data_was_never_wiped() {
    let root = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&root.path().join("data"));
    let agent = AgentFixture::enroll(&controller, root.path(), "ws1", "bo@hospital.org");

    let out = controller.ctl(&["device", "revoke", &agent.device_id, "--reason", "test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("warning"), "{err}");
    assert!(err.contains("messaging data was never wiped"), "{err}");
    assert!(err.contains("device lost"), "names the right order: {err}");

    // And the CLI's wipe says it cannot be done rather than "queued".
    let out = controller.ctl(&[
        "device",
        "wipe",
        &agent.device_id,
        "--scope",
        "messaging",
        "--reason",
        "lost",
        "--wait",
        "--timeout",
        "5s",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("next connects"), "{err}");
    assert!(err.contains("revoked"), "{err}");
    let commands = json(&controller.ctl(&[
        "command",
        "list",
        "--device",
        &agent.device_id,
        "--output",
        "json",
    ]));
    assert_eq!(commands.as_array().map(Vec::len), Some(0), "{commands}");
    controller.stop();
}
