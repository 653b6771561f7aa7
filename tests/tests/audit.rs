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
            ttl_seconds: 0,
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
            ttl_seconds: 0,
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
            reason: "test".into(),
        })
        .await
        .unwrap();
    controller
}

async fn verify(controller: &TestController) -> VerifyAuditResponse {
    controller
        .admin()
        .await
        .verify_audit(VerifyAuditRequest::default())
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
    // A read is recorded once it is answered: the first listing is in the second.
    controller
        .admin()
        .await
        .list_audit(ListAuditRequest::default())
        .await
        .unwrap();
    let entries = entries(&controller).await;
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "audit.genesis",
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
    let n = entries(&controller).await.len() as u64;
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
            ttl_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    let entries = entries(&controller).await;
    let refusal = entries
        .iter()
        .find(|e| e.action == "denied" && e.target == device.device_id)
        .expect("the refusal is in the audit log, with the call's target");
    assert_eq!(refusal.actor, format!("ward://device/{}", device.device_id));
    assert!(refusal.details_json.contains("not an admin identity"));
    let v = verify(&controller).await;
    assert!(v.ok, "{v:?}");
}

async fn entries(controller: &TestController) -> Vec<AuditEntry> {
    controller
        .admin()
        .await
        .list_audit(ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
}

#[tokio::test]
async fn an_emptied_log_with_a_reset_head_fails_verification() {
    let controller = with_history().await;
    // What someone with write access to the database file can do without the controller's key.
    raw(&controller, "DELETE FROM audit_log").await;
    raw(
        &controller,
        "UPDATE audit_head SET seq = 0, hash = '', signature = x''",
    )
    .await;
    let v = verify(&controller).await;
    assert!(!v.ok, "an emptied log passed verification: {v:?}");
    assert_eq!(v.first_bad_seq, 1, "{v:?}");
}

#[tokio::test]
async fn reads_record_what_was_read() {
    let controller = TestController::start().await;
    let device = controller.enroll("rhea@hospital.org").await;
    let mut admin = controller.admin().await;
    admin
        .get_device(GetDeviceRequest {
            device_id: device.device_id.clone(),
        })
        .await
        .unwrap();
    let lock = admin
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Lock(LockAction::default())),
            reason: String::new(),
            idempotency_key: "read-lock".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    admin
        .get_command(GetCommandRequest {
            command_id: lock.id.clone(),
        })
        .await
        .unwrap();
    admin
        .list_devices(ListDevicesRequest {
            user: "rhea@hospital.org".into(),
            ..ListDevicesRequest::default()
        })
        .await
        .unwrap();
    let reads: Vec<AuditEntry> = entries(&controller)
        .await
        .into_iter()
        .filter(|e| e.action == "read")
        .collect();
    let call = |e: &AuditEntry| {
        serde_json::from_str::<serde_json::Value>(&e.details_json).unwrap()["call"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let get_device = reads.iter().find(|e| call(e) == "get_device").unwrap();
    assert_eq!(get_device.target, device.device_id, "{get_device:?}");
    let get_command = reads.iter().find(|e| call(e) == "get_command").unwrap();
    assert_eq!(get_command.target, lock.id, "{get_command:?}");
    let details: serde_json::Value = serde_json::from_str(&get_command.details_json).unwrap();
    assert_eq!(details["device"], device.device_id.as_str());
    let listed = reads.iter().find(|e| call(e) == "list_devices").unwrap();
    assert_eq!(listed.target, "rhea@hospital.org", "{listed:?}");
    for read in &reads {
        assert!(!read.target.is_empty(), "a read with no target: {read:?}");
    }
}

#[tokio::test]
async fn denials_record_their_target() {
    let controller = TestController::start().await;
    let device = controller.enroll("tara@hospital.org").await;
    let mut helpdesk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    helpdesk
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Wipe(WipeAction {
                scope: WipeScope::Messaging as i32,
            })),
            reason: "x".into(),
            idempotency_key: "deny-1".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap_err();
    helpdesk
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap_err();
    let denials: Vec<AuditEntry> = entries(&controller)
        .await
        .into_iter()
        .filter(|e| e.action == "denied")
        .collect();
    assert_eq!(denials.len(), 2, "{denials:?}");
    for denial in &denials {
        assert_eq!(denial.target, device.device_id, "{denial:?}");
        let details: serde_json::Value = serde_json::from_str(&denial.details_json).unwrap();
        assert!(details["permission"].is_string(), "{denial:?}");
    }
}

#[tokio::test]
async fn failed_enrollments_are_audited_with_a_token_hash_prefix_never_the_token() {
    let controller = TestController::start().await;
    // Reused: a second device presents a token that already enrolled one (a leaked token).
    let used = controller.create_token("uma@hospital.org", 0).await;
    controller.try_enroll(&used).await.unwrap();
    controller.try_enroll(&used).await.unwrap_err();
    // Unknown: well-formed, never issued.
    let unknown = controller.create_token("vic@hospital.org", 0).await;
    // A character in the middle: the last one of the encoding carries padding bits, and
    // changing it can make the token malformed rather than unknown.
    let mut other = unknown.clone().into_bytes();
    let middle = other.len() / 2;
    other[middle] = if other[middle] == b'A' { b'B' } else { b'A' };
    let other = String::from_utf8(other).unwrap();
    controller.try_enroll(&other).await.unwrap_err();
    // Withdrawn: the user was offboarded before the token was used.
    let withdrawn = controller.create_token("wes@hospital.org", 0).await;
    controller
        .admin()
        .await
        .offboard_user(OffboardUserRequest {
            user: "wes@hospital.org".into(),
            reason: "left".into(),
        })
        .await
        .unwrap();
    controller.try_enroll(&withdrawn).await.unwrap_err();

    let all = entries(&controller).await;
    let refused: Vec<&AuditEntry> = all
        .iter()
        .filter(|e| e.action == "enroll.refused")
        .collect();
    assert_eq!(refused.len(), 3, "{all:?}");
    let why = |e: &AuditEntry| {
        serde_json::from_str::<serde_json::Value>(&e.details_json).unwrap()["why"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let whys: Vec<String> = refused.iter().map(|e| why(e)).collect();
    assert!(whys.contains(&"already used".to_owned()), "{whys:?}");
    assert!(whys.contains(&"unknown".to_owned()), "{whys:?}");
    assert!(
        whys.contains(&"withdrawn (its user was offboarded, or an admin withdrew it)".to_owned()),
        "{whys:?}"
    );
    let reused = refused.iter().find(|e| why(e) == "already used").unwrap();
    assert_eq!(reused.target, "uma@hospital.org");
    let details: serde_json::Value = serde_json::from_str(&reused.details_json).unwrap();
    assert_eq!(details["token_hash_prefix"].as_str().unwrap().len(), 12);
    for token in [&used, &other, &withdrawn] {
        for e in &all {
            assert!(
                !e.details_json.contains(token.as_str()) && !e.target.contains(token.as_str()),
                "a token is in the audit log: {e:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_flood_of_refusals_writes_a_bounded_number_of_entries_and_a_summary() {
    let controller = TestController::start().await;
    let device = controller.enroll("xia@hospital.org").await;
    let mut helpdesk = controller
        .admin_with_role("flood", AdminRole::Helpdesk)
        .await;
    let full_wipe = |i: u32| IssueCommandRequest {
        device_id: device.device_id.clone(),
        action: Some(Action::Wipe(WipeAction {
            scope: WipeScope::Full as i32,
        })),
        reason: "flood".into(),
        idempotency_key: format!("flood-{i}"),
        ttl_seconds: 0,
    };
    for i in 0..200 {
        let err = helpdesk.issue_command(full_wipe(i)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
    }
    let denied = |all: &[AuditEntry]| {
        all.iter()
            .filter(|e| e.action == "denied" && e.actor == "ward://admin/flood")
            .count()
    };
    let first = entries(&controller).await;
    assert!(
        denied(&first) <= 10,
        "{} denial entries for 200 refusals",
        denied(&first)
    );
    // A minute later the next refusal is recorded, with one summary of what was suppressed.
    controller.clock.advance(std::time::Duration::from_secs(61));
    let err = helpdesk.issue_command(full_wipe(1000)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let later = entries(&controller).await;
    let summary = later
        .iter()
        .find(|e| e.action == "denied.suppressed" && e.actor == "ward://admin/flood")
        .expect("a summary of the suppressed refusals");
    let details: serde_json::Value = serde_json::from_str(&summary.details_json).unwrap();
    assert_eq!(
        details["suppressed"].as_u64().unwrap() + denied(&first) as u64,
        200,
        "{summary:?}"
    );
    assert_eq!(denied(&later), denied(&first) + 1);
    assert!(verify(&controller).await.ok);
}
