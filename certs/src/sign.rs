//! Signatures by a device key over its own statements (wipe receipts), and their checking
//! against the public key recorded at enrollment.

use ring::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{CertError, PrivateKeyDer};

/// Signs `message` with `key` (ECDSA P-256 / SHA-256, ASN.1 DER; or Ed25519).
pub fn sign(key: &PrivateKeyDer, message: &[u8]) -> Result<Vec<u8>, CertError> {
    use rcgen::SigningKey;
    Ok(key.key_pair()?.sign(message)?)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the recorded public key is not valid DER")]
    BadKey,
    #[error("the recorded public key's type is not supported")]
    UnsupportedKey,
    #[error("the signature does not match the device's key")]
    Mismatch,
}

/// Checks `signature` over `message` against a DER SubjectPublicKeyInfo.
pub fn verify(spki_der: &[u8], message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|_| SignatureError::BadKey)?;
    let point = spki.subject_public_key.data.as_ref();
    let alg = &spki.algorithm;
    let key = if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && alg
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256)
    {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
    } else if alg.algorithm == OID_SIG_ED25519 {
        UnparsedPublicKey::new(&ED25519, point)
    } else {
        return Err(SignatureError::UnsupportedKey);
    };
    key.verify(message, signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// The signature scheme a DER SubjectPublicKeyInfo signs with, in words (and how OpenSSL checks
/// it), or `None` for a key type receipts do not use.
pub fn scheme(spki_der: &[u8]) -> Option<&'static str> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    let alg = &spki.algorithm;
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && alg
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256)
    {
        Some("ECDSA P-256 with SHA-256, DER signature (openssl dgst -sha256 -verify)")
    } else if alg.algorithm == OID_SIG_ED25519 {
        Some("Ed25519 (openssl pkeyutl -verify -rawin)")
    } else {
        None
    }
}

/// A DER SubjectPublicKeyInfo as PEM ("PUBLIC KEY"), as `openssl pkey -pubin` reads it.
pub fn public_key_pem(spki_der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("PUBLIC KEY", spki_der.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VerifiedCsr;
    use crate::csr::make_csr;

    #[test]
    fn a_signature_verifies_only_for_its_key_and_message() {
        let key = PrivateKeyDer::generate().unwrap();
        let spki = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
        let sig = sign(&key, b"receipt").unwrap();
        verify(spki.public_key_der(), b"receipt", &sig).unwrap();
        assert_eq!(
            verify(spki.public_key_der(), b"receipt!", &sig),
            Err(SignatureError::Mismatch)
        );
        let other = PrivateKeyDer::generate().unwrap();
        let other_spki = VerifiedCsr::from_der(&make_csr(&other, "x").unwrap()).unwrap();
        assert_eq!(
            verify(other_spki.public_key_der(), b"receipt", &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"junk", b"receipt", &sig),
            Err(SignatureError::BadKey)
        );
    }
}
