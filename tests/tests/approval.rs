//! The second-admin rule (`serve --require-approval`): full wipes and large offboardings wait
//! for another admin, are not delivered meanwhile, and the issuer cannot approve their own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::*;

async fn controller() -> TestController {
    TestController::start_with(|c| c.approval_threshold = Some(1)).await
}

#[tokio::test]
async fn a_full_wipe_waits_for_a_second_admin() {
    let controller = controller().await;
    let device = controller.enroll("zoe@hospital.org").await;
    let wipe = controller
        .admin()
        .await
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Wipe(WipeAction {
                scope: WipeScope::Full as i32,
            })),
            reason: "disposal".into(),
            idempotency_key: "full-1".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(wipe.state, CommandState::AwaitingApproval as i32);

    // Not handed to the device while it waits.
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    assert!(
        agent
            .check_in(CheckInRequest::default())
            .await
            .unwrap()
            .into_inner()
            .pending_commands
            .is_empty()
    );
    let ack = agent
        .acknowledge(AcknowledgeRequest {
            command_id: wipe.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.proceed, "a command awaiting approval must not run");

    // The issuer may not approve it; nor may a helpdesk admin.
    let err = controller
        .admin()
        .await
        .approve_command(ApproveCommandRequest {
            command_id: wipe.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("second admin"), "{}", err.message());
    let mut desk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    assert_eq!(
        desk.approve_command(ApproveCommandRequest {
            command_id: wipe.id.clone()
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );

    // A second admin releases it: queued, then delivered. (An admin the issuer created would
    // not do; the break-glass identity init made is a second person.)
    let mut second = controller.break_glass().await;
    let approved = second
        .approve_command(ApproveCommandRequest {
            command_id: wipe.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (approved.state, approved.approved_by.as_str()),
        (CommandState::Queued as i32, "break-glass")
    );
    let pending = agent
        .check_in(CheckInRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pending_commands;
    assert_eq!(pending.len(), 1);
    // Approving twice is refused, changing nothing.
    assert_eq!(
        second
            .approve_command(ApproveCommandRequest {
                command_id: wipe.id
            })
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn an_offboarding_above_the_threshold_waits_for_approval_and_a_small_one_does_not() {
    let controller = controller().await;
    let small = controller.enroll("amy@hospital.org").await;
    controller.enroll("bo@hospital.org").await;
    controller.enroll("bo@hospital.org").await;

    let report = controller
        .admin()
        .await
        .offboard_user(OffboardUserRequest {
            user: "amy@hospital.org".into(),
            reason: "left".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.devices[0].state, CommandState::Queued as i32);
    assert_eq!(report.devices[0].device_id, small.device_id);

    let report = controller
        .admin()
        .await
        .offboard_user(OffboardUserRequest {
            user: "bo@hospital.org".into(),
            reason: "left".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.devices.len(), 2);
    assert!(
        report
            .devices
            .iter()
            .all(|d| d.state == CommandState::AwaitingApproval as i32)
    );
    assert!(!report.complete);
}

/// The attack the two-person rule exists for: an admin issues a second `admin` identity with
/// a key of their own making, then approves their own full wipe with it.
#[tokio::test]
async fn an_admin_cannot_approve_their_own_full_wipe_with_an_identity_they_issued() {
    let controller = controller().await;
    let device = controller.enroll("zoe@hospital.org").await;
    let mut admin = controller.admin().await;

    // Issuing an admin-role identity alone yields no certificate: it waits for a second
    // admin.
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let request = IssueAdminRequest {
        name: "sock".into(),
        role: AdminRole::Admin as i32,
        csr_der: ward_certs::csr::make_csr(&key, "sock").unwrap(),
        lifetime_seconds: 0,
    };
    let answer = admin
        .issue_admin(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(
        answer.certificate_der.is_empty(),
        "an admin identity was issued without a second admin"
    );
    assert!(answer.awaiting_approval);

    // The requester cannot approve it.
    let err = admin
        .approve_admin(ApproveAdminRequest {
            name: "sock".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());

    // Another admin (the break-glass identity, from the safe) approves it; the requester's
    // second call then gets the certificate.
    controller
        .break_glass()
        .await
        .approve_admin(ApproveAdminRequest {
            name: "sock".into(),
        })
        .await
        .unwrap();
    let issued = admin.issue_admin(request).await.unwrap().into_inner();
    assert!(!issued.certificate_der.is_empty());
    let approved = issued.admin.unwrap();
    assert_eq!(
        (approved.created_by.as_str(), approved.approved_by.as_str()),
        ("admin", "break-glass")
    );
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((&[issued.certificate_der], &key)),
    )
    .unwrap();
    let mut sock = ward_proto::v1::admin_service_client::AdminServiceClient::new(
        controller.channel(tls).await.unwrap(),
    );

    // The full wipe waits; the identity its issuer made may not release it.
    let wipe = admin
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Wipe(WipeAction {
                scope: WipeScope::Full as i32,
            })),
            reason: "disposal".into(),
            idempotency_key: "full-sock".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(wipe.state, CommandState::AwaitingApproval as i32);
    let err = sock
        .approve_command(ApproveCommandRequest {
            command_id: wipe.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("admin created"), "{}", err.message());
    // Nor may the issuer release a command the identity they made asks for.
    let theirs = sock
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Wipe(WipeAction {
                scope: WipeScope::Full as i32,
            })),
            reason: "disposal".into(),
            idempotency_key: "full-sock-2".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let err = admin
        .approve_command(ApproveCommandRequest {
            command_id: theirs.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Nothing was released.
    let listed = admin
        .list_commands(ListCommandsRequest {
            device_id: device.device_id.clone(),
            ..ListCommandsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .commands;
    assert!(
        listed
            .iter()
            .all(|c| c.state == CommandState::AwaitingApproval as i32),
        "{listed:?}"
    );
    // An unrelated admin may.
    let released = controller
        .break_glass()
        .await
        .approve_command(ApproveCommandRequest {
            command_id: wipe.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.approved_by, "break-glass");
}

fn admin_request(name: &str, key: &ward_certs::PrivateKeyDer) -> IssueAdminRequest {
    IssueAdminRequest {
        name: name.into(),
        role: AdminRole::Admin as i32,
        csr_der: ward_certs::csr::make_csr(key, name).unwrap(),
        lifetime_seconds: 0,
    }
}

fn approve(name: &str) -> ApproveAdminRequest {
    ApproveAdminRequest { name: name.into() }
}

#[tokio::test]
async fn admin_requests_are_approved_only_by_an_unrelated_admin_and_expire() {
    let controller = controller().await;
    let mut admin = controller.admin().await;
    let mut glass = controller.break_glass().await;
    let key = ward_certs::PrivateKeyDer::generate().unwrap();

    // Helpdesk and offboarding identities need no second admin.
    let mut desk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    // The break-glass identity (two people by its custody) issues an admin alone: the way
    // back when no other admin is left.
    let dave = glass
        .issue_admin(admin_request("dave", &key))
        .await
        .unwrap()
        .into_inner();
    assert!(!dave.awaiting_approval && !dave.certificate_der.is_empty());
    let mut dave = controller.admin_as(&dave.certificate_der, &key).await;

    assert!(
        admin
            .issue_admin(admin_request("carol", &key))
            .await
            .unwrap()
            .into_inner()
            .awaiting_approval
    );
    // Asking again is the same request, not a second one.
    assert!(
        admin
            .issue_admin(admin_request("carol", &key))
            .await
            .unwrap()
            .into_inner()
            .awaiting_approval
    );
    // Another admin cannot take over the name while it waits.
    let err = dave
        .issue_admin(admin_request("carol", &key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    for (who, client, code) in [
        ("a helpdesk", &mut desk, Code::PermissionDenied),
        ("the requester", &mut admin, Code::PermissionDenied),
    ] {
        let err = client.approve_admin(approve("carol")).await.unwrap_err();
        assert_eq!(err.code(), code, "{who}: {}", err.message());
    }
    let err = glass.approve_admin(approve("nobody")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    glass.approve_admin(approve("carol")).await.unwrap();
    let err = dave.approve_admin(approve("carol")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    // Only the requester's own call uses the approval.
    let err = dave
        .issue_admin(admin_request("carol", &key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let carol = admin
        .issue_admin(admin_request("carol", &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(carol.admin.unwrap().approved_by, "break-glass");

    // A request left waiting expires after a day, and asking again starts anew.
    assert!(
        admin
            .issue_admin(admin_request("erin", &key))
            .await
            .unwrap()
            .into_inner()
            .awaiting_approval
    );
    controller
        .clock
        .advance(std::time::Duration::from_secs(25 * 3600));
    let err = glass.approve_admin(approve("erin")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let again = admin
        .issue_admin(admin_request("erin", &key))
        .await
        .unwrap()
        .into_inner();
    assert!(again.awaiting_approval);
}

#[tokio::test]
async fn renewing_another_admins_identity_needs_a_second_admin_and_links_the_two() {
    let controller = controller().await;
    let mut admin = controller.admin().await;
    let mut glass = controller.break_glass().await;
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    glass
        .issue_admin(admin_request("dave", &key))
        .await
        .unwrap();
    let device = controller.enroll("zoe@hospital.org").await;

    // The everyday admin renews dave's identity with a key of its own: that waits.
    let new_key = ward_certs::PrivateKeyDer::generate().unwrap();
    let renew = RenewAdminRequest {
        name: "dave".into(),
        csr_der: ward_certs::csr::make_csr(&new_key, "dave").unwrap(),
        lifetime_seconds: 0,
    };
    let answer = admin.renew_admin(renew.clone()).await.unwrap().into_inner();
    assert!(answer.awaiting_approval && answer.certificate_der.is_empty());
    glass.approve_admin(approve("dave")).await.unwrap();
    let answer = admin.renew_admin(renew).await.unwrap().into_inner();
    assert_eq!(answer.admin.unwrap().certificate_by, "admin");

    // Dave's key was made by the everyday admin: dave may not release its full wipe.
    let mut dave = controller.admin_as(&answer.certificate_der, &new_key).await;
    let wipe = admin
        .issue_command(IssueCommandRequest {
            device_id: device.device_id,
            action: Some(Action::Wipe(WipeAction {
                scope: WipeScope::Full as i32,
            })),
            reason: "disposal".into(),
            idempotency_key: "full-dave".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let err = dave
        .approve_command(ApproveCommandRequest {
            command_id: wipe.id,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{}", err.message());
}
