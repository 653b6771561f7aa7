//! The audit chain at fleet scale: after an offboarding of 10,000 devices (one writer job,
//! one audit entry per command, the head signed once) `audit verify` passes, and an entry
//! edited in the middle of that batch is found — at its own sequence number.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use ward_e2e::inprocess::TestController;
use ward_e2e::seed::seed_devices;
use ward_proto::v1::*;

async fn offboard_then_tamper(devices: usize) {
    let controller = TestController::start().await;
    let user = "hal@hospital.org";
    let started = Instant::now();
    seed_devices(Arc::new(controller.store.clone()), user, "hal", devices).await;
    let seeded = started.elapsed();
    let mut admin = controller
        .admin()
        .await
        .max_decoding_message_size(64 * 1024 * 1024);
    let report = admin
        .offboard_user(OffboardUserRequest {
            user: user.into(),
            reason: "department closed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.devices.len(), devices);
    let offboarded = started.elapsed();

    let verify = |mut admin: ward_proto::v1::admin_service_client::AdminServiceClient<_>| async move {
        admin
            .verify_audit(VerifyAuditRequest::default())
            .await
            .unwrap()
            .into_inner()
    };
    let v = verify(admin.clone()).await;
    assert!(v.ok, "{v:?}");
    assert!(v.entries > devices as u64, "{v:?}");

    // The offboarding's entry, then one entry per command, in a row.
    let offboard = admin
        .list_audit(ListAuditRequest {
            target: user.into(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .find(|e| e.action == "user.offboard")
        .expect("the offboarding is audited");
    let batch = admin
        .list_audit(ListAuditRequest {
            after_seq: offboard.seq,
            limit: u32::try_from(devices).unwrap(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(batch.len(), devices);
    assert!(
        batch.iter().all(|e| e.action == "command.issue"),
        "the batch's entries are contiguous: nothing of another job in between"
    );

    // Someone with the database file edits one entry in the middle of the batch.
    let middle = offboard.seq + devices as u64 / 2;
    let url = format!("sqlite://{}", controller.data.database().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let edited = sqlx::query(
        "UPDATE audit_log SET details = replace(details, 'department closed', 'routine') WHERE seq = ?",
    )
    .bind(middle as i64)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(edited.rows_affected(), 1);
    pool.close().await;

    let v = verify(admin).await;
    assert!(!v.ok, "an edited entry must be found: {v:?}");
    assert_eq!(v.first_bad_seq, middle, "{v:?}");
    eprintln!(
        "{devices} devices: seeded in {seeded:?}, offboarded by {offboarded:?}, verified twice by {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_after_a_10000_device_offboarding_and_finds_an_edit_in_its_middle() {
    offboard_then_tamper(10_000).await;
}

/// The largest bulk wipe one call takes, named device by device (as `--stdin` sends them):
/// one commit, one entry per command, a chain that verifies; one device more is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_wipe_of_10000_named_devices_commits_at_once_and_the_chain_verifies() {
    let controller = TestController::start().await;
    let ids = seed_devices(
        Arc::new(controller.store.clone()),
        "ida@hospital.org",
        "ida",
        10_000,
    )
    .await;
    let mut admin = controller
        .admin()
        .await
        .max_decoding_message_size(64 * 1024 * 1024);
    let request = |devices: Vec<String>| BulkWipeRequest {
        devices,
        scope: WipeScope::Messaging as i32,
        reason: "ransomware".into(),
        idempotency_key: "all".into(),
        ..BulkWipeRequest::default()
    };
    let mut named: Vec<String> = ids.iter().map(ToString::to_string).collect();
    named.push(ward_controller::core::DeviceId::new_random().to_string());
    let err = admin.bulk_wipe(request(named.clone())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    named.pop();
    let started = Instant::now();
    let report = admin.bulk_wipe(request(named)).await.unwrap().into_inner();
    assert_eq!(report.issued, 10_000);
    eprintln!("10,000 wipes committed in {:?}", started.elapsed());
    let summary = admin
        .list_audit(ListAuditRequest {
            target: "admin:all".into(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(summary.len(), 1, "{summary:?}");
    let batch = admin
        .list_audit(ListAuditRequest {
            after_seq: summary[0].seq,
            limit: 10_000,
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(batch.len(), 10_000);
    assert!(
        batch.iter().all(|e| e.action == "command.issue"),
        "the batch's entries follow its summary, in a row"
    );
    let v = admin
        .verify_audit(VerifyAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "{v:?}");
}
