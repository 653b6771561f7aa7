//! A device's own signing key, wherever it is kept: in memory (read from a 0600 file or the OS
//! keyring), or held by hardware that signs on request and never hands the key out (a TPM).
//! Everything the device signs goes through [`DeviceKey`]: its certificate requests, the TLS
//! handshake's client signature, and its wipe receipts.
//!
//! A held key is ECDSA P-256 with SHA-256, the one scheme every Ward certificate, the
//! controller's receipt check and OpenSSL's `dgst -verify` agree on.

use std::fmt;
use std::sync::Arc;

use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::{CertError, PrivateKeyDer};

/// A key held outside the process that signs on request (see the agent's `tpm_key`).
pub trait HeldKey: Send + Sync + fmt::Debug {
    /// The public half, a DER SubjectPublicKeyInfo for an ECDSA P-256 key.
    fn public_key_der(&self) -> &[u8];

    /// An ECDSA P-256 / SHA-256 signature over `message` (the holder hashes it), ASN.1 DER.
    /// The error says why the holder refused or failed, without any secret.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;

    /// Where the key is held, in words for logs and status (e.g. "TPM 2.0, handle 0x81005741").
    fn describe(&self) -> String;
}

/// The device's signing key.
#[derive(Clone)]
pub enum DeviceKey {
    /// A PKCS#8 key in this process's memory (zeroized on drop).
    Memory(Arc<PrivateKeyDer>),
    /// A key that never leaves its holder.
    Held(Arc<dyn HeldKey>),
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceKey::Memory(_) => f.write_str("DeviceKey::Memory(<redacted>)"),
            DeviceKey::Held(held) => write!(f, "DeviceKey::Held({})", held.describe()),
        }
    }
}

impl From<PrivateKeyDer> for DeviceKey {
    fn from(key: PrivateKeyDer) -> Self {
        DeviceKey::Memory(Arc::new(key))
    }
}

impl DeviceKey {
    /// A held key, refused unless its public half is an ECDSA P-256 key (the only scheme a held
    /// key signs with here).
    pub fn held(key: Arc<dyn HeldKey>) -> Result<Self, CertError> {
        ec_p256_point(key.public_key_der())?;
        Ok(DeviceKey::Held(key))
    }

    /// The public half, as a DER SubjectPublicKeyInfo.
    pub fn public_key_der(&self) -> Result<Vec<u8>, CertError> {
        match self {
            DeviceKey::Memory(key) => key.public_key_der(),
            DeviceKey::Held(held) => Ok(held.public_key_der().to_vec()),
        }
    }

    /// Signs `message`: ECDSA P-256 / SHA-256, ASN.1 DER (or Ed25519 for an in-memory
    /// Ed25519 key).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, CertError> {
        match self {
            DeviceKey::Memory(key) => crate::sign::sign(key, message),
            DeviceKey::Held(held) => held.sign(message).map_err(CertError::Held),
        }
    }

    /// The in-memory key, for the callers that store it; `None` for a held key.
    pub fn in_memory(&self) -> Option<&PrivateKeyDer> {
        match self {
            DeviceKey::Memory(key) => Some(key),
            DeviceKey::Held(_) => None,
        }
    }

    /// True when the certificate `cert_der` is for this key.
    pub fn matches_certificate(&self, cert_der: &[u8]) -> bool {
        let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(cert_der) else {
            return false;
        };
        self.public_key_der()
            .is_ok_and(|spki| spki.as_slice() == cert.public_key().raw)
    }

    /// A certificate signing request for this key (the subject is informational only).
    pub fn make_csr(&self, common_name: &str) -> Result<Vec<u8>, CertError> {
        match self {
            DeviceKey::Memory(key) => crate::csr::make_csr(key, common_name),
            DeviceKey::Held(held) => {
                let signer = RcgenHeld {
                    held: held.as_ref(),
                    point: ec_p256_point(held.public_key_der())?,
                    refused: std::sync::Mutex::new(None),
                };
                let mut params = rcgen::CertificateParams::default();
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, common_name);
                match params.serialize_request(&signer) {
                    Ok(csr) => Ok(csr.der().to_vec()),
                    // rcgen carries no detail for a remote key's failure: give the holder's.
                    Err(e) => Err(
                        match signer.refused.lock().ok().and_then(|mut r| r.take()) {
                            Some(reason) => CertError::Held(reason),
                            None => e.into(),
                        },
                    ),
                }
            }
        }
    }
}

/// The EC point of a P-256 SubjectPublicKeyInfo; anything else is refused.
fn ec_p256_point(spki_der: &[u8]) -> Result<Vec<u8>, CertError> {
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
    let not_p256 = || CertError::Invalid("a held key must be an ECDSA P-256 key".into());
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|_| not_p256())?;
    let alg = &spki.algorithm;
    let p256 = rest.is_empty()
        && alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY
        && alg
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == OID_EC_P256);
    if !p256 {
        return Err(not_p256());
    }
    Ok(spki.subject_public_key.data.to_vec())
}

/// A held key as rcgen signs a request with it.
struct RcgenHeld<'a> {
    held: &'a dyn HeldKey,
    point: Vec<u8>,
    /// Why the holder did not sign, when it did not.
    refused: std::sync::Mutex<Option<String>>,
}

impl rcgen::PublicKeyData for RcgenHeld<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RcgenHeld<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.held.sign(msg).map_err(|e| {
            if let Ok(mut refused) = self.refused.lock() {
                *refused = Some(e);
            }
            rcgen::Error::RemoteKeyError
        })
    }
}

/// A held key as rustls signs a TLS handshake with it (client authentication).
#[derive(Debug)]
pub(crate) struct TlsHeld(pub(crate) Arc<dyn HeldKey>);

impl rustls::sign::SigningKey for TlsHeld {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&rustls::SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(TlsHeldSigner(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct TlsHeldSigner(Arc<dyn HeldKey>);

impl rustls::sign::Signer for TlsHeldSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.0.sign(message).map_err(|e| {
            rustls::Error::General(format!(
                "the device key ({}) did not sign: {e}",
                self.0.describe()
            ))
        })
    }

    fn scheme(&self) -> rustls::SignatureScheme {
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VerifiedCsr;

    /// A held key stand-in: an in-memory key behind the trait, counting its signatures.
    #[derive(Debug)]
    struct Software {
        key: PrivateKeyDer,
        spki: Vec<u8>,
        refuse: bool,
    }

    impl Software {
        fn new(refuse: bool) -> Arc<Self> {
            let key = PrivateKeyDer::generate().unwrap();
            let spki = key.public_key_der().unwrap();
            Arc::new(Self { key, spki, refuse })
        }
    }

    impl HeldKey for Software {
        fn public_key_der(&self) -> &[u8] {
            &self.spki
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
            if self.refuse {
                return Err("refused".into());
            }
            crate::sign::sign(&self.key, message).map_err(|e| e.to_string())
        }
        fn describe(&self) -> String {
            "software stand-in".into()
        }
    }

    #[test]
    fn a_held_key_signs_requests_and_statements_that_verify() {
        let key = DeviceKey::held(Software::new(false)).unwrap();
        let csr = key.make_csr("laptop").unwrap();
        let verified = VerifiedCsr::from_der(&csr).unwrap();
        assert_eq!(verified.public_key_der(), key.public_key_der().unwrap());
        let signature = key.sign(b"receipt").unwrap();
        crate::sign::verify(&key.public_key_der().unwrap(), b"receipt", &signature).unwrap();
        assert!(key.in_memory().is_none());
    }

    #[test]
    fn a_held_key_that_refuses_fails_the_request_with_its_reason() {
        let key = DeviceKey::held(Software::new(true)).unwrap();
        let err = key.make_csr("laptop").unwrap_err().to_string();
        assert!(err.contains("refused"), "{err}");
        let err = key.sign(b"receipt").unwrap_err().to_string();
        assert!(err.contains("refused"), "{err}");
    }

    #[test]
    fn a_held_key_that_is_not_p256_is_refused() {
        #[derive(Debug)]
        struct Ed(Vec<u8>);
        impl HeldKey for Ed {
            fn public_key_der(&self) -> &[u8] {
                &self.0
            }
            fn sign(&self, _: &[u8]) -> Result<Vec<u8>, String> {
                Err("no".into())
            }
            fn describe(&self) -> String {
                "ed".into()
            }
        }
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
        assert!(DeviceKey::held(Arc::new(Ed(spki))).is_err());
        assert!(DeviceKey::held(Arc::new(Ed(b"junk".to_vec()))).is_err());
    }

    #[test]
    fn a_key_matches_only_its_own_certificate() {
        let ca =
            crate::CertificateAuthority::create("test", time::OffsetDateTime::now_utc()).unwrap();
        let key = DeviceKey::held(Software::new(false)).unwrap();
        let other = DeviceKey::from(PrivateKeyDer::generate().unwrap());
        let csr = VerifiedCsr::from_der(&key.make_csr("x").unwrap()).unwrap();
        let issued = ca
            .issue_client(
                &csr,
                &crate::Identity::Device(uuid::Uuid::new_v4()),
                time::OffsetDateTime::now_utc(),
                std::time::Duration::from_secs(3600),
            )
            .unwrap();
        assert!(key.matches_certificate(&issued.der));
        assert!(!other.matches_certificate(&issued.der));
    }
}
