//! rustls configurations for the controller and its clients. One crypto provider (ring).
//!
//! - The controller's server config accepts connections with or without a client certificate
//!   (enrollment needs none); a presented one must chain to our CA. Each service then decides
//!   whether it requires one and which identity it accepts.
//! - Agents enrolling for the first time trust the controller only through the CA hash they
//!   were given (the CA must be in the chain the server sends).
//! - Enrolled agents and admins trust exactly our CA and present their own certificate.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{self, CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::time_provider::TimeProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::{CaHash, DeviceKey, PrivateKeyDer};

/// The process's one crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS client verifier configuration failed: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn roots(ca_der: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    roots_of(std::slice::from_ref(&ca_der.to_vec()))
}

/// Trust anchors from every CA certificate in `cas` (at least one).
fn roots_of(cas: &[Vec<u8>]) -> Result<Arc<RootCertStore>, TlsError> {
    if cas.is_empty() {
        return Err(TlsError::Rustls(rustls::Error::General(
            "no CA certificate to trust".into(),
        )));
    }
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(CertificateDer::from(ca.clone()))?;
    }
    Ok(Arc::new(roots))
}

fn chain(certs: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
    certs
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect()
}

fn key(key: &PrivateKeyDer) -> pki_types::PrivateKeyDer<'static> {
    pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(key.as_bytes().to_vec()))
}

/// Serials (lower-case hex) of revoked client certificates, refused at the TLS handshake.
/// Shared between the controller's revocation logic and its TLS configuration.
#[derive(Debug, Default)]
pub struct RevokedSerials(RwLock<Revoked>);

#[derive(Debug, Default)]
struct Revoked {
    set: HashSet<String>,
    /// Inserts and marks so far, one count: a reload keeps the serials inserted after its
    /// mark, and no two reloads share a mark (two with no insert between them would, and
    /// the older could not be told from the newer).
    ticks: u64,
    /// Serials inserted since the oldest reload in flight could have read the store.
    recent: Vec<(u64, String)>,
    /// The mark of the newest reload applied: an older one finishing later is stale.
    applied: u64,
}

impl RevokedSerials {
    pub fn insert(&self, serial: &str) {
        let serial = serial.to_ascii_lowercase();
        let mut revoked = self.0.write().unwrap_or_else(PoisonError::into_inner);
        revoked.ticks += 1;
        let n = revoked.ticks;
        revoked.recent.push((n, serial.clone()));
        revoked.set.insert(serial);
    }

    /// A reload's own mark, later than every insert and mark before it; take it before
    /// reading the store for [`Self::replace_since`].
    pub fn mark(&self) -> u64 {
        let mut revoked = self.0.write().unwrap_or_else(PoisonError::into_inner);
        revoked.ticks += 1;
        revoked.ticks
    }

    /// Replaces the list with `serials` read from the store after `mark`, keeping what was
    /// inserted since (a revocation committed after the read must not be dropped by it).
    /// A reload older than one already applied changes nothing: the newer one read the store
    /// later, and what was inserted between the two marks is no longer kept as recent.
    pub fn replace_since(&self, mark: u64, serials: impl IntoIterator<Item = String>) {
        let mut set: HashSet<String> = serials
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut revoked = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if mark < revoked.applied {
            return;
        }
        revoked.applied = mark;
        revoked.recent.retain(|(n, _)| *n > mark);
        set.extend(revoked.recent.iter().map(|(_, s)| s.clone()));
        revoked.set = set;
    }

    pub fn contains(&self, serial: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .set
            .contains(serial)
    }

    pub fn len(&self) -> usize {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .set
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod revoked_tests {
    use super::RevokedSerials;

    #[test]
    fn a_reload_that_read_the_store_before_a_revocation_keeps_it() {
        let revoked = RevokedSerials::default();
        revoked.insert("AA");
        let mark = revoked.mark();
        // The reload read the store here; then a revocation commits and is inserted.
        revoked.insert("bb");
        revoked.replace_since(mark, ["aa".to_owned()]);
        assert!(
            revoked.contains("bb"),
            "the later revocation survives the reload"
        );
        // A reload after it no longer needs to carry it: the store has it, or it is gone.
        let mark = revoked.mark();
        revoked.replace_since(mark, ["cc".to_owned()]);
        assert!(!revoked.contains("bb") && revoked.contains("cc"));
        assert_eq!(revoked.len(), 1);
    }

    /// Two reloads with no insert of this replica between them (a periodic one and one an
    /// announcement of another replica's revocation started): the older, finishing last, read
    /// the store before that revocation and must not replace the newer list.
    #[test]
    fn an_older_reload_with_no_insert_in_between_drops_no_revocation() {
        let revoked = RevokedSerials::default();
        // The periodic reload reads the store: nothing revoked yet.
        let periodic = revoked.mark();
        // Another replica revokes "bb" and announces it: the reload that follows reads it
        // and finishes first.
        let announced = revoked.mark();
        revoked.replace_since(announced, ["bb".to_owned()]);
        revoked.replace_since(periodic, Vec::<String>::new());
        assert!(
            revoked.contains("bb"),
            "the stale reload dropped another replica's revocation"
        );
    }

    /// Two reloads in flight, the older finishing last: its read may predate a revocation the
    /// newer one read from the store (and so no longer carries as recent). It must not replace
    /// the newer list (the attack review's finding).
    #[test]
    fn an_older_reload_finishing_last_drops_no_revocation() {
        let revoked = RevokedSerials::default();
        let older = revoked.mark();
        // The older reload reads the store: nothing revoked yet.
        revoked.insert("bb");
        let newer = revoked.mark();
        // The newer reload reads the store: "bb" is there; it finishes first.
        revoked.replace_since(newer, ["bb".to_owned()]);
        revoked.replace_since(older, Vec::<String>::new());
        assert!(
            revoked.contains("bb"),
            "the stale reload dropped a revocation"
        );
    }
}

/// The CAs whose client certificates the controller accepts, replaceable while it serves: a CA
/// rotation adds the new CA before anything is issued under it, and retiring the old one
/// removes it. Each handshake verifies against the set current when it starts.
pub struct TrustedCas {
    current: RwLock<Trusted>,
}

/// The CA certificates (DER) and the verifier built from them; no verifier when there is no
/// CA to trust (every client certificate is then refused).
type Trusted = (Vec<Vec<u8>>, Option<Arc<dyn ClientCertVerifier>>);

impl std::fmt::Debug for TrustedCas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hashes: Vec<String> = self
            .ders()
            .iter()
            .map(|c| CaHash::of_certificate(c).to_string())
            .collect();
        f.debug_struct("TrustedCas").field("cas", &hashes).finish()
    }
}

impl TrustedCas {
    pub fn new(cas: &[Vec<u8>]) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new((cas.to_vec(), client_verifier(cas)?)),
        })
    }

    /// Trusts exactly `cas` from the next handshake on (none: every client certificate is
    /// refused); on error the current set stays.
    pub fn replace(&self, cas: &[Vec<u8>]) -> Result<(), TlsError> {
        let verifier = client_verifier(cas)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = (cas.to_vec(), verifier);
        Ok(())
    }

    /// The CA certificates trusted now (DER).
    pub fn ders(&self) -> Vec<Vec<u8>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
    }
}

fn client_verifier(cas: &[Vec<u8>]) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if cas.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        WebPkiClientVerifier::builder_with_provider(roots_of(cas)?, provider())
            .allow_unauthenticated()
            .build()?,
    ))
}

/// The serial of a DER certificate as lower-case hex, as [`crate::validate`] reports it.
pub fn serial_of(cert_der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der).ok()?;
    Some(hex::encode(cert.raw_serial()))
}

/// WebPKI client verification (optional certificates, our CAs) plus a revocation check.
#[derive(Debug)]
struct RevocationCheckingVerifier {
    trusted: Arc<TrustedCas>,
    revoked: Arc<RevokedSerials>,
}

impl ClientCertVerifier for RevocationCheckingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Enrollment needs no certificate; each service decides what it requires.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Every Ward CA has the same subject; a client has one identity to offer anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified =
            self.trusted
                .verifier()?
                .verify_client_cert(end_entity, intermediates, now)?;
        match serial_of(end_entity) {
            Some(serial) if self.revoked.contains(&serial) => {
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            Some(_) => Ok(verified),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trusted
            .verifier()?
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.trusted
            .verifier()?
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The controller's server config: optional client certificates chained to `ca_der` and not
/// in `revoked`, ALPN h2. `server_chain` is the server certificate followed by the CA
/// certificate, so agents can pin the CA by hash.
///
/// Session resumption is off (no TLS 1.2 session ids, no TLS 1.3 tickets): a resumed session
/// restores the client's chain without asking the verifier, so a certificate revoked since the
/// first handshake would still be accepted. Every connection is a full handshake that the
/// revocation list sees; agents hold long-lived streams, so the cost is one handshake each.
pub fn server_config(
    ca_der: &[u8],
    server_chain: &[Vec<u8>],
    server_key: &PrivateKeyDer,
    revoked: Arc<RevokedSerials>,
) -> Result<ServerConfig, TlsError> {
    let trusted = Arc::new(TrustedCas::new(&[ca_der.to_vec()])?);
    server_config_trusting(trusted, server_chain, server_key, revoked)
}

/// [`server_config`], accepting client certificates of every CA `trusted` holds at each
/// handshake.
pub fn server_config_trusting(
    trusted: Arc<TrustedCas>,
    server_chain: &[Vec<u8>],
    server_key: &PrivateKeyDer,
    revoked: Arc<RevokedSerials>,
) -> Result<ServerConfig, TlsError> {
    let verifier = Arc::new(RevocationCheckingVerifier { trusted, revoked });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(server_chain), key(server_key))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A client config that trusts exactly `ca_der` and, when given, presents a client identity.
pub fn client_config(
    ca_der: &[u8],
    identity: Option<(&[Vec<u8>], &PrivateKeyDer)>,
) -> Result<ClientConfig, TlsError> {
    let key = identity.map(|(certs, key)| {
        (
            certs,
            DeviceKey::from(PrivateKeyDer::new(key.as_bytes().to_vec())),
        )
    });
    client_config_with_time(
        &[ca_der.to_vec()],
        key.as_ref().map(|(c, k)| (*c, k)),
        system_time(),
    )
}

/// A client config that trusts a server certificate issued by any CA in `cas` (the trust
/// bundle of a CA rotation: the old CA and the new one).
pub fn client_config_trusting(
    cas: &[Vec<u8>],
    identity: Option<(&[Vec<u8>], &PrivateKeyDer)>,
) -> Result<ClientConfig, TlsError> {
    let key = identity.map(|(certs, key)| {
        (
            certs,
            DeviceKey::from(PrivateKeyDer::new(key.as_bytes().to_vec())),
        )
    });
    client_config_with_time(cas, key.as_ref().map(|(c, k)| (*c, k)), system_time())
}

fn system_time() -> Arc<dyn TimeProvider> {
    Arc::new(rustls::time_provider::DefaultTimeProvider)
}

/// [`client_config_trusting`], judging the server certificate's validity by `time` instead of
/// the system clock (the agent passes its own clock, so tests can set it).
/// The identity may be a key in memory or one a TPM holds (its handshake signature is then
/// made by the TPM).
pub fn client_config_with_time(
    cas: &[Vec<u8>],
    identity: Option<(&[Vec<u8>], &DeviceKey)>,
    time: Arc<dyn TimeProvider>,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_details(provider(), time)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots_of(cas)?);
    let mut config = match identity {
        Some((certs, DeviceKey::Memory(private_key))) => {
            builder.with_client_auth_cert(chain(certs), key(private_key))?
        }
        Some((certs, DeviceKey::Held(held))) => {
            let signing = Arc::new(crate::device_key::TlsHeld(held.clone()));
            let certified = Arc::new(rustls::sign::CertifiedKey::new(chain(certs), signing));
            builder.with_client_cert_resolver(Arc::new(OneClientCert(certified)))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Presents one certificate and key, whatever the server asks for (as `with_client_auth_cert`
/// does for a key in memory).
#[derive(Debug)]
struct OneClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OneClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// What a pinned connection saw: the hash of the CA the server presented when it did not
/// match the pin, so the agent can say exactly what was wrong.
#[derive(Clone, Debug, Default)]
pub struct PinReport(Arc<Mutex<Option<String>>>);

impl PinReport {
    /// `Some(description)` when the server's chain did not contain the pinned CA.
    pub fn mismatch(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, what: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(what);
    }
}

/// A client config that trusts a server only if its chain contains the CA whose certificate
/// hashes to `pin`, and the server certificate verifies against that CA for the host name.
pub fn pinned_client_config(pin: CaHash) -> Result<(ClientConfig, PinReport), TlsError> {
    pinned_client_config_with_time(pin, system_time())
}

/// [`pinned_client_config`], judging validity by `time`.
pub fn pinned_client_config_with_time(
    pin: CaHash,
    time: Arc<dyn TimeProvider>,
) -> Result<(ClientConfig, PinReport), TlsError> {
    let report = PinReport::default();
    let verifier = PinnedCaVerifier {
        pin,
        provider: provider(),
        report: report.clone(),
    };
    let mut config = ClientConfig::builder_with_details(provider(), time)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((config, report))
}

#[derive(Debug)]
struct PinnedCaVerifier {
    pin: CaHash,
    provider: Arc<CryptoProvider>,
    report: PinReport,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| self.pin.matches(c)) else {
            let seen: Vec<String> = intermediates
                .iter()
                .map(|c| CaHash::of_certificate(c).to_string())
                .collect();
            let what = if seen.is_empty() {
                "the server sent no CA certificate".to_owned()
            } else {
                format!("the server's CA is {}", seen.join(", "))
            };
            self.report.record(what.clone());
            return Err(rustls::Error::General(format!(
                "CA pin mismatch: expected {}, {what}",
                self.pin
            )));
        };
        let roots = roots(ca).map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
