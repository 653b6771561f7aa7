//! Commands that pile up for an offline device (issue 16 item 17): a new lock or unlock
//! supersedes the queued one of the same kind; wipes are never superseded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::inprocess::TestController;
use ward_proto::v1::*;

fn request(device: &str, action: issue_command_request::Action, key: &str) -> IssueCommandRequest {
    IssueCommandRequest {
        device_id: device.to_owned(),
        action: Some(action),
        reason: "pile-up".into(),
        idempotency_key: key.into(),
        ttl_seconds: 0,
    }
}

fn lock(message: &str) -> issue_command_request::Action {
    issue_command_request::Action::Lock(LockAction {
        message: message.into(),
    })
}

fn wipe() -> issue_command_request::Action {
    issue_command_request::Action::Wipe(WipeAction {
        scope: WipeScope::Messaging as i32,
    })
}

#[tokio::test]
async fn a_new_lock_supersedes_the_queued_one_and_wipes_never_are() {
    let controller = TestController::start().await;
    let device = controller.enroll("cy@hospital.org").await;
    let mut admin = controller.admin().await;
    let id = device.device_id.as_str();
    let mut ids = Vec::new();
    for (action, key) in [
        (lock("first"), "l1"),
        (issue_command_request::Action::Unlock(UnlockAction {}), "u1"),
        (lock("second"), "l2"),
        (wipe(), "w1"),
        (wipe(), "w2"),
    ] {
        let c = admin
            .issue_command(request(id, action, key))
            .await
            .unwrap()
            .into_inner();
        ids.push(c.id);
    }
    let mut states = Vec::new();
    for c in &ids {
        let c = admin
            .get_command(GetCommandRequest {
                command_id: c.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        states.push(c.state);
    }
    let (superseded, queued) = (CommandState::Superseded as i32, CommandState::Queued as i32);
    assert_eq!(
        states,
        vec![superseded, queued, queued, queued, queued],
        "the first lock superseded; the unlock, the newer lock and both wipes queued"
    );
    let (first, second) = (&ids[0], &ids[2]);
    // The audit trail says what replaced it.
    let audit = admin
        .list_audit(ListAuditRequest {
            device: id.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let entry = audit
        .entries
        .iter()
        .find(|e| e.action == "command.superseded")
        .expect("a command.superseded entry");
    assert_eq!(&entry.target, first);
    assert!(entry.details_json.contains(second.as_str()), "{entry:?}");
}
