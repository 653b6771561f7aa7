//! The commands a replica delivered, kept for the acknowledgement and the result that follow:
//! they spare the store's reads, and never let a state this replica last saw win over one
//! another replica or an admin wrote since.

use super::test_fixture::{
    TestDevice, admin, audit_len, command_key, email, enroll_as, facts, fixture, jobs, replica,
};
use crate::core::{Command, CommandKind, CommandState, WipeScope};

const ALICE: &str = "alice@hospital.example";

/// Alice's laptop, offboarded on `app`: its wipe as issued, and as `app` delivered it.
async fn offboarded(app: &super::App) -> (TestDevice, Command, Command) {
    let device = enroll_as(app, ALICE, facts("laptop")).await;
    let report = app
        .offboard_user(&admin(), &email(ALICE), "left the hospital")
        .await
        .unwrap();
    let wipe = report.devices[0].command.clone().unwrap();
    let delivered = app.deliver_pushed(&wipe).await.unwrap().unwrap();
    (device, wipe, delivered)
}

/// A mass offboarding: ten thousand devices acknowledge and report at once. The command each
/// one names is the one this replica just delivered to it; reading it back, once for the
/// acknowledgement and once for the result, was twenty thousand reads.
#[tokio::test]
async fn a_pushed_wipe_is_acknowledged_and_finished_without_reading_it_again() {
    let f = fixture();
    let app = &f.app;
    let (device, wipe, delivered) = offboarded(app).await;

    let reads = f.store.command_reads();
    assert_eq!(
        device.run(app, &delivered, true).await,
        CommandState::Succeeded
    );
    assert_eq!(
        f.store.command_reads(),
        reads,
        "the acknowledgement or the result read the command it was just delivered"
    );
    let stored = app.get_command(wipe.id).await.unwrap();
    assert_eq!(stored.state, CommandState::Succeeded);
    assert!(stored.receipt.is_some_and(|r| r.verified));
}

/// Delivered here, cancelled by an admin on another replica before the device acknowledged:
/// the device is told not to run it, as it would be without the kept copy.
#[tokio::test]
async fn a_command_cancelled_elsewhere_after_its_delivery_is_not_run() {
    let f = fixture();
    let (app, other) = (&f.app, replica(&f.store, &f.ca, &f.clock));
    let device = enroll_as(app, ALICE, facts("laptop")).await;
    let (wipe, _) = app
        .issue_command(
            &admin(),
            &device.device.id.into(),
            CommandKind::Wipe {
                scope: WipeScope::Messaging,
            },
            "stolen",
            &command_key("k-1"),
            None,
        )
        .await
        .unwrap();
    app.deliver_pushed(&wipe).await.unwrap().unwrap();
    other.cancel_command(&admin(), wipe.id).await.unwrap();

    let ack = app.acknowledge(device.device.id, wipe.id).await.unwrap();
    assert!(!ack.proceed, "a cancelled command was run: {ack:?}");
    assert_eq!(ack.state, CommandState::Cancelled);
    assert_eq!(
        app.get_command(wipe.id).await.unwrap().state,
        CommandState::Cancelled
    );
}

/// Acknowledged here, its result recorded by another replica (the device's connection moved):
/// the device's repeated report here is answered with the recorded state and changes nothing.
#[tokio::test]
async fn a_result_recorded_elsewhere_is_answered_as_recorded_when_repeated_here() {
    let f = fixture();
    let (app, other) = (&f.app, replica(&f.store, &f.ca, &f.clock));
    let (device, wipe, delivered) = offboarded(app).await;
    assert!(
        app.acknowledge(device.device.id, wipe.id)
            .await
            .unwrap()
            .proceed
    );
    assert_eq!(
        device.report(&other, &delivered, true).await,
        CommandState::Succeeded
    );
    let entries = audit_len(&f.store).await;

    // The repeat carries a failure: it must not replace the recorded success.
    assert_eq!(
        device.report(app, &delivered, false).await,
        CommandState::Succeeded
    );
    assert_eq!(audit_len(&f.store).await, entries, "the repeat wrote");
    let stored = app.get_command(wipe.id).await.unwrap();
    assert_eq!(stored.state, CommandState::Succeeded);
    assert!(stored.receipt.is_some_and(|r| r.verified));

    // The stale copy is gone: a device repeating its report costs a read, not a receipt check
    // and trips through the writer.
    let ran = jobs(&f.store);
    assert_eq!(
        device.report(app, &delivered, true).await,
        CommandState::Succeeded
    );
    assert_eq!(
        jobs(&f.store),
        ran,
        "a repeated report went through the writer"
    );
}
