//! The controller's own server certificate renews by itself, two thirds into its lifetime,
//! without a restart: an agent's open stream keeps working, a new connection gets the new
//! certificate, and the renewal is audited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::UnixTime;
use ward_certs::live::Validity;
use ward_controller::core::{Clock, Timestamp};
use ward_e2e::eventually;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Judges certificates as of a fixed moment (the controller's moved clock).
#[derive(Debug)]
struct At(Timestamp);

impl rustls::time_provider::TimeProvider for At {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_millis(
            u64::try_from(self.0.unix_ms()).unwrap(),
        )))
    }
}

/// The leaf certificate a new TLS connection is given, verified against the CA as of `at`.
async fn presented_leaf(controller: &TestController, at: Timestamp) -> Vec<u8> {
    presented_leaf_at(controller, controller.addr, at).await
}

/// The same on another of its listeners (SCIM).
async fn presented_leaf_at(
    controller: &TestController,
    addr: std::net::SocketAddr,
    at: Timestamp,
) -> Vec<u8> {
    let tls =
        rustls::ClientConfig::builder_with_details(ward_certs::tls::provider(), Arc::new(At(at)))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates({
                let mut roots = rustls::RootCertStore::empty();
                roots.add(controller.ca.cert_der().to_vec().into()).unwrap();
                roots
            })
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let session = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("the presented certificate verifies against the CA");
    session.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn the_server_certificate_renews_two_thirds_into_its_life_while_an_agent_stays_connected() {
    let controller =
        TestController::start_renewing(ward_certs::ca::SERVER_LIFETIME, Duration::from_millis(50))
            .await;
    let device = controller.enroll("kim@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let mut stream = agent
        .commands(CommandsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some(), "the policy push");
    // Opened now: its connection keeps the certificate it was made with.
    let mut admin = controller.admin().await;

    let first = presented_leaf(&controller, controller.clock.now()).await;
    let scim = controller.scim.unwrap();
    assert_eq!(
        presented_leaf_at(&controller, scim, controller.clock.now()).await,
        first
    );
    let validity = Validity::of(&first).unwrap();
    let started = controller.clock.now();

    // Half way through its life nothing happens.
    controller.clock.advance(DAY * 150);
    assert!(
        !controller
            .app
            .renew_server_certificate_if_due()
            .await
            .unwrap()
    );
    assert_eq!(
        controller.app.server_certificate().unwrap().leaf(),
        first,
        "renewed too early"
    );

    // Two thirds in (the certificate was backdated a day at init), it is renewed.
    controller.clock.advance(DAY * 95);
    let renewed = eventually(
        "the server certificate to renew",
        Duration::from_secs(10),
        || {
            let leaf = controller.app.server_certificate().unwrap().leaf();
            let changed = leaf != first;
            async move { changed.then_some(leaf) }
        },
    )
    .await;
    let now = controller.clock.now();
    let new_validity = Validity::of(&renewed).unwrap();
    assert!(new_validity.not_after > validity.not_after);
    assert!(new_validity.not_before <= now.to_datetime());
    assert_eq!(
        ward_certs::validate::server_names(&renewed),
        ward_certs::validate::server_names(&first),
        "the same names"
    );
    // A new connection gets the new certificate; the data directory holds it for a restart.
    assert_eq!(presented_leaf(&controller, now).await, renewed);
    assert_eq!(
        presented_leaf_at(&controller, scim, now).await,
        renewed,
        "the SCIM listener presents the renewed certificate too, without a restart"
    );
    let (on_disk, key) = controller.data.load_server_credentials().unwrap();
    assert_eq!(on_disk[0], renewed);
    assert!(ward_certs::key_matches_certificate(&key, &renewed));

    // The agent's stream, opened under the old certificate, still delivers: back at the
    // start time (so the device's and admin's certificates are valid again), a lock issued
    // on the admin connection made before the renewal reaches it.
    controller.clock.rewind(Duration::from_millis(
        u64::try_from(now.unix_ms() - started.unix_ms()).unwrap(),
    ));
    admin
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(issue_command_request::Action::Lock(LockAction::default())),
            reason: "renewal test".into(),
            idempotency_key: "renewal-test-lock".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap();
    let pushed = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the lock reaches the open stream")
        .expect("the stream is still open")
        .expect("a push, not the end of the stream");
    assert!(format!("{pushed:?}").contains("Lock"), "{pushed:?}");

    // Audited, by the controller, with the reason.
    let entries = admin
        .list_audit(ListAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let issued: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "server_certificate.issue")
        .collect();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0].actor, "controller");
    assert!(
        issued[0].details_json.contains("\"why\":\"renewal\""),
        "{:?}",
        issued[0]
    );
}
