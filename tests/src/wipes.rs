//! In-process wipes for tests: issue one, and report it done with a receipt signed by a key.

use tonic::transport::Channel;
use ward_certs::receipt::WipeReceiptBody;
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::{
    Command, IssueCommandRequest, ReportResultRequest, WipeAction, WipeReceipt, WipeScope,
};

use crate::inprocess::{EnrolledDevice, TestController};

/// A messaging wipe's receipt body for `command_id`, as the agent makes it, completed now.
pub fn messaging_receipt(command_id: &str, device: &EnrolledDevice) -> WipeReceiptBody {
    WipeReceiptBody {
        command_id: command_id.into(),
        device_id: device.device_id.clone(),
        completed_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("now formats as RFC 3339"),
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

/// Issues a wipe of `scope` for `device` under idempotency key `key`.
pub async fn issue_wipe(
    controller: &TestController,
    device: &str,
    key: &str,
    scope: WipeScope,
) -> Command {
    controller
        .admin()
        .await
        .issue_command(IssueCommandRequest {
            device_id: device.into(),
            action: Some(Action::Wipe(WipeAction {
                scope: scope as i32,
            })),
            reason: "lost".into(),
            idempotency_key: key.into(),
            ttl_seconds: 0,
        })
        .await
        .expect("the wipe is issued")
        .into_inner()
}

/// Reports `command_id` done with `body` signed by `key`; the state the controller gave it.
pub async fn report_wiped(
    agent: &mut AgentServiceClient<Channel>,
    command_id: &str,
    body: &WipeReceiptBody,
    key: &ward_certs::PrivateKeyDer,
) -> i32 {
    let signed = body.sign(key).expect("the receipt is signed");
    agent
        .report_result(ReportResultRequest {
            command_id: command_id.into(),
            succeeded: true,
            receipt: Some(WipeReceipt {
                body: signed.body,
                signature: signed.signature,
            }),
            ..Default::default()
        })
        .await
        .expect("the result is taken")
        .into_inner()
        .state
}
