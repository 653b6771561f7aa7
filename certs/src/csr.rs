//! Certificate signing requests: the device's (or admin's) proof that it holds its key.
//!
//! Only the public key is taken from a CSR. Its subject, SANs and requested extensions are
//! deliberately ignored: identity comes from the enrollment record.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};
use x509_parser::prelude::FromDer;

use crate::{CertError, PrivateKeyDer};

/// A CSR whose signature was checked and whose key type Ward accepts.
#[derive(Debug)]
pub struct VerifiedCsr {
    spki_der: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    #[error("the certificate signing request is not valid DER PKCS#10")]
    Malformed,
    #[error("the certificate signing request has trailing data after its DER encoding")]
    TrailingData,
    #[error("the certificate signing request's signature does not verify (no proof of possession)")]
    BadSignature,
    #[error(
        "the certificate signing request's key type is not supported: use ECDSA P-256 or Ed25519"
    )]
    UnsupportedKey,
    #[error("the certificate signing request is larger than {0} bytes")]
    TooLarge(usize),
}

/// Real CSRs for P-256 or Ed25519 are a few hundred bytes.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

impl VerifiedCsr {
    /// Parses a DER CSR, verifies its self-signature and checks the key type.
    pub fn from_der(der: &[u8]) -> Result<Self, CsrError> {
        if der.len() > MAX_CSR_BYTES {
            return Err(CsrError::TooLarge(MAX_CSR_BYTES));
        }
        let (rest, csr) =
            X509CertificationRequest::from_der(der).map_err(|_| CsrError::Malformed)?;
        if !rest.is_empty() {
            return Err(CsrError::TrailingData);
        }
        let spki = &csr.certification_request_info.subject_pki;
        let alg = &spki.algorithm;
        let supported = if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
            alg.parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .is_some_and(|curve| curve == OID_EC_P256)
        } else {
            alg.algorithm == OID_SIG_ED25519
        };
        if !supported {
            return Err(CsrError::UnsupportedKey);
        }
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
        Ok(Self {
            spki_der: spki.raw.to_vec(),
        })
    }

    /// The DER SubjectPublicKeyInfo the certificate will carry.
    pub fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub(crate) fn public_key(&self) -> Result<rcgen::SubjectPublicKeyInfo, CertError> {
        Ok(rcgen::SubjectPublicKeyInfo::from_der(&self.spki_der)?)
    }
}

/// Makes a CSR for `key`. The subject is informational only; the CA ignores it.
pub fn make_csr(key: &PrivateKeyDer, common_name: &str) -> Result<Vec<u8>, CertError> {
    let key_pair = key.key_pair()?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let csr = params.serialize_request(&key_pair)?;
    Ok(csr.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_p256_csr_verifies() {
        let key = PrivateKeyDer::generate().unwrap();
        let csr = make_csr(&key, "laptop").unwrap();
        VerifiedCsr::from_der(&csr).unwrap();
    }

    #[test]
    fn an_ed25519_csr_verifies() {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key_pair)
            .unwrap();
        VerifiedCsr::from_der(csr.der()).unwrap();
    }

    #[test]
    fn csr_with_broken_signature_is_rejected() {
        let key = PrivateKeyDer::generate().unwrap();
        let mut csr = make_csr(&key, "laptop").unwrap();
        // The signature is the last element of the DER; flip a bit inside it.
        let last = csr.len() - 3;
        csr[last] ^= 0x01;
        assert_eq!(
            VerifiedCsr::from_der(&csr).unwrap_err(),
            CsrError::BadSignature
        );
    }

    #[test]
    fn csr_with_unsupported_key_type_is_rejected() {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key_pair)
            .unwrap();
        assert_eq!(
            VerifiedCsr::from_der(csr.der()).unwrap_err(),
            CsrError::UnsupportedKey
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_rejected() {
        assert_eq!(
            VerifiedCsr::from_der(b"not a csr").unwrap_err(),
            CsrError::Malformed
        );
        let key = PrivateKeyDer::generate().unwrap();
        let mut csr = make_csr(&key, "laptop").unwrap();
        csr.push(0);
        assert_eq!(
            VerifiedCsr::from_der(&csr).unwrap_err(),
            CsrError::TrailingData
        );
        assert_eq!(
            VerifiedCsr::from_der(&vec![0x30; MAX_CSR_BYTES + 1]).unwrap_err(),
            CsrError::TooLarge(MAX_CSR_BYTES)
        );
    }
}
