//! Renewal that does not fork a device's identity: the previous certificate is revoked once
//! the renewed one is in use, a receipt signed with the key of the time still verifies, and a
//! second party renewing the same device is refused, audited and shown to the admin.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::transport::Channel;
use ward_agent::secrets::SecretStore;
use ward_certs::PrivateKeyDer;
use ward_certs::receipt::WipeReceiptBody;
use ward_controller::store::Store;
use ward_e2e::inprocess::{EnrolledDevice, TestController};
use ward_e2e::wipes::{self, messaging_receipt};
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::*;

/// Renews over `agent` with a new key: the renewed certificate and its key.
async fn renew(agent: &mut AgentServiceClient<Channel>) -> (Vec<u8>, PrivateKeyDer) {
    let key = PrivateKeyDer::generate().unwrap();
    let certificate = renew_with(agent, &key).await.unwrap();
    (certificate, key)
}

async fn renew_with(
    agent: &mut AgentServiceClient<Channel>,
    key: &PrivateKeyDer,
) -> Result<Vec<u8>, tonic::Status> {
    let csr = ward_certs::csr::make_csr(key, "renewing").unwrap();
    Ok(agent
        .renew(RenewRequest { csr_der: csr })
        .await?
        .into_inner()
        .certificate_der)
}

/// Whether a fresh connection with `cert` is refused (at the handshake, or at its first call).
async fn refused(controller: &TestController, cert: &[u8], key: &PrivateKeyDer) -> bool {
    match controller.agent_with(cert, key).await {
        Err(_) => true,
        Ok(mut agent) => agent.check_in(CheckInRequest::default()).await.is_err(),
    }
}

async fn audit_actions(controller: &TestController, device: &str) -> Vec<AuditEntry> {
    controller
        .admin()
        .await
        .list_audit(ListAuditRequest {
            target: device.into(),
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

async fn shown(controller: &TestController, device: &str) -> Device {
    controller
        .admin()
        .await
        .get_device(GetDeviceRequest {
            device_id: device.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The serial as the controller records it (lower-case hex).
fn serial(controller: &TestController, cert: &[u8]) -> String {
    ward_certs::validate::validate_client_certificate(
        cert,
        controller.ca.cert_der(),
        time::OffsetDateTime::now_utc(),
        std::time::Duration::ZERO,
    )
    .unwrap()
    .serial
}

#[tokio::test]
async fn the_previous_certificate_is_revoked_once_the_renewed_one_is_in_use() {
    let controller = TestController::start().await;
    let device = controller.enroll("ann@hospital.org").await;
    let mut old = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    old.check_in(CheckInRequest::default()).await.unwrap();
    controller.clock.advance(std::time::Duration::from_secs(60));
    let (new_cert, new_key) = renew(&mut old).await;

    // Until the renewed certificate is used, the old one still works: an answer lost on the
    // way must not lock the device out.
    assert!(!refused(&controller, &device.certificate_der, &device.key).await);

    let mut new = controller.agent_with(&new_cert, &new_key).await.unwrap();
    new.check_in(CheckInRequest::default()).await.unwrap();
    assert_eq!(
        shown(&controller, &device.device_id)
            .await
            .certificate_serial,
        serial(&controller, &new_cert)
    );

    // From the first call with the new certificate on, the old one is refused at the
    // handshake (or, on a connection made before, at the call).
    assert!(refused(&controller, &device.certificate_der, &device.key).await);
    let listed = controller
        .store
        .revoked_serials(ward_controller::core::Timestamp::from_unix_ms(0))
        .await
        .unwrap();
    assert!(
        listed.contains(&serial(&controller, &device.certificate_der)),
        "{listed:?}"
    );
    // The key history keeps both: the first replaced, the renewed one in use.
    let keys = shown(&controller, &device.device_id).await.keys;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(
        keys[0].certificate_serial,
        serial(&controller, &device.certificate_der)
    );
    assert!(keys[0].replaced_at_unix_ms > 0 && keys[1].in_use_at_unix_ms > 0);
    assert_eq!(keys[1].replaced_at_unix_ms, 0);
    // The renewed device keeps working, and nothing was reported as a conflict.
    new.check_in(CheckInRequest::default()).await.unwrap();
    let actions: Vec<String> = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"device.certificate_in_use".to_owned()),
        "{actions:?}"
    );
    assert!(
        !actions.contains(&"device.renewal_conflict".to_owned()),
        "{actions:?}"
    );
}

fn receipt(command_id: &str, device: &EnrolledDevice) -> WipeReceiptBody {
    messaging_receipt(command_id, device)
}

async fn issue_wipe(controller: &TestController, device: &str, key: &str) -> Command {
    wipes::issue_wipe(controller, device, key, WipeScope::Messaging).await
}

async fn command(controller: &TestController, id: &str) -> Command {
    controller
        .admin()
        .await
        .get_command(GetCommandRequest {
            command_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_receipt_signed_before_a_renewal_and_reported_after_it_is_a_verified_wipe() {
    let controller = TestController::start().await;
    let device = controller.enroll("bea@hospital.org").await;
    let wipe = issue_wipe(&controller, &device.device_id, "w-before").await;
    let mut old = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    assert!(
        old.acknowledge(AcknowledgeRequest {
            command_id: wipe.id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .proceed
    );
    // The wipe ran and its receipt was signed with the key of the time; then the device
    // renewed before it could report.
    let signed = receipt(&wipe.id, &device).sign(&device.key).unwrap();
    controller.clock.advance(std::time::Duration::from_secs(60));
    let (new_cert, new_key) = renew(&mut old).await;
    controller.clock.advance(std::time::Duration::from_secs(60));
    let mut new = controller.agent_with(&new_cert, &new_key).await.unwrap();
    new.check_in(CheckInRequest::default()).await.unwrap();
    controller.clock.advance(std::time::Duration::from_secs(60));
    let state = new
        .report_result(ReportResultRequest {
            command_id: wipe.id.clone(),
            succeeded: true,
            receipt: Some(WipeReceipt {
                body: signed.body,
                signature: signed.signature,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    let shown = command(&controller, &wipe.id).await;
    assert_eq!(
        state,
        CommandState::Succeeded as i32,
        "{:?}",
        shown.failure_reason
    );
    assert!(shown.receipt.unwrap().verified);

    // The replaced key cannot vouch for a wipe issued after it was replaced: whoever kept a
    // copy of it cannot make the device look wiped.
    let later = issue_wipe(&controller, &device.device_id, "w-after").await;
    new.acknowledge(AcknowledgeRequest {
        command_id: later.id.clone(),
    })
    .await
    .unwrap();
    let forged = receipt(&later.id, &device).sign(&device.key).unwrap();
    let state = new
        .report_result(ReportResultRequest {
            command_id: later.id.clone(),
            succeeded: true,
            receipt: Some(WipeReceipt {
                body: forged.body,
                signature: forged.signature,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, CommandState::Failed as i32);
    let shown = command(&controller, &later.id).await;
    assert!(!shown.receipt.unwrap().verified);
}

#[tokio::test]
async fn a_renewal_with_a_superseded_certificate_is_refused_audited_and_flagged() {
    let controller = TestController::start().await;
    let device = controller.enroll("cal@hospital.org").await;
    // A thief copied the key and certificate and holds a connection with them.
    let mut thief = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    thief.check_in(CheckInRequest::default()).await.unwrap();

    // The real device renews and uses its new certificate.
    let mut real = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let (new_cert, new_key) = renew(&mut real).await;
    let mut real = controller.agent_with(&new_cert, &new_key).await.unwrap();
    real.check_in(CheckInRequest::default()).await.unwrap();

    // The thief's renewal with the superseded certificate is refused...
    let err = renew_with(&mut thief, &PrivateKeyDer::generate().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
        ),
        "{err:?}"
    );
    // ...audited as a suspected clone, and shown on the device.
    let conflicts: Vec<AuditEntry> = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .filter(|e| e.action == "device.renewal_conflict")
        .collect();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert!(
        conflicts[0]
            .details_json
            .contains(&serial(&controller, &device.certificate_der)),
        "{}",
        conflicts[0].details_json
    );
    let flagged = shown(&controller, &device.device_id).await;
    let conflict = flagged.renewal_conflict.expect("the device is flagged");
    assert!(conflict.at_unix_ms > 0);
    assert!(conflict.detail.contains("clone"), "{}", conflict.detail);
    // The real device is not punished for it: it stays active and keeps working.
    assert_eq!(flagged.state, DeviceState::Active as i32);
    real.check_in(CheckInRequest::default()).await.unwrap();
    // And the copied pair no longer gets in at all.
    assert!(refused(&controller, &device.certificate_der, &device.key).await);
}

#[tokio::test]
async fn two_parties_renewing_from_one_certificate_are_detected_and_only_one_keeps_the_identity() {
    let controller = TestController::start().await;
    let device = controller.enroll("dee@hospital.org").await;
    let mut thief = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let (thief_cert, thief_key) = renew(&mut thief).await;
    let mut real = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let (real_cert, real_key) = renew(&mut real).await;

    // The real device uses its certificate first: the other renewal is revoked unused and
    // the fork is reported.
    let mut real = controller.agent_with(&real_cert, &real_key).await.unwrap();
    real.check_in(CheckInRequest::default()).await.unwrap();
    assert!(refused(&controller, &thief_cert, &thief_key).await);
    assert!(refused(&controller, &device.certificate_der, &device.key).await);
    let actions: Vec<String> = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"device.renewal_conflict".to_owned()),
        "{actions:?}"
    );
    assert!(
        shown(&controller, &device.device_id)
            .await
            .renewal_conflict
            .is_some()
    );
    real.check_in(CheckInRequest::default()).await.unwrap();
}

#[tokio::test]
async fn retrying_a_renewal_whose_answer_was_lost_is_not_a_conflict() {
    let controller = TestController::start().await;
    let device = controller.enroll("eli@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    // The agent keeps its new key across retries: the first answer never arrived.
    let key = PrivateKeyDer::generate().unwrap();
    let lost = renew_with(&mut agent, &key).await.unwrap();
    let kept = renew_with(&mut agent, &key).await.unwrap();
    let mut agent = controller.agent_with(&kept, &key).await.unwrap();
    agent.check_in(CheckInRequest::default()).await.unwrap();
    assert!(refused(&controller, &lost, &key).await);
    let actions: Vec<String> = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        !actions.contains(&"device.renewal_conflict".to_owned()),
        "{actions:?}"
    );
    assert!(
        shown(&controller, &device.device_id)
            .await
            .renewal_conflict
            .is_none()
    );
}

#[tokio::test]
async fn the_agent_renews_with_one_key_across_retries_and_its_old_certificate_is_then_revoked() {
    let controller = TestController::start().await;
    let device = controller.enroll("fox@hospital.org").await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = ward_agent::state::StateDir::new(tmp.path().join("state"));
    std::fs::create_dir_all(dir.root()).unwrap();
    std::fs::write(
        dir.certificate(),
        ward_certs::certificate_to_pem(&device.certificate_der),
    )
    .unwrap();
    std::fs::write(dir.key_file(), device.key.to_pem().as_bytes()).unwrap();
    let store = SecretStore::new(
        ward_agent::secrets::SecretStoreKind::File,
        dir.key_file(),
        &device.device_id,
    );
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((std::slice::from_ref(&device.certificate_der), &device.key)),
    )
    .unwrap();
    let link = ward_agent::link::Link::new(vec![controller.url.clone()], tls);
    // An attempt whose answer was lost, then a restart: the key was saved before the request
    // (0600) and the retry sends it again, which is no conflict.
    let saved = ward_agent::renew::renewal_key(&dir).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ward_agent::renew::renewal_key_path(&dir))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let mut lost = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    renew_with(&mut lost, &saved).await.unwrap();
    ward_agent::renew::renew(
        &dir,
        &device.device_id,
        (
            &ward_agent::device_key::DeviceKeyStore::Secret(store.clone()),
            &ward_certs::DeviceKey::from(ward_certs::PrivateKeyDer::new(
                device.key.as_bytes().to_vec(),
            )),
        ),
        &link,
        &[controller.ca.cert_der().to_vec()],
        &ward_agent::clock::system(),
    )
    .await
    .unwrap();
    let new_cert =
        ward_certs::certificates_from_pem(&std::fs::read_to_string(dir.certificate()).unwrap())
            .unwrap()
            .remove(0);
    let new_key = store.get().await.unwrap();
    assert_eq!(
        new_key.as_bytes(),
        saved.as_bytes(),
        "the saved key was reused"
    );
    assert!(!ward_agent::renew::renewal_key_path(&dir).exists());
    let mut agent = controller.agent_with(&new_cert, &new_key).await.unwrap();
    agent.check_in(CheckInRequest::default()).await.unwrap();
    assert!(refused(&controller, &device.certificate_der, &device.key).await);
    assert!(
        shown(&controller, &device.device_id)
            .await
            .renewal_conflict
            .is_none()
    );
}

fn offline_receipt(device: &EnrolledDevice, at: time::OffsetDateTime) -> WipeReceipt {
    let mut body = receipt("offline-timer", device);
    body.completed_at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let signed = body.sign(&device.key).unwrap();
    WipeReceipt {
        body: signed.body,
        signature: signed.signature,
    }
}

/// A device enrolled with the controller's clock set back an hour, so that what follows
/// (renewals) happens an hour before the device's next move. The clock is set back, not
/// forward: certificates issued in the future fail the handshake's clock.
async fn enrolled_an_hour_ago(controller: &TestController) -> ward_e2e::inprocess::EnrolledDevice {
    let token = controller.create_token("gus@hospital.org", 3 * 3600).await;
    controller
        .clock
        .rewind(std::time::Duration::from_secs(3601));
    let (enrolled, key) = controller.try_enroll(&token).await.unwrap();
    ward_e2e::inprocess::EnrolledDevice {
        device_id: enrolled.device_id,
        certificate_der: enrolled.certificate_der,
        key,
    }
}

#[tokio::test]
async fn an_offline_wipe_signed_with_the_key_of_its_time_verifies_after_a_renewal() {
    let controller = TestController::start().await;
    // The device enrolls and the copy renews an hour before the device does.
    let device = enrolled_an_hour_ago(&controller).await;
    let mut old = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let (new_cert, new_key) = renew(&mut old).await;
    let mut new = controller.agent_with(&new_cert, &new_key).await.unwrap();
    new.check_in(CheckInRequest::default()).await.unwrap();

    // The replaced key, claiming a wipe days after it was replaced: not believed.
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(3);
    new.check_in(CheckInRequest {
        offline_wipe: Some(offline_receipt(&device, later)),
        ..CheckInRequest::default()
    })
    .await
    .unwrap();
    let shown_after = shown(&controller, &device.device_id).await;
    assert!(shown_after.offline_wipe_at_unix_ms > 0);
    assert!(!shown_after.offline_wipe_receipt_verified);

    // The timer's wipe made before the renewal, signed with the key of that time: verified.
    let before = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    new.check_in(CheckInRequest {
        offline_wipe: Some(offline_receipt(&device, before)),
        ..CheckInRequest::default()
    })
    .await
    .unwrap();
    assert!(
        shown(&controller, &device.device_id)
            .await
            .offline_wipe_receipt_verified
    );
}

#[tokio::test]
async fn a_copy_of_the_key_renewing_three_times_is_flagged_and_blocks_the_device_only_until_its_renewals_lapse()
 {
    let controller = TestController::start().await;
    // The device enrolls and the copy renews an hour before the device does.
    let device = enrolled_an_hour_ago(&controller).await;
    let mut thief = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let mut stolen = Vec::new();
    for _ in 0..3 {
        stolen.push(renew(&mut thief).await);
    }
    let actions: Vec<String> = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"device.renewal_conflict".to_owned()),
        "renewals with other keys from one certificate are reported at once: {actions:?}"
    );
    assert!(
        shown(&controller, &device.device_id)
            .await
            .renewal_conflict
            .is_some()
    );
    let mut real = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let real_key = PrivateKeyDer::generate().unwrap();
    let status = renew_with(&mut real, &real_key).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    // The unused renewals lapse: the device renews again, and its first use revokes them.
    controller
        .clock
        .advance(std::time::Duration::from_secs(3601));
    let real_cert = renew_with(&mut real, &real_key).await.unwrap();
    let mut real = controller.agent_with(&real_cert, &real_key).await.unwrap();
    real.check_in(CheckInRequest::default()).await.unwrap();
    for (cert, key) in &stolen {
        assert!(refused(&controller, cert, key).await);
    }
}

#[tokio::test]
async fn renewing_in_a_loop_with_one_key_is_capped() {
    let controller = TestController::start().await;
    let device = controller.enroll("hal@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let key = PrivateKeyDer::generate().unwrap();
    let mut refused_with = None;
    for _ in 0..20 {
        if let Err(status) = renew_with(&mut agent, &key).await {
            refused_with = Some(status);
            break;
        }
    }
    let status = refused_with.expect("renewals per device are capped");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("renewed certificates in the last"),
        "{status:?}"
    );
    let refusals = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .filter(|e| e.action == "device.renewal_limited")
        .count();
    assert_eq!(refusals, 1);
    // A refusal does not cost a certificate or a write: the next one is refused, not audited.
    assert!(renew_with(&mut agent, &key).await.is_err());
    let refusals = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .filter(|e| e.action == "device.renewal_limited")
        .count();
    assert_eq!(refusals, 1);
    let renewals = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .filter(|e| e.action == "device.renew")
        .count();
    assert_eq!(
        renewals,
        ward_controller::core::keys::MAX_RENEWALS_PER_WINDOW
    );
}

/// A copy of the device holding connections opened with two certificates that renewals
/// replaced, calling on each in turn, is reported once per certificate: it cannot fill the
/// audit log (review finding L1: each switch between the two wrote an entry).
#[tokio::test]
async fn a_copy_alternating_two_replaced_certificates_is_reported_once_for_each() {
    let controller = TestController::start().await;
    let device = controller.enroll("amy@hospital.org").await;
    let mut first = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    first.check_in(CheckInRequest::default()).await.unwrap();
    controller.clock.advance(std::time::Duration::from_secs(60));
    let (second_cert, second_key) = renew(&mut first).await;
    let mut second = controller
        .agent_with(&second_cert, &second_key)
        .await
        .unwrap();
    second.check_in(CheckInRequest::default()).await.unwrap();
    controller.clock.advance(std::time::Duration::from_secs(60));
    let (third_cert, third_key) = renew(&mut second).await;
    let mut third = controller
        .agent_with(&third_cert, &third_key)
        .await
        .unwrap();
    third.check_in(CheckInRequest::default()).await.unwrap();

    for _ in 0..4 {
        assert!(first.check_in(CheckInRequest::default()).await.is_err());
        assert!(second.check_in(CheckInRequest::default()).await.is_err());
    }
    let reported: Vec<AuditEntry> = audit_actions(&controller, &device.device_id)
        .await
        .into_iter()
        .filter(|e| e.action == "device.renewal_conflict")
        .collect();
    assert_eq!(reported.len(), 2, "{reported:#?}");
    // The real device is untouched.
    third.check_in(CheckInRequest::default()).await.unwrap();
}
