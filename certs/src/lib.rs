//! Ward's PKI: a pure library, bytes in and typed results out. It does no I/O: no file is
//! opened, read or written here (the files Ward keeps on disk, the admin bundle's among them,
//! are ward-files'), so ward-core can depend on it and still reach no filesystem.
//!
//! - [`ca`] — create and load the certificate authority; issue server, device and admin
//!   certificates. Identity always comes from the caller (the enrollment record), never from
//!   the CSR.
//! - [`csr`] — parse a PKCS#10 request and verify its signature (proof of possession).
//! - [`device_key`] — a device's signing key, in memory or held by a TPM that never lets it
//!   out: certificate requests, TLS client signatures and receipts all sign through it.
//! - [`validate`] — check a presented certificate against our CA and turn its single `ward://`
//!   URI SAN into an [`Identity`]; [`identity`] — those identities and admin names.
//! - [`tls`] — rustls configurations for the controller and its clients, including CA pinning;
//!   [`live`] — the server certificate a running listener can swap, and when to renew it.
//! - [`keyfile`] — passphrase-protected private keys (PKCS#8, scrypt, AES-256-CBC) as bytes and
//!   PEM text.
//! - [`pin`] — the CA pin an agent is given at enrollment.
//! - [`receipt`], [`sign`], [`sanitization`] — the wipe receipt a device signs, its signature
//!   check, and what it states for a certificate of sanitization.
//!
//! Chain validation and identity extraction are separate steps so each rule can be tested alone.
//!
//! It may depend on ward-vocab only among Ward's crates, and on no tonic, sqlx or tokio, and it
//! uses no `std::fs`: bytes in, typed results out (a held key's signing is the caller's program
//! to run).

#![forbid(unsafe_code)]

pub mod ca;
pub mod csr;
pub mod device_key;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
// The fuzz bodies (and the test hooks) are for fuzzing and test builds: a release build that
// turns them on is refused rather than shipped (cargo-fuzz builds set `cfg(fuzzing)`).
#[cfg(all(not(debug_assertions), not(fuzzing), feature = "fuzzing"))]
compile_error!(
    "the `fuzzing` and test-only features are for fuzz and test builds, not release builds"
);
pub mod identity;
pub mod keyfile;
pub mod live;
pub mod pin;
pub mod receipt;
pub mod sanitization;
pub mod sign;
pub mod tls;
pub mod validate;

pub use ca::{CertificateAuthority, IssuedCertificate};
pub use csr::VerifiedCsr;
pub use device_key::{DeviceKey, HeldKey};
pub use identity::{AdminName, Identity};
pub use pin::CaHash;
pub use validate::{PeerCertificate, ValidationError};

/// A private key in PKCS#8 DER. Zeroized on drop; never printed.
pub struct PrivateKeyDer(zeroize::Zeroizing<Vec<u8>>);

impl PrivateKeyDer {
    pub fn new(der: Vec<u8>) -> Self {
        Self(zeroize::Zeroizing::new(der))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// PEM ("PRIVATE KEY"), zeroized on drop.
    pub fn to_pem(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", self.0.to_vec())))
    }

    /// Reads the first "PRIVATE KEY" block of a PEM document.
    pub fn from_pem(text: &str) -> Result<Self, PemError> {
        let blocks = pem::parse_many(text).map_err(|_| PemError::Malformed)?;
        blocks
            .into_iter()
            .find(|b| b.tag() == "PRIVATE KEY")
            .map(|b| Self::new(b.into_contents()))
            .ok_or(PemError::Missing("PRIVATE KEY"))
    }

    /// Generates a fresh ECDSA P-256 key pair and returns its PKCS#8 DER.
    pub fn generate() -> Result<Self, CertError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Ok(Self::new(key.serialize_der()))
    }

    /// The public half, as a DER SubjectPublicKeyInfo (what `openssl pkey -pubin -inform DER`
    /// reads).
    pub fn public_key_der(&self) -> Result<Vec<u8>, CertError> {
        Ok(rcgen::PublicKeyData::subject_public_key_info(
            &self.key_pair()?,
        ))
    }

    pub(crate) fn key_pair(&self) -> Result<rcgen::KeyPair, CertError> {
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from(self.0.as_slice());
        Ok(rcgen::KeyPair::try_from(&der)?)
    }
}

impl std::fmt::Debug for PrivateKeyDer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKeyDer(<redacted>)")
    }
}

/// Errors from building or signing certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid certificate parameters: {0}")]
    Invalid(String),
    #[error("the device key's holder did not sign: {0}")]
    Held(String),
}

/// Errors from reading PEM text.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("the PEM text is malformed")]
    Malformed,
    #[error("the PEM text holds no {0} block")]
    Missing(&'static str),
}

/// True when `key`'s public key is the one in the certificate `cert_der`.
pub fn key_matches_certificate(key: &PrivateKeyDer, cert_der: &[u8]) -> bool {
    use x509_parser::prelude::FromDer;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(cert_der) else {
        return false;
    };
    key.key_pair()
        .map(|pair| rcgen::PublicKeyData::subject_public_key_info(&pair) == cert.public_key().raw)
        .unwrap_or(false)
}

/// Every CERTIFICATE block of a PEM document, in order, as DER.
pub fn certificates_from_pem(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks = pem::parse_many(text).map_err(|_| PemError::Malformed)?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certs.is_empty() {
        return Err(PemError::Missing("CERTIFICATE"));
    }
    Ok(certs)
}

/// A certificate as PEM text.
pub fn certificate_to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}
