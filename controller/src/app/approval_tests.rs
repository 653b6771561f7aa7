//! The two-person rule of `serve --require-approval` on the in-memory store: a full wipe, a
//! bulk wipe and a large offboarding wait for a second admin, who releases exactly what was
//! asked; the requester, an identity related to them and a helpdesk admin cannot; a withdrawn
//! request cannot be approved; what was approved runs once.

use std::time::Duration;

use super::bulk_select::Selection;
use super::bulk_wipe::{BulkWipeRequest, Outcome};
use super::test_fixture::{
    Fixture, TestDevice, command_key, email, enroll_current, fixture_with, registered,
    registered_as,
};
use super::{App, AppError, CheckInReport};
use crate::core::refs::{BulkWipeKey, BulkWipeName};
use crate::core::{
    Admin, AdminRole, Command, CommandId, CommandKind, CommandState, DeviceRef, DeviceState,
    Permission, WipeScope,
};

/// `serve --require-approval --approval-threshold 2`.
fn approving() -> Fixture {
    fixture_with(|config| config.approval_threshold = Some(2))
}

/// Alice asks, Bob (unrelated) may approve, Sock is an identity Alice made.
struct Admins {
    alice: Admin,
    bob: Admin,
    sock: Admin,
    desk: Admin,
}

async fn admins(f: &Fixture) -> Admins {
    Admins {
        alice: registered(&f.store, "alice", "init").await,
        bob: registered(&f.store, "bob", "init").await,
        sock: registered(&f.store, "sock", "alice").await,
        desk: registered_as(&f.store, "desk", AdminRole::Helpdesk, "init").await,
    }
}

async fn full_wipe(app: &App, by: &Admin, device: &TestDevice, key: &str) -> Command {
    app.issue_command(
        by,
        &DeviceRef::from(device.device.id),
        CommandKind::Wipe {
            scope: WipeScope::Full,
        },
        "disposal",
        &command_key(key),
        None,
    )
    .await
    .unwrap()
    .0
}

fn denied<T: std::fmt::Debug>(result: Result<T, AppError>) {
    assert!(
        matches!(result, Err(AppError::PermissionDenied(_))),
        "{result:?}"
    );
}

fn refused<T: std::fmt::Debug>(result: Result<T, AppError>) {
    assert!(
        matches!(result, Err(AppError::FailedPrecondition(_))),
        "{result:?}"
    );
}

async fn state(app: &App, command: &Command) -> CommandState {
    app.get_command(command.id).await.unwrap().state
}

/// What a check-in hands the device.
async fn handed(app: &App, device: &TestDevice) -> Vec<Command> {
    app.agent_check_in(&device.device, CheckInReport::default())
        .await
        .unwrap()
        .pending
}

#[tokio::test]
async fn a_full_wipe_waits_for_a_second_admin_who_releases_exactly_it_and_it_runs_once() {
    let f = approving();
    let app = &f.app;
    let a = admins(&f).await;
    let zoe = enroll_current(app, "zoe@hospital.example", "zoe-laptop").await;
    let spare = enroll_current(app, "zoe@hospital.example", "zoe-desktop").await;
    let wipe = full_wipe(app, &a.alice, &zoe, "full-1").await;
    let other = full_wipe(app, &a.alice, &spare, "full-2").await;
    assert_eq!(wipe.state, CommandState::AwaitingApproval);

    // Not handed out, and not to be run, while it waits.
    assert!(handed(app, &zoe).await.is_empty());
    let ack = app.acknowledge(zoe.device.id, wipe.id).await.unwrap();
    assert!(!ack.proceed, "{ack:?}");

    // The requester, an identity the requester made, and a helpdesk admin (refused by the
    // permission the edge asks for before it calls `approve_command`) release nothing.
    denied(app.approve_command(&a.alice, wipe.id).await);
    denied(app.approve_command(&a.sock, wipe.id).await);
    denied(
        app.authorize(&a.desk, Permission::Approve, &wipe.id.to_string())
            .await,
    );
    assert_eq!(app.get_command(wipe.id).await.unwrap(), wipe);

    // Bob releases this wipe, and only it.
    let approved = app.approve_command(&a.bob, wipe.id).await.unwrap();
    assert_eq!(
        (approved.state, approved.approved_by.as_deref()),
        (CommandState::Queued, Some("bob"))
    );
    assert_eq!(state(app, &other).await, CommandState::AwaitingApproval);
    refused(app.approve_command(&a.bob, wipe.id).await);

    // It runs once: handed out, run, and then neither handed out nor approved again.
    let pending = handed(app, &zoe).await;
    assert_eq!(pending.iter().map(|c| c.id).collect::<Vec<_>>(), [wipe.id]);
    assert_eq!(zoe.run(app, &wipe, true).await, CommandState::Succeeded);
    assert_eq!(
        app.device(zoe.device.id).await.unwrap().state,
        DeviceState::Revoked
    );
    refused(app.approve_command(&a.bob, wipe.id).await);
    assert!(handed(app, &spare).await.is_empty());
}

#[tokio::test]
async fn a_withdrawn_request_cannot_be_approved_and_a_waiting_one_never_expires() {
    let f = approving();
    let app = &f.app;
    let a = admins(&f).await;
    let yan = enroll_current(app, "yan@hospital.example", "yan-laptop").await;

    // A wipe has no time-to-live: the request waits until released or withdrawn.
    let with_ttl = app
        .issue_command(
            &a.alice,
            &DeviceRef::from(yan.device.id),
            CommandKind::Wipe {
                scope: WipeScope::Full,
            },
            "disposal",
            &command_key("full-ttl"),
            Some(Duration::from_secs(3600)),
        )
        .await;
    assert!(
        matches!(with_ttl, Err(AppError::InvalidArgument(_))),
        "{with_ttl:?}"
    );
    let wipe = full_wipe(app, &a.alice, &yan, "full-1").await;
    f.clock.advance(Duration::from_secs(40 * 24 * 3600));
    assert_eq!(app.expire_due_commands().await.unwrap(), 0);
    assert_eq!(state(app, &wipe).await, CommandState::AwaitingApproval);

    let withdrawn = app.cancel_command(&a.alice, wipe.id).await.unwrap();
    assert_eq!(withdrawn.state, CommandState::Cancelled);
    refused(app.approve_command(&a.bob, wipe.id).await);
    assert_eq!(app.get_command(wipe.id).await.unwrap(), withdrawn);
    assert!(handed(app, &yan).await.is_empty());
    assert_eq!(
        app.device(yan.device.id).await.unwrap().state,
        DeviceState::Active
    );
}

fn bulk(user: &str) -> BulkWipeRequest {
    BulkWipeRequest {
        selection: Selection::User(email(user)),
        scope: WipeScope::Full,
        reason: "ward closed".into(),
        dry_run: false,
    }
}

fn batch_key(key: &str) -> BulkWipeKey {
    key.parse().unwrap()
}

fn states(report: &super::bulk_wipe::BulkWipeReport) -> Vec<CommandState> {
    report
        .devices
        .iter()
        .map(|d| d.command.as_ref().unwrap().state)
        .collect()
}

#[tokio::test]
async fn a_bulk_wipe_approval_releases_that_batch_and_no_device_added_after_it() {
    let f = approving();
    let app = &f.app;
    let a = admins(&f).await;
    const ED: &str = "ed@hospital.example";
    enroll_current(app, ED, "ed-1").await;
    enroll_current(app, ED, "ed-2").await;
    enroll_current(app, "flo@hospital.example", "flo-1").await;

    let wipe = app
        .bulk_wipe(&a.alice, &batch_key("wipe"), bulk(ED))
        .await
        .unwrap();
    assert!(wipe.needs_approval);
    // Another batch of hers whose key starts the same way.
    let other = app
        .bulk_wipe(&a.alice, &batch_key("wipe-2"), bulk("flo@hospital.example"))
        .await
        .unwrap();
    let name: BulkWipeName = wipe.batch.parse().unwrap();

    denied(app.approve_bulk_wipe(&a.alice, &name).await);
    denied(app.approve_bulk_wipe(&a.sock, &name).await);
    denied(
        app.authorize(&a.desk, Permission::Approve, &wipe.batch)
            .await,
    );
    assert_eq!(
        states(&app.bulk_wipe_report(&name).await.unwrap()),
        [CommandState::AwaitingApproval; 2]
    );

    let released = app.approve_bulk_wipe(&a.bob, &name).await.unwrap();
    assert_eq!(states(&released), [CommandState::Queued; 2]);
    let other_name: BulkWipeName = other.batch.parse().unwrap();
    assert_eq!(
        states(&app.bulk_wipe_report(&other_name).await.unwrap()),
        [CommandState::AwaitingApproval]
    );
    refused(app.approve_bulk_wipe(&a.bob, &name).await);

    // A device of the selection enrolled since: the same key adds its wipe, which waits for
    // an approval of its own; the two released stay as they are.
    let late = enroll_current(app, ED, "ed-3").await;
    let rerun = app
        .bulk_wipe(&a.alice, &batch_key("wipe"), bulk(ED))
        .await
        .unwrap();
    let outcome_of = |id| {
        rerun
            .devices
            .iter()
            .find(|d| d.device.id == id)
            .map(|d| (d.outcome, d.command.as_ref().unwrap().state))
    };
    assert_eq!(
        outcome_of(late.device.id),
        Some((Outcome::Issued, CommandState::AwaitingApproval))
    );
    assert_eq!(rerun.issued, 1);
    let again = app.approve_bulk_wipe(&a.bob, &name).await.unwrap();
    assert_eq!(states(&again), [CommandState::Queued; 3]);
}

#[tokio::test]
async fn an_offboarding_above_the_threshold_waits_and_each_device_is_released_on_its_own() {
    let f = approving();
    let app = &f.app;
    let a = admins(&f).await;
    const GIL: &str = "gil@hospital.example";
    let devices = [
        enroll_current(app, GIL, "gil-1").await,
        enroll_current(app, GIL, "gil-2").await,
        enroll_current(app, GIL, "gil-3").await,
    ];
    let report = app
        .offboard_user(&a.alice, &email(GIL), "left")
        .await
        .unwrap();
    let wipes: Vec<Command> = report
        .devices
        .iter()
        .map(|d| d.command.clone().unwrap())
        .collect();
    assert!(
        wipes
            .iter()
            .all(|c| c.state == CommandState::AwaitingApproval && c.revoke_after),
        "{wipes:?}"
    );
    for device in &devices {
        assert!(handed(app, device).await.is_empty());
    }
    denied(app.approve_command(&a.alice, wipes[0].id).await);

    app.approve_command(&a.bob, wipes[0].id).await.unwrap();
    let after: Vec<CommandState> = app
        .offboard_report(&email(GIL))
        .await
        .unwrap()
        .devices
        .iter()
        .map(|d| d.command.as_ref().unwrap().state)
        .collect();
    assert_eq!(
        after
            .iter()
            .filter(|s| **s == CommandState::AwaitingApproval)
            .count(),
        2,
        "{after:?}"
    );
    // A rerun asks for nothing new and releases nothing.
    let rerun = app
        .offboard_user(&a.alice, &email(GIL), "left")
        .await
        .unwrap();
    let rerun_ids: Vec<_> = rerun
        .devices
        .iter()
        .map(|d| d.command.as_ref().unwrap().id)
        .collect();
    assert_eq!(rerun_ids, wipes.iter().map(|c| c.id).collect::<Vec<_>>());
    assert_eq!(
        app.list_commands(None, Some(CommandState::AwaitingApproval))
            .await
            .unwrap()
            .len(),
        2
    );
}

/// An `admin`-role identity asked for under `--require-approval`: a request that expired
/// cannot be approved; an approved one issues the identity once.
#[tokio::test]
async fn an_expired_admin_request_cannot_be_approved_and_an_approved_one_issues_once() {
    let f = approving();
    let app = &f.app;
    let a = admins(&f).await;
    let carol: ward_certs::AdminName = "carol".parse().unwrap();
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let csr = ward_certs::VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "carol").unwrap())
        .unwrap();
    let ask = || app.issue_admin(&a.alice, carol.clone(), AdminRole::Admin, &csr, None);

    assert!(matches!(
        ask().await.unwrap(),
        super::AdminIssued::AwaitingApproval(_)
    ));
    f.clock
        .advance(crate::core::admins::REQUEST_LIFETIME + Duration::from_millis(1));
    let expired = app.approve_admin(&a.bob, &carol).await;
    assert!(matches!(expired, Err(AppError::NotFound(_))), "{expired:?}");

    // Asked anew: not by the requester, then by Bob; the next call issues it, and only once.
    assert!(matches!(
        ask().await.unwrap(),
        super::AdminIssued::AwaitingApproval(_)
    ));
    denied(app.approve_admin(&a.alice, &carol).await);
    app.approve_admin(&a.bob, &carol).await.unwrap();
    let super::AdminIssued::Issued { admin, .. } = ask().await.unwrap() else {
        panic!("the approved request did not issue the identity");
    };
    assert_eq!(admin.approved_by.as_deref(), Some("bob"));
    let again = ask().await;
    assert!(
        matches!(again, Err(AppError::AlreadyExists(_))),
        "{again:?}"
    );
}

/// A second admin who refuses an offboarding that waits for approval cancels its wipes: the
/// offboarding was never approved, so none of its devices may be revoked for it.
#[tokio::test]
async fn an_offboarding_refused_before_its_approval_revokes_nothing() {
    let f = approving();
    let app = &f.app;
    let a = admins(&f).await;
    const HUGO: &str = "hugo@hospital.example";
    let devices = [
        enroll_current(app, HUGO, "hugo-1").await,
        enroll_current(app, HUGO, "hugo-2").await,
        enroll_current(app, HUGO, "hugo-3").await,
    ];
    let report = app
        .offboard_user(&a.alice, &email(HUGO), "left")
        .await
        .unwrap();
    for d in &report.devices {
        let wipe = d.command.as_ref().unwrap();
        assert_eq!(wipe.state, CommandState::AwaitingApproval);
        // While it waits, the device's certificate still renews: one admin's request alone
        // must not take the device out of service at its certificate's expiry (the attack
        // review's finding: a request nobody acted on refused renewal for ever).
        assert!(
            !app.is_being_retired(d.device.id).await.unwrap(),
            "a request awaiting approval held the device as being offboarded"
        );
        app.cancel_command(&a.bob, wipe.id).await.unwrap();
    }
    for device in &devices {
        assert_eq!(
            app.device(device.device.id).await.unwrap().state,
            DeviceState::Active,
            "revoked by an offboarding nobody approved"
        );
        // Nor held as being offboarded: its certificate renews (refused renewal would take it
        // out of service at its certificate's expiry all the same).
        assert!(!app.is_being_retired(device.device.id).await.unwrap());
    }
}

/// An offboarding refused before its approval can be asked for again: rerunning `user
/// offboard` issues a new request for each device still in service (it found the refused
/// command by its key and issued nothing, so the user's devices could never be offboarded
/// again). A further rerun issues nothing twice; once approved, the new wipe goes out.
#[tokio::test]
async fn an_offboarding_refused_before_its_approval_can_be_requested_again() {
    let f = approving();
    let app = &f.app;
    let a = admins(&f).await;
    const IDA: &str = "ida@hospital.example";
    for host in ["ida-1", "ida-2", "ida-3"] {
        enroll_current(app, IDA, host).await;
    }
    let first = app
        .offboard_user(&a.alice, &email(IDA), "left")
        .await
        .unwrap();
    let refused: Vec<CommandId> = first
        .devices
        .iter()
        .map(|d| d.command.as_ref().unwrap().id)
        .collect();
    for id in &refused {
        app.cancel_command(&a.bob, *id).await.unwrap();
    }

    let again = app
        .offboard_user(&a.alice, &email(IDA), "left, asked again")
        .await
        .unwrap();
    assert_eq!(again.devices.len(), 3);
    let asked: Vec<CommandId> = again
        .devices
        .iter()
        .map(|d| {
            let wipe = d.command.as_ref().expect("a new request for the device");
            assert_eq!(wipe.state, CommandState::AwaitingApproval);
            assert!(
                !refused.contains(&wipe.id),
                "the report shows the refused one"
            );
            wipe.id
        })
        .collect();

    let thrice = app
        .offboard_user(&a.alice, &email(IDA), "left, asked again")
        .await
        .unwrap();
    let ids: Vec<CommandId> = thrice
        .devices
        .iter()
        .map(|d| d.command.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, asked, "a rerun while the request waits issues nothing");

    for id in &asked {
        let approved = app.approve_command(&a.bob, *id).await.unwrap();
        assert_eq!(approved.state, CommandState::Queued);
    }
}
