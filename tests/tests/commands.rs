//! Device commands against an in-process controller over real mutual TLS: idempotency,
//! acknowledgement as the commit point, cancel, receipts, and exactly-once execution by the
//! real agent executor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Code;
use ward_agent::executor::{Executor, Work};
use ward_agent::ledger::Ledger;
use ward_agent::link::Link;
use ward_agent::platform::{ActionError, Platform};
use ward_certs::receipt::WipeReceiptBody;
use ward_e2e::eventually;
use ward_e2e::inprocess::{EnrolledDevice, TestController};
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::{self, *};

async fn issue(
    controller: &TestController,
    device: &str,
    action: Action,
    reason: &str,
    key: &str,
) -> Result<v1::Command, tonic::Status> {
    controller
        .admin()
        .await
        .issue_command(IssueCommandRequest {
            device_id: device.into(),
            action: Some(action),
            reason: reason.into(),
            idempotency_key: key.into(),
            ttl_seconds: 0,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn wipe() -> Action {
    Action::Wipe(WipeAction {
        scope: WipeScope::Messaging as i32,
    })
}

fn lock() -> Action {
    Action::Lock(LockAction {
        message: "Lost? Call IT at 555-0100".into(),
    })
}

async fn state_of(controller: &TestController, id: &str) -> CommandState {
    let c = controller
        .admin()
        .await
        .get_command(GetCommandRequest {
            command_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    CommandState::try_from(c.state).unwrap()
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_command() {
    let controller = TestController::start().await;
    let device = controller.enroll("ann@hospital.org").await;
    let first = issue(
        &controller,
        &device.device_id,
        wipe(),
        "lost",
        "offboard-ann-1",
    )
    .await
    .unwrap();
    let again = issue(
        &controller,
        &device.device_id,
        wipe(),
        "lost",
        "offboard-ann-1",
    )
    .await
    .unwrap();
    assert_eq!(first.id, again.id);
    let all = controller
        .admin()
        .await
        .list_commands(ListCommandsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .commands;
    assert_eq!(all.len(), 1);
    // The same key for a different request is refused, and changes nothing.
    let err = issue(&controller, &device.device_id, lock(), "", "offboard-ann-1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        controller
            .admin()
            .await
            .list_commands(ListCommandsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .commands
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_command_requests_are_refused_and_store_nothing() {
    let controller = TestController::start().await;
    let device = controller.enroll("ben@hospital.org").await;
    let cases = [
        (
            device.device_id.as_str(),
            wipe(),
            "",
            "k1",
            Code::InvalidArgument,
        ), // wipe without reason
        // Not an id, and no device has that host name.
        ("not-a-uuid", wipe(), "x", "k2", Code::NotFound),
        // Neither an id nor a possible host name.
        ("not a uuid!", wipe(), "x", "k2b", Code::InvalidArgument),
        (
            "6f1c2d3e-0000-4000-8000-000000000000",
            wipe(),
            "x",
            "k3",
            Code::NotFound,
        ),
        (
            device.device_id.as_str(),
            wipe(),
            "x",
            "",
            Code::InvalidArgument,
        ), // no idempotency key
        (
            device.device_id.as_str(),
            Action::Wipe(WipeAction { scope: 0 }),
            "x",
            "k4",
            Code::InvalidArgument,
        ),
        (
            device.device_id.as_str(),
            Action::Wipe(WipeAction { scope: 99 }),
            "x",
            "k5",
            Code::InvalidArgument,
        ),
        (
            device.device_id.as_str(),
            lock(),
            "bad\u{1b}[2J",
            "k6",
            Code::InvalidArgument,
        ),
    ];
    for (dev, action, reason, key, code) in cases {
        let err = issue(&controller, dev, action, reason, key)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            code,
            "{dev} {reason:?} {key:?}: {}",
            err.message()
        );
    }
    assert!(
        controller
            .admin()
            .await
            .list_commands(ListCommandsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .commands
            .is_empty()
    );
}

#[tokio::test]
async fn cancel_before_acknowledgement_stops_execution_and_after_it_is_refused() {
    let controller = TestController::start().await;
    let device = controller.enroll("cat@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();

    let first = issue(&controller, &device.device_id, lock(), "", "c1")
        .await
        .unwrap();
    let cancelled = controller
        .admin()
        .await
        .cancel_command(CancelCommandRequest {
            command_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state, CommandState::Cancelled as i32);
    let ack = agent
        .acknowledge(AcknowledgeRequest {
            command_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ack.proceed);
    assert_eq!(ack.state, CommandState::Cancelled as i32);
    // A cancelled command is no longer handed out.
    let pending = agent
        .check_in(CheckInRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pending_commands;
    assert!(pending.is_empty());

    let second = issue(&controller, &device.device_id, lock(), "", "c2")
        .await
        .unwrap();
    assert!(
        agent
            .acknowledge(AcknowledgeRequest {
                command_id: second.id.clone()
            })
            .await
            .unwrap()
            .into_inner()
            .proceed
    );
    let err = controller
        .admin()
        .await
        .cancel_command(CancelCommandRequest {
            command_id: second.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        state_of(&controller, &second.id).await,
        CommandState::Acknowledged
    );
}

#[tokio::test]
async fn results_for_commands_the_device_never_got_are_refused() {
    let controller = TestController::start().await;
    let alice = controller.enroll("dee@hospital.org").await;
    let bob = controller.enroll("eve@hospital.org").await;
    let command = issue(&controller, &alice.device_id, lock(), "", "r1")
        .await
        .unwrap();
    let mut bobs_agent = controller
        .agent_with(&bob.certificate_der, &bob.key)
        .await
        .unwrap();
    let err = bobs_agent
        .acknowledge(AcknowledgeRequest {
            command_id: command.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = bobs_agent
        .report_result(ReportResultRequest {
            command_id: command.id.clone(),
            succeeded: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Alice's own agent reporting before acknowledging is out of order.
    let mut alices_agent = controller
        .agent_with(&alice.certificate_der, &alice.key)
        .await
        .unwrap();
    let err = alices_agent
        .report_result(ReportResultRequest {
            command_id: command.id.clone(),
            succeeded: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        state_of(&controller, &command.id).await,
        CommandState::Queued
    );
}

async fn acknowledged_wipe(
    controller: &TestController,
    device: &EnrolledDevice,
    key: &str,
) -> (
    v1::Command,
    agent_service_client::AgentServiceClient<tonic::transport::Channel>,
) {
    let command = issue(controller, &device.device_id, wipe(), "test", key)
        .await
        .unwrap();
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    assert!(
        agent
            .acknowledge(AcknowledgeRequest {
                command_id: command.id.clone()
            })
            .await
            .unwrap()
            .into_inner()
            .proceed
    );
    (command, agent)
}

fn receipt_body(command: &v1::Command, device: &EnrolledDevice) -> WipeReceiptBody {
    WipeReceiptBody {
        command_id: command.id.clone(),
        device_id: device.device_id.clone(),
        completed_at: "2026-11-24T00:00:00Z".into(),
        scope: ward_certs::receipt::WipeScope::Messaging,
        key_destroyed: true,
        files_removed: 1,
        bytes_removed: 10,
        verified_empty: true,
        full_erase: None,
        key_protection: None,
        sanitization: None,
    }
}

#[tokio::test]
async fn a_wipe_without_a_valid_receipt_is_not_a_success() {
    let controller = TestController::start().await;
    let device = controller.enroll("fay@hospital.org").await;

    // No receipt at all.
    let (command, mut agent) = acknowledged_wipe(&controller, &device, "w1").await;
    let state = agent
        .report_result(ReportResultRequest {
            command_id: command.id.clone(),
            succeeded: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, CommandState::Failed as i32);

    // A receipt signed by some other key.
    let (command, mut agent) = acknowledged_wipe(&controller, &device, "w2").await;
    let forged = receipt_body(&command, &device)
        .sign(&ward_certs::PrivateKeyDer::generate().unwrap())
        .unwrap();
    let state = agent
        .report_result(ReportResultRequest {
            command_id: command.id.clone(),
            succeeded: true,
            failure_reason: String::new(),
            receipt: Some(WipeReceipt {
                body: forged.body,
                signature: forged.signature,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, CommandState::Failed as i32);
    let shown = controller
        .admin()
        .await
        .get_command(GetCommandRequest {
            command_id: command.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!shown.receipt.as_ref().unwrap().verified);
    assert!(
        shown.failure_reason.contains("receipt"),
        "{}",
        shown.failure_reason
    );

    // The device's own signature: succeeded and verified; repeating the report changes nothing.
    let (command, mut agent) = acknowledged_wipe(&controller, &device, "w3").await;
    let signed = receipt_body(&command, &device).sign(&device.key).unwrap();
    let report = ReportResultRequest {
        command_id: command.id.clone(),
        succeeded: true,
        failure_reason: String::new(),
        receipt: Some(WipeReceipt {
            body: signed.body,
            signature: signed.signature,
        }),
    };
    assert_eq!(
        agent
            .report_result(report.clone())
            .await
            .unwrap()
            .into_inner()
            .state,
        CommandState::Succeeded as i32
    );
    assert_eq!(
        agent
            .report_result(report)
            .await
            .unwrap()
            .into_inner()
            .state,
        CommandState::Succeeded as i32
    );
    let shown = controller
        .admin()
        .await
        .get_command(GetCommandRequest {
            command_id: command.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(shown.receipt.unwrap().verified);
}

/// A platform that counts what it was asked to do.
#[derive(Debug)]
struct CountingPlatform {
    locks: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Platform for CountingPlatform {
    async fn lock_screens(&self, _message: &str) -> Result<(), ActionError> {
        self.locks.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn unlock_screens(&self) -> Result<(), ActionError> {
        Err(ActionError::Unsupported("test platform".into()))
    }

    fn compliance(
        &self,
        _: &ward_agent::policy::AgentPolicy,
        _: &[&std::path::Path],
        _: bool,
    ) -> Vec<ComplianceCheck> {
        Vec::new()
    }

    fn inventory(&self, _: &[&std::path::Path]) -> Option<ward_proto::v1::Inventory> {
        None
    }
}

#[tokio::test]
async fn a_command_delivered_twice_runs_once() {
    let controller = TestController::start().await;
    let device = controller.enroll("gus@hospital.org").await;
    let command = issue(&controller, &device.device_id, lock(), "", "twice")
        .await
        .unwrap();

    let state_dir = tempfile::tempdir().unwrap();
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((std::slice::from_ref(&device.certificate_der), &device.key)),
    )
    .unwrap();
    let link = Arc::new(Link::new(vec![controller.url.clone()], tls));
    let locks = Arc::new(AtomicUsize::new(0));
    let make_executor = |key: ward_certs::PrivateKeyDer| Executor {
        ledger: Ledger::open(state_dir.path()).unwrap(),
        state_dir: state_dir.path().to_path_buf(),
        vault: Arc::new(ward_agent::vault_slot::VaultSlot::none()),
        platform: Arc::new(CountingPlatform {
            locks: locks.clone(),
        }),
        device_id: device.device_id.clone(),
        device_key: key.into(),
        link: link.clone(),
        full_erase_hook: None,
        device_key_store: ward_agent::device_key::DeviceKeyStore::Secret(
            ward_agent::secrets::SecretStore::new(
                ward_agent::secrets::SecretStoreKind::File,
                state_dir.path().join("device.key"),
                &device.device_id,
            ),
        ),
        retired: Arc::new(tokio::sync::Notify::new()),
        clock: ward_agent::clock::system(),
        wipe_lock: Arc::default(),
    };

    // Delivered once by check-in and once more as if by the stream, then again after a restart.
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let delivered = agent
        .check_in(CheckInRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pending_commands;
    assert_eq!(delivered.len(), 1);
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(
        make_executor(ward_certs::PrivateKeyDer::new(
            device.key.as_bytes().to_vec(),
        ))
        .serve(rx),
    );
    tx.send(Work::Command(delivered[0].clone())).await.unwrap();
    tx.send(Work::Command(delivered[0].clone())).await.unwrap();
    drop(tx);
    task.await.unwrap();
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(
        make_executor(ward_certs::PrivateKeyDer::new(
            device.key.as_bytes().to_vec(),
        ))
        .serve(rx),
    );
    tx.send(Work::Command(delivered[0].clone())).await.unwrap();
    drop(tx);
    task.await.unwrap();

    assert_eq!(locks.load(Ordering::SeqCst), 1);
    eventually("the lock to succeed", Duration::from_secs(10), || async {
        (state_of(&controller, &command.id).await == CommandState::Succeeded).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_oversized_or_garbled_failure_reason_is_cleaned_not_refused() {
    let controller = TestController::start().await;
    let device = controller.enroll("pam@hospital.org").await;
    let command = issue(&controller, &device.device_id, lock(), "", "long")
        .await
        .unwrap();
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    agent
        .acknowledge(AcknowledgeRequest {
            command_id: command.id.clone(),
        })
        .await
        .unwrap();
    let reason = format!("line one\nline two\u{1b}[31m{}", "é".repeat(3000));
    let state = agent
        .report_result(ReportResultRequest {
            command_id: command.id.clone(),
            succeeded: false,
            failure_reason: reason,
            receipt: None,
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, CommandState::Failed as i32);
    let shown = controller
        .admin()
        .await
        .get_command(GetCommandRequest {
            command_id: command.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(shown.failure_reason.starts_with("line one line two"));
    assert!(shown.failure_reason.len() <= 1000);
    assert!(!shown.failure_reason.chars().any(char::is_control));
}
