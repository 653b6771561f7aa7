//! Someone holding the database edits a command after the controller delivered it: moves it to
//! another device, or turns a lock into a wipe. The controller keeps the command as it
//! delivered it to spare reads; the device's acknowledgement and result must still be judged
//! against the command as stored, so that no row ever claims a device was wiped by another
//! device's receipt, or a wipe done by a lock's bare success.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_controller::core::{CommandId, CommandState};
use ward_e2e::inprocess::{EnrolledDevice, TestController};
use ward_e2e::wipes::messaging_receipt;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::*;

type Agent = agent_service_client::AgentServiceClient<tonic::transport::Channel>;

async fn issue(controller: &TestController, device: &str, action: Action, key: &str) -> String {
    controller
        .admin()
        .await
        .issue_command(IssueCommandRequest {
            device_id: device.into(),
            action: Some(action),
            reason: "test".into(),
            idempotency_key: key.into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

fn wipe() -> Action {
    Action::Wipe(WipeAction {
        scope: WipeScope::Messaging as i32,
    })
}

fn lock() -> Action {
    Action::Lock(LockAction {
        message: "Call IT".into(),
    })
}

/// The device's agent, after a check-in that delivered `command` to it.
async fn delivered(controller: &TestController, device: &EnrolledDevice, command: &str) -> Agent {
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let pending = agent
        .check_in(CheckInRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pending_commands;
    assert!(
        pending.iter().any(|c| c.id == command),
        "not delivered: {pending:?}"
    );
    agent
}

/// What someone with the database file does, outside the controller.
async fn edit(controller: &TestController, statement: &'static str, value: String, id: &str) {
    let path = controller.data.database();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let db = rusqlite::Connection::open(path).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(
            db.execute(statement, rusqlite::params![value, id]).unwrap(),
            1
        );
    })
    .await
    .unwrap();
}

async fn acknowledge(agent: &mut Agent, command: &str) -> Result<bool, tonic::Status> {
    agent
        .acknowledge(AcknowledgeRequest {
            command_id: command.into(),
        })
        .await
        .map(|r| r.into_inner().proceed)
}

async fn stored(controller: &TestController, id: &str) -> ward_controller::core::Command {
    use ward_controller::store::Store;
    let id: CommandId = id.parse().unwrap();
    controller.store.get_command(id).await.unwrap().unwrap()
}

/// A wipe delivered to Alice's phone (and acknowledged, if `acknowledged`), then moved to
/// Bob's in the database: the controller, Alice's phone, her agent, Bob's id and the wipe.
async fn moved_to_bob(
    key: &str,
    acknowledged: bool,
) -> (TestController, EnrolledDevice, Agent, String, String) {
    let controller = TestController::start().await;
    let alice = controller.enroll("alice@hospital.org").await;
    let bob = controller.enroll("bob@hospital.org").await;
    let command = issue(&controller, &alice.device_id, wipe(), key).await;
    let mut agent = delivered(&controller, &alice, &command).await;
    if acknowledged {
        assert!(acknowledge(&mut agent, &command).await.unwrap());
    }
    edit(
        &controller,
        "UPDATE commands SET device_id = ?1 WHERE id = ?2",
        bob.device_id.clone(),
        &command,
    )
    .await;
    (controller, alice, agent, bob.device_id, command)
}

/// Delivered to Alice's phone, then moved to Bob's in the database: Alice's phone is not told
/// to wipe, and Bob's command is not finished by Alice's phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_moved_to_another_device_after_delivery_is_not_acknowledged_by_the_first() {
    let (controller, _alice, mut agent, bob, command) = moved_to_bob("move-1", false).await;

    let ack = acknowledge(&mut agent, &command).await;
    assert!(
        !matches!(ack, Ok(true)),
        "Alice's phone was told to run Bob's command: {ack:?}"
    );
    let now = stored(&controller, &command).await;
    assert_eq!(now.device_id.to_string(), bob);
    assert_eq!(now.state, CommandState::Delivered, "{now:?}");
}

/// Acknowledged by Alice's phone, then moved to Bob's: Alice's receipt does not make Bob's
/// command a success (Bob's phone was never wiped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_moved_to_another_device_after_acknowledgement_is_not_finished_by_the_first() {
    let (controller, alice, mut agent, _bob, command) = moved_to_bob("move-2", true).await;

    let signed = messaging_receipt(&command, &alice)
        .sign(&alice.key)
        .unwrap();
    let answer = agent
        .report_result(ReportResultRequest {
            command_id: command.clone(),
            succeeded: true,
            failure_reason: String::new(),
            receipt: Some(WipeReceipt {
                body: signed.body,
                signature: signed.signature,
            }),
        })
        .await;
    let now = stored(&controller, &command).await;
    assert_ne!(
        now.state,
        CommandState::Succeeded,
        "Bob's command was finished by Alice's receipt (answer {answer:?}): {now:?}"
    );
    assert!(now.receipt.is_none(), "{now:?}");
}

/// Alice's phone acknowledges a lock, the row is then edited by `statement` (`?1` is "wipe"),
/// and the phone reports the lock's bare success: the command, Alice's device, and the answer.
async fn lock_result_after_edit(
    controller: &TestController,
    key: &str,
    statement: &'static str,
) -> (
    String,
    String,
    Result<tonic::Response<ReportResultResponse>, tonic::Status>,
) {
    let alice = controller.enroll("alice@hospital.org").await;
    let command = issue(controller, &alice.device_id, lock(), key).await;
    let mut agent = delivered(controller, &alice, &command).await;
    assert!(acknowledge(&mut agent, &command).await.unwrap());
    edit(controller, statement, "wipe".into(), &command).await;
    let answer = agent
        .report_result(ReportResultRequest {
            command_id: command.clone(),
            succeeded: true,
            ..Default::default()
        })
        .await;
    (command, alice.device_id, answer)
}

/// A lock delivered to Alice's phone, turned into a wipe in the database after it was
/// acknowledged: the phone's bare success (a lock has no receipt) does not record a wipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_turned_into_a_wipe_after_acknowledgement_is_not_a_wipe_without_a_receipt() {
    let controller = TestController::start().await;
    let (command, _, answer) = lock_result_after_edit(
        &controller,
        "kind-1",
        "UPDATE commands SET kind = ?1, scope = 'messaging', lock_message = NULL WHERE id = ?2",
    )
    .await;
    let now = stored(&controller, &command).await;
    assert_ne!(
        now.state,
        CommandState::Succeeded,
        "a wipe is recorded done without a receipt (answer {answer:?}): {now:?}"
    );
}

/// The same edit, with the wipe set to revoke the device when it ends: the phone's report of
/// the lock it ran is not judged again as the wipe's result (recorded failed, and Alice's
/// phone revoked "after wipe" for a wipe never sent). The row stays as the edit left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_turned_into_a_revoking_wipe_is_not_finished_by_the_locks_result() {
    use ward_controller::store::{AuditFilter, Store};
    let controller = TestController::start().await;
    let (command, alice, answer) = lock_result_after_edit(
        &controller,
        "kind-2",
        "UPDATE commands SET kind = ?1, scope = 'messaging', lock_message = NULL,
             revoke_after = 1 WHERE id = ?2",
    )
    .await;
    let now = stored(&controller, &command).await;
    assert_eq!(
        now.state,
        CommandState::Acknowledged,
        "the lock's result was judged as the edited wipe's (answer {answer:?}): {now:?}"
    );
    assert!(now.receipt.is_none(), "{now:?}");
    let device: ward_controller::core::DeviceId = alice.parse().unwrap();
    assert_eq!(
        controller
            .store
            .get_device(device)
            .await
            .unwrap()
            .unwrap()
            .state,
        ward_controller::core::DeviceState::Active,
        "Alice's phone was revoked after a wipe never sent"
    );
    let revocations = controller
        .store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "device.revoke")
        .count();
    assert_eq!(revocations, 0);
}

async fn offboard(controller: &TestController, user: &str) {
    controller
        .admin()
        .await
        .offboard_user(OffboardUserRequest {
            user: user.into(),
            reason: "left the hospital".into(),
        })
        .await
        .unwrap();
}

/// Alice's offboarding wipe, moved to Bob's phone and marked cancelled in the database: a
/// rerun of Alice's offboarding finds the command its key names and must not take it for
/// Alice's, nor issue a wipe in its name to Bob's phone (which would revoke it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offboarding_rerun_does_not_wipe_the_device_an_edited_command_names() {
    let controller = TestController::start().await;
    let alice = controller.enroll("alice@hospital.org").await;
    let bob = controller.enroll("bob@hospital.org").await;
    offboard(&controller, "alice@hospital.org").await;
    let mut admin = controller.admin().await;
    let wipes_of = |device: String| {
        let mut admin = admin.clone();
        async move {
            admin
                .list_commands(ListCommandsRequest {
                    device_id: device,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .commands
        }
    };
    let [wipe] = wipes_of(alice.device_id.clone()).await.try_into().unwrap();
    let edit_path = controller.data.database();
    let (bob_id, wipe_id) = (bob.device_id.clone(), wipe.id.clone());
    tokio::task::spawn_blocking(move || {
        let db = rusqlite::Connection::open(edit_path).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        db.execute(
            "UPDATE commands SET device_id = ?1, state = 'cancelled' WHERE id = ?2",
            rusqlite::params![bob_id, wipe_id],
        )
        .unwrap();
    })
    .await
    .unwrap();

    offboard(&controller, "alice@hospital.org").await;
    let bobs = wipes_of(bob.device_id.clone()).await;
    assert_eq!(
        bobs.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [wipe.id.as_str()],
        "a wipe was issued to Bob's phone in the name of Alice's offboarding"
    );
    let bob_now = admin
        .get_device(GetDeviceRequest {
            device_id: bob.device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob_now.state, DeviceState::Active as i32);
}
