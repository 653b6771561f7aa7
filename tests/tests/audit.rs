//! The audit log: what is recorded, and that `audit verify` catches edits, deletions,
//! reordering and truncation made directly in the database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::inprocess::TestController;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::*;

/// A controller with some history: enrollment, a denied call, a command, a revocation.
async fn with_history() -> TestController {
    let controller = TestController::start().await;
    let device = controller.enroll("olga@hospital.org").await;
    let mut helpdesk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    let denied = helpdesk
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Wipe(WipeAction {
                scope: WipeScope::Messaging as i32,
            })),
            reason: "x".into(),
            idempotency_key: "k".into(),
        })
        .await;
    assert!(denied.is_err());
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let lock = controller
        .admin()
        .await
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Lock(LockAction::default())),
            reason: String::new(),
            idempotency_key: "lock-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    agent
        .acknowledge(AcknowledgeRequest {
            command_id: lock.id.clone(),
        })
        .await
        .unwrap();
    controller
        .admin()
        .await
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id,
        })
        .await
        .unwrap();
    controller
}

async fn verify(controller: &TestController) -> VerifyAuditResponse {
    controller
        .admin()
        .await
        .verify_audit(VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Runs `sql` (with `arg` bound to its `?`, if any) directly on the controller's SQLite file,
/// as someone with access to the disk would.
async fn raw(controller: &TestController, sql: &str) {
    raw_with(controller, sql, None).await;
}

async fn raw_with(controller: &TestController, sql: &str, arg: Option<i64>) {
    let url = format!("sqlite://{}", controller.data.database().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut query = sqlx::query(sql);
    if let Some(arg) = arg {
        query = query.bind(arg);
    }
    query.execute(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn admin_calls_denials_enrollment_transitions_and_revocation_are_recorded() {
    let controller = with_history().await;
    let entries = controller
        .admin()
        .await
        .list_audit(ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "admin.issue",
        "token.create",
        "device.enroll",
        "denied",
        "command.issue",
        "command.acknowledged",
        "device.revoke",
        "read",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=entries.len() as u64).collect::<Vec<_>>());
    let denied = entries.iter().find(|e| e.action == "denied").unwrap();
    assert_eq!(denied.actor, "ward://admin/desk");
    let v = verify(&controller).await;
    assert!(v.ok, "{v:?}");
}

#[tokio::test]
async fn an_edited_entry_is_found() {
    let controller = with_history().await;
    raw(
        &controller,
        "UPDATE audit_log SET actor = 'ward://admin/someone-else' WHERE seq = 3",
    )
    .await;
    let v = verify(&controller).await;
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, 3);
}

#[tokio::test]
async fn a_deleted_entry_is_found() {
    let controller = with_history().await;
    raw(&controller, "DELETE FROM audit_log WHERE seq = 4").await;
    let v = verify(&controller).await;
    assert_eq!((v.ok, v.first_bad_seq), (false, 4));
}

#[tokio::test]
async fn truncation_is_found_through_the_signed_head() {
    let controller = with_history().await;
    let n = controller
        .admin()
        .await
        .list_audit(ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .len() as u64;
    raw_with(
        &controller,
        "DELETE FROM audit_log WHERE seq > ?",
        Some(n as i64 - 2),
    )
    .await;
    let v = verify(&controller).await;
    assert!(!v.ok);
    // Later entries (the verify call is recorded too) continue from the signed head, so the
    // gap stays visible: the first missing entry is n - 1.
    assert_eq!(v.first_bad_seq, n - 1, "{v:?}");
}

#[tokio::test]
async fn a_rewritten_head_is_found() {
    let controller = with_history().await;
    // Cut the tail and move the head back without the controller's key: the signature fails.
    raw(&controller, "DELETE FROM audit_log WHERE seq > 2").await;
    raw(
        &controller,
        "UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit_log WHERE seq = 2)",
    )
    .await;
    let v = verify(&controller).await;
    assert!(!v.ok, "{v:?}");
}

#[tokio::test]
async fn a_device_certificate_on_the_admin_api_is_refused_and_audited() {
    let controller = TestController::start().await;
    let device = controller.enroll("knock@hospital.org").await;
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((std::slice::from_ref(&device.certificate_der), &device.key)),
    )
    .unwrap();
    let mut admin_api =
        admin_service_client::AdminServiceClient::new(controller.channel(tls).await.unwrap());
    let err = admin_api
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Wipe(WipeAction {
                scope: WipeScope::Messaging as i32,
            })),
            reason: "a device trying to be an admin".into(),
            idempotency_key: "knock-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let entries = controller
        .admin()
        .await
        .list_audit(ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let refusal = entries
        .iter()
        .find(|e| e.action == "denied" && e.target == "admin API")
        .expect("the refusal is in the audit log");
    assert_eq!(refusal.actor, format!("ward://device/{}", device.device_id));
    assert!(refusal.details_json.contains("not an admin identity"));
    let v = verify(&controller).await;
    assert!(v.ok, "{v:?}");
}
