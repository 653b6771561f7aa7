//! `EnrollmentService.ReportOfflineWipe`: a device that can no longer authenticate (its
//! certificate expired or was revoked while it was offline) reports its offline-wipe receipt
//! without a certificate. Only a receipt signed by the key on record is taken; anything else
//! is refused with the reason and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use ward_certs::PrivateKeyDer;
use ward_certs::receipt::WipeReceiptBody;
use ward_controller::core::DeviceId;
use ward_controller::store::{AuditFilter, Store};
use ward_e2e::inprocess::TestController;
use ward_proto::v1::{ReportOfflineWipeRequest, RevokeDeviceRequest, WipeReceipt};

fn receipt(device_id: &str, command_id: &str, key: &PrivateKeyDer) -> WipeReceipt {
    let signed = WipeReceiptBody {
        command_id: command_id.into(),
        device_id: device_id.into(),
        completed_at: "2026-12-01T10:00:00Z".into(),
        scope: ward_certs::receipt::WipeScope::Messaging,
        key_destroyed: true,
        files_removed: 2,
        bytes_removed: 2048,
        verified_empty: true,
        full_erase: None,
        key_protection: None,
        sanitization: None,
    }
    .sign(key)
    .unwrap();
    WipeReceipt {
        body: signed.body,
        signature: signed.signature,
    }
}

async fn report(
    controller: &TestController,
    device_id: &str,
    receipt: Option<WipeReceipt>,
) -> Result<(), tonic::Status> {
    controller
        .enrollment()
        .await
        .report_offline_wipe(ReportOfflineWipeRequest {
            device_id: device_id.into(),
            receipt,
        })
        .await
        .map(|_| ())
}

async fn offline_wipe_audits(controller: &TestController) -> usize {
    controller
        .store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "device.offline_wipe")
        .count()
}

#[tokio::test]
async fn only_a_receipt_signed_by_the_devices_key_is_taken_without_a_certificate() {
    let controller = TestController::start().await;
    let device = controller.enroll("ora@hospital.org").await;
    let id: DeviceId = device.device_id.parse().unwrap();
    let stranger = PrivateKeyDer::generate().unwrap();

    let refusals = [
        (
            report(
                &controller,
                &device.device_id,
                Some(receipt(&device.device_id, "offline-timer", &stranger)),
            )
            .await,
            Code::PermissionDenied,
        ),
        (
            // A command's receipt is not an offline wipe.
            report(
                &controller,
                &device.device_id,
                Some(receipt(&device.device_id, "cmd-1", &device.key)),
            )
            .await,
            Code::PermissionDenied,
        ),
        (
            report(
                &controller,
                &uuid::Uuid::new_v4().to_string(),
                Some(receipt(&device.device_id, "offline-timer", &device.key)),
            )
            .await,
            Code::NotFound,
        ),
        (
            report(
                &controller,
                "not-a-device",
                Some(receipt(&device.device_id, "offline-timer", &device.key)),
            )
            .await,
            Code::InvalidArgument,
        ),
        (
            report(&controller, &device.device_id, None).await,
            Code::InvalidArgument,
        ),
    ];
    for (outcome, code) in refusals {
        let status = outcome.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
        assert!(!status.message().is_empty());
    }
    let stored = controller.store.get_device(id).await.unwrap().unwrap();
    assert!(
        stored.offline_wipe.is_none(),
        "a refused receipt changed the device"
    );
    assert_eq!(offline_wipe_audits(&controller).await, 0);

    // Revoked while offline: its receipt is kept as the device's claim (a revoked key is
    // presumed in other hands), once; it is not a wipe.
    controller
        .admin()
        .await
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let genuine = receipt(&device.device_id, "offline-timer", &device.key);
    report(&controller, &device.device_id, Some(genuine.clone()))
        .await
        .unwrap();
    report(&controller, &device.device_id, Some(genuine))
        .await
        .unwrap();
    let stored = controller.store.get_device(id).await.unwrap().unwrap();
    let wipe = stored.offline_wipe.unwrap();
    assert!(!wipe.verified, "a revoked key's receipt recorded as proof");
    assert_eq!(
        offline_wipe_audits(&controller).await,
        1,
        "the repeat is not a second claim"
    );
}

/// Attack by a thief holding a copy of the device key (`STATE/device.key`: a state-directory
/// copy, or the stolen laptop booted from a stick when the disk is not encrypted). The admin
/// revoked the device as lost; the laptop never came back, so nothing was wiped. The thief
/// signs an offline-timer receipt saying the data was wiped and sends it without a
/// certificate: the controller records a verified offline wipe, so `device show` tells the
/// hospital the data is gone. A key the admin revoked as lost is presumed in other hands: what
/// it signs afterwards may be recorded as the device's claim, not as proof of a wipe.
#[tokio::test]
async fn a_receipt_signed_with_the_key_of_a_device_revoked_as_lost_is_not_proof_of_a_wipe() {
    let controller = TestController::start().await;
    let device = controller.enroll("ivy@hospital.org").await;
    let id: DeviceId = device.device_id.parse().unwrap();
    controller
        .admin()
        .await
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();

    let forged = receipt(&device.device_id, "offline-timer", &device.key);
    let _ = report(&controller, &device.device_id, Some(forged)).await;
    let stored = controller.store.get_device(id).await.unwrap().unwrap();
    assert!(
        !stored.offline_wipe.is_some_and(|w| w.verified),
        "a receipt signed after the revocation by a key presumed stolen is recorded as a verified wipe"
    );
}
