//! What follows a command's end, through the calls that end one (a device's result, an admin's
//! cancellation): which ends revoke the device, retire it or undo its disable, each step in the
//! audit log; and a result for a command already finished changes nothing.

use std::time::Duration;

use super::test_fixture::{
    TestDevice, actions_from, admin, audit_len, command_key, email, enroll_current, fixture,
};
use super::{App, AppError, DeviceResult};
use crate::core::{Command, CommandKind, CommandState, DeviceRef, DeviceState, WipeScope};
use crate::store::{AuditFilter, Store};

async fn wipe(app: &App, device: &TestDevice, scope: WipeScope, key: &str) -> Command {
    let (command, created) = app
        .issue_command(
            &admin(),
            &DeviceRef::from(device.device.id),
            CommandKind::Wipe { scope },
            "reported stolen",
            &command_key(key),
            None,
        )
        .await
        .unwrap();
    assert!(created);
    command
}

async fn state_of(app: &App, device: &TestDevice) -> DeviceState {
    app.device(device.device.id).await.unwrap().state
}

/// Whether the device's certificate still opens a session.
async fn authenticates(app: &App, device: &TestDevice) -> bool {
    app.authenticate_device(Some(&device.certificate))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_full_wipe_that_succeeded_revokes_its_device_and_nothing_else_does() {
    let f = fixture();
    let app = &f.app;
    let ann = enroll_current(app, "ann@hospital.example", "ann-laptop").await;
    let bob = enroll_current(app, "bob@hospital.example", "bob-laptop").await;

    let full = wipe(app, &ann, WipeScope::Full, "full-ann").await;
    let from = audit_len(&f.store).await;
    assert_eq!(ann.run(app, &full, true).await, CommandState::Succeeded);
    assert_eq!(state_of(app, &ann).await, DeviceState::Revoked);
    assert!(!authenticates(app, &ann).await);
    assert_eq!(
        actions_from(&f.store, from).await,
        ["command.acknowledged", "command.succeeded", "device.revoke"]
    );

    // A full wipe that failed, a messaging wipe that succeeded, a full wipe cancelled: the
    // device stays enrolled.
    let failed = wipe(app, &bob, WipeScope::Full, "full-bob").await;
    assert_eq!(bob.run(app, &failed, false).await, CommandState::Failed);
    let messaging = wipe(app, &bob, WipeScope::Messaging, "messaging-bob").await;
    assert_eq!(
        bob.run(app, &messaging, true).await,
        CommandState::Succeeded
    );
    let cancelled = wipe(app, &bob, WipeScope::Full, "full-bob-2").await;
    app.cancel_command(&admin(), cancelled.id).await.unwrap();
    assert_eq!(state_of(app, &bob).await, DeviceState::Active);
    assert!(authenticates(app, &bob).await);
    let revocations = f
        .store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "device.revoke")
        .count();
    assert_eq!(revocations, 1);
}

#[tokio::test]
async fn offboarding_and_lost_mode_wipes_revoke_their_device_whatever_the_outcome() {
    let f = fixture();
    let app = &f.app;
    const CARL: &str = "carl@hospital.example";
    let done = enroll_current(app, CARL, "carl-1").await;
    let failed = enroll_current(app, CARL, "carl-2").await;
    let cancelled = enroll_current(app, CARL, "carl-3").await;
    let lost = enroll_current(app, "dora@hospital.example", "dora-1").await;

    let report = app
        .offboard_user(&admin(), &email(CARL), "left")
        .await
        .unwrap();
    let wipe_of = |device: &TestDevice| {
        report
            .devices
            .iter()
            .find(|d| d.device.id == device.device.id)
            .and_then(|d| d.command.clone())
            .unwrap()
    };
    assert_eq!(
        done.run(app, &wipe_of(&done), true).await,
        CommandState::Succeeded
    );
    assert_eq!(
        failed.run(app, &wipe_of(&failed), false).await,
        CommandState::Failed
    );
    app.cancel_command(&admin(), wipe_of(&cancelled).id)
        .await
        .unwrap();
    let (_, lost_wipe) = app
        .mark_lost(&admin(), &DeviceRef::from(lost.device.id), "left in a taxi")
        .await
        .unwrap();
    assert_eq!(lost.run(app, &lost_wipe, false).await, CommandState::Failed);

    for device in [&done, &failed, &cancelled, &lost] {
        assert_eq!(state_of(app, device).await, DeviceState::Revoked);
        assert!(!authenticates(app, device).await);
        let trail: Vec<String> = f
            .store
            .list_audit(&AuditFilter {
                target: Some(device.device.id.to_string()),
                ..AuditFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "device.revoke")
            .map(|e| e.details)
            .collect();
        let [details] = trail.as_slice() else {
            panic!("not one revocation audited: {trail:?}");
        };
        assert!(details.contains("after wipe"), "{details}");
    }
    let report = app.offboard_report(&email(CARL)).await.unwrap();
    assert!(report.complete());
}

#[tokio::test]
async fn a_retirement_with_a_verified_receipt_retires_and_one_without_changes_nothing() {
    let f = fixture();
    let app = &f.app;
    let eve = enroll_current(app, "eve@hospital.example", "eve-laptop").await;
    let id = DeviceRef::from(eve.device.id);
    // Disabled first: the retirement clears that too.
    let (_, disable) = app.disable_device(&admin(), &id, "audit").await.unwrap();
    assert_eq!(eve.run(app, &disable, true).await, CommandState::Succeeded);
    assert!(app.device(eve.device.id).await.unwrap().disabled.is_some());

    // "Succeeded" without a receipt is no wipe: failed, the device stays as it was.
    let (_, first) = app
        .retire_device(&admin(), &id, "end of life")
        .await
        .unwrap();
    let from = audit_len(&f.store).await;
    app.acknowledge(eve.device.id, first.id).await.unwrap();
    let state = app
        .report_result(
            eve.device.id,
            first.id,
            DeviceResult {
                succeeded: true,
                failure_reason: String::new(),
                receipt: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(state, CommandState::Failed);
    assert_eq!(
        actions_from(&f.store, from).await,
        ["command.acknowledged", "command.failed"]
    );
    let record = app.device(eve.device.id).await.unwrap();
    assert_eq!(record.state, DeviceState::Active);
    assert!(record.disabled.is_some());
    assert!(authenticates(app, &eve).await);

    // Run again: a new command, which wipes with a verified receipt.
    let (_, second) = app
        .retire_device(&admin(), &id, "end of life")
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    let from = audit_len(&f.store).await;
    assert_eq!(eve.run(app, &second, true).await, CommandState::Succeeded);
    assert_eq!(
        actions_from(&f.store, from).await,
        [
            "command.acknowledged",
            "command.succeeded",
            "device.revoke",
            "device.retired"
        ]
    );
    let record = app.device(eve.device.id).await.unwrap();
    assert_eq!(record.state, DeviceState::Retired);
    assert_eq!(record.disabled, None);
    assert!(!authenticates(app, &eve).await);
}

#[tokio::test]
async fn a_disable_that_failed_or_was_cancelled_clears_the_record_that_said_disabled() {
    let f = fixture();
    let app = &f.app;
    let fay = enroll_current(app, "fay@hospital.example", "fay-laptop").await;
    let id = DeviceRef::from(fay.device.id);
    let disabled_by =
        |device: &crate::core::Device| device.disabled.as_ref().map(|d| d.command_id.clone());

    let (record, failed) = app.disable_device(&admin(), &id, "on leave").await.unwrap();
    assert_eq!(disabled_by(&record), Some(failed.id.to_string()));
    let from = audit_len(&f.store).await;
    assert_eq!(fay.run(app, &failed, false).await, CommandState::Failed);
    assert_eq!(disabled_by(&app.device(fay.device.id).await.unwrap()), None);
    assert_eq!(
        actions_from(&f.store, from).await,
        [
            "command.acknowledged",
            "command.failed",
            "device.disable_undone"
        ]
    );

    let (record, cancelled) = app.disable_device(&admin(), &id, "on leave").await.unwrap();
    assert_ne!(cancelled.id, failed.id, "a new episode, a new command");
    assert_eq!(disabled_by(&record), Some(cancelled.id.to_string()));
    let from = audit_len(&f.store).await;
    app.cancel_command(&admin(), cancelled.id).await.unwrap();
    assert_eq!(disabled_by(&app.device(fay.device.id).await.unwrap()), None);
    assert_eq!(
        actions_from(&f.store, from).await,
        ["command.cancelled", "device.disable_undone"]
    );

    // One that ran keeps it.
    let (_, ran) = app.disable_device(&admin(), &id, "on leave").await.unwrap();
    assert_eq!(fay.run(app, &ran, true).await, CommandState::Succeeded);
    assert_eq!(
        disabled_by(&app.device(fay.device.id).await.unwrap()),
        Some(ran.id.to_string())
    );
}

#[tokio::test]
async fn a_result_for_a_finished_or_unacknowledged_command_changes_nothing() {
    let f = fixture();
    let app = &f.app;
    let gus = enroll_current(app, "gus@hospital.example", "gus-laptop").await;
    let other = enroll_current(app, "hal@hospital.example", "hal-laptop").await;

    // A full wipe that failed, then a "success" with a genuine receipt (a replayed or late
    // report): the failure stands and the device is not revoked.
    let failed = wipe(app, &gus, WipeScope::Full, "full-gus").await;
    assert_eq!(gus.run(app, &failed, false).await, CommandState::Failed);
    let recorded = app.get_command(failed.id).await.unwrap();
    let from = audit_len(&f.store).await;
    assert_eq!(gus.report(app, &failed, true).await, CommandState::Failed);
    // A cancelled one: not to be run, and no result changes it.
    let cancelled = wipe(app, &gus, WipeScope::Full, "full-gus-2").await;
    let cancelled = app.cancel_command(&admin(), cancelled.id).await.unwrap();
    let from_cancelled = audit_len(&f.store).await;
    let ack = app.acknowledge(gus.device.id, cancelled.id).await.unwrap();
    assert!(!ack.proceed);
    assert_eq!(
        gus.report(app, &cancelled, true).await,
        CommandState::Cancelled
    );
    assert_eq!(audit_len(&f.store).await, from_cancelled);
    assert_eq!(app.get_command(cancelled.id).await.unwrap(), cancelled);
    // Finished commands cannot be cancelled either.
    let refused = app.cancel_command(&admin(), failed.id).await;
    assert!(
        matches!(refused, Err(AppError::FailedPrecondition(_))),
        "{refused:?}"
    );

    assert_eq!(app.get_command(failed.id).await.unwrap(), recorded);
    assert_eq!(
        actions_from(&f.store, from).await,
        ["command.issue", "command.cancelled"],
        "only the second wipe's own steps"
    );
    assert_eq!(state_of(app, &gus).await, DeviceState::Active);

    // A result before the device acknowledged, or for another device's command: refused.
    let queued = wipe(app, &gus, WipeScope::Full, "full-gus-3").await;
    let from = audit_len(&f.store).await;
    let early = app
        .report_result(
            gus.device.id,
            queued.id,
            DeviceResult {
                succeeded: true,
                failure_reason: String::new(),
                receipt: Some(gus.receipt(&queued)),
            },
        )
        .await;
    assert!(
        matches!(early, Err(AppError::FailedPrecondition(_))),
        "{early:?}"
    );
    let foreign = app.acknowledge(other.device.id, queued.id).await;
    assert!(matches!(foreign, Err(AppError::NotFound(_))), "{foreign:?}");
    assert_eq!(app.get_command(queued.id).await.unwrap(), queued);
    assert_eq!(audit_len(&f.store).await, from);
    assert_eq!(state_of(app, &gus).await, DeviceState::Active);
}

/// Replicas whose clocks differ by seconds: a disable issued on the one behind is older, by
/// its time, than the failed disable before it. Once it is cancelled, disabling again must
/// issue a new command, not hand back the cancelled one with a record that says "disabled".
#[tokio::test]
async fn a_disable_after_one_cancelled_on_a_replica_whose_clock_is_behind_is_a_new_command() {
    let f = fixture();
    let app = &f.app;
    let ida = enroll_current(app, "ida@hospital.example", "ida-laptop").await;
    let id = DeviceRef::from(ida.device.id);
    let (_, failed) = app.disable_device(&admin(), &id, "on leave").await.unwrap();
    assert_eq!(ida.run(app, &failed, false).await, CommandState::Failed);
    f.clock.rewind(Duration::from_secs(5));
    let (_, cancelled) = app.disable_device(&admin(), &id, "on leave").await.unwrap();
    app.cancel_command(&admin(), cancelled.id).await.unwrap();
    let (record, again) = app.disable_device(&admin(), &id, "on leave").await.unwrap();
    assert_eq!(again.state, CommandState::Queued, "{again:?}");
    assert_eq!(
        record.disabled.map(|d| d.command_id),
        Some(again.id.to_string())
    );
}

/// The same for a retirement: run again after an attempt that failed on a replica whose clock
/// is behind, it starts a new attempt instead of handing back the failed one.
#[tokio::test]
async fn a_retirement_after_one_failed_on_a_replica_whose_clock_is_behind_is_a_new_attempt() {
    let f = fixture();
    let app = &f.app;
    let jo = enroll_current(app, "jo@hospital.example", "jo-laptop").await;
    let id = DeviceRef::from(jo.device.id);
    let (_, first) = app
        .retire_device(&admin(), &id, "end of life")
        .await
        .unwrap();
    assert_eq!(jo.run(app, &first, false).await, CommandState::Failed);
    f.clock.rewind(Duration::from_secs(5));
    let (_, second) = app
        .retire_device(&admin(), &id, "end of life")
        .await
        .unwrap();
    assert_eq!(jo.run(app, &second, false).await, CommandState::Failed);
    let (_, third) = app
        .retire_device(&admin(), &id, "end of life")
        .await
        .unwrap();
    assert_eq!(third.state, CommandState::Queued, "{third:?}");
    assert_eq!(jo.run(app, &third, true).await, CommandState::Succeeded);
    assert_eq!(
        app.device(jo.device.id).await.unwrap().state,
        DeviceState::Retired
    );
}

#[tokio::test]
async fn a_cancellation_from_a_copy_read_before_a_delivery_keeps_the_delivery() {
    let f = fixture();
    let app = &f.app;
    let ann = enroll_current(app, "ann@hospital.example", "ann-laptop").await;
    let command = wipe(app, &ann, WipeScope::Messaging, "stale-copy").await;
    // The admin's call read the command queued; the device's stream delivered it before the
    // cancellation was written.
    let stale = app.get_command(command.id).await.unwrap();
    assert_eq!(stale.deliveries, 0);
    let delivered = app
        .deliver_unfinished(ann.device.id, &std::collections::HashSet::new())
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);

    let cancelled = app
        .finish_command(&stale, &crate::core::Event::Cancelled, None, "admin:root")
        .await
        .unwrap();
    assert_eq!(cancelled.state, CommandState::Cancelled);
    assert_eq!(
        cancelled.deliveries, 1,
        "the delivery written meanwhile was lost"
    );
    assert!(cancelled.delivered_at.is_some());
    assert_eq!(app.get_command(command.id).await.unwrap(), cancelled);
}

/// A device's acknowledgement of another device's command, whatever state that command is
/// in (delivered and acknowledged by its own device in the same batch, acknowledged already,
/// cancelled), is refused exactly as a command that does not exist, changes nothing, and does
/// not hold up the owner's own acknowledgement in the same batch of transitions.
#[tokio::test]
async fn another_devices_command_is_unknown_in_every_state_and_in_a_shared_batch() {
    let f = fixture();
    let app = &f.app;
    let ann = enroll_current(app, "ann@hospital.example", "ann-laptop").await;
    let bob = enroll_current(app, "bob@hospital.example", "bob-laptop").await;
    let unknown = |id: crate::core::CommandId, e: &AppError| match e {
        AppError::NotFound(text) => text.replace(&id.to_string(), "ID"),
        other => panic!("{other:?} is not NotFound"),
    };
    let missing = crate::core::CommandId::new_random();
    let refusal = unknown(
        missing,
        &app.acknowledge(ann.device.id, missing).await.unwrap_err(),
    );

    let target = wipe(app, &bob, WipeScope::Messaging, "messaging-bob").await;
    let delivered = app
        .deliver_unfinished(bob.device.id, &Default::default())
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    let from = audit_len(&f.store).await;
    // Both asked together (one batch on this single-threaded runtime): the foreign one first.
    let (foreign, own) = tokio::join!(
        app.acknowledge(ann.device.id, target.id),
        app.acknowledge(bob.device.id, target.id),
    );
    assert_eq!(unknown(target.id, &foreign.unwrap_err()), refusal);
    let own = own.unwrap();
    assert!(own.proceed, "{own:?}");
    assert_eq!(
        actions_from(&f.store, from).await,
        ["command.acknowledged"],
        "the owner's acknowledgement, once"
    );
    let acknowledged = app.get_command(target.id).await.unwrap();
    assert_eq!(acknowledged.state, CommandState::Acknowledged);

    // Acknowledged already (where the owner's retry is told to proceed): still unknown.
    let again = app.acknowledge(ann.device.id, target.id).await.unwrap_err();
    assert_eq!(unknown(target.id, &again), refusal);
    let retry = app.acknowledge(bob.device.id, target.id).await.unwrap();
    assert!(retry.proceed);

    // Cancelled: still unknown, not "refused, cancelled".
    let other = wipe(app, &bob, WipeScope::Full, "full-bob").await;
    let cancelled = app.cancel_command(&admin(), other.id).await.unwrap();
    let late = app.acknowledge(ann.device.id, other.id).await.unwrap_err();
    assert_eq!(unknown(other.id, &late), refusal);

    assert_eq!(app.get_command(target.id).await.unwrap(), acknowledged);
    assert_eq!(app.get_command(other.id).await.unwrap(), cancelled);
    assert_eq!(
        actions_from(&f.store, from).await,
        ["command.acknowledged", "command.issue", "command.cancelled"]
    );
}
