//! Command ends arriving together share a writer job: after a mass offboarding, thousands of
//! wipes report at once, and each end, its revocation and their audit entries must not cost a
//! job of their own. Each device still gets exactly its own outcome, revocation and entries.

use futures::future::join_all;

use super::test_fixture::{TestDevice, admin, command_key, email, enroll_as, facts, fixture, jobs};
use crate::core::{Command, CommandKind, CommandState, DeviceState, WipeScope};
use crate::store::{AuditFilter, Store};

const USER: &str = "dana@hospital.example";
const DEVICES: usize = 60;

#[tokio::test]
async fn wipes_reporting_together_finish_in_shared_jobs_each_with_its_own_revocation() {
    let f = fixture();
    let app = &f.app;
    let devices = acknowledged(&f, DEVICES).await;
    // Half report success with their receipts, half a failure: both revoke (an offboarding's
    // wipe revokes its device whatever the outcome).
    let before = jobs(&f.store);
    let outcomes = join_all(
        devices
            .iter()
            .enumerate()
            .map(|(i, (device, wipe))| device.report(app, wipe, i % 2 == 0)),
    )
    .await;
    let used = jobs(&f.store) - before;
    assert!(
        used <= 4,
        "{DEVICES} results arriving together took {used} writer jobs"
    );

    for (i, ((device, wipe), outcome)) in devices.iter().zip(outcomes).enumerate() {
        let expected = if i % 2 == 0 {
            CommandState::Succeeded
        } else {
            CommandState::Failed
        };
        assert_eq!(outcome, expected);
        let stored = app.get_command(wipe.id).await.unwrap();
        assert_eq!(stored.state, expected);
        assert_eq!(stored.device_id, device.device.id);
        // A receipt is its own device's and kept only with a success.
        assert_eq!(stored.receipt.is_some_and(|r| r.verified), i % 2 == 0);
        let record = f.store.get_device(device.device.id).await.unwrap().unwrap();
        assert_eq!(record.state, DeviceState::Revoked);
        assert!(
            app.revoked_serials()
                .contains(&device.device.certificate_serial)
        );
    }
    // One revocation entry per device, naming that device's certificate and no other.
    let audit = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    for (device, _) in &devices {
        let id = device.device.id.to_string();
        let revocations: Vec<_> = audit
            .iter()
            .filter(|e| e.action == "device.revoke" && e.target == id)
            .collect();
        assert_eq!(revocations.len(), 1, "{id}: {revocations:?}");
        let details: serde_json::Value = serde_json::from_str(&revocations[0].details).unwrap();
        assert_eq!(
            details["certificates"],
            serde_json::json!([device.device.certificate_serial]),
        );
    }
}

/// Offboarded and acknowledged devices of `USER`, with the wipe each was delivered.
async fn acknowledged(
    f: &super::test_fixture::Fixture,
    count: usize,
) -> Vec<(TestDevice, Command)> {
    let app = &f.app;
    let mut devices = Vec::new();
    for i in 0..count {
        devices.push(enroll_as(app, USER, facts(&format!("cart-{i}"))).await);
    }
    let report = app
        .offboard_user(&admin(), &email(USER), "left the hospital")
        .await
        .unwrap();
    let mut out = Vec::new();
    for device in devices {
        let wipe = report
            .devices
            .iter()
            .find(|d| d.device.id == device.device.id)
            .and_then(|d| d.command.clone())
            .unwrap();
        let delivered = app.deliver_pushed(&wipe).await.unwrap().unwrap();
        assert!(
            app.acknowledge(wipe.device_id, wipe.id)
                .await
                .unwrap()
                .proceed
        );
        out.push((device, delivered));
    }
    out
}

async fn entries(f: &super::test_fixture::Fixture, action: &str, target: &str) -> usize {
    f.store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == action && e.target == target)
        .count()
}

/// A device repeating its report while the first is in flight: the same command twice in
/// one batch. Both are answered with the one outcome; it is written and audited once.
#[tokio::test]
async fn the_same_result_twice_in_a_batch_is_written_once() {
    let f = fixture();
    let (device, wipe) = acknowledged(&f, 1).await.remove(0);
    let (first, second) = tokio::join!(
        device.report(&f.app, &wipe, true),
        device.report(&f.app, &wipe, true)
    );
    assert_eq!(
        (first, second),
        (CommandState::Succeeded, CommandState::Succeeded)
    );
    let (command, id) = (wipe.id.to_string(), device.device.id.to_string());
    assert_eq!(entries(&f, "command.succeeded", &command).await, 1);
    assert_eq!(entries(&f, "device.revoke", &id).await, 1);
}

/// The batch's job fails (here the revocation, once): each end runs again alone, and each
/// commits once, with its own entries; none is lost or doubled.
#[tokio::test]
async fn ends_whose_shared_job_failed_commit_alone_once_each() {
    let f = fixture();
    let devices = acknowledged(&f, 8).await;
    f.store.fail_next("revoke_device");
    let outcomes = join_all(
        devices
            .iter()
            .map(|(device, wipe)| device.report(&f.app, wipe, true)),
    )
    .await;
    for ((device, wipe), outcome) in devices.iter().zip(outcomes) {
        assert_eq!(outcome, CommandState::Succeeded);
        let (command, id) = (wipe.id.to_string(), device.device.id.to_string());
        assert_eq!(entries(&f, "command.succeeded", &command).await, 1);
        assert_eq!(entries(&f, "device.revoke", &id).await, 1);
        assert!(
            f.app
                .revoked_serials()
                .contains(&device.device.certificate_serial)
        );
    }
}

/// Two wipes of one device finishing together, only one of which revokes (the offboarding's):
/// the device is revoked once, for that wipe, and the other's caller acts on nothing.
#[tokio::test]
async fn two_ends_of_one_device_in_a_batch_revoke_it_once_for_the_right_command() {
    let f = fixture();
    let app = &f.app;
    let device = enroll_as(app, USER, facts("cart")).await;
    let (plain, _) = app
        .issue_command(
            &admin(),
            &device.device.id.into(),
            CommandKind::Wipe {
                scope: WipeScope::Messaging,
            },
            "lost",
            &command_key("k-plain"),
            None,
        )
        .await
        .unwrap();
    let report = app
        .offboard_user(&admin(), &email(USER), "left the hospital")
        .await
        .unwrap();
    let offboarding = report.devices[0].command.clone().unwrap();
    assert_ne!(plain.id, offboarding.id);
    let mut delivered = Vec::new();
    for wipe in [&plain, &offboarding] {
        delivered.push(app.deliver_pushed(wipe).await.unwrap().unwrap());
        assert!(
            app.acknowledge(device.device.id, wipe.id)
                .await
                .unwrap()
                .proceed
        );
    }
    let (a, b) = tokio::join!(
        device.report(app, &delivered[0], true),
        device.report(app, &delivered[1], true)
    );
    assert_eq!((a, b), (CommandState::Succeeded, CommandState::Succeeded));
    let audit = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    let revocations: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "device.revoke")
        .collect();
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    let details: serde_json::Value = serde_json::from_str(&revocations[0].details).unwrap();
    assert_eq!(
        details["certificates"],
        serde_json::json!([device.device.certificate_serial])
    );
    assert!(
        details["why"]
            .as_str()
            .unwrap()
            .contains(&offboarding.id.to_string()),
        "{details}"
    );
    assert!(
        app.revoked_serials()
            .contains(&device.device.certificate_serial)
    );
}
