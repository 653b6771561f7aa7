//! `user offboard` run again: after some wipes finished or failed, after a job that failed
//! as a whole, and on two replicas at once, it issues only the wipes still missing and never a
//! second wipe for a device.

use std::collections::HashMap;

use super::test_fixture::{
    TestDevice, actions_from, admin, audit_len, command_key, email, enroll_current, fixture,
    replica,
};
use super::{App, AppError};
use crate::core::{CommandId, CommandKind, CommandState, DeviceId, DeviceRef, DeviceState};
use crate::store::Store;

const ANN: &str = "ann@hospital.example";

/// Each device's offboarding wipe, as the report shows it.
async fn wipes(app: &App) -> HashMap<DeviceId, Option<(CommandId, CommandState)>> {
    app.offboard_report(&email(ANN))
        .await
        .unwrap()
        .devices
        .into_iter()
        .map(|d| (d.device.id, d.command.map(|c| (c.id, c.state))))
        .collect()
}

/// Each device's offboarding wipe in `report`, as [`wipes`] gives them.
fn shown(
    report: &super::offboard::OffboardReport,
) -> HashMap<DeviceId, Option<(CommandId, CommandState)>> {
    report
        .devices
        .iter()
        .map(|d| (d.device.id, d.command.as_ref().map(|c| (c.id, c.state))))
        .collect()
}

/// Every wipe issued for the device, by anyone.
async fn wipes_of(f: &super::test_fixture::Fixture, device: &TestDevice) -> usize {
    f.store
        .list_commands(Some(device.device.id), None)
        .await
        .unwrap()
        .iter()
        .filter(|c| matches!(c.kind, CommandKind::Wipe { .. }))
        .count()
}

#[tokio::test]
async fn a_rerun_after_some_wipes_finished_or_failed_issues_only_the_missing_ones() {
    let f = fixture();
    let app = &f.app;
    let done = enroll_current(app, ANN, "ann-1").await;
    let failed = enroll_current(app, ANN, "ann-2").await;
    let waiting = enroll_current(app, ANN, "ann-3").await;
    let revoked = enroll_current(app, ANN, "ann-4").await;
    app.revoke_device(&admin(), &DeviceRef::from(revoked.device.id), "stolen")
        .await
        .unwrap();
    // An admin's lock under the text of the offboarding's own key takes nothing from it.
    let squatted = format!("offboard:{ANN}:{}", done.device.id);
    app.issue_command(
        &admin(),
        &DeviceRef::from(done.device.id),
        CommandKind::Lock {
            message: String::new(),
        },
        "",
        &command_key(&squatted),
        None,
    )
    .await
    .unwrap();

    let answered = app
        .offboard_user(&admin(), &email(ANN), "left")
        .await
        .unwrap();
    let first = wipes(app).await;
    // The answer is built from what the job committed, the report read back from the store.
    assert_eq!(shown(&answered), first);
    assert_eq!(
        first[&revoked.device.id], None,
        "a revoked device gets no wipe"
    );
    let wipe = |device: &TestDevice| {
        let (id, _) = first[&device.device.id].unwrap();
        id
    };
    let command = |id| async move { app.get_command(id).await.unwrap() };
    assert_eq!(
        done.run(app, &command(wipe(&done)).await, true).await,
        CommandState::Succeeded
    );
    assert_eq!(
        failed.run(app, &command(wipe(&failed)).await, false).await,
        CommandState::Failed
    );

    // A device enrolled since (a token an admin made after the first run).
    let late = enroll_current(app, ANN, "ann-5").await;
    let from = audit_len(&f.store).await;
    let report = app
        .offboard_user(&admin(), &email(ANN), "left")
        .await
        .unwrap();
    assert!(!report.complete());
    assert_eq!(
        actions_from(&f.store, from).await,
        ["user.offboard", "command.issue"],
        "one new wipe, for the new device"
    );
    let second = wipes(app).await;
    assert_eq!(shown(&report), second);
    for device in [&done, &failed, &waiting, &revoked] {
        assert_eq!(
            second[&device.device.id].map(|(id, _)| id),
            first[&device.device.id].map(|(id, _)| id),
            "the wipe on record is kept"
        );
    }
    let (late_wipe, late_state) = second[&late.device.id].unwrap();
    assert_eq!(late_state, CommandState::Queued);
    for device in [&done, &failed, &waiting, &late] {
        assert_eq!(wipes_of(&f, device).await, 1);
    }
    assert_eq!(wipes_of(&f, &revoked).await, 0);

    // Once every wipe is over, a rerun issues nothing and reports the offboarding complete.
    for device in [&waiting, &late] {
        let id = if device.device.id == late.device.id {
            late_wipe
        } else {
            wipe(device)
        };
        device.run(app, &command(id).await, true).await;
    }
    let from = audit_len(&f.store).await;
    let report = app
        .offboard_user(&admin(), &email(ANN), "left")
        .await
        .unwrap();
    assert!(report.complete());
    assert_eq!(shown(&report), wipes(app).await);
    assert_eq!(actions_from(&f.store, from).await, ["user.offboard"]);
    for device in [&done, &failed, &waiting, &late, &revoked] {
        assert_eq!(
            app.device(device.device.id).await.unwrap().state,
            DeviceState::Revoked
        );
    }
}

#[tokio::test]
async fn an_offboarding_whose_job_failed_changes_nothing_and_its_rerun_issues_every_wipe() {
    let f = fixture();
    let app = &f.app;
    let devices = [
        enroll_current(app, ANN, "ann-1").await,
        enroll_current(app, ANN, "ann-2").await,
    ];
    app.create_token(&admin(), email(ANN), None).await.unwrap();
    let from = audit_len(&f.store).await;

    // A wipe's insert fails: the whole job rolls back (the tokens withdrawn, the entries).
    f.store.fail_next("insert_command");
    let failed = app.offboard_user(&admin(), &email(ANN), "left").await;
    assert!(matches!(failed, Err(AppError::Internal(_))), "{failed:?}");
    assert_eq!(audit_len(&f.store).await, from);
    assert_eq!(app.list_tokens(Some(&email(ANN))).await.unwrap().len(), 1);
    for device in &devices {
        assert_eq!(wipes_of(&f, device).await, 0);
    }

    let report = app
        .offboard_user(&admin(), &email(ANN), "left")
        .await
        .unwrap();
    assert_eq!(report.tokens_invalidated, 1);
    for device in &devices {
        assert_eq!(wipes_of(&f, device).await, 1);
    }
}

#[tokio::test]
async fn offboardings_at_once_on_two_replicas_issue_each_wipe_once() {
    let f = fixture();
    let other = replica(&f.store, &f.ca, &f.clock);
    let devices = [
        enroll_current(&f.app, ANN, "ann-1").await,
        enroll_current(&f.app, ANN, "ann-2").await,
        enroll_current(&f.app, ANN, "ann-3").await,
    ];
    let (by, user) = (admin(), email(ANN));
    let (here, there) = tokio::join!(
        f.app.offboard_user(&by, &user, "left"),
        other.offboard_user(&by, &user, "left"),
    );
    let ids = |report: super::offboard::OffboardReport| {
        let mut ids: Vec<CommandId> = report
            .devices
            .into_iter()
            .map(|d| d.command.unwrap().id)
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(here.unwrap()), ids(there.unwrap()));
    for device in &devices {
        assert_eq!(wipes_of(&f, device).await, 1);
    }
}
