//! A check-in on the in-memory store: one writer job, all or nothing, and the cached reads it
//! makes see policy changes and revocations at once.

use std::collections::BTreeMap;
use std::time::Duration;

use super::test_fixture::{
    Fixture, TestDevice, admin, email, enroll, enroll_as, facts, fixture, jobs, replica,
};
use super::{App, AppError, CheckInReport, CheckedIn, ComplianceReport};
use crate::core::{
    Check, CheckStatus, CommandKind, CommandState, ComplianceCheck, EnforcementAction,
    PolicyChanges, Timestamp,
};
use crate::store::{Announcement, AuditFilter, Store};

/// A firewall that fails, with a wipe after an hour's grace.
pub(super) async fn wipe_failing_firewalls(app: &App) -> u64 {
    let policy = app
        .set_policy(
            &admin(),
            None,
            &PolicyChanges {
                require_firewall: Some(true),
                check_actions: BTreeMap::from([(Check::Firewall, EnforcementAction::Wipe)]),
                wipe_grace_seconds: Some(3600),
                ..PolicyChanges::default()
            },
        )
        .await
        .unwrap();
    policy.revision
}

pub(super) fn failing_firewall(revision: u64) -> CheckInReport {
    CheckInReport {
        facts: Some(facts("laptop-2")),
        inventory: Some(crate::core::Inventory {
            firewall: "inactive".into(),
            ..crate::core::Inventory::default()
        }),
        compliance: Some(ComplianceReport {
            checks: vec![ComplianceCheck {
                name: Check::Firewall.as_str().into(),
                status: CheckStatus::Fail,
                detail: "nftables has no rules".into(),
            }],
            policy_revision: revision,
        }),
        offline_wipe: None,
        trusted_cas: None,
    }
}

#[tokio::test]
async fn a_check_in_that_records_enforces_issues_a_wipe_and_delivers_it_is_one_writer_job() {
    let f = fixture();
    let revision = wipe_failing_firewalls(&f.app).await;
    let (device, _) = enroll(&f.app, "ann@hospital.example").await;
    f.app
        .agent_check_in(&device, failing_firewall(revision))
        .await
        .unwrap();
    // The grace is over: this check-in records the report, marks the wipe issued, issues it
    // with its audit entry and hands it out.
    f.clock.advance(Duration::from_secs(3601));
    let before = jobs(&f.store);
    let audit_before = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    let answer = f
        .app
        .agent_check_in(&device, failing_firewall(revision))
        .await
        .unwrap();
    assert_eq!(jobs(&f.store) - before, 1, "one writer job per check-in");
    let [wipe] = answer.pending.as_slice() else {
        panic!("the due wipe is handed out: {:?}", answer.pending);
    };
    assert_eq!(
        (wipe.kind.clone(), wipe.state),
        (
            CommandKind::Wipe {
                scope: crate::core::WipeScope::Messaging
            },
            CommandState::Delivered
        )
    );
    let record = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(record.facts.hostname, "laptop-2");
    assert_eq!(record.last_seen, Some(f.clock_now()));
    assert_eq!(
        record.enforcement[0].wipe_command,
        Some(wipe.id.to_string())
    );
    let audit = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    let actions: Vec<&str> = audit[audit_before.len()..]
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(actions, ["command.issue", "command.delivered"]);

    // A check-in with nothing new is one job too.
    let before = jobs(&f.store);
    f.app
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    assert_eq!(jobs(&f.store) - before, 1);
}

impl Fixture {
    fn clock_now(&self) -> Timestamp {
        crate::core::Clock::now(&self.clock)
    }
}

#[tokio::test]
async fn a_check_in_whose_wipe_cannot_be_written_changes_nothing() {
    let f = fixture();
    let revision = wipe_failing_firewalls(&f.app).await;
    let (device, _) = enroll(&f.app, "bob@hospital.example").await;
    f.app
        .agent_check_in(&device, failing_firewall(revision))
        .await
        .unwrap();
    let first = f.store.get_device(device.id).await.unwrap().unwrap();
    let audit_before = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    f.clock.advance(Duration::from_secs(3601));

    f.store.fail_next("insert_command");
    let refused = f
        .app
        .agent_check_in(&device, failing_firewall(revision))
        .await;
    assert!(
        matches!(refused, Err(AppError::Internal(_))),
        "the check-in fails as a whole: {refused:?}"
    );
    let after = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(after.last_seen, first.last_seen, "no new last-seen time");
    assert_eq!(after.facts, first.facts);
    assert_eq!(after.compliance, first.compliance, "no new report");
    assert_eq!(after.enforcement, first.enforcement);
    assert!(
        f.store
            .list_commands(Some(device.id), None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        f.store
            .list_audit(&AuditFilter::default())
            .await
            .unwrap()
            .len(),
        audit_before.len()
    );

    // The retry goes through whole.
    let answer = f
        .app
        .agent_check_in(&device, failing_firewall(revision))
        .await
        .unwrap();
    assert_eq!(answer.pending.len(), 1);
}

#[tokio::test]
async fn a_policy_change_reaches_the_next_check_in_here_and_on_a_replica_once_announced() {
    let f = fixture();
    let other = replica(&f.store, &f.ca, &f.clock);
    let (device, _) = enroll(&f.app, "cat@hospital.example").await;
    let first = f
        .app
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    let seen_there = other
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    assert_eq!(seen_there.policy.revision, first.policy.revision);

    let changed = wipe_failing_firewalls(&f.app).await;
    assert!(changed > first.policy.revision);
    let here = f
        .app
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    assert_eq!(here.policy.revision, changed);

    // The replica answers from its cache until the change is announced to it.
    let stale = other
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    assert_eq!(
        stale.policy.revision, first.policy.revision,
        "read from the cache"
    );
    other.apply_all(&[Announcement::PolicyChanged]).await;
    let there = other
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    assert_eq!(there.policy.revision, changed);

    // A user's override is announced as work for each of the user's devices.
    let own = f
        .app
        .set_policy(
            &admin(),
            Some(&email("cat@hospital.example")),
            &PolicyChanges {
                auto_lock_seconds: Some(120),
                ..PolicyChanges::default()
            },
        )
        .await
        .unwrap();
    other
        .apply_all(&[Announcement::DeviceWork(device.id)])
        .await;
    let there = other
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    assert_eq!(there.policy.revision, own.revision);
    assert_eq!(there.policy.policy.auto_lock_seconds, 120);
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_on_the_next_call_here_and_on_a_replica_once_announced() {
    let f = fixture();
    let other = replica(&f.store, &f.ca, &f.clock);
    other.load_revocations().await.unwrap();
    let (device, cert) = enroll(&f.app, "dan@hospital.example").await;
    let (_, bystander) = enroll(&f.app, "eve@hospital.example").await;
    // Both replicas have authenticated the certificate once (and may remember it).
    other.authenticate_device(Some(&cert)).await.unwrap();
    f.app.authenticate_device(Some(&cert)).await.unwrap();

    f.app
        .revoke_device(&admin(), &device.id.into(), "test")
        .await
        .unwrap();
    let here = f.app.authenticate_device(Some(&cert)).await;
    assert!(
        matches!(&here, Err(AppError::Unauthenticated(m)) if m.contains("revoked")),
        "{here:?}"
    );
    assert!(
        f.app
            .agent_check_in(&device, CheckInReport::default())
            .await
            .is_err(),
        "a check-in of a revoked device changes nothing"
    );
    other.apply_all(&[Announcement::Revoked(device.id)]).await;
    let there = other.authenticate_device(Some(&cert)).await;
    assert!(
        matches!(&there, Err(AppError::Unauthenticated(_))),
        "{there:?}"
    );
    // Others are unaffected.
    f.app.authenticate_device(Some(&bystander)).await.unwrap();
    other.authenticate_device(Some(&bystander)).await.unwrap();
}

/// An offline-wipe receipt signed with `key`, as the agent's timer makes one.
fn offline_receipt(
    device: &super::ActiveDevice,
    key: &ward_certs::PrivateKeyDer,
    at: &str,
) -> ward_certs::receipt::SignedReceipt {
    ward_certs::receipt::WipeReceiptBody {
        command_id: super::OFFLINE_TIMER.into(),
        device_id: device.id.to_string(),
        completed_at: at.into(),
        scope: ward_certs::receipt::WipeScope::Messaging,
        key_destroyed: true,
        files_removed: 2,
        bytes_removed: 100,
        verified_empty: true,
        full_erase: None,
        key_protection: None,
        sanitization: None,
    }
    .sign(key)
    .unwrap()
}

/// Attack by whoever can check in as the device (a modified agent, a copy of its identity):
/// a receipt that does not verify is sent after one that did. What the controller verified
/// must stay on record: an unverified claim does not replace the proof of a wipe.
#[tokio::test]
async fn a_receipt_that_does_not_verify_does_not_replace_a_verified_offline_wipe() {
    let f = fixture();
    let TestDevice { device, key, .. } =
        enroll_as(&f.app, "dan@hospital.example", facts("laptop")).await;
    let genuine = offline_receipt(&device, &key, "2026-12-01T10:00:00Z");
    f.app
        .agent_check_in(
            &device,
            CheckInReport {
                offline_wipe: Some(genuine.clone()),
                ..CheckInReport::default()
            },
        )
        .await
        .unwrap();
    let verified = f.store.get_device(device.id).await.unwrap().unwrap();
    assert!(verified.offline_wipe.as_ref().is_some_and(|w| w.verified));

    let stranger = ward_certs::PrivateKeyDer::generate().unwrap();
    f.clock.advance(Duration::from_secs(60));
    f.app
        .agent_check_in(
            &device,
            CheckInReport {
                offline_wipe: Some(offline_receipt(&device, &stranger, "2026-12-02T10:00:00Z")),
                ..CheckInReport::default()
            },
        )
        .await
        .unwrap();
    let after = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(
        after.offline_wipe, verified.offline_wipe,
        "a receipt that does not verify replaced the verified one"
    );
}

/// Attack by anyone on the network holding an older genuine receipt of the device (a copy of
/// an old backup is enough): the receipt-only endpoint takes receipts without a certificate.
/// A replayed older receipt must not replace the later wipe on record, nor be audited again.
#[tokio::test]
async fn an_older_receipt_replayed_without_a_certificate_does_not_replace_a_later_wipe() {
    let f = fixture();
    let TestDevice { device, key, .. } =
        enroll_as(&f.app, "eve@hospital.example", facts("laptop")).await;
    let older = offline_receipt(&device, &key, "2026-11-01T10:00:00Z");
    let later = offline_receipt(&device, &key, "2026-12-01T10:00:00Z");
    f.app
        .record_offline_wipe_receipt_only(device.id, &later)
        .await
        .unwrap();
    let recorded = f.store.get_device(device.id).await.unwrap().unwrap();
    let audited = f.store.list_audit(&AuditFilter::default()).await.unwrap();

    let replay = f
        .app
        .record_offline_wipe_receipt_only(device.id, &older)
        .await;
    assert!(replay.is_ok(), "{replay:?}");
    let after = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(
        after.offline_wipe, recorded.offline_wipe,
        "a replayed older receipt replaced the later wipe"
    );
    assert_eq!(
        f.store
            .list_audit(&AuditFilter::default())
            .await
            .unwrap()
            .len(),
        audited.len(),
        "a replay is not a new wipe"
    );
}

fn offline_wipe_entries(audit: &[crate::core::audit::AuditEntry]) -> usize {
    audit
        .iter()
        .filter(|e| e.action == "device.offline_wipe")
        .count()
}

/// Attack by a holder of the device key (or a device whose clock is years ahead): a receipt
/// dated in the future must not keep later genuine receipts off the record. The controller
/// never records a wipe at a time past its own clock (attack review F4).
#[tokio::test]
async fn a_receipt_dated_in_the_future_does_not_shut_out_later_ones() {
    use crate::core::Clock as _;
    let f = fixture();
    let TestDevice { device, key, .. } =
        enroll_as(&f.app, "fay@hospital.example", facts("laptop")).await;
    let future = offline_receipt(&device, &key, "2099-01-01T00:00:00Z");
    f.app
        .record_offline_wipe_receipt_only(device.id, &future)
        .await
        .unwrap();
    let first = f.store.get_device(device.id).await.unwrap().unwrap();
    let first = first.offline_wipe.unwrap();
    assert!(
        first.at <= f.clock.now(),
        "recorded in the future: {first:?}"
    );

    f.clock.advance(Duration::from_secs(3600));
    let genuine = offline_receipt(&device, &key, &f.clock.now().rfc3339());
    f.app
        .record_offline_wipe_receipt_only(device.id, &genuine)
        .await
        .unwrap();
    let after = f.store.get_device(device.id).await.unwrap().unwrap();
    let after = after.offline_wipe.unwrap();
    assert!(
        after.at > first.at,
        "the later wipe was shut out: {after:?}"
    );
}

/// A device revoked as lost sends one claim, then another, later one (the thief, then the
/// device's own timer, or the other way round). Neither is proof, but the admin must see the
/// latest and the audit trail both: the second was dropped without a trace (attack review F5).
#[tokio::test]
async fn every_later_claim_of_a_revoked_device_is_audited_and_the_latest_kept() {
    use crate::core::Clock as _;
    let f = fixture();
    let TestDevice { device, key, .. } =
        enroll_as(&f.app, "gus@hospital.example", facts("laptop")).await;
    f.app
        .revoke_device(&admin(), &device.id.into(), "reported stolen")
        .await
        .unwrap();
    let first = offline_receipt(&device, &key, &f.clock.now().rfc3339());
    f.app
        .record_offline_wipe_receipt_only(device.id, &first)
        .await
        .unwrap();
    let audited = offline_wipe_entries(&f.store.list_audit(&AuditFilter::default()).await.unwrap());
    assert_eq!(audited, 1);

    f.clock.advance(Duration::from_secs(600));
    let later = offline_receipt(&device, &key, &f.clock.now().rfc3339());
    f.app
        .record_offline_wipe_receipt_only(device.id, &later)
        .await
        .unwrap();
    let record = f.store.get_device(device.id).await.unwrap().unwrap();
    let claim = record.offline_wipe.unwrap();
    assert!(!claim.verified, "a revoked device's receipt is a claim");
    assert_eq!(claim.at, f.clock.now());
    let audit = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        offline_wipe_entries(&audit),
        2,
        "the later claim left no trace"
    );

    // The same claim again (its answer was lost): nothing new.
    f.app
        .record_offline_wipe_receipt_only(device.id, &later)
        .await
        .unwrap();
    let audit = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(offline_wipe_entries(&audit), 2);
}

/// Attack by anyone holding a copy of a genuine receipt dated a little in the future (within
/// the clock skew allowed): replayed, it must not be a new wipe each time (second attack
/// review: with the time clamped to the controller's clock, every replay looked newer).
#[tokio::test]
async fn a_receipt_dated_a_little_ahead_replayed_is_not_a_new_wipe() {
    use crate::core::Clock as _;
    let f = fixture();
    let TestDevice { device, key, .. } =
        enroll_as(&f.app, "hal@hospital.example", facts("laptop")).await;
    let ahead = f.clock.now().saturating_add(Duration::from_secs(120));
    let receipt = offline_receipt(&device, &key, &ahead.rfc3339());
    f.app
        .record_offline_wipe_receipt_only(device.id, &receipt)
        .await
        .unwrap();
    let first = f.store.get_device(device.id).await.unwrap().unwrap();
    let first = first.offline_wipe.unwrap();

    for _ in 0..3 {
        f.clock.advance(Duration::from_secs(30));
        f.app
            .record_offline_wipe_receipt_only(device.id, &receipt)
            .await
            .unwrap();
    }
    let after = f.store.get_device(device.id).await.unwrap().unwrap();
    let audit = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        (after.offline_wipe.unwrap().at, offline_wipe_entries(&audit)),
        (first.at, 1),
        "a replay of the same receipt was recorded as a new wipe"
    );
}

/// A check-in with facts, as the busy tests send it.
fn laptop_report() -> CheckInReport {
    CheckInReport {
        facts: Some(facts("laptop-2")),
        ..CheckInReport::default()
    }
}

/// `answer` refused at once because another check-in of the device is in flight.
fn assert_busy(answer: &Result<CheckedIn, AppError>) {
    match answer {
        Err(AppError::Unavailable(why)) => assert!(why.contains("still being handled"), "{why}"),
        other => panic!("a second call in flight must be refused as busy: {other:?}"),
    }
}

/// A device's second check-in while its first is still being handled is refused at once as
/// busy, writes nothing, and does not stop the first; once the first is answered the device
/// checks in again (an abandoned one: the next test).
#[tokio::test]
async fn a_device_checks_in_one_call_at_a_time() {
    let f = fixture();
    let (device, _) = enroll(&f.app, "ann@hospital.example").await;
    let jobs_before = jobs(&f.store);
    // Polled together: the first takes the device's turn and waits for the writer (another
    // task), the rest are refused at their first poll.
    let answers =
        futures::future::join_all((0..5).map(|_| f.app.agent_check_in(&device, laptop_report())))
            .await;
    assert!(answers[0].is_ok(), "{:?}", answers[0]);
    for answer in &answers[1..] {
        assert_busy(answer);
    }
    assert_eq!(
        jobs(&f.store),
        jobs_before + 1,
        "the refused calls wrote nothing"
    );
    f.app
        .agent_check_in(&device, laptop_report())
        .await
        .unwrap();
}

/// Attack by a device that sends a check-in and hangs up at once, over and over: its turn must
/// stay taken while its check-in waits for its batch and while the batch's job waits in the
/// writer, or it queues work for its own row without bound (the attack review's finding: the
/// turn came back when the call was dropped, before the writer had run the job).
#[tokio::test]
async fn a_check_in_abandoned_while_its_job_waits_in_the_writer_keeps_the_turn() {
    let f = fixture();
    let (device, _) = enroll(&f.app, "ann@hospital.example").await;
    let jobs_before = jobs(&f.store);
    let queued = || f.app.check_in_batches.queued();
    // Polled once: the check-in is queued for a batch; the batch's task (of this runtime)
    // has not run yet.
    let mut abandoned = Box::pin(f.app.agent_check_in(&device, laptop_report()));
    assert!(futures::poll!(&mut abandoned).is_pending());
    assert_eq!(
        queued(),
        1,
        "the abandoned call's check-in waits for its batch"
    );
    drop(abandoned);

    let mut again = Box::pin(f.app.agent_check_in(&device, laptop_report()));
    match futures::poll!(&mut again) {
        std::task::Poll::Ready(answer) => assert_busy(&answer),
        std::task::Poll::Pending => panic!("a call while the abandoned job waits was queued"),
    }
    assert_eq!(queued(), 1, "the refused call queued nothing");

    // Once the writer has run the abandoned job, the device checks in again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while jobs(&f.store) < jobs_before + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never ran the job"
        );
        tokio::task::yield_now().await;
    }
    f.app
        .agent_check_in(&device, laptop_report())
        .await
        .unwrap();
}
