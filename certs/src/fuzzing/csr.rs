//! Fuzz check: a certificate signing request from a device → `VerifiedCsr` (`csr.rs`), and
//! the certificate the CA issues for it.

use uuid::Uuid;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::{FUZZ_NOW, fuzz_ca, made};
use crate::ca::DEVICE_LIFETIME;
use crate::csr::{MAX_CSR_BYTES, make_csr};
use crate::identity::Identity;
use crate::validate::{DEFAULT_SKEW, validate_client_certificate};
use crate::{PrivateKeyDer, VerifiedCsr};

/// Invariants: nothing panics; an accepted CSR is at most [`MAX_CSR_BYTES`], parses without
/// trailing data, holds a P-256 or Ed25519 key and a signature that verifies; the CA can
/// issue a certificate for it, which carries exactly that key and validates as the device
/// the CA named — never as anything the CSR asked for.
pub fn csr(data: &[u8]) {
    let Ok(verified) = VerifiedCsr::from_der(data) else {
        return;
    };
    assert!(data.len() <= MAX_CSR_BYTES);
    let Ok((rest, request)) = X509CertificationRequest::from_der(data) else {
        panic!("an accepted CSR does not parse");
    };
    assert!(rest.is_empty(), "an accepted CSR has trailing data");
    assert!(
        request.verify_signature().is_ok(),
        "an accepted CSR's signature does not verify"
    );
    let spki = &request.certification_request_info.subject_pki;
    assert!(supported(spki), "an accepted CSR has an unsupported key");
    assert_eq!(verified.public_key_der(), spki.raw);

    let ca = fuzz_ca();
    let device = Identity::Device(Uuid::from_u128(0x6f1c_0000_4000_8000_0000_0000_0000_0002));
    let issued = match ca.issue_client(&verified, &device, FUZZ_NOW, DEVICE_LIFETIME) {
        Ok(issued) => issued,
        Err(e) => panic!("a verified CSR cannot be issued a certificate: {e}"),
    };
    let peer = match validate_client_certificate(&issued.der, ca.cert_der(), FUZZ_NOW, DEFAULT_SKEW)
    {
        Ok(peer) => peer,
        Err(e) => panic!("the certificate issued for a verified CSR does not validate: {e}"),
    };
    assert_eq!(
        peer.identity, device,
        "identity comes from the CA, not the CSR"
    );
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(&issued.der) else {
        panic!("an issued certificate does not parse");
    };
    assert_eq!(
        cert.public_key().raw,
        spki.raw,
        "the certificate carries the CSR's key"
    );
}

fn supported(spki: &SubjectPublicKeyInfo<'_>) -> bool {
    let alg = &spki.algorithm;
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        alg.parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256)
    } else {
        alg.algorithm == OID_SIG_ED25519
    }
}

/// Seeds: CSRs as agents make them (P-256, Ed25519), one asking for another identity and
/// extensions (ignored), and one with an unsupported key (P-384). No key is returned.
pub fn csr_seeds() -> Vec<(String, Vec<u8>)> {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
    let key = made("a P-256 key", PrivateKeyDer::generate());
    let mut seeds = vec![("p256".to_owned(), made("a CSR", make_csr(&key, "laptop")))];
    let request = |alg: &'static rcgen::SignatureAlgorithm, params: CertificateParams| {
        let key = made("a key", KeyPair::generate_for(alg));
        made("a CSR", params.serialize_request(&key)).der().to_vec()
    };
    seeds.push((
        "ed25519".into(),
        request(&rcgen::PKCS_ED25519, CertificateParams::default()),
    ));
    seeds.push((
        "p384-unsupported".into(),
        request(&rcgen::PKCS_ECDSA_P384_SHA384, CertificateParams::default()),
    ));
    let mut greedy = CertificateParams::default();
    greedy.subject_alt_names = vec![SanType::URI(made(
        "an IA5 URI",
        "ward://admin/root".try_into(),
    ))];
    greedy.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    greedy.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    seeds.push((
        "asks-for-admin-and-ca".into(),
        request(&rcgen::PKCS_ECDSA_P256_SHA256, greedy),
    ));
    seeds
}
