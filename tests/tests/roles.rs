//! Role enforcement on the admin API: each role can do what it needs and nothing more; a
//! refusal names the role required and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::*;

fn issue(device: &str, action: Action, key: &str) -> IssueCommandRequest {
    IssueCommandRequest {
        device_id: device.into(),
        action: Some(action),
        reason: "test".into(),
        idempotency_key: key.into(),
        ttl_seconds: 0,
    }
}

fn wipe(scope: WipeScope) -> Action {
    Action::Wipe(WipeAction {
        scope: scope as i32,
    })
}

#[tokio::test]
async fn offboarding_role_can_wipe_messaging_but_not_full_wipe_or_change_policy() {
    let controller = TestController::start().await;
    let device = controller.enroll("ivy@hospital.org").await;
    let mut hr = controller
        .admin_with_role("hr-script", AdminRole::Offboarding)
        .await;

    let err = hr
        .issue_command(issue(&device.device_id, wipe(WipeScope::Full), "f1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("needs role admin"),
        "{}",
        err.message()
    );
    let err = hr
        .set_policy(SetPolicyRequest {
            password_min_length: Some(12),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = hr
        .issue_command(issue(
            &device.device_id,
            Action::Lock(LockAction::default()),
            "l1",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = hr
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            user: "x@h.org".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // What it may do.
    hr.issue_command(issue(&device.device_id, wipe(WipeScope::Messaging), "m1"))
        .await
        .unwrap();
    hr.list_devices(ListDevicesRequest::default())
        .await
        .unwrap();

    // Only the messaging wipe exists; the default policy is untouched.
    let commands = controller
        .admin()
        .await
        .list_commands(ListCommandsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .commands;
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].scope, "messaging");
    let policy = controller
        .admin()
        .await
        .get_policy(GetPolicyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy.revision, 0);
}

#[tokio::test]
async fn helpdesk_can_lock_and_read_but_not_wipe_cancel_or_issue_admins() {
    let controller = TestController::start().await;
    let device = controller.enroll("jon@hospital.org").await;
    let mut helpdesk = controller
        .admin_with_role("desk1", AdminRole::Helpdesk)
        .await;

    let lock = helpdesk
        .issue_command(issue(
            &device.device_id,
            Action::Lock(LockAction::default()),
            "l1",
        ))
        .await
        .unwrap()
        .into_inner();
    helpdesk
        .issue_command(issue(
            &device.device_id,
            Action::Unlock(UnlockAction {}),
            "u1",
        ))
        .await
        .unwrap();
    helpdesk
        .get_command(GetCommandRequest {
            command_id: lock.id.clone(),
        })
        .await
        .unwrap();

    for scope in [WipeScope::Messaging, WipeScope::Full] {
        let err = helpdesk
            .issue_command(issue(&device.device_id, wipe(scope), "w"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let err = helpdesk
        .cancel_command(CancelCommandRequest {
            command_id: lock.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let err = helpdesk
        .issue_admin(IssueAdminRequest {
            name: "escalate".into(),
            role: AdminRole::Admin as i32,
            csr_der: ward_certs::csr::make_csr(&key, "x").unwrap(),
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let admins = helpdesk
        .list_admins(ListAdminsRequest {})
        .await
        .unwrap()
        .into_inner()
        .admins;
    // init's admin and break-glass identity, and the helpdesk: no admin was added.
    let names: Vec<&str> = admins.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["admin", "break-glass", "desk1"]);
}
