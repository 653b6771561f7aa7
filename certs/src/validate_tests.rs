//! Each rule gets the exact bad certificate it rejects, built here with rcgen.

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use crate::CertificateAuthority;
use crate::ca::DEVICE_LIFETIME;
use crate::csr::{VerifiedCsr, make_csr};

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn device_uri(id: Uuid) -> SanType {
    SanType::URI(format!("ward://device/{id}").as_str().try_into().unwrap())
}

/// A leaf signed by `ca` with arbitrary parameters: the way an attacker-controlled or buggy
/// issuer would make it.
fn raw_leaf(ca: &CertificateAuthority, mut params: CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    if params.not_before == CertificateParams::default().not_before {
        params.not_before = now() - Duration::from_secs(60);
        params.not_after = now() + Duration::from_secs(3600);
    }
    params.signed_by(&key, ca.issuer()).unwrap().der().to_vec()
}

fn client_params(sans: Vec<SanType>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.is_ca = IsCa::ExplicitNoCa;
    params
}

fn check(ca: &CertificateAuthority, leaf: &[u8]) -> Result<PeerCertificate, ValidationError> {
    validate_client_certificate(leaf, ca.cert_der(), now(), DEFAULT_SKEW)
}

fn issue_device(ca: &CertificateAuthority, id: Uuid, at: OffsetDateTime) -> Vec<u8> {
    let key = crate::PrivateKeyDer::generate().unwrap();
    let csr = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
    ca.issue_client(&csr, &Identity::Device(id), at, DEVICE_LIFETIME)
        .unwrap()
        .der
}

#[test]
fn device_certificate_from_our_ca_yields_its_identity() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let id = Uuid::new_v4();
    let peer = check(&ca, &issue_device(&ca, id, now())).unwrap();
    assert_eq!(peer.identity, Identity::Device(id));
}

#[test]
fn cert_from_other_ca_is_rejected() {
    let ours = CertificateAuthority::create("test", now()).unwrap();
    let theirs = CertificateAuthority::create("test", now()).unwrap();
    let leaf = issue_device(&theirs, Uuid::new_v4(), now());
    assert_eq!(
        check(&ours, &leaf).unwrap_err(),
        ValidationError::NotIssuedByCa
    );
}

#[test]
fn cert_with_tampered_signature_is_rejected() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let mut leaf = issue_device(&ca, Uuid::new_v4(), now());
    let n = leaf.len();
    leaf[n - 3] ^= 0x01;
    assert_eq!(
        check(&ca, &leaf).unwrap_err(),
        ValidationError::NotIssuedByCa
    );
}

#[test]
fn expired_cert_is_rejected() {
    let ca = CertificateAuthority::create("test", now() - Duration::from_secs(30 * 86400)).unwrap();
    let leaf = issue_device(&ca, Uuid::new_v4(), now() - Duration::from_secs(8 * 86400));
    assert!(matches!(
        check(&ca, &leaf).unwrap_err(),
        ValidationError::Expired(_)
    ));
}

#[test]
fn not_yet_valid_cert_is_rejected() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let leaf = issue_device(&ca, Uuid::new_v4(), now() + Duration::from_secs(3600));
    assert!(matches!(
        check(&ca, &leaf).unwrap_err(),
        ValidationError::NotYetValid(_)
    ));
}

#[test]
fn small_clock_skew_is_tolerated() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    // Issued by a controller whose clock runs 8 minutes ahead: backdating (5 min) plus the
    // verifier's skew allowance (5 min) still accept it.
    let leaf = issue_device(&ca, Uuid::new_v4(), now() + Duration::from_secs(8 * 60));
    check(&ca, &leaf).unwrap();
}

#[test]
fn cert_with_two_uri_sans_is_rejected() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let leaf = raw_leaf(
        &ca,
        client_params(vec![device_uri(Uuid::new_v4()), device_uri(Uuid::new_v4())]),
    );
    assert_eq!(
        check(&ca, &leaf).unwrap_err(),
        ValidationError::SeveralIdentities(2)
    );
}

#[test]
fn cert_without_uri_san_is_rejected() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let leaf = raw_leaf(
        &ca,
        client_params(vec![SanType::DnsName("laptop".try_into().unwrap())]),
    );
    assert_eq!(check(&ca, &leaf).unwrap_err(), ValidationError::NoIdentity);
    let leaf = raw_leaf(&ca, client_params(vec![]));
    assert_eq!(check(&ca, &leaf).unwrap_err(), ValidationError::NoIdentity);
}

#[test]
fn cert_with_foreign_uri_is_rejected() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let leaf = raw_leaf(
        &ca,
        client_params(vec![SanType::URI("spiffe://x/y".try_into().unwrap())]),
    );
    assert!(matches!(
        check(&ca, &leaf).unwrap_err(),
        ValidationError::Identity(_)
    ));
}

#[test]
fn cn_naming_another_device_is_ignored() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let (real, other) = (Uuid::new_v4(), Uuid::new_v4());
    let mut params = client_params(vec![device_uri(real)]);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, other.to_string());
    let peer = check(&ca, &raw_leaf(&ca, params)).unwrap();
    assert_eq!(peer.identity, Identity::Device(real));
}

#[test]
fn leaf_with_ca_true_is_rejected() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let mut params = client_params(vec![device_uri(Uuid::new_v4())]);
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    assert_eq!(
        check(&ca, &raw_leaf(&ca, params)).unwrap_err(),
        ValidationError::IsCa
    );
}

#[test]
fn leaf_without_client_auth_eku_is_rejected() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    let mut params = client_params(vec![device_uri(Uuid::new_v4())]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    assert_eq!(
        check(&ca, &raw_leaf(&ca, params)).unwrap_err(),
        ValidationError::NotForClientAuth
    );
    let mut params = client_params(vec![device_uri(Uuid::new_v4())]);
    params.extended_key_usages = vec![];
    assert_eq!(
        check(&ca, &raw_leaf(&ca, params)).unwrap_err(),
        ValidationError::NotForClientAuth
    );
}

#[test]
fn garbage_is_rejected() {
    let ca = CertificateAuthority::create("test", now()).unwrap();
    assert_eq!(
        check(&ca, b"\x30\x03abc").unwrap_err(),
        ValidationError::Malformed
    );
}
