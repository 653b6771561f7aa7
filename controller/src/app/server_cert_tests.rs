use std::sync::Arc;
use std::time::Duration;

use ward_certs::live::LiveServerCert;

use super::test_fixture::fixture;
use crate::core::Clock;
use crate::server_cert::ServerCertificate;
use crate::store::AuditFilter;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A renewed server certificate is presented only after its audit entry is written: when the
/// audit log cannot be written, the current certificate stays in use and the next check
/// renews (it was presented first, and left unaudited).
#[tokio::test]
async fn a_renewed_server_certificate_is_presented_only_once_audited() {
    let f = fixture();
    let lifetime = 30 * DAY;
    let (first, key) =
        f.ca.issue_server(
            &["ward.example".into()],
            f.clock.now().to_datetime(),
            lifetime,
        )
        .unwrap();
    let chain = vec![first.der.clone(), f.ca.cert_der().to_vec()];
    let live = Arc::new(LiveServerCert::new(&chain, &key).unwrap());
    let server = Arc::new(ServerCertificate::new(
        f.app.cas().clone(),
        live.clone(),
        lifetime,
        None,
    ));
    let app = Arc::new(f.app);
    app.manage_server_certificate(server.clone(), None, false, DAY)
        .await
        .unwrap();

    // Two thirds into its thirty days; the audit log fails once.
    f.clock.advance(21 * DAY);
    f.store.fail_next("audit");
    let err = app.renew_server_certificate_if_due().await.unwrap_err();
    assert!(err.to_string().contains("audit log"), "{err}");
    let serial = |der: &[u8]| ward_certs::tls::serial_of(der).unwrap();
    assert_eq!(
        serial(&live.leaf()),
        first.serial,
        "presented without its audit entry"
    );
    assert_eq!(serial(&server.leaf()), first.serial);

    assert!(app.renew_server_certificate_if_due().await.unwrap());
    let presented = live.leaf();
    assert_ne!(serial(&presented), first.serial);
    let entries = app.audit_list(&AuditFilter::default()).await.unwrap();
    let issued: Vec<serde_json::Value> = entries
        .iter()
        .filter(|e| e.action == "server_certificate.issue")
        .map(|e| serde_json::from_str(&e.details).unwrap())
        .collect();
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(
        issued[0]["serial"].as_str(),
        Some(serial(&presented).as_str())
    );
}
