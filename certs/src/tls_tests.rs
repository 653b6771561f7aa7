//! The server config's handshakes, driven in memory between real rustls connections.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use time::OffsetDateTime;

use super::{RevokedSerials, client_config, server_config};
use crate::ca::{CertificateAuthority, DEVICE_LIFETIME, SERVER_LIFETIME};
use crate::csr::{VerifiedCsr, make_csr};
use crate::{Identity, PrivateKeyDer};

struct Fixture {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    revoked: Arc<RevokedSerials>,
    device_serial: String,
}

fn fixture() -> Fixture {
    let now = OffsetDateTime::now_utc();
    let ca = CertificateAuthority::create("test", now).unwrap();
    let (server_cert, server_key) = ca
        .issue_server(&["ward.test".to_owned()], now, SERVER_LIFETIME)
        .unwrap();
    let revoked = Arc::new(RevokedSerials::default());
    let server = server_config(
        ca.cert_der(),
        &[server_cert.der, ca.cert_der().to_vec()],
        &server_key,
        revoked.clone(),
    )
    .unwrap();
    let device_key = PrivateKeyDer::generate().unwrap();
    let csr = VerifiedCsr::from_der(&make_csr(&device_key, "device").unwrap()).unwrap();
    let device = ca
        .issue_client(
            &csr,
            &Identity::Device(uuid::Uuid::new_v4()),
            now,
            DEVICE_LIFETIME,
        )
        .unwrap();
    let client = client_config(ca.cert_der(), Some((&[device.der], &device_key))).unwrap();
    Fixture {
        server: Arc::new(server),
        client: Arc::new(client),
        revoked,
        device_serial: device.serial,
    }
}

/// One full handshake (and one application record each way, so TLS 1.3 tickets, if any, are
/// sent and stored). Returns whether the client resumed and the first error either side saw.
fn handshake(fixture: &Fixture) -> Result<bool, rustls::Error> {
    let name = ServerName::try_from("ward.test").unwrap();
    let mut client = ClientConnection::new(fixture.client.clone(), name)?;
    let mut server = ServerConnection::new(fixture.server.clone())?;
    let mut buf = Vec::new();
    for _ in 0..20 {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let mut reader = buf.as_slice();
        while !reader.is_empty() {
            server.read_tls(&mut reader).unwrap();
        }
        server.process_new_packets()?;
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        let mut reader = buf.as_slice();
        while !reader.is_empty() {
            client.read_tls(&mut reader).unwrap();
        }
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
            return Ok(client.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
        }
    }
    panic!("the handshake did not finish in 20 round trips");
}

#[test]
fn a_revoked_client_cannot_resume_a_session_it_held_before_revocation() {
    let fixture = fixture();
    // A first, full handshake while the device is in good standing; the client keeps whatever
    // the server offers for resumption.
    assert_eq!(handshake(&fixture), Ok(false));
    fixture.revoked.insert(&fixture.device_serial);
    // After revocation the same client (same session cache) must be refused at the handshake:
    // resumption would restore its chain without asking the verifier.
    let refused = handshake(&fixture);
    assert!(
        matches!(refused, Err(rustls::Error::InvalidCertificate(_))),
        "a revoked client completed the handshake: {refused:?}"
    );
}

#[test]
fn the_server_offers_no_resumption_at_all() {
    let fixture = fixture();
    for _ in 0..3 {
        assert_eq!(handshake(&fixture), Ok(false), "a handshake resumed");
    }
}
