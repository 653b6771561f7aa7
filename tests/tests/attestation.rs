//! The controller's attestation of a wipe (`AttestWipe`, signed with the Ward CA's key) says
//! only what it can show: someone holding the database who copies a genuine receipt onto
//! another command, and marks that command done, gets no attestation for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tonic::Code;
use ward_controller::core::{CommandId, CommandState as Stored};
use ward_controller::store::{Priority, Store, StoreError};
use ward_e2e::inprocess::TestController;
use ward_e2e::wipes::{issue_wipe, messaging_receipt, report_wiped};
use ward_proto::v1::*;

async fn attest(controller: &TestController, id: &str) -> Result<WipeAttestation, tonic::Status> {
    controller
        .admin()
        .await
        .attest_wipe(GetCommandRequest {
            command_id: id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_receipt_copied_onto_another_command_in_the_database_is_not_attested() {
    let controller = TestController::start().await;
    let device = controller.enroll("zoe@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();

    // A genuine messaging wipe, run and reported with its receipt.
    let done = issue_wipe(&controller, &device.device_id, "w-1", WipeScope::Messaging).await;
    agent
        .acknowledge(AcknowledgeRequest {
            command_id: done.id.clone(),
        })
        .await
        .unwrap();
    let body = messaging_receipt(&done.id, &device);
    let state = report_wiped(&mut agent, &done.id, &body, &device.key).await;
    assert_eq!(state, CommandState::Succeeded as i32);
    attest(&controller, &done.id).await.unwrap();

    // A full wipe that never ran. Someone holding the database copies the genuine receipt
    // onto it, marked verified, and the command as succeeded.
    let never = issue_wipe(&controller, &device.device_id, "w-2", WipeScope::Full).await;
    let store: Arc<dyn Store> = Arc::new(controller.store.clone());
    let donor = store
        .get_command(done.id.parse::<CommandId>().unwrap())
        .await
        .unwrap()
        .unwrap();
    let stored = store
        .get_command(never.id.parse::<CommandId>().unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut forged = stored.clone();
    forged.state = Stored::Succeeded;
    forged.receipt = donor.receipt.clone();
    forged.finished_at = donor.finished_at;
    let was = stored.version();
    let written = store
        .write(Priority::High, move |tx| {
            let forged = forged.clone();
            Box::pin(async move { tx.update_commands(&[(was, forged)]).await })
        })
        .await
        .map_err(|e: StoreError| e)
        .unwrap();
    assert_eq!(written.len(), 1);
    assert!(
        controller
            .admin()
            .await
            .get_command(GetCommandRequest {
                command_id: never.id.clone()
            })
            .await
            .unwrap()
            .into_inner()
            .receipt
            .unwrap()
            .verified,
        "the database says the forged command's receipt verified"
    );

    let refused = attest(&controller, &never.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("does not verify as this command's"),
        "{}",
        refused.message()
    );
}
