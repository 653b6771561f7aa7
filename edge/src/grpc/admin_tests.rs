//! The admin API's order of work: who is calling is settled before anything the caller sent is
//! parsed, so a caller without a certificate learns nothing about what the call accepts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tonic::{Code, Request, Status};
use ward_proto::v1::admin_service_server::AdminService;
use ward_proto::v1::*;

use super::admin::AdminApi;
use ward_controller::app::{App, AppConfig};
use ward_controller::store::{MemoryStore, Store};
use ward_core::Timestamp;
use ward_core::clock::ManualClock;

fn api() -> AdminApi {
    let now = time::OffsetDateTime::now_utc();
    let app = App::new(
        Arc::new(MemoryStore::new()) as Arc<dyn Store>,
        Arc::new(ward_certs::CertificateAuthority::create("test", now).unwrap()),
        Arc::new(ManualClock::new(Timestamp::from_datetime(now))),
        AppConfig::with_public_url("https://127.0.0.1:7443".into()),
    );
    AdminApi::new(Arc::new(app))
}

/// A call without a client certificate (these requests carry none) is refused as
/// unauthenticated, whatever its arguments.
fn unauthenticated<T: std::fmt::Debug>(call: &str, result: Result<T, Status>) {
    let status = result.expect_err(call);
    assert_eq!(
        status.code(),
        Code::Unauthenticated,
        "{call}: {}",
        status.message()
    );
}

const NOT_AN_ID: &str = "not a device!";

#[tokio::test]
async fn malformed_arguments_from_an_unauthenticated_caller_are_not_parsed() {
    let api = api();

    unauthenticated(
        "issue_command without an action",
        api.issue_command(Request::new(IssueCommandRequest {
            device_id: NOT_AN_ID.into(),
            ..Default::default()
        }))
        .await,
    );
    unauthenticated(
        "issue_command with an unknown wipe scope",
        api.issue_command(Request::new(IssueCommandRequest {
            device_id: NOT_AN_ID.into(),
            action: Some(issue_command_request::Action::Wipe(WipeAction {
                scope: 99,
            })),
            ..Default::default()
        }))
        .await,
    );
    unauthenticated(
        "bulk_wipe selecting nothing",
        api.bulk_wipe(Request::new(BulkWipeRequest::default()))
            .await,
    );
    unauthenticated(
        "bulk_wipe with an unknown scope",
        api.bulk_wipe(Request::new(BulkWipeRequest {
            user: "not an e-mail".into(),
            scope: 99,
            ..Default::default()
        }))
        .await,
    );
    unauthenticated(
        "rotate_ca with an unknown step",
        api.rotate_ca(Request::new(RotateCaRequest {
            step: "sideways".into(),
            ..Default::default()
        }))
        .await,
    );
    unauthenticated(
        "get_device",
        api.get_device(Request::new(GetDeviceRequest {
            device_id: NOT_AN_ID.into(),
        }))
        .await,
    );
    unauthenticated(
        "list_devices",
        api.list_devices(Request::new(ListDevicesRequest {
            user: "not an e-mail".into(),
            failing_check: "x".into(),
            ..Default::default()
        }))
        .await,
    );
    unauthenticated(
        "list_commands",
        api.list_commands(Request::new(ListCommandsRequest {
            device_id: NOT_AN_ID.into(),
            state: 99,
            limit: u32::MAX,
        }))
        .await,
    );
    unauthenticated(
        "get_command",
        api.get_command(Request::new(GetCommandRequest {
            command_id: "nope".into(),
        }))
        .await,
    );
    unauthenticated(
        "attest_wipe",
        api.attest_wipe(Request::new(GetCommandRequest {
            command_id: "nope".into(),
        }))
        .await,
    );
    unauthenticated(
        "cancel_command",
        api.cancel_command(Request::new(CancelCommandRequest {
            command_id: "nope".into(),
        }))
        .await,
    );
    unauthenticated(
        "approve_command",
        api.approve_command(Request::new(ApproveCommandRequest {
            command_id: "nope".into(),
        }))
        .await,
    );
    unauthenticated(
        "create_enrollment_token",
        api.create_enrollment_token(Request::new(CreateEnrollmentTokenRequest {
            user: "not an e-mail".into(),
            ttl_seconds: 1,
        }))
        .await,
    );
    unauthenticated(
        "list_enrollment_tokens",
        api.list_enrollment_tokens(Request::new(ListEnrollmentTokensRequest {
            user: "not an e-mail".into(),
        }))
        .await,
    );
    unauthenticated(
        "revoke_enrollment_tokens naming neither",
        api.revoke_enrollment_tokens(Request::new(RevokeEnrollmentTokensRequest::default()))
            .await,
    );
    unauthenticated(
        "issue_admin",
        api.issue_admin(Request::new(IssueAdminRequest {
            name: "Not A Name!".into(),
            role: 99,
            csr_der: vec![1, 2, 3],
            lifetime_seconds: 1,
        }))
        .await,
    );
    unauthenticated(
        "renew_admin",
        api.renew_admin(Request::new(RenewAdminRequest {
            name: "Not A Name!".into(),
            csr_der: vec![1, 2, 3],
            lifetime_seconds: 1,
        }))
        .await,
    );
    unauthenticated(
        "revoke_admin",
        api.revoke_admin(Request::new(RevokeAdminRequest {
            name: "Not A Name!".into(),
            reason: String::new(),
        }))
        .await,
    );
    unauthenticated(
        "approve_admin",
        api.approve_admin(Request::new(ApproveAdminRequest {
            name: "Not A Name!".into(),
        }))
        .await,
    );
    unauthenticated(
        "get_policy",
        api.get_policy(Request::new(GetPolicyRequest {
            user: "not an e-mail".into(),
        }))
        .await,
    );
    unauthenticated(
        "set_policy",
        api.set_policy(Request::new(SetPolicyRequest {
            user: "not an e-mail".into(),
            ..Default::default()
        }))
        .await,
    );
    unauthenticated(
        "reset_policy",
        api.reset_policy(Request::new(GetPolicyRequest {
            user: "not an e-mail".into(),
        }))
        .await,
    );
    unauthenticated(
        "revoke_device",
        api.revoke_device(Request::new(RevokeDeviceRequest {
            device_id: NOT_AN_ID.into(),
            reason: String::new(),
        }))
        .await,
    );
    unauthenticated(
        "return_device",
        api.return_device(Request::new(ReturnDeviceRequest {
            device_id: NOT_AN_ID.into(),
            reason: String::new(),
        }))
        .await,
    );
    unauthenticated(
        "mark_lost",
        api.mark_lost(Request::new(MarkLostRequest {
            device_id: NOT_AN_ID.into(),
            reason: String::new(),
        }))
        .await,
    );
    unauthenticated(
        "disable_device",
        api.disable_device(Request::new(DisableDeviceRequest {
            device_id: NOT_AN_ID.into(),
            reason: String::new(),
        }))
        .await,
    );
    unauthenticated(
        "enable_device",
        api.enable_device(Request::new(EnableDeviceRequest {
            device_id: NOT_AN_ID.into(),
            reason: String::new(),
        }))
        .await,
    );
    unauthenticated(
        "retire_device",
        api.retire_device(Request::new(RetireDeviceRequest {
            device_id: NOT_AN_ID.into(),
            reason: String::new(),
        }))
        .await,
    );
    unauthenticated(
        "list_audit",
        api.list_audit(Request::new(ListAuditRequest {
            device: NOT_AN_ID.into(),
            limit: u32::MAX,
            ..Default::default()
        }))
        .await,
    );
    unauthenticated(
        "verify_audit",
        api.verify_audit(Request::new(VerifyAuditRequest {
            checkpoints: vec!["not a checkpoint".into(); 10_000],
        }))
        .await,
    );
    unauthenticated(
        "offboard_user",
        api.offboard_user(Request::new(OffboardUserRequest {
            user: "not an e-mail".into(),
            reason: String::new(),
        }))
        .await,
    );
    unauthenticated(
        "get_offboard_report",
        api.get_offboard_report(Request::new(GetOffboardReportRequest {
            user: "not an e-mail".into(),
        }))
        .await,
    );
    unauthenticated(
        "get_bulk_wipe",
        api.get_bulk_wipe(Request::new(GetBulkWipeRequest {
            batch: "no colon".into(),
        }))
        .await,
    );
    unauthenticated(
        "approve_bulk_wipe",
        api.approve_bulk_wipe(Request::new(GetBulkWipeRequest {
            batch: "no colon".into(),
        }))
        .await,
    );
    unauthenticated(
        "add_webhook",
        api.add_webhook(Request::new(AddWebhookRequest {
            url: "not a url".into(),
            ..Default::default()
        }))
        .await,
    );
    unauthenticated(
        "remove_webhook",
        api.remove_webhook(Request::new(RemoveWebhookRequest { id: "nope".into() }))
            .await,
    );
    unauthenticated(
        "list_webhook_deliveries",
        api.list_webhook_deliveries(Request::new(ListWebhookDeliveriesRequest {
            webhook_id: "nope".into(),
            limit: u32::MAX,
        }))
        .await,
    );
    unauthenticated(
        "create_scim_token",
        api.create_scim_token(Request::new(CreateScimTokenRequest {
            name: "Not A Name!".into(),
        }))
        .await,
    );
    unauthenticated(
        "revoke_scim_token",
        api.revoke_scim_token(Request::new(RevokeScimTokenRequest {
            name: "Not A Name!".into(),
        }))
        .await,
    );
}
