//! A command's end and what follows it (the device revoked, retired, its disable undone)
//! commit in one writer job: all or nothing, one trip through the writer.

use std::sync::atomic::Ordering;

use super::test_fixture::{admin, email, fixture};
use super::{ActiveDevice, App, AppError, DeviceResult};
use crate::core::refs::DeviceRef;
use crate::core::{Command, CommandState, DeviceFacts, DeviceState};
use crate::store::{AuditFilter, MemoryStore, Store};

/// Jobs the writer ran to the end, committed or failed.
fn jobs(store: &MemoryStore) -> u64 {
    let stats = store.writer().stats();
    stats.jobs_committed.load(Ordering::Relaxed) + stats.jobs_failed.load(Ordering::Relaxed)
}

async fn audit_actions(store: &MemoryStore) -> Vec<String> {
    store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// Enrolls a device whose agent can be disabled and retired; the device and its key (to sign
/// wipe receipts).
async fn enroll_with_key(app: &App, user: &str) -> (ActiveDevice, ward_certs::PrivateKeyDer) {
    let token = app.create_token(&admin(), email(user), None).await.unwrap();
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let csr = ward_certs::csr::make_csr(&key, "laptop").unwrap();
    let facts = DeviceFacts {
        hostname: "laptop".into(),
        os_name: "Debian".into(),
        os_version: "12".into(),
        kernel_version: "6.1".into(),
        arch: "x86_64".into(),
        agent_version: "0.2.0".into(),
    };
    let enrolled = app
        .enroll(
            token.token,
            ward_certs::VerifiedCsr::from_der(&csr).unwrap(),
            facts,
            None,
        )
        .await
        .unwrap();
    let device = app
        .authenticate_device(Some(&enrolled.certificate.der))
        .await
        .unwrap();
    (device, key)
}

/// The device's verified receipt of a messaging wipe (a retirement's).
fn receipt(
    command: &Command,
    key: &ward_certs::PrivateKeyDer,
) -> ward_certs::receipt::SignedReceipt {
    ward_certs::receipt::WipeReceiptBody {
        command_id: command.id.to_string(),
        device_id: command.device_id.to_string(),
        completed_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        scope: crate::core::WipeScope::Messaging,
        key_destroyed: true,
        files_removed: 3,
        bytes_removed: 300,
        verified_empty: true,
        full_erase: None,
        key_protection: None,
        sanitization: None,
    }
    .sign(key)
    .unwrap()
}

#[tokio::test]
async fn an_offboarding_wipe_whose_revocation_fails_is_not_finished_either() {
    let f = fixture();
    let (device, _) = enroll_with_key(&f.app, "ann@hospital.example").await;
    f.app
        .offboard_user(&admin(), &email("ann@hospital.example"), "left")
        .await
        .unwrap();
    let [wipe] = f
        .store
        .list_commands(Some(device.id), None)
        .await
        .unwrap()
        .try_into()
        .unwrap();
    let before = audit_actions(&f.store).await;

    f.store.fail_next("revoke_device");
    let refused = f.app.cancel_command(&admin(), wipe.id).await;
    assert!(matches!(refused, Err(AppError::Internal(_))), "{refused:?}");
    assert_eq!(
        f.store.get_command(wipe.id).await.unwrap().unwrap().state,
        CommandState::Queued,
        "the wipe's end was stored without the revocation that follows it"
    );
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeviceState::Active);
    assert!(!f.app.revoked_serials().contains(&device.certificate_serial));
    assert_eq!(audit_actions(&f.store).await, before, "no audit entry");

    // Again, without the fault: the end and the revocation in one job, one entry each.
    let jobs_before = jobs(&f.store);
    let cancelled = f.app.cancel_command(&admin(), wipe.id).await.unwrap();
    assert_eq!(cancelled.state, CommandState::Cancelled);
    assert_eq!(jobs(&f.store) - jobs_before, 1, "one writer job");
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeviceState::Revoked);
    assert!(f.app.revoked_serials().contains(&device.certificate_serial));
    let after = audit_actions(&f.store).await;
    assert_eq!(
        after[before.len()..],
        ["command.cancelled", "device.revoke"]
    );
}

#[tokio::test]
async fn a_retirement_whose_follow_up_fails_is_not_finished_either() {
    let f = fixture();
    let (device, key) = enroll_with_key(&f.app, "bob@hospital.example").await;
    let (_, retire) = f
        .app
        .retire_device(&admin(), &DeviceRef::from(device.id), "returned")
        .await
        .unwrap();
    let [delivered] = f
        .app
        .deliver_unfinished(device.id, &std::collections::HashSet::new())
        .await
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(delivered.id, retire.id);
    assert!(
        f.app
            .acknowledge(device.id, retire.id)
            .await
            .unwrap()
            .proceed
    );
    let result = || DeviceResult {
        succeeded: true,
        failure_reason: String::new(),
        receipt: Some(receipt(&retire, &key)),
    };
    let before = audit_actions(&f.store).await;

    // The last part of the follow-up fails: the revocation before it is undone too, and the
    // command stays acknowledged.
    f.store.fail_next("set_device_posture");
    let refused = f.app.report_result(device.id, retire.id, result()).await;
    assert!(matches!(refused, Err(AppError::Internal(_))), "{refused:?}");
    assert_eq!(
        f.store.get_command(retire.id).await.unwrap().unwrap().state,
        CommandState::Acknowledged
    );
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeviceState::Active);
    assert!(!f.app.revoked_serials().contains(&device.certificate_serial));
    assert_eq!(audit_actions(&f.store).await, before, "no audit entry");

    let jobs_before = jobs(&f.store);
    let state = f
        .app
        .report_result(device.id, retire.id, result())
        .await
        .unwrap();
    assert_eq!(state, CommandState::Succeeded);
    assert_eq!(jobs(&f.store) - jobs_before, 1, "one writer job");
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert_eq!(stored.state, DeviceState::Retired);
    assert!(f.app.revoked_serials().contains(&device.certificate_serial));
    let after = audit_actions(&f.store).await;
    assert_eq!(
        after[before.len()..],
        ["command.succeeded", "device.revoke", "device.retired"]
    );
}

#[tokio::test]
async fn a_cancelled_disable_whose_undoing_fails_is_not_cancelled_either() {
    let f = fixture();
    let (device, _) = enroll_with_key(&f.app, "cat@hospital.example").await;
    let (disabled, disable) = f
        .app
        .disable_device(&admin(), &DeviceRef::from(device.id), "on leave")
        .await
        .unwrap();
    assert!(disabled.disabled.is_some());
    let before = audit_actions(&f.store).await;

    f.store.fail_next("swap_device_posture");
    let refused = f.app.cancel_command(&admin(), disable.id).await;
    assert!(matches!(refused, Err(AppError::Internal(_))), "{refused:?}");
    assert_eq!(
        f.store
            .get_command(disable.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        CommandState::Queued
    );
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert!(stored.disabled.is_some(), "the record was cleared");
    assert_eq!(audit_actions(&f.store).await, before, "no audit entry");

    let jobs_before = jobs(&f.store);
    let cancelled = f.app.cancel_command(&admin(), disable.id).await.unwrap();
    assert_eq!(cancelled.state, CommandState::Cancelled);
    assert_eq!(jobs(&f.store) - jobs_before, 1, "one writer job");
    let stored = f.store.get_device(device.id).await.unwrap().unwrap();
    assert!(stored.disabled.is_none());
    let after = audit_actions(&f.store).await;
    assert_eq!(
        after[before.len()..],
        ["command.cancelled", "device.disable_undone"]
    );
}
