//! Validation of a presented certificate against Ward's CA, and identity extraction.
//!
//! rustls/webpki already checks the chain during the handshake; this is the second, explicit
//! check every service runs before trusting an identity, and the only place a certificate
//! becomes an [`Identity`].

use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::identity::{Identity, IdentityError};

/// How far a certificate's validity window may be stretched for clock differences.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(5 * 60);

/// A certificate that passed every check, reduced to what authorization needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    pub identity: Identity,
    /// Lower-case hex of the serial number's bytes.
    pub serial: String,
    pub not_after: OffsetDateTime,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("the certificate is not valid DER X.509")]
    Malformed,
    #[error("the certificate was not issued by this controller's CA")]
    NotIssuedByCa,
    #[error("the certificate is not valid before {0}")]
    NotYetValid(OffsetDateTime),
    #[error("the certificate expired at {0}")]
    Expired(OffsetDateTime),
    #[error("the certificate is a CA certificate (CA:TRUE) and cannot identify a client")]
    IsCa,
    #[error("the certificate lacks the TLS client authentication extended key usage")]
    NotForClientAuth,
    #[error("the certificate has no ward:// URI SAN")]
    NoIdentity,
    #[error("the certificate has {0} URI SANs; exactly one ward:// URI is allowed")]
    SeveralIdentities(usize),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("the certificate certifies another key")]
    OtherKey,
}

/// Checks a client certificate: issued by `ca_der`, inside its validity window (± `skew`),
/// `CA:FALSE`, TLS client EKU, exactly one `ward://` URI SAN. Returns its identity.
pub fn validate_client_certificate(
    leaf_der: &[u8],
    ca_der: &[u8],
    now: OffsetDateTime,
    skew: Duration,
) -> Result<PeerCertificate, ValidationError> {
    let (rest, leaf) =
        X509Certificate::from_der(leaf_der).map_err(|_| ValidationError::Malformed)?;
    if !rest.is_empty() {
        return Err(ValidationError::Malformed);
    }
    let (_, ca) = X509Certificate::from_der(ca_der).map_err(|_| ValidationError::Malformed)?;

    check_issued_by(&leaf, &ca)?;
    check_validity(&leaf, now, skew)?;
    if leaf.is_ca() {
        return Err(ValidationError::IsCa);
    }
    let client_auth = leaf
        .extended_key_usage()
        .map_err(|_| ValidationError::Malformed)?
        .is_some_and(|eku| eku.value.client_auth);
    if !client_auth {
        return Err(ValidationError::NotForClientAuth);
    }
    let identity = identity_of(&leaf)?;
    Ok(PeerCertificate {
        identity,
        serial: hex::encode(leaf.raw_serial()),
        not_after: leaf.validity().not_after.to_datetime(),
    })
}

/// [`validate_client_certificate`] against each CA of a trust bundle (during a CA rotation
/// the old CA and the new one): the certificate must pass every check under the CA that
/// issued it. `NotIssuedByCa` when none of them did.
pub fn validate_client_certificate_by_any(
    leaf_der: &[u8],
    cas: &[Vec<u8>],
    now: OffsetDateTime,
    skew: Duration,
) -> Result<PeerCertificate, ValidationError> {
    for ca in cas {
        match validate_client_certificate(leaf_der, ca, now, skew) {
            Err(ValidationError::NotIssuedByCa) => continue,
            other => return other,
        }
    }
    Err(ValidationError::NotIssuedByCa)
}

/// Whether `cert_der` is a CA certificate (basic constraints CA:TRUE).
pub fn is_ca_certificate(cert_der: &[u8]) -> bool {
    X509Certificate::from_der(cert_der).is_ok_and(|(_, cert)| cert.is_ca())
}

/// The DER SubjectPublicKeyInfo a certificate certifies; `None` when it does not parse.
pub fn public_key_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    X509Certificate::from_der(cert_der)
        .ok()
        .map(|(_, cert)| cert.public_key().raw.to_vec())
}

/// Whether `cert_der` carries a valid signature of the CA `ca_der` (any certificate, any
/// validity: the question is only who issued it).
pub fn issued_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    check_issued_by(&cert, &ca).is_ok()
}

/// Checks that `leaf_der` is a client certificate issued by `ca_der` that certifies the key
/// `spki_der` (DER SubjectPublicKeyInfo), as it was when issued: its validity window is not
/// checked against today (a wipe is attested long after its certificate may have expired).
pub fn certifies_key(
    leaf_der: &[u8],
    ca_der: &[u8],
    spki_der: &[u8],
) -> Result<PeerCertificate, ValidationError> {
    let (_, leaf) = X509Certificate::from_der(leaf_der).map_err(|_| ValidationError::Malformed)?;
    let issued = leaf.validity().not_before.to_datetime();
    let peer = validate_client_certificate(leaf_der, ca_der, issued, Duration::ZERO)?;
    if leaf.public_key().raw != spki_der {
        return Err(ValidationError::OtherKey);
    }
    Ok(peer)
}

fn check_issued_by(
    leaf: &X509Certificate<'_>,
    ca: &X509Certificate<'_>,
) -> Result<(), ValidationError> {
    if leaf.issuer() != ca.subject() {
        return Err(ValidationError::NotIssuedByCa);
    }
    leaf.verify_signature(Some(ca.public_key()))
        .map_err(|_| ValidationError::NotIssuedByCa)
}

fn check_validity(
    cert: &X509Certificate<'_>,
    now: OffsetDateTime,
    skew: Duration,
) -> Result<(), ValidationError> {
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now + skew < not_before {
        return Err(ValidationError::NotYetValid(not_before));
    }
    if now - skew > not_after {
        return Err(ValidationError::Expired(not_after));
    }
    Ok(())
}

/// The identity in the certificate's single URI SAN. The subject CN is never consulted.
pub fn identity_of(cert: &X509Certificate<'_>) -> Result<Identity, ValidationError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|_| ValidationError::Malformed)?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [] => Err(ValidationError::NoIdentity),
        [uri] => Ok(Identity::from_uri(uri)?),
        many => Err(ValidationError::SeveralIdentities(many.len())),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;

/// The controller name in a server certificate's `ward://controller/<name>` URI SAN.
pub fn controller_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    match identity_of(&cert).ok()? {
        Identity::Controller(name) => Some(name),
        _ => None,
    }
}

/// The DNS names and IP addresses a server certificate covers, lower-cased.
pub fn server_names(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
