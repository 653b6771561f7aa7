//! Disable, enable and retire where things go wrong, with an in-process controller and a
//! device speaking the agent protocol itself: a retirement that fails leaves the device active
//! and can be run again; a disable that fails or that an enable overtakes never leaves a
//! record (or a device) disabled that should not be; old agents are refused; a host name that
//! several devices share is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use tonic::transport::Channel;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::*;

struct Device {
    id: String,
    agent: AgentServiceClient<Channel>,
}

/// An enrolled device that has checked in as `hostname` with agent `version`.
async fn device(controller: &TestController, user: &str, hostname: &str, version: &str) -> Device {
    let (id, agent) = controller.enroll_checked_in(user, hostname, version).await;
    Device { id, agent }
}

/// The device takes `command`, runs it and reports `succeeded` (without a receipt).
async fn run(device: &mut Device, command: &str, succeeded: bool) -> CommandState {
    let ack = device
        .agent
        .acknowledge(AcknowledgeRequest {
            command_id: command.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ack.proceed, "{ack:?}");
    let state = device
        .agent
        .report_result(ReportResultRequest {
            command_id: command.into(),
            succeeded,
            failure_reason: if succeeded {
                String::new()
            } else {
                "no messaging data directory is managed on this device".into()
            },
            receipt: None,
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    CommandState::try_from(state).unwrap()
}

async fn show(admin: &mut AdminServiceClient<Channel>, id: &str) -> ward_proto::v1::Device {
    admin
        .get_device(GetDeviceRequest {
            device_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn retire(id: &str) -> RetireDeviceRequest {
    RetireDeviceRequest {
        device_id: id.into(),
        reason: "sent for recycling".into(),
    }
}

#[tokio::test]
async fn a_failed_retirement_leaves_the_device_active_and_can_be_run_again() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let mut d = device(&controller, "rita@hospital.org", "ward4-tab", "0.2.0").await;
    let first = admin
        .retire_device(retire(&d.id))
        .await
        .unwrap()
        .into_inner();
    let first = first.command.unwrap();
    let again = admin
        .retire_device(retire(&d.id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.command.unwrap().id,
        first.id,
        "pending: the same command"
    );

    assert_eq!(run(&mut d, &first.id, false).await, CommandState::Failed);
    let shown = show(&mut admin, &d.id).await;
    assert_eq!(
        shown.state,
        DeviceState::Active as i32,
        "not wiped: not revoked"
    );
    d.agent
        .check_in(CheckInRequest {
            facts: Some(DeviceFacts {
                hostname: "ward4-tab".into(),
                agent_version: "0.2.0".into(),
                ..DeviceFacts::default()
            }),
            ..CheckInRequest::default()
        })
        .await
        .expect("the device still checks in");

    // A second attempt is a new command; a "success" without a receipt is no retirement.
    let second = admin
        .retire_device(retire(&d.id))
        .await
        .unwrap()
        .into_inner();
    let second = second.command.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(run(&mut d, &second.id, true).await, CommandState::Failed);
    assert_eq!(
        show(&mut admin, &d.id).await.state,
        DeviceState::Active as i32
    );
}

#[tokio::test]
async fn a_disable_that_fails_or_is_overtaken_leaves_nothing_disabled() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let mut d = device(&controller, "dora@hospital.org", "ward5-tab", "0.2.0").await;
    let id = d.id.clone();
    let disable = || DisableDeviceRequest {
        device_id: id.clone(),
        reason: "mislaid".into(),
    };
    let first = admin.disable_device(disable()).await.unwrap().into_inner();
    assert!(first.device.unwrap().disabled.is_some());
    let first = first.command.unwrap();
    assert_eq!(run(&mut d, &first.id, false).await, CommandState::Failed);
    assert!(
        show(&mut admin, &d.id).await.disabled.is_none(),
        "a failed disable is not shown as disabled"
    );
    let undone = controller
        .admin()
        .await
        .list_audit(ListAuditRequest {
            target: d.id.clone(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(undone.iter().any(|e| e.action == "device.disable_undone"));

    // Disabled again, then enabled before the device took the disable: the disable is
    // cancelled, so a late delivery of it cannot run after the enable.
    let second = admin.disable_device(disable()).await.unwrap().into_inner();
    let second = second.command.unwrap();
    assert_ne!(second.id, first.id, "a new episode");
    let enabled = admin
        .enable_device(EnableDeviceRequest {
            device_id: d.id.clone(),
            reason: "found".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(enabled.device.unwrap().disabled.is_none());
    let ack = d
        .agent
        .acknowledge(AcknowledgeRequest {
            command_id: second.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.proceed, "the overtaken disable must not run");
    assert_eq!(ack.state, CommandState::Cancelled as i32);
}

#[tokio::test]
async fn agents_too_old_for_lifecycle_commands_are_refused() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let old = device(&controller, "olga@hospital.org", "old-laptop", "0.1.0").await;
    let err = admin.retire_device(retire(&old.id)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("0.1.0"), "{}", err.message());
    let err = admin
        .disable_device(DisableDeviceRequest {
            device_id: old.id.clone(),
            reason: "mislaid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let list = admin
        .list_commands(ListCommandsRequest {
            device_id: old.id.clone(),
            ..ListCommandsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(list.commands.is_empty(), "nothing was issued");
}

#[tokio::test]
async fn a_host_name_several_devices_share_is_refused() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let a = device(&controller, "sam@hospital.org", "shared-name", "0.2.0").await;
    let b = device(&controller, "sam@hospital.org", "shared-name", "0.2.0").await;
    admin
        .revoke_device(RevokeDeviceRequest {
            device_id: a.id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    // One revoked, one active: still two devices of that name, so neither is guessed.
    let err = admin
        .get_device(GetDeviceRequest {
            device_id: "shared-name".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains(&a.id) && err.message().contains(&b.id));
    let unique = device(&controller, "sam@hospital.org", "unique-name", "0.2.0").await;
    assert_eq!(show(&mut admin, "unique-name").await.id, unique.id);
}
