//! A command's end and what follows it (the device revoked, retired, its disable undone)
//! commit in one writer job: all or nothing, one trip through the writer.

use super::test_fixture::{actions_from, admin, email, enroll_current, fixture, jobs};
use super::{AppError, DeviceResult};
use crate::core::refs::DeviceRef;
use crate::core::{CommandState, DeviceState};
use crate::store::Store;

#[tokio::test]
async fn an_offboarding_wipe_whose_revocation_fails_is_not_finished_either() {
    let f = fixture();
    let device = enroll_current(&f.app, "ann@hospital.example", "laptop")
        .await
        .device;
    f.app
        .offboard_user(&admin(), &email("ann@hospital.example"), "left")
        .await
        .unwrap();
    let [wipe] = f
        .store
        .list_commands(Some(device.id), None)
        .await
        .unwrap()
        .try_into()
        .unwrap();
    let before = actions_from(&f.store, 0).await;

    f.store.fail_next("revoke_device");
    let refused = f.app.cancel_command(&admin(), wipe.id).await;
    assert!(matches!(refused, Err(AppError::Internal(_))), "{refused:?}");
    assert_eq!(
        f.store.get_command(wipe.id).await.unwrap().unwrap().state,
        CommandState::Queued,
        "the wipe's end was stored without the revocation that follows it"
    );
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeviceState::Active);
    assert!(!f.app.revoked_serials().contains(&device.certificate_serial));
    assert_eq!(actions_from(&f.store, 0).await, before, "no audit entry");

    // Again, without the fault: the end and the revocation in one job, one entry each.
    let jobs_before = jobs(&f.store);
    let cancelled = f.app.cancel_command(&admin(), wipe.id).await.unwrap();
    assert_eq!(cancelled.state, CommandState::Cancelled);
    assert_eq!(jobs(&f.store) - jobs_before, 1, "one writer job");
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeviceState::Revoked);
    assert!(f.app.revoked_serials().contains(&device.certificate_serial));
    let after = actions_from(&f.store, 0).await;
    assert_eq!(
        after[before.len()..],
        ["command.cancelled", "device.revoke"]
    );
}

#[tokio::test]
async fn a_retirement_whose_follow_up_fails_is_not_finished_either() {
    let f = fixture();
    let agent = enroll_current(&f.app, "bob@hospital.example", "laptop").await;
    let device = agent.device.clone();
    let (_, retire) = f
        .app
        .retire_device(&admin(), &DeviceRef::from(device.id), "returned")
        .await
        .unwrap();
    let [delivered] = f
        .app
        .deliver_unfinished(device.id, &std::collections::HashSet::new())
        .await
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(delivered.id, retire.id);
    assert!(
        f.app
            .acknowledge(device.id, retire.id)
            .await
            .unwrap()
            .proceed
    );
    let result = || DeviceResult {
        succeeded: true,
        failure_reason: String::new(),
        receipt: Some(agent.receipt(&retire)),
    };
    let before = actions_from(&f.store, 0).await;

    // The last part of the follow-up fails: the revocation before it is undone too, and the
    // command stays acknowledged.
    f.store.fail_next("set_device_posture");
    let refused = f.app.report_result(device.id, retire.id, result()).await;
    assert!(matches!(refused, Err(AppError::Internal(_))), "{refused:?}");
    assert_eq!(
        f.store.get_command(retire.id).await.unwrap().unwrap().state,
        CommandState::Acknowledged
    );
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeviceState::Active);
    assert!(!f.app.revoked_serials().contains(&device.certificate_serial));
    assert_eq!(actions_from(&f.store, 0).await, before, "no audit entry");

    let jobs_before = jobs(&f.store);
    let state = f
        .app
        .report_result(device.id, retire.id, result())
        .await
        .unwrap();
    assert_eq!(state, CommandState::Succeeded);
    assert_eq!(jobs(&f.store) - jobs_before, 1, "one writer job");
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeviceState::Retired);
    assert!(f.app.revoked_serials().contains(&device.certificate_serial));
    let after = actions_from(&f.store, 0).await;
    assert_eq!(
        after[before.len()..],
        ["command.succeeded", "device.revoke", "device.retired"]
    );
}

#[tokio::test]
async fn a_cancelled_disable_whose_undoing_fails_is_not_cancelled_either() {
    let f = fixture();
    let device = enroll_current(&f.app, "cat@hospital.example", "laptop")
        .await
        .device;
    let (disabled, disable) = f
        .app
        .disable_device(&admin(), &DeviceRef::from(device.id), "on leave")
        .await
        .unwrap();
    assert!(disabled.disabled.is_some());
    let before = actions_from(&f.store, 0).await;

    f.store.fail_next("swap_device_posture");
    let refused = f.app.cancel_command(&admin(), disable.id).await;
    assert!(matches!(refused, Err(AppError::Internal(_))), "{refused:?}");
    assert_eq!(
        f.store
            .get_command(disable.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        CommandState::Queued
    );
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert!(stored.disabled.is_some(), "the record was cleared");
    assert_eq!(actions_from(&f.store, 0).await, before, "no audit entry");

    let jobs_before = jobs(&f.store);
    let cancelled = f.app.cancel_command(&admin(), disable.id).await.unwrap();
    assert_eq!(cancelled.state, CommandState::Cancelled);
    assert_eq!(jobs(&f.store) - jobs_before, 1, "one writer job");
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert!(stored.disabled.is_none());
    let after = actions_from(&f.store, 0).await;
    assert_eq!(
        after[before.len()..],
        ["command.cancelled", "device.disable_undone"]
    );
}
