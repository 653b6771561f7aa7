//! The controller's own TLS server certificate over time: renewed two thirds into its
//! lifetime (and at start when less than a third is left), re-issued when the operator
//! changes the host names, swapped into the running listener without a restart.
//!
//! Every replica issues its own server certificate under the CA. Each replica already holds
//! the CA key (its data directory is a copy of the first controller's: `ca.key` is what signs
//! device certificates and audit heads), agents pin the CA rather than the leaf, and keeping
//! the server's private key out of the database means nobody who can read the database (or
//! its backups) can impersonate the controller with it. A renewed certificate is written
//! back to the data directory when it is writable, so a restart presents it; when it is not
//! (a Kubernetes Secret), the replica renews again at its next start.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tracing::{info, warn};
use ward_certs::live::{LiveServerCert, Validity};
use ward_certs::{CertificateAuthority, PrivateKeyDer};

use crate::ca_set::CaSet;
use crate::core::Timestamp;
use crate::datadir::DataDir;

#[derive(Debug, thiserror::Error)]
pub enum ServerCertError {
    #[error("cannot issue a server certificate: {0}")]
    Issue(String),
    #[error("cannot present the new server certificate: {0}")]
    Install(String),
}

/// A server certificate just issued under the CA, not yet presented.
pub struct Issued {
    /// The CA that issued it.
    ca: Arc<CertificateAuthority>,
    pub serial: String,
    pub not_after: Timestamp,
    pub hostnames: Vec<String>,
    cert: ward_certs::IssuedCertificate,
    key: PrivateKeyDer,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .field("hostnames", &self.hostnames)
            .finish_non_exhaustive()
    }
}

/// The listener's certificate and what is needed to replace it.
pub struct ServerCertificate {
    cas: Arc<CaSet>,
    live: Arc<LiveServerCert>,
    lifetime: Duration,
    dir: Option<DataDir>,
    /// The chain now presented (leaf, CA), to answer questions about it.
    current: RwLock<Vec<u8>>,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl ServerCertificate {
    /// `live` presents the current certificate; renewed ones get `lifetime` and are written
    /// to `dir` (when given and writable).
    pub fn new(
        cas: Arc<CaSet>,
        live: Arc<LiveServerCert>,
        lifetime: Duration,
        dir: Option<DataDir>,
    ) -> Self {
        let current = RwLock::new(live.leaf());
        Self {
            cas,
            live,
            lifetime,
            dir,
            current,
        }
    }

    /// The CA that issues it now.
    pub fn ca(&self) -> Arc<CertificateAuthority> {
        self.cas.signing()
    }

    /// Whether the certificate presented was issued by the CA that signs now (not after a
    /// CA rotation's activate step, until it is issued again).
    pub fn issued_by_signing_ca(&self) -> bool {
        ward_certs::validate::issued_by(&self.leaf(), self.cas.signing().cert_der())
    }

    /// The leaf certificate new connections get (DER).
    pub fn leaf(&self) -> Vec<u8> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn validity(&self) -> Option<Validity> {
        Validity::of(&self.leaf())
    }

    /// The names the certificate covers, the controller's own name first.
    pub fn hostnames(&self) -> Vec<String> {
        let leaf = self.leaf();
        let mut names = ward_certs::validate::server_names(&leaf);
        if let Some(first) = ward_certs::validate::controller_name(&leaf)
            && let Some(at) = names.iter().position(|n| *n == first)
        {
            let name = names.remove(at);
            names.insert(0, name);
        }
        names
    }

    /// True when the certificate is two thirds into its lifetime (or unreadable).
    pub fn renewal_due(&self, now: Timestamp) -> bool {
        self.validity()
            .is_none_or(|v| v.renewal_due(now.to_datetime()))
    }

    /// Issues a certificate for `hostnames` under the CA. It is not presented until
    /// [`ServerCertificate::install`]: the caller audits it first, so a certificate in use is
    /// always one the audit trail names.
    pub fn issue(&self, hostnames: &[String], now: Timestamp) -> Result<Issued, ServerCertError> {
        let ca = self.cas.signing();
        let (cert, key) = ca
            .issue_server(hostnames, now.to_datetime(), self.lifetime)
            .map_err(|e| ServerCertError::Issue(e.to_string()))?;
        Ok(Issued {
            ca,
            serial: cert.serial.clone(),
            not_after: Timestamp::from_datetime(cert.not_after),
            hostnames: hostnames.to_vec(),
            cert,
            key,
        })
    }

    /// Presents `issued` from the next handshake on and writes it to the data directory.
    /// Connections already open keep theirs. Returns whether it was written.
    pub fn install(&self, issued: Issued) -> Result<bool, ServerCertError> {
        let Issued { cert, key, ca, .. } = issued;
        let chain = vec![cert.der.clone(), ca.cert_der().to_vec()];
        self.live
            .replace(&chain, &key)
            .map_err(|e| ServerCertError::Install(e.to_string()))?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = cert.der.clone();
        let persisted = match &self.dir {
            Some(dir) => match persist(dir, &cert, &key, &ca) {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, "the new server certificate is in use but not written to the data directory (read-only?); this replica issues another at its next start");
                    false
                }
            },
            None => false,
        };
        info!(serial = %cert.serial, persisted, "server certificate presented");
        Ok(persisted)
    }
}

/// Key first, then certificate: a crash between the two leaves a pair that does not match,
/// which the next start notices (the key no longer belongs to the certificate) and repairs
/// by issuing a new certificate under the CA.
fn persist(
    dir: &DataDir,
    cert: &ward_certs::IssuedCertificate,
    key: &PrivateKeyDer,
    ca: &CertificateAuthority,
) -> std::io::Result<()> {
    use ward_files::replace_file;
    replace_file(&dir.server_key(), key.to_pem().as_bytes(), 0o600)?;
    let chain = format!("{}{}", cert.pem(), ca.cert_pem());
    replace_file(&dir.server_cert(), chain.as_bytes(), 0o644)
}

/// Why a certificate is being (re)issued, for the log and the audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Two thirds into its lifetime, or less than a third left at start.
    Renewal,
    /// The operator asked for other host names.
    Hostnames,
    /// The stored key did not belong to the stored certificate (an interrupted write).
    Repair,
    /// Another CA signs since a CA rotation's activate step.
    CaRotation,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Renewal => "renewal",
            Self::Hostnames => "hostnames",
            Self::Repair => "repair",
            Self::CaRotation => "ca-rotation",
        }
    }
}

/// What to do at start: the names wanted (when the operator gave any) against the names
/// the certificate covers, and its age.
pub fn start_decision(
    current: &ServerCertificate,
    wanted: Option<&[String]>,
    now: Timestamp,
) -> Option<(Why, Vec<String>)> {
    let have = current.hostnames();
    if let Some(wanted) = wanted {
        let same = wanted.len() == have.len()
            && wanted.iter().all(|w| have.contains(w))
            && wanted.first() == have.first();
        if !same {
            return Some((Why::Hostnames, wanted.to_vec()));
        }
    }
    if !current.issued_by_signing_ca() {
        return Some((Why::CaRotation, have));
    }
    current.renewal_due(now).then_some((Why::Renewal, have))
}

/// The server's chain (leaf, CA), its key, and why it was just replaced, if it was.
pub type Loaded = (Vec<Vec<u8>>, PrivateKeyDer, Option<Why>);

/// The data directory's server credentials. A key that does not belong to its certificate
/// (a renewal interrupted between the two files) is replaced by a new pair under the CA for
/// the same names, reported as [`Why::Repair`].
pub fn load(
    dir: &DataDir,
    ca: &CertificateAuthority,
    lifetime: Duration,
    now: Timestamp,
) -> Result<Loaded, crate::datadir::DataDirError> {
    let (chain, key) = dir.load_server_credentials()?;
    let leaf = chain.first().map_or(&[][..], Vec::as_slice);
    if ward_certs::key_matches_certificate(&key, leaf) {
        return Ok((chain, key, None));
    }
    let mut names = ward_certs::validate::server_names(leaf);
    if names.is_empty() {
        names = crate::datadir::server_hostnames(&[]);
    }
    warn!(path = %dir.server_key().display(), "the server key does not belong to the server certificate; issuing a new pair under the CA");
    let (cert, key) = ca
        .issue_server(&names, now.to_datetime(), lifetime)
        .map_err(|e| crate::datadir::DataDirError::Cert(e.to_string()))?;
    if let Err(e) = persist(dir, &cert, &key, ca) {
        warn!(error = %e, "the repaired server certificate is not written to the data directory");
    }
    Ok((
        vec![cert.der, ca.cert_der().to_vec()],
        key,
        Some(Why::Repair),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::core::{Clock, SystemClock};

    async fn data_dir() -> (tempfile::TempDir, DataDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        dir.init(
            &["ward.example".into()],
            &"admin".parse().unwrap(),
            &SystemClock,
        )
        .await
        .unwrap();
        (tmp, dir)
    }

    #[tokio::test]
    async fn a_server_key_that_does_not_match_its_certificate_is_repaired_at_start() {
        let (_tmp, dir) = data_dir().await;
        let ca = dir.load_ca().unwrap();
        let (before, _) = dir.load_server_credentials().unwrap();
        // A renewal interrupted after the key was written, before the certificate.
        let stray = PrivateKeyDer::generate().unwrap();
        std::fs::write(dir.server_key(), stray.to_pem().as_bytes()).unwrap();

        let (chain, key, why) = load(
            &dir,
            &ca,
            ward_certs::ca::SERVER_LIFETIME,
            SystemClock.now(),
        )
        .unwrap();
        assert_eq!(why, Some(Why::Repair));
        assert!(ward_certs::key_matches_certificate(&key, &chain[0]));
        assert_eq!(
            ward_certs::validate::server_names(&chain[0]),
            ward_certs::validate::server_names(&before[0])
        );
        let (on_disk, disk_key) = dir.load_server_credentials().unwrap();
        assert_eq!(on_disk[0], chain[0]);
        assert!(ward_certs::key_matches_certificate(&disk_key, &on_disk[0]));
        // A matching pair is left alone.
        let (_, _, why) = load(
            &dir,
            &ca,
            ward_certs::ca::SERVER_LIFETIME,
            SystemClock.now(),
        )
        .unwrap();
        assert_eq!(why, None);
    }

    #[tokio::test]
    async fn only_other_names_or_age_lead_to_a_new_certificate_at_start() {
        let (_tmp, dir) = data_dir().await;
        let ca = dir.load_ca().unwrap();
        let (chain, key) = dir.load_server_credentials().unwrap();
        let live = Arc::new(LiveServerCert::new(&chain, &key).unwrap());
        let cert = ServerCertificate::new(
            Arc::new(crate::ca_set::CaSet::single(ca)),
            live,
            ward_certs::ca::SERVER_LIFETIME,
            None,
        );
        let now = SystemClock.now();
        let names = crate::datadir::server_hostnames(&["ward.example".into()]);
        assert_eq!(cert.hostnames(), names);
        assert_eq!(start_decision(&cert, None, now), None);
        assert_eq!(start_decision(&cert, Some(&names), now), None);
        let other = crate::datadir::server_hostnames(&["ward.new.example".into()]);
        assert_eq!(
            start_decision(&cert, Some(&other), now),
            Some((Why::Hostnames, other.clone()))
        );
        // Another first name renames the controller: a new certificate too.
        let reordered =
            crate::datadir::server_hostnames(&["localhost".into(), "ward.example".into()]);
        assert_eq!(
            start_decision(&cert, Some(&reordered), now).map(|d| d.0),
            Some(Why::Hostnames)
        );
        let later = now.saturating_add(std::time::Duration::from_secs(250 * 24 * 3600));
        assert_eq!(
            start_decision(&cert, None, later),
            Some((Why::Renewal, names.clone()))
        );
        let issued = cert.issue(&other, now).unwrap();
        // Not presented until installed.
        assert_eq!(cert.hostnames(), names);
        assert!(!cert.install(issued).unwrap());
        assert_eq!(cert.hostnames(), other);
    }
}
