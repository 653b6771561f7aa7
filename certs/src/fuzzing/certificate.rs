//! Fuzz check: a certificate a client presents → validation against the CA and identity
//! extraction (`validate.rs`, `identity.rs`).

use time::OffsetDateTime;
use uuid::Uuid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::{FUZZ_NOW, fuzz_ca, made};
use crate::ca::{ADMIN_LIFETIME, CertificateAuthority, DEVICE_LIFETIME, SERVER_LIFETIME};
use crate::csr::make_csr;
use crate::identity::{AdminName, Identity};
use crate::validate::{
    DEFAULT_SKEW, PeerCertificate, controller_name, identity_of, server_names,
    validate_client_certificate,
};
use crate::{PrivateKeyDer, VerifiedCsr};

/// The input is a leaf certificate's DER, optionally followed by the DER of the CA to check it
/// against; without a CA the leaf is checked against itself. The whole input is also tried as
/// a `ward://` URI.
///
/// Invariants: nothing panics; an accepted certificate parses without trailing data, is
/// signed by the CA, is `CA:FALSE` with the client-auth EKU, is inside its validity window
/// (± skew), and carries exactly one URI SAN, the `ward://` URI of the identity returned.
pub fn certificate(data: &[u8]) {
    let (leaf_der, ca_der) = split(data);
    let parsed = X509Certificate::from_der(leaf_der)
        .ok()
        .map(|(_, cert)| cert);
    let mut times = vec![FUZZ_NOW];
    if let Some(cert) = &parsed {
        check_identity(cert);
        times.extend(inside_window(cert));
    }
    if let Some(name) = controller_name(leaf_der) {
        assert_eq!(
            Identity::from_uri(&Identity::Controller(name.clone()).to_uri()),
            Ok(Identity::Controller(name))
        );
    }
    for name in server_names(leaf_der) {
        assert_eq!(
            name,
            name.to_ascii_lowercase(),
            "server names are lower-cased"
        );
    }
    for now in times {
        if let Ok(peer) = validate_client_certificate(leaf_der, ca_der, now, DEFAULT_SKEW) {
            check_accepted(leaf_der, ca_der, now, &peer);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check_uri(text);
    }
}

/// The leaf's DER and what follows it (the CA), or the whole input twice.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match X509Certificate::from_der(data) {
        Ok((rest, _)) if !rest.is_empty() => data.split_at(data.len() - rest.len()),
        _ => (data, data),
    }
}

/// The middle of the certificate's validity window, when the check's skew arithmetic stays
/// inside the representable range (a real clock never nears year 9999).
fn inside_window(cert: &X509Certificate<'_>) -> Option<OffsetDateTime> {
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    let middle = not_before.checked_add((not_after - not_before) / 2)?;
    let skew = time::Duration::try_from(DEFAULT_SKEW).ok()?;
    middle.checked_add(skew)?;
    middle.checked_sub(skew)?;
    Some(middle)
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some((*uri).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn check_identity(cert: &X509Certificate<'_>) {
    if let Ok(identity) = identity_of(cert) {
        let uri = identity.to_uri();
        assert_eq!(
            uri_sans(cert),
            vec![uri.clone()],
            "identity is the one URI SAN"
        );
        assert_eq!(Identity::from_uri(&uri), Ok(identity));
    }
}

fn check_accepted(leaf_der: &[u8], ca_der: &[u8], now: OffsetDateTime, peer: &PeerCertificate) {
    let Ok((rest, leaf)) = X509Certificate::from_der(leaf_der) else {
        panic!("an accepted certificate does not parse");
    };
    assert!(rest.is_empty(), "an accepted certificate has trailing data");
    let Ok((_, ca)) = X509Certificate::from_der(ca_der) else {
        panic!("a certificate was accepted against a CA that does not parse");
    };
    assert_eq!(leaf.issuer(), ca.subject(), "accepted from another issuer");
    assert!(
        leaf.verify_signature(Some(ca.public_key())).is_ok(),
        "accepted without the CA's signature"
    );
    assert!(!leaf.is_ca(), "a CA certificate was accepted as a client");
    assert!(
        matches!(leaf.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth),
        "accepted without the client-auth EKU"
    );
    let uris = uri_sans(&leaf);
    assert_eq!(
        uris,
        vec![peer.identity.to_uri()],
        "exactly one ward:// URI SAN"
    );
    assert!(uris.iter().all(|u| u.starts_with("ward://")));
    assert_eq!(identity_of(&leaf).as_ref(), Ok(&peer.identity));
    assert_eq!(peer.serial, hex::encode(leaf.raw_serial()));
    let not_before = leaf.validity().not_before.to_datetime();
    let not_after = leaf.validity().not_after.to_datetime();
    assert!(now + DEFAULT_SKEW >= not_before && now - DEFAULT_SKEW <= not_after);
    assert_eq!(peer.not_after, not_after);
}

fn check_uri(text: &str) {
    if let Ok(identity) = Identity::from_uri(text) {
        assert_eq!(identity.to_uri(), text, "one identity, one URI");
    }
    if let Ok(name) = text.parse::<AdminName>() {
        assert_eq!(name.as_str(), text);
        assert!((1..=64).contains(&text.len()));
    }
}

/// Seeds: real certificates from Ward's CA code, each followed by the CA certificate it is
/// checked against. Keys are generated and dropped; only public certificates are returned.
pub fn certificate_seeds() -> Vec<(String, Vec<u8>)> {
    let ca = fuzz_ca();
    let other = made(
        "a second CA",
        CertificateAuthority::create("Other CA", FUZZ_NOW),
    );
    let device = Identity::Device(Uuid::from_u128(0x6f1c_0000_4000_8000_0000_0000_0000_0001));
    let admin = Identity::Admin(made("an admin name", "alice.it".parse()));
    let with_ca = |leaf: &[u8], ca: &CertificateAuthority| [leaf, ca.cert_der()].concat();

    let mut seeds = vec![
        (
            "device".to_owned(),
            with_ca(&client(ca, &device, p256_csr()), ca),
        ),
        (
            "device-ed25519".into(),
            with_ca(&client(ca, &device, ed25519_csr()), ca),
        ),
        ("admin".into(), with_ca(&client(ca, &admin, p256_csr()), ca)),
        (
            "device-other-ca".into(),
            with_ca(&client(&other, &device, p256_csr()), ca),
        ),
        ("device-without-ca".into(), client(ca, &device, p256_csr())),
        ("ca".into(), with_ca(ca.cert_der(), ca)),
        ("uri".into(), device.to_uri().into_bytes()),
    ];
    let hosts = [
        "ward.hospital.org".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let (server, _key) = made(
        "a server certificate",
        ca.issue_server(&hosts, FUZZ_NOW, SERVER_LIFETIME),
    );
    seeds.push(("server".into(), with_ca(&server.der, ca)));
    seeds.extend(self_signed_seeds());
    seeds
}

fn p256_csr() -> VerifiedCsr {
    let key = made("a P-256 key", PrivateKeyDer::generate());
    made(
        "a CSR",
        VerifiedCsr::from_der(&made("a CSR", make_csr(&key, "seed"))),
    )
}

fn ed25519_csr() -> VerifiedCsr {
    let key = made(
        "an Ed25519 key",
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
    );
    let request = made(
        "a CSR",
        rcgen::CertificateParams::default().serialize_request(&key),
    );
    made("a CSR", VerifiedCsr::from_der(request.der()))
}

fn client(ca: &CertificateAuthority, identity: &Identity, csr: VerifiedCsr) -> Vec<u8> {
    let lifetime = match identity {
        Identity::Admin(_) => ADMIN_LIFETIME,
        _ => DEVICE_LIFETIME,
    };
    made(
        "a client certificate",
        ca.issue_client(&csr, identity, FUZZ_NOW, lifetime),
    )
    .der
}

/// Self-signed leaves checked against themselves: their signature verifies, so each reaches
/// the rule it breaks (several URIs, none, a foreign URI, CA:TRUE, no client-auth EKU).
fn self_signed_seeds() -> Vec<(String, Vec<u8>)> {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, SanType};
    let uri = |text: &str| SanType::URI(made("an IA5 URI", text.try_into()));
    let device = "ward://device/6f1c0000-4000-8000-0000-000000000001";
    let cases: Vec<(&str, Vec<SanType>, IsCa, bool)> = vec![
        (
            "two-uris",
            vec![uri(device), uri("ward://admin/root")],
            IsCa::ExplicitNoCa,
            true,
        ),
        ("no-uri", vec![], IsCa::ExplicitNoCa, true),
        (
            "foreign-uri",
            vec![uri("https://example.org/")],
            IsCa::ExplicitNoCa,
            true,
        ),
        (
            "upper-case-device",
            vec![uri(&device.to_uppercase())],
            IsCa::ExplicitNoCa,
            true,
        ),
        (
            "is-ca",
            vec![uri(device)],
            IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
            true,
        ),
        (
            "no-client-eku",
            vec![uri(device)],
            IsCa::ExplicitNoCa,
            false,
        ),
        (
            "valid-self-signed",
            vec![uri(device)],
            IsCa::ExplicitNoCa,
            true,
        ),
    ];
    cases
        .into_iter()
        .map(|(name, sans, is_ca, client_auth)| {
            let key = made("a key", rcgen::KeyPair::generate());
            let mut params = CertificateParams::default();
            params.subject_alt_names = sans;
            params.is_ca = is_ca;
            if client_auth {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            params.not_before = FUZZ_NOW - time::Duration::days(1);
            params.not_after = FUZZ_NOW + time::Duration::days(7);
            let cert = made("a self-signed certificate", params.self_signed(&key));
            let der = cert.der().to_vec();
            (
                format!("self-signed-{name}"),
                [der.as_slice(), &der].concat(),
            )
        })
        .collect()
}
