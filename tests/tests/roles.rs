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

/// Who is calling, and whether their role may make the call at all, is settled before the
/// request is parsed: a caller who may not make a call gets a refusal, never a lesson in what
/// the call would accept.
#[tokio::test]
async fn malformed_requests_from_callers_who_may_not_make_them_are_refused_unparsed() {
    let controller = TestController::start().await;
    let device = controller.enroll("ivy@hospital.org").await;

    // A device's certificate knocking on the admin API.
    let mut not_an_admin = controller
        .admin_as(&device.certificate_der, &device.key)
        .await;
    let err = not_an_admin
        .issue_command(IssueCommandRequest {
            device_id: "not a device!".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let err = not_an_admin
        .issue_command(issue("not a device!", wipe(WipeScope::Unspecified), "w"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let err = not_an_admin
        .bulk_wipe(BulkWipeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    let err = not_an_admin
        .rotate_ca(RotateCaRequest {
            step: "sideways".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());

    // Helpdesk may wipe nothing: a bulk wipe it cannot make is refused, however malformed.
    let mut desk = controller
        .admin_with_role("desk1", AdminRole::Helpdesk)
        .await;
    let err = desk
        .bulk_wipe(BulkWipeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    assert!(err.message().contains("needs role"), "{}", err.message());
    // Helpdesk may lock: a command it could make is parsed, and its mistakes are named.
    let err = desk
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    // Renewing another admin's certificate is refused before the CSR is read.
    let err = desk
        .renew_admin(RenewAdminRequest {
            name: "admin".into(),
            csr_der: vec![1, 2, 3],
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
    // Its own, with a malformed CSR, is read and refused as such.
    let err = desk
        .renew_admin(RenewAdminRequest {
            name: "desk1".into(),
            csr_der: vec![1, 2, 3],
            lifetime_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    // A well-formed wipe is still refused by its kind's permission.
    let err = desk
        .issue_command(issue("not a device!", wipe(WipeScope::Full), "f"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
}
