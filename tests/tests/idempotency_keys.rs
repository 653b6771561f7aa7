//! Idempotency keys cannot be squatted. An admin's keys are scoped to the admin who chose
//! them, and the keys the controller makes for itself (offboarding, lost mode, retirement,
//! disable and enable, compliance wipes) live in a namespace no caller can write: a helpdesk
//! admin who issues a harmless lock under every system key shape changes nothing about those
//! flows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic::transport::Channel;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::*;

struct Device {
    id: String,
    agent: AgentServiceClient<Channel>,
}

/// An enrolled device that has checked in with an agent that runs lifecycle commands.
async fn device(controller: &TestController, user: &str, hostname: &str) -> Device {
    let (id, agent) = controller.enroll_checked_in(user, hostname, "0.2.0").await;
    Device { id, agent }
}

fn lock(device: &str, key: &str) -> IssueCommandRequest {
    IssueCommandRequest {
        device_id: device.into(),
        action: Some(Action::Lock(LockAction {
            message: "harmless".into(),
        })),
        reason: String::new(),
        idempotency_key: key.into(),
        ttl_seconds: 0,
    }
}

async fn commands(admin: &mut AdminServiceClient<Channel>, device: &str) -> Vec<Command> {
    admin
        .list_commands(ListCommandsRequest {
            device_id: device.into(),
            ..ListCommandsRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .commands
}

fn firewall_report(revision: u64) -> CheckInRequest {
    CheckInRequest {
        compliance: Some(ComplianceReport {
            policy_revision: revision,
            checks: vec![ComplianceCheck {
                name: "firewall".into(),
                status: CheckStatus::Fail as i32,
                detail: "no firewall".into(),
            }],
        }),
        ..CheckInRequest::default()
    }
}

#[tokio::test]
async fn locks_under_every_system_key_shape_leave_offboarding_lost_mode_retire_and_compliance_wipes_unaffected()
 {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let policy = admin
        .set_policy(SetPolicyRequest {
            require_firewall: Some(true),
            check_actions: vec![CheckAction {
                check: "firewall".into(),
                action: EnforcementAction::Wipe as i32,
            }],
            wipe_grace_seconds: Some(3600),
            ..SetPolicyRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut desk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;

    let leaver = device(&controller, "leo@hospital.org", "leo-laptop").await;
    let lost = device(&controller, "lou@hospital.org", "lou-phone").await;
    let retired = device(&controller, "ray@hospital.org", "ray-tablet").await;
    let toggled = device(&controller, "dee@hospital.org", "dee-desktop").await;
    let mut failing = device(&controller, "fay@hospital.org", "fay-laptop").await;

    // The compliance failure starts; its start time is what the wipe's key is made of, and
    // any admin can read it.
    failing
        .agent
        .check_in(firewall_report(policy.revision))
        .await
        .unwrap();
    let since = admin
        .get_device(GetDeviceRequest {
            device_id: failing.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .enforcement[0]
        .failing_since_unix_ms;

    // The helpdesk squats every key shape the controller uses, each with a lock on the device
    // the system flow will act on. Each lock is accepted: the key is the helpdesk's own.
    let squatted = [
        (
            &leaver.id,
            format!("offboard:leo@hospital.org:{}", leaver.id),
        ),
        (&lost.id, format!("lost:{}:wipe", lost.id)),
        (&lost.id, format!("lost:{}:lock", lost.id)),
        (&retired.id, format!("retire:{}", retired.id)),
        (&toggled.id, format!("disable:{}:after:none", toggled.id)),
        (
            &failing.id,
            format!("compliance:{}:firewall:{since}", failing.id),
        ),
    ];
    for (device, key) in &squatted {
        let locked = desk.issue_command(lock(device, key)).await.unwrap();
        assert_eq!(locked.into_inner().kind, "lock", "{key}");
    }

    // Offboarding wipes the leaver's device (and revokes it afterwards).
    let report = admin
        .offboard_user(OffboardUserRequest {
            user: "leo@hospital.org".into(),
            reason: "left".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.devices.len(), 1);
    let wipes: Vec<_> = commands(&mut admin, &leaver.id)
        .await
        .into_iter()
        .filter(|c| c.kind == "wipe" && c.scope == "messaging")
        .collect();
    assert_eq!(wipes.len(), 1, "offboarding issued no wipe: {wipes:?}");
    assert_eq!(report.devices[0].command_id, wipes[0].id);
    // Run again: nothing twice.
    admin
        .offboard_user(OffboardUserRequest {
            user: "leo@hospital.org".into(),
            reason: "left".into(),
        })
        .await
        .unwrap();
    let again = commands(&mut admin, &leaver.id).await;
    assert_eq!(again.iter().filter(|c| c.kind == "wipe").count(), 1);

    // Lost mode: its own lock and its own wipe.
    let marked = admin
        .mark_lost(MarkLostRequest {
            device_id: lost.id.clone(),
            reason: "left in a taxi".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (lost_lock, lost_wipe) = (marked.lock.unwrap(), marked.wipe.unwrap());
    assert_eq!(lost_lock.kind, "lock");
    assert_eq!(lost_lock.lock_message, "This device was reported lost.");
    assert_eq!(lost_lock.created_by, "admin");
    assert_eq!(
        (lost_wipe.kind.as_str(), lost_wipe.scope.as_str()),
        ("wipe", "messaging")
    );

    // Retirement.
    let retiring = admin
        .retire_device(RetireDeviceRequest {
            device_id: retired.id.clone(),
            reason: "recycled".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retiring.command.unwrap().kind, "retire");

    // Disable, then (its key squatted too, once the disable's id is known) enable.
    let disabled = admin
        .disable_device(DisableDeviceRequest {
            device_id: toggled.id.clone(),
            reason: "mislaid".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let disable = disabled.command.unwrap();
    assert_eq!(disable.kind, "disable");
    desk.issue_command(lock(
        &toggled.id,
        &format!("enable:{}:{}", toggled.id, disable.id),
    ))
    .await
    .unwrap();
    let enabled = admin
        .enable_device(EnableDeviceRequest {
            device_id: toggled.id.clone(),
            reason: "found".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(enabled.command.unwrap().kind, "enable");

    // The compliance wipe is issued once the grace period is over.
    controller.clock.advance(Duration::from_secs(3600));
    let handed = failing
        .agent
        .check_in(firewall_report(policy.revision))
        .await
        .unwrap()
        .into_inner()
        .pending_commands;
    let wipe = commands(&mut admin, &failing.id)
        .await
        .into_iter()
        .find(|c| c.kind == "wipe")
        .expect("the compliance wipe was not issued");
    assert_eq!(wipe.created_by, "controller");
    assert!(handed.iter().any(|c| c.id == wipe.id), "{handed:?}");

    // Each squatted lock is still the helpdesk's own, and retrying it returns it.
    for (device, key) in &squatted {
        let first = desk
            .issue_command(lock(device, key))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (first.kind.as_str(), first.created_by.as_str()),
            ("lock", "desk")
        );
    }
}

#[tokio::test]
async fn two_admins_choosing_the_same_key_get_a_command_each() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let mut desk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    let a = controller.enroll("amy@hospital.org").await;
    let b = controller.enroll("bob@hospital.org").await;

    let mine = admin
        .issue_command(lock(&a.device_id, "ticket-4711"))
        .await
        .unwrap()
        .into_inner();
    // The helpdesk's "ticket-4711" is another key: a command of its own, on another device.
    let theirs = desk
        .issue_command(lock(&b.device_id, "ticket-4711"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(mine.id, theirs.id);
    assert_eq!(theirs.device_id, b.device_id);
    // Each admin's retry finds their own command.
    let retried = desk
        .issue_command(lock(&b.device_id, "ticket-4711"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.id, theirs.id);
    let retried = admin
        .issue_command(lock(&a.device_id, "ticket-4711"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.id, mine.id);
    // Reusing one's own key for another request is still refused.
    let err = desk
        .issue_command(lock(&a.device_id, "ticket-4711"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}
