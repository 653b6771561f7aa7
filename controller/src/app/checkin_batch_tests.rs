//! Check-ins arriving together: one writer job for all of them, each with its own outcome.

use std::time::Duration;

use super::checkin_tests::{failing_firewall, wipe_failing_firewalls};
use super::test_fixture::{admin, command_key, enroll, facts, fixture, jobs};
use super::{AppError, CheckInReport};
use crate::core::refs::DeviceRef;
use crate::core::{CommandKind, CommandState};
use crate::store::{AuditFilter, Store};

fn report(hostname: &str) -> CheckInReport {
    CheckInReport {
        facts: Some(facts(hostname)),
        ..CheckInReport::default()
    }
}

/// Three devices checking in at once are one job of the writer; each gets its own row
/// written, and the one with a pending lock has it handed out (delivered, audited), the others
/// nothing.
#[tokio::test]
async fn check_ins_arriving_together_are_one_writer_job_each_answered_with_its_own_commands() {
    let f = fixture();
    let (ann, _) = enroll(&f.app, "ann@hospital.example").await;
    let (bob, _) = enroll(&f.app, "bob@hospital.example").await;
    let (cat, _) = enroll(&f.app, "cat@hospital.example").await;
    let (lock, _) = f
        .app
        .issue_command(
            &admin(),
            &DeviceRef::from(bob.id),
            CommandKind::Lock {
                message: String::new(),
            },
            "left at the desk",
            &command_key("lock-bob"),
            None,
        )
        .await
        .unwrap();
    let before = jobs(&f.store);
    // Polled together: each queues its check-in before the batch's task runs.
    let answers = futures::future::join_all([
        f.app.agent_check_in(&ann, report("ann-laptop")),
        f.app.agent_check_in(&bob, report("bob-laptop")),
        f.app.agent_check_in(&cat, report("cat-laptop")),
    ])
    .await;
    assert_eq!(jobs(&f.store) - before, 1, "one writer job for the three");
    let pending: Vec<Vec<_>> = answers
        .into_iter()
        .map(|a| a.unwrap().pending.into_iter().map(|c| c.id).collect())
        .collect();
    assert_eq!(pending, [vec![], vec![lock.id], vec![]]);
    for (device, hostname) in [
        (&ann, "ann-laptop"),
        (&bob, "bob-laptop"),
        (&cat, "cat-laptop"),
    ] {
        let record = f.store.get_device(device.id).await.unwrap().unwrap();
        assert_eq!(record.facts.hostname, hostname);
        assert!(record.last_seen.is_some());
    }
    let stored = f.store.get_command(lock.id).await.unwrap().unwrap();
    assert_eq!(stored.state, CommandState::Delivered);
    let audit = f.store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        audit.last().map(|e| (e.action.as_str(), e.target.clone())),
        Some(("command.delivered", lock.id.to_string()))
    );
}

/// In one batch: a device whose compliance wipe cannot be written fails alone and changes
/// nothing; a revoked device is refused; the others are written and answered.
#[tokio::test]
async fn a_check_in_that_fails_in_a_batch_fails_alone_and_changes_nothing() {
    let f = fixture();
    let revision = wipe_failing_firewalls(&f.app).await;
    let failing = failing_firewall(revision);
    let (ann, _) = enroll(&f.app, "ann@hospital.example").await;
    let (bob, _) = enroll(&f.app, "bob@hospital.example").await;
    let (gone, _) = enroll(&f.app, "gone@hospital.example").await;
    f.app.agent_check_in(&ann, failing.clone()).await.unwrap();
    f.app
        .revoke_device(&admin(), &DeviceRef::from(gone.id), "reported stolen")
        .await
        .unwrap();
    let ann_before = f.store.get_device(ann.id).await.unwrap().unwrap();
    // Ann's grace is over: her check-in issues a wipe, whose insert fails in the batch and
    // again when her check-in runs alone.
    f.clock.advance(Duration::from_secs(3601));
    f.store.fail_next_times("insert_command", 2);
    let answers = futures::future::join_all([
        f.app.agent_check_in(&ann, failing.clone()),
        f.app.agent_check_in(&bob, report("bob-laptop")),
        f.app.agent_check_in(&gone, report("gone-laptop")),
    ])
    .await;
    let [ann_answer, bob_answer, gone_answer] = &answers[..] else {
        unreachable!()
    };
    assert!(
        matches!(ann_answer, Err(AppError::Internal(_))),
        "{ann_answer:?}"
    );
    assert!(bob_answer.is_ok(), "{bob_answer:?}");
    assert!(
        matches!(gone_answer, Err(AppError::Unauthenticated(why)) if why.contains("revoked")),
        "{gone_answer:?}"
    );
    let ann_after = f.store.get_device(ann.id).await.unwrap().unwrap();
    assert_eq!(
        (ann_after.last_seen, &ann_after.enforcement),
        (ann_before.last_seen, &ann_before.enforcement),
        "nothing of the failed check-in was written"
    );
    assert!(
        f.store
            .list_commands(Some(ann.id), None)
            .await
            .unwrap()
            .is_empty()
    );
    let bob_after = f.store.get_device(bob.id).await.unwrap().unwrap();
    assert_eq!(bob_after.facts.hostname, "bob-laptop");
    let gone_after = f.store.get_device(gone.id).await.unwrap().unwrap();
    assert_ne!(gone_after.facts.hostname, "gone-laptop");

    // Ann's next check-in goes through whole.
    let answer = f.app.agent_check_in(&ann, failing).await.unwrap();
    assert_eq!(answer.pending.len(), 1, "her wipe is issued and handed out");
}
