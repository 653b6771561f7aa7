//! A server certificate that can be replaced while the server runs, and the rule that says
//! when to replace it.
//!
//! [`LiveServerCert`] is the rustls certificate resolver of the controller's listener: every
//! new handshake takes the certificate current at that moment, while connections already open
//! keep the one they were made with (TLS never re-checks the server certificate of an
//! established connection), so a renewal drops nothing.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use crate::PrivateKeyDer;
use crate::tls::{RevokedSerials, TlsError, TrustedCas};

/// The certificate the controller's listener presents, replaceable at run time.
pub struct LiveServerCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for LiveServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveServerCert").finish_non_exhaustive()
    }
}

fn certified_key(chain: &[Vec<u8>], key: &PrivateKeyDer) -> Result<Arc<CertifiedKey>, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::Rustls(rustls::Error::General(
            "a server certificate chain cannot be empty".into(),
        )));
    }
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        key.as_bytes().to_vec(),
    ));
    // Refuses a key that does not belong to the leaf: a mismatched pair would fail every
    // handshake from the moment it is installed.
    let certified = CertifiedKey::from_der(certs, key, &crate::tls::provider())?;
    certified.keys_match()?;
    Ok(Arc::new(certified))
}

impl LiveServerCert {
    /// `chain` is the leaf followed by the CA certificate.
    pub fn new(chain: &[Vec<u8>], key: &PrivateKeyDer) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(certified_key(chain, key)?),
        })
    }

    /// Presents `chain` (leaf, then CA) with `key` from the next handshake on. On error the
    /// current certificate stays.
    pub fn replace(&self, chain: &[Vec<u8>], key: &PrivateKeyDer) -> Result<(), TlsError> {
        let new = certified_key(chain, key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = new;
        Ok(())
    }

    /// The leaf certificate new handshakes get (DER).
    pub fn leaf(&self) -> Vec<u8> {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        current.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }
}

impl ResolvesServerCert for LiveServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// [`crate::tls::server_config`] (same client verification, same options), presenting
/// whatever `live` holds at each handshake.
pub fn server_config(
    ca_der: &[u8],
    server_chain: &[Vec<u8>],
    server_key: &PrivateKeyDer,
    revoked: Arc<RevokedSerials>,
) -> Result<(ServerConfig, Arc<LiveServerCert>), TlsError> {
    let trusted = Arc::new(TrustedCas::new(&[ca_der.to_vec()])?);
    server_config_trusting(trusted, server_chain, server_key, revoked)
}

/// [`server_config`], accepting client certificates of the CAs `trusted` holds at each
/// handshake (the controller's, which a CA rotation changes while it serves).
pub fn server_config_trusting(
    trusted: Arc<TrustedCas>,
    server_chain: &[Vec<u8>],
    server_key: &PrivateKeyDer,
    revoked: Arc<RevokedSerials>,
) -> Result<(ServerConfig, Arc<LiveServerCert>), TlsError> {
    let live = Arc::new(LiveServerCert::new(server_chain, server_key)?);
    let mut config =
        crate::tls::server_config_trusting(trusted, server_chain, server_key, revoked)?;
    config.cert_resolver = live.clone();
    Ok((config, live))
}

/// A certificate's validity period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// The validity of a DER certificate; `None` when it does not parse.
    pub fn of(cert_der: &[u8]) -> Option<Self> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der).ok()?;
        Some(Self {
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }

    /// When the certificate should be replaced: two thirds into its lifetime. The same rule
    /// covers a start with less than a third left (that moment is then already past).
    pub fn renew_at(&self) -> OffsetDateTime {
        self.not_before + (self.not_after - self.not_before) * (2.0 / 3.0)
    }

    pub fn renewal_due(&self, now: OffsetDateTime) -> bool {
        now >= self.renew_at()
    }

    /// Seconds from `now` to expiry; negative once expired.
    pub fn seconds_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_seconds()
    }

    pub fn lifetime(&self) -> Duration {
        (self.not_after - self.not_before)
            .try_into()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CertificateAuthority;
    use crate::ca::SERVER_LIFETIME;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    fn issue(ca: &CertificateAuthority, now: OffsetDateTime) -> (Vec<Vec<u8>>, PrivateKeyDer) {
        let (cert, key) = ca
            .issue_server(&["ward.example".into()], now, SERVER_LIFETIME)
            .unwrap();
        (vec![cert.der, ca.cert_der().to_vec()], key)
    }

    #[test]
    fn renewal_is_due_two_thirds_into_the_lifetime_and_not_before() {
        let ca = CertificateAuthority::create("test", at(0)).unwrap();
        let (chain, _) = issue(&ca, at(0));
        let validity = Validity::of(&chain[0]).unwrap();
        let third = (validity.not_after - validity.not_before) / 3;
        assert!(!validity.renewal_due(validity.not_before + third));
        assert!(!validity.renewal_due(validity.not_before + third * 2 - time::Duration::SECOND));
        assert!(validity.renewal_due(validity.not_before + third * 2));
        // A start with less than a third left, or after expiry, renews at once.
        assert!(validity.renewal_due(validity.not_after - time::Duration::DAY));
        assert!(validity.renewal_due(validity.not_after + time::Duration::DAY));
        assert_eq!(validity.seconds_left(validity.not_after), 0);
    }

    #[test]
    fn a_replaced_certificate_is_what_the_next_handshake_gets() {
        let ca = CertificateAuthority::create("test", at(0)).unwrap();
        let (first, first_key) = issue(&ca, at(0));
        let live = LiveServerCert::new(&first, &first_key).unwrap();
        assert_eq!(live.leaf(), first[0]);
        let (second, second_key) = issue(&ca, at(3600));
        live.replace(&second, &second_key).unwrap();
        assert_eq!(live.leaf(), second[0]);
    }

    #[test]
    fn a_key_that_does_not_belong_to_the_certificate_is_refused_and_the_old_one_stays() {
        let ca = CertificateAuthority::create("test", at(0)).unwrap();
        let (first, first_key) = issue(&ca, at(0));
        let live = LiveServerCert::new(&first, &first_key).unwrap();
        let (second, _) = issue(&ca, at(3600));
        assert!(live.replace(&second, &first_key).is_err());
        assert!(live.replace(&[], &first_key).is_err());
        assert_eq!(live.leaf(), first[0]);
    }
}
