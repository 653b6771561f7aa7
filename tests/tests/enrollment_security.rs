//! Enrollment and authentication rules, against an in-process controller over real mutual TLS.
//! Every refusal is checked to change nothing stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, SanType};
use tonic::Code;
use ward_certs::{CertificateAuthority, Identity, PrivateKeyDer, VerifiedCsr, csr::make_csr};
use ward_controller::store::Store;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::{CheckInRequest, EnrollRequest, ListDevicesRequest};

#[tokio::test]
async fn enrolled_device_checks_in_and_appears_with_its_user() {
    let controller = TestController::start().await;
    let device = controller.enroll("alice@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    agent.check_in(CheckInRequest::default()).await.unwrap();
    let devices = controller
        .admin()
        .await
        .list_devices(ListDevicesRequest {
            user: "alice@hospital.org".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].id, device.device_id);
    assert_ne!(devices[0].last_seen_unix_ms, 0);
    controller.stop().await;
}

#[tokio::test]
async fn reused_token_is_refused_and_changes_nothing() {
    let controller = TestController::start().await;
    let token = controller.create_token("bob@hospital.org", 0).await;
    controller.try_enroll(&token).await.unwrap();
    let err = controller.try_enroll(&token).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("already used"), "{}", err.message());
    assert_eq!(controller.device_count().await, 1);
}

#[tokio::test]
async fn expired_token_is_refused_and_changes_nothing() {
    let controller = TestController::start().await;
    let token = controller.create_token("carol@hospital.org", 60).await;
    controller.clock.advance(Duration::from_secs(61));
    let err = controller.try_enroll(&token).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("expired"), "{}", err.message());
    assert_eq!(controller.device_count().await, 0);
}

#[tokio::test]
async fn malformed_and_unknown_tokens_are_refused() {
    let controller = TestController::start().await;
    let err = controller.try_enroll("not-a-token").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let unknown = ward_controller::core::EnrollmentToken::generate();
    let err = controller.try_enroll(unknown.expose()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("not known"), "{}", err.message());
    assert_eq!(controller.device_count().await, 0);
}

#[tokio::test]
async fn csr_with_broken_signature_is_refused_and_the_token_stays_usable() {
    let controller = TestController::start().await;
    let token = controller.create_token("dan@hospital.org", 0).await;
    let key = PrivateKeyDer::generate().unwrap();
    let mut csr = make_csr(&key, "x").unwrap();
    let n = csr.len();
    csr[n - 3] ^= 0x01;
    let err = controller
        .enrollment()
        .await
        .enroll(EnrollRequest {
            token: token.clone(),
            csr_der: csr,
            facts: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("signature"), "{}", err.message());
    assert_eq!(controller.device_count().await, 0);
    controller.try_enroll(&token).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_redemptions_of_one_token_enroll_exactly_one_device() {
    // All attempts come from 127.0.0.1: lift the per-address limit for this test.
    let controller = TestController::start_with(|c| c.enroll_burst = 1000).await;
    let token = controller.create_token("erin@hospital.org", 0).await;
    let controller = std::sync::Arc::new(controller);
    let attempts: Vec<_> = (0..100)
        .map(|_| {
            let (c, t) = (controller.clone(), token.clone());
            tokio::spawn(async move { c.try_enroll(&t).await.map(|_| ()) })
        })
        .collect();
    let mut ok = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => ok += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(controller.device_count().await, 1);
}

#[tokio::test]
async fn agent_service_without_client_certificate_is_unauthenticated() {
    let controller = TestController::start().await;
    let tls = ward_certs::tls::client_config(controller.ca.cert_der(), None).unwrap();
    let channel = controller.channel(tls).await.unwrap();
    let mut agent = ward_proto::v1::agent_service_client::AgentServiceClient::new(channel);
    let err = agent.check_in(CheckInRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("client certificate"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn certificate_signed_by_another_ca_fails_the_handshake() {
    let controller = TestController::start().await;
    let device = controller.enroll("frank@hospital.org").await;
    let before = controller.store.list_devices(None).await;
    // The same device id, from a CA that is not ours.
    let other = CertificateAuthority::create("impostor", time::OffsetDateTime::now_utc()).unwrap();
    let key = PrivateKeyDer::generate().unwrap();
    let csr = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
    let id = Identity::Device(device.device_id.parse().unwrap());
    let forged = other
        .issue_client(
            &csr,
            &id,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let result = match controller.agent_with(&forged.der, &key).await {
        Err(_) => None,
        Ok(mut agent) => Some(agent.check_in(CheckInRequest::default()).await),
    };
    match result {
        None => {}
        Some(Err(status)) => assert_ne!(status.code(), Code::Ok),
        Some(Ok(_)) => panic!("a certificate from another CA was accepted"),
    }
    assert_eq!(
        controller.store.list_devices(None).await.unwrap(),
        before.unwrap()
    );
}

#[tokio::test]
async fn device_certificate_cannot_call_admin_service() {
    let controller = TestController::start().await;
    let device = controller.enroll("gina@hospital.org").await;
    let tls = ward_certs::tls::client_config(
        controller.ca.cert_der(),
        Some((std::slice::from_ref(&device.certificate_der), &device.key)),
    )
    .unwrap();
    let mut admin = ward_proto::v1::admin_service_client::AdminServiceClient::new(
        controller.channel(tls).await.unwrap(),
    );
    let err = admin
        .create_enrollment_token(ward_proto::v1::CreateEnrollmentTokenRequest {
            user: "x@h.org".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("not an admin identity"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn admin_certificate_cannot_call_agent_service() {
    let controller = TestController::start().await;
    let bundle = ward_files::bundle::AdminBundle::read(&controller.data.admin_bundle()).unwrap();
    let mut agent = controller
        .agent_with(&bundle.certificate_der, &bundle.key)
        .await
        .unwrap();
    let err = agent.check_in(CheckInRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn unregistered_admin_identity_is_denied() {
    let controller = TestController::start().await;
    // Signed by our own CA, but never registered through `admin issue`.
    let key = PrivateKeyDer::generate().unwrap();
    let csr = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
    let ghost = controller
        .ca
        .issue_client(
            &csr,
            &Identity::Admin("ghost".parse().unwrap()),
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let tls = ward_certs::tls::client_config(controller.ca.cert_der(), Some((&[ghost.der], &key)))
        .unwrap();
    let mut admin = ward_proto::v1::admin_service_client::AdminServiceClient::new(
        controller.channel(tls).await.unwrap(),
    );
    let err = admin
        .list_devices(ListDevicesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("no record"), "{}", err.message());
}

#[tokio::test]
async fn leaf_with_two_identities_from_our_ca_is_refused_by_the_service() {
    let controller = TestController::start().await;
    let device = controller.enroll("hal@hospital.org").await;
    // A certificate our CA key signed with two URI SANs (as a buggy issuer would): the TLS
    // layer accepts the chain; the identity check must not.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![
        SanType::URI(
            format!("ward://device/{}", device.device_id)
                .as_str()
                .try_into()
                .unwrap(),
        ),
        SanType::URI("ward://admin/admin".try_into().unwrap()),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.is_ca = IsCa::ExplicitNoCa;
    let ca_key = rcgen::KeyPair::try_from(&rustls::pki_types::PrivatePkcs8KeyDer::from(
        controller.ca.key().as_bytes(),
    ))
    .unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_der(&controller.ca.cert_der().to_vec().into(), ca_key).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let key_der = PrivateKeyDer::new(key.serialize_der());
    let mut agent = controller.agent_with(cert.der(), &key_der).await.unwrap();
    let err = agent.check_in(CheckInRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("URI SANs"), "{}", err.message());
}
