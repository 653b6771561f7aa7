//! One failed mutation inside a group commit fails alone, with its own error: its writes and
//! its audit entry are rolled back, and its neighbours in the same batch commit, each with
//! its audit entry, in a chain that still verifies. (The store suite checks the mechanism on
//! every backend without audit; this is the controller's real store, audit key and chain.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ward_controller::core::audit::AuditEvent;
use ward_controller::core::{
    Command, CommandId, CommandKind, CommandState, DeviceId, Timestamp, WipeScope,
};
use ward_controller::store::{Priority, Store, StoreError};
use ward_e2e::inprocess::TestController;
use ward_e2e::seed::seed_devices;
use ward_proto::v1::{ListAuditRequest, VerifyAuditRequest};

/// A job's own error, as a caller of the writer defines it.
#[derive(Debug)]
enum JobError {
    /// The idempotency key already names another device's command.
    KeyConflict {
        key: String,
        taken_by: CommandId,
    },
    Store(StoreError),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Store(e)
    }
}

fn wipe(device: DeviceId, key: &str) -> Command {
    Command {
        id: CommandId::new_random(),
        device_id: device,
        kind: CommandKind::Wipe {
            scope: WipeScope::Messaging,
        },
        state: CommandState::Queued,
        reason: "batch test".into(),
        failure_reason: None,
        idempotency_key: key.into(),
        created_by: "admin".into(),
        created_at: Timestamp::from_unix_ms(5),
        deadline: None,
        delivered_at: None,
        acknowledged_at: None,
        finished_at: None,
        deliveries: 0,
        receipt: None,
        approved_by: None,
        revoke_after: false,
    }
}

fn issued(command: &Command) -> AuditEvent {
    AuditEvent {
        actor: "ward://admin/admin".into(),
        action: "command.issue".into(),
        target: command.id.to_string(),
        details: serde_json::json!({ "key": command.idempotency_key }),
    }
}

/// Issues `command` with its audit entry; refuses (after writing its entry) when the key
/// already names a command of another device.
async fn issue(store: Arc<dyn Store>, command: Command) -> Result<Command, JobError> {
    store
        .write(Priority::High, move |tx| {
            let command = command.clone();
            Box::pin(async move {
                tx.audit(issued(&command), Timestamp::from_unix_ms(6));
                let (stored, created) = tx.insert_command(&command).await?;
                if !created && stored.device_id != command.device_id {
                    return Err(JobError::KeyConflict {
                        key: command.idempotency_key.clone(),
                        taken_by: stored.id,
                    });
                }
                Ok(stored)
            })
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_conflict_in_a_batch_fails_alone_and_its_neighbours_commit() {
    let controller = TestController::start().await;
    let store: Arc<dyn Store> = Arc::new(controller.store.clone());
    let devices = seed_devices(store.clone(), "ivy@hospital.org", "ivy", 40).await;
    // A command that owns the key "taken" (and whose id job 23 reuses).
    let taken = issue(store.clone(), wipe(devices[0], "taken"))
        .await
        .unwrap();

    let batches_before = store.writer().stats().batches.load(Ordering::Relaxed);
    let commands: Vec<Command> = (0..40)
        .map(|i| match i {
            // Reuses another device's key: the job's own refusal.
            17 => wipe(devices[17], "taken"),
            // Reuses a command id: the database refuses the insert.
            23 => Command {
                id: taken.id,
                ..wipe(devices[23], "fresh-23")
            },
            _ => wipe(devices[i], &format!("key-{i}")),
        })
        .collect();
    let tasks: Vec<_> = commands
        .iter()
        .cloned()
        .map(|c| tokio::spawn(issue(store.clone(), c)))
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let batches = store.writer().stats().batches.load(Ordering::Relaxed) - batches_before;
    assert!(
        batches < 38,
        "38 changes committed in {batches} transactions: they were grouped"
    );

    for (i, answer) in answers.iter().enumerate() {
        match i {
            17 => assert!(
                matches!(answer, Err(JobError::KeyConflict { key, taken_by }) if key == "taken" && *taken_by == taken.id),
                "job 17 gets its own error: {answer:?}"
            ),
            23 => assert!(
                matches!(answer, Err(JobError::Store(e)) if !e.to_string().is_empty()),
                "job 23 gets the database's refusal: {answer:?}"
            ),
            _ => assert_eq!(answer.as_ref().unwrap().id, commands[i].id, "job {i}"),
        }
    }
    assert!(
        store.command_by_key("fresh-23").await.unwrap().is_none(),
        "job 23 wrote nothing"
    );
    assert_eq!(
        store
            .command_by_key("taken")
            .await
            .unwrap()
            .unwrap()
            .device_id,
        devices[0],
        "the key still names its first command"
    );
    for i in (0..40).filter(|i| ![17, 23].contains(i)) {
        assert!(
            store
                .command_by_key(&format!("key-{i}"))
                .await
                .unwrap()
                .is_some(),
            "job {i} committed"
        );
    }

    // The audit: one entry per committed command, none of the failed jobs', a sound chain.
    let mut admin = controller.admin().await;
    let entries = admin
        .list_audit(ListAuditRequest {
            limit: 10_000,
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    for (i, c) in commands.iter().enumerate() {
        let n = entries
            .iter()
            .filter(|e| e.action == "command.issue" && e.target == c.id.to_string())
            .count();
        // Job 23's id is `taken`'s: the one entry with it is `taken`'s own.
        let expected = usize::from(i != 17);
        assert_eq!(n, expected, "audit entries of job {i}");
    }
    assert!(
        !entries.iter().any(|e| e.details_json.contains("fresh-23")
            || (e.details_json.contains("\"taken\"") && e.target != taken.id.to_string())),
        "the failed jobs' entries were rolled back"
    );
    let v = admin
        .verify_audit(VerifyAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "{v:?}");
}
