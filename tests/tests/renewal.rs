//! Certificate renewal over real mutual TLS: same identity, new key, the old pair replaced
//! safely; refused for revoked and offboarding devices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tonic::Code;
use ward_agent::link::Link;
use ward_agent::secrets::{SecretStore, SecretStoreKind};
use ward_agent::state::StateDir;
use ward_certs::{Identity, PrivateKeyDer, certificate_to_pem, key_matches_certificate};
use ward_e2e::inprocess::{EnrolledDevice, TestController};
use ward_proto::v1::*;

/// An agent state directory for `device`, as enrollment would leave it.
fn state_dir(tmp: &std::path::Path, device: &EnrolledDevice) -> (StateDir, SecretStore) {
    let dir = StateDir::new(tmp.join("state"));
    std::fs::create_dir_all(dir.root()).unwrap();
    std::fs::write(
        dir.certificate(),
        certificate_to_pem(&device.certificate_der),
    )
    .unwrap();
    let store = SecretStore::new(SecretStoreKind::File, dir.key_file(), &device.device_id);
    std::fs::write(dir.key_file(), device.key.to_pem().as_bytes()).unwrap();
    (dir, store)
}

fn link(controller: &TestController, device: &EnrolledDevice) -> Link {
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((std::slice::from_ref(&device.certificate_der), &device.key)),
    )
    .unwrap();
    Link::new(vec![controller.url.clone()], tls)
}

#[tokio::test]
async fn renewal_gives_a_new_key_and_certificate_for_the_same_device() {
    let controller = TestController::start().await;
    let device = controller.enroll("uma@hospital.org").await;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, store) = state_dir(tmp.path(), &device);
    let link = link(&controller, &device);

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
    assert_ne!(new_cert, device.certificate_der);
    assert!(key_matches_certificate(&new_key, &new_cert));
    assert!(!key_matches_certificate(&device.key, &new_cert));
    let peer = ward_certs::validate::validate_client_certificate(
        &new_cert,
        controller.ca.cert_der(),
        time::OffsetDateTime::now_utc(),
        std::time::Duration::ZERO,
    )
    .unwrap();
    assert_eq!(
        peer.identity,
        Identity::Device(device.device_id.parse().unwrap())
    );

    // The new pair works; the controller records it (receipts now verify with the new key).
    let mut agent = controller.agent_with(&new_cert, &new_key).await.unwrap();
    agent.check_in(CheckInRequest::default()).await.unwrap();
    let shown = controller
        .admin()
        .await
        .get_device(GetDeviceRequest {
            device_id: device.device_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.certificate_serial, peer.serial);
    assert!(!dir.root().join("device.pem.new").exists());
}

#[tokio::test]
async fn an_interrupted_renewal_is_finished_or_undone_at_the_next_start() {
    let controller = TestController::start().await;
    let device = controller.enroll("val@hospital.org").await;
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = state_dir(tmp.path(), &device);
    // Crash after the new certificate was written but before the key: it does not match the
    // stored key, so it is discarded and the old pair stays.
    let other = controller.enroll("val@hospital.org").await;
    std::fs::write(
        dir.root().join("device.pem.new"),
        certificate_to_pem(&other.certificate_der),
    )
    .unwrap();
    ward_agent::renew::recover(
        &dir,
        &ward_certs::DeviceKey::from(ward_certs::PrivateKeyDer::new(
            device.key.as_bytes().to_vec(),
        )),
    );
    assert!(!dir.root().join("device.pem.new").exists());
    assert_eq!(
        ward_certs::certificates_from_pem(&std::fs::read_to_string(dir.certificate()).unwrap())
            .unwrap()[0],
        device.certificate_der
    );
    // Crash after the key was replaced: the matching certificate is installed.
    std::fs::write(
        dir.root().join("device.pem.new"),
        certificate_to_pem(&other.certificate_der),
    )
    .unwrap();
    ward_agent::renew::recover(
        &dir,
        &ward_certs::DeviceKey::from(ward_certs::PrivateKeyDer::new(
            other.key.as_bytes().to_vec(),
        )),
    );
    assert_eq!(
        ward_certs::certificates_from_pem(&std::fs::read_to_string(dir.certificate()).unwrap())
            .unwrap()[0],
        other.certificate_der
    );
}

#[tokio::test]
async fn revoked_and_offboarding_devices_cannot_renew() {
    let controller = TestController::start().await;
    let leaver = controller.enroll("wes@hospital.org").await;
    let revoked = controller.enroll("xia@hospital.org").await;
    let csr = || ward_certs::csr::make_csr(&PrivateKeyDer::generate().unwrap(), "x").unwrap();

    controller
        .admin()
        .await
        .offboard_user(OffboardUserRequest {
            user: "wes@hospital.org".into(),
            reason: "left".into(),
        })
        .await
        .unwrap();
    let mut agent = controller
        .agent_with(&leaver.certificate_der, &leaver.key)
        .await
        .unwrap();
    let err = agent
        .renew(RenewRequest { csr_der: csr() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("offboarded"), "{}", err.message());

    let mut agent = controller
        .agent_with(&revoked.certificate_der, &revoked.key)
        .await
        .unwrap();
    agent.check_in(CheckInRequest::default()).await.unwrap();
    controller
        .admin()
        .await
        .revoke_device(RevokeDeviceRequest {
            device_id: revoked.device_id.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let err = agent
        .renew(RenewRequest { csr_der: csr() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[test]
fn an_agent_whose_certificate_expired_on_the_shelf_keeps_running_and_says_to_re_enroll() {
    let tmp = tempfile::tempdir().unwrap();
    let long_ago = time::OffsetDateTime::now_utc() - std::time::Duration::from_secs(30 * 86_400);
    let ca = ward_certs::CertificateAuthority::create("Ward CA", long_ago).unwrap();
    let key = PrivateKeyDer::generate().unwrap();
    let csr =
        ward_certs::VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "x").unwrap()).unwrap();
    let id = uuid::Uuid::new_v4();
    let cert = ca
        .issue_client(
            &csr,
            &Identity::Device(id),
            long_ago,
            std::time::Duration::from_secs(7 * 86_400),
        )
        .unwrap();
    let dir = StateDir::new(tmp.path().join("state"));
    std::fs::create_dir_all(dir.root()).unwrap();
    std::fs::write(dir.certificate(), cert.pem()).unwrap();
    std::fs::write(dir.ca(), ca.cert_pem()).unwrap();
    std::fs::write(dir.key_file(), key.to_pem().as_bytes()).unwrap();
    dir.save(&ward_agent::state::AgentState {
        version: ward_agent::state::STATE_VERSION,
        device_id: id.to_string(),
        user: "yan@hospital.org".into(),
        server_url: "https://127.0.0.1:9".into(),
        ca_hash: ca.hash().to_string(),
        secret_store: SecretStoreKind::File,
        tpm_key_handle: None,
        enrolled_at: "2026-10-01T00:00:00Z".into(),
        certificate_expires_at: "2026-10-08T00:00:00Z".into(),
        checkin_interval_seconds: 60,
        last_checkin: None,
    })
    .unwrap();
    // It keeps running (its offline timer must), says what is wrong and what to do, and so
    // does `status`.
    let log = tmp.path().join("agent.log");
    let mut agent = ward_e2e::process::Daemon::spawn(
        "ward-agent",
        &["run", "--state-dir", dir.root().to_str().unwrap()],
        log.clone(),
    );
    let text = ward_e2e::eventually_blocking(
        "the agent to say its certificate expired",
        std::time::Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("the device certificate has expired")
                .then_some(text)
        },
    );
    assert!(text.contains("Enroll this device again"), "{text}");
    assert!(agent.is_running(), "{text}");
    let status = ward_e2e::process::json(&ward_e2e::process::agent(&[
        "status",
        "--state-dir",
        dir.root().to_str().unwrap(),
        "--output",
        "json",
    ]));
    assert_eq!(status["certificate_expired"], true, "{status}");
    assert_eq!(
        status["problems"][0]["code"], "certificate_expired",
        "{status}"
    );
}
