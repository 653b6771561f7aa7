//! The CAs a controller holds over a CA rotation, and the one that signs.
//!
//! `ca.pem`/`ca.key` is the CA `init` made; a rotation's `introduce` step adds
//! `ca-<hash prefix>.pem`/`.key` beside it (on the replica that ran it; the operator copies
//! them to the others). Which of them signs and which are trusted comes from the steps
//! recorded in the store ([`crate::core::ca_rotation`]), read again by every replica: a
//! record can name a CA but never make one trusted that is not in the data directory.
//!
//! Signatures (audit heads, checkpoints) verify under any CA the directory holds a
//! certificate of, retired ones included: what the former CA signed stays verifiable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tracing::{error, info, warn};
use ward_certs::tls::TrustedCas;
use ward_certs::{CaHash, CertificateAuthority};
use ward_files::create_secret_file;

use crate::core::Timestamp;
use crate::core::ca_rotation::{CaRecord, CaState, Standing};
use crate::datadir::DataDir;

/// What applying the recorded steps changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Another CA signs from now on.
    pub signing_changed: bool,
    /// The CAs trusted changed.
    pub trust_changed: bool,
}

pub struct CaSet {
    dir: Option<DataDir>,
    /// The hash of `ca.pem`'s CA, which needs no record to count.
    original: String,
    inner: RwLock<Inner>,
    trusted: Arc<TrustedCas>,
}

struct Inner {
    /// CAs whose certificate and key are in the data directory, `ca.pem`'s first.
    held: Vec<Arc<CertificateAuthority>>,
    /// Certificates of CAs whose key is gone (a retired CA's, removed by the operator):
    /// only to verify what they signed.
    certificates_only: Vec<Vec<u8>>,
    standing: Standing,
    /// The recorded steps as this replica takes them (its own memory of retirements and of
    /// the active CA applied).
    records: Vec<CaRecord>,
    /// The hashes of the CAs trusted, the one that signs first.
    trusted: Vec<String>,
    signing: Arc<CertificateAuthority>,
    out_of_step: Option<String>,
}

impl std::fmt::Debug for CaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSet")
            .field("signing", &self.signing().hash())
            .field("standing", &self.standing())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaSetError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("cannot trust the CAs: {0}")]
    Tls(#[from] ward_certs::tls::TlsError),
    #[error("{0}")]
    Refused(String),
}

impl CaSet {
    /// One CA and no data directory (tests, tools): it signs and is the only one trusted.
    pub fn single(ca: Arc<CertificateAuthority>) -> Self {
        let hash = ca.hash().to_string();
        let trusted = TrustedCas::new(&[ca.cert_der().to_vec()])
            .unwrap_or_else(|_| unreachable!("a CA's own certificate is a valid trust anchor"));
        Self {
            dir: None,
            original: hash.clone(),
            inner: RwLock::new(Inner {
                held: vec![ca.clone()],
                certificates_only: Vec::new(),
                standing: Standing::of(&hash, std::slice::from_ref(&hash), &[]),
                records: Vec::new(),
                trusted: vec![hash.clone()],
                signing: ca,
                out_of_step: None,
            }),
            trusted: Arc::new(trusted),
        }
    }

    /// The data directory's CAs under the recorded steps.
    pub fn load(dir: &DataDir, records: &[CaRecord]) -> Result<Self, CaSetError> {
        let original = dir.load_ca().map_err(|e| CaSetError::File {
            path: dir.ca_key().display().to_string(),
            why: e.to_string(),
        })?;
        let set = Self::single(original);
        let set = Self {
            dir: Some(dir.clone()),
            ..set
        };
        set.apply(records)?;
        Ok(set)
    }

    /// The CA that signs.
    pub fn signing(&self) -> Arc<CertificateAuthority> {
        self.read().signing.clone()
    }

    /// Where the CAs stand under the recorded steps.
    pub fn standing(&self) -> Standing {
        self.read().standing.clone()
    }

    /// The trust anchors of the listener's client verification (kept current by
    /// [`CaSet::apply`]).
    pub fn trust(&self) -> Arc<TrustedCas> {
        self.trusted.clone()
    }

    /// The CAs trusted now (DER), the one that signs first: what agents are given to trust.
    pub fn trusted_ders(&self) -> Vec<Vec<u8>> {
        let inner = self.read();
        inner
            .trusted
            .iter()
            .filter_map(|hash| held(&inner.held, hash))
            .map(|ca| ca.cert_der().to_vec())
            .collect()
    }

    /// The trust bundle for an agent that reported trusting `reported` (sorted hashes): every
    /// CA trusted now (DER), the one that signs first, when that differs from the report;
    /// empty when it is the same, or when this replica lacks a CA a step named (the bundle
    /// would be incomplete and the agent would drop a CA it still needs). On every check-in:
    /// one read lock, no copy unless a bundle is due.
    pub fn bundle_for(&self, reported: &[String]) -> Vec<Vec<u8>> {
        let inner = self.read();
        let same = inner.trusted.len() == reported.len()
            && inner.trusted.iter().all(|h| reported.contains(h));
        if same || !inner.standing.missing.is_empty() {
            return Vec::new();
        }
        inner
            .trusted
            .iter()
            .filter_map(|hash| held(&inner.held, hash))
            .map(|ca| ca.cert_der().to_vec())
            .collect()
    }

    /// The hashes of the CAs trusted now, the one that signs first.
    pub fn trusted_hashes(&self) -> Vec<String> {
        self.read().trusted.clone()
    }

    /// Every CA certificate a rotation step named (or `ca.pem`'s), trusted or not, retired
    /// ones whose key is gone included (DER): what a device certificate may have been issued
    /// by. A `ca-*.pem` no step named counts for nothing.
    pub fn known_ders(&self) -> Vec<Vec<u8>> {
        let inner = self.read();
        inner
            .held
            .iter()
            .map(|ca| ca.cert_der().to_vec())
            .chain(inner.certificates_only.iter().cloned())
            .filter(|der| {
                let hash = CaHash::of_certificate(der).to_string();
                inner.standing.cas.iter().any(|(h, _)| *h == hash)
                    || inner.records.iter().any(|r| r.hash == hash)
            })
            .collect()
    }

    /// A held CA by hash.
    pub fn held(&self, hash: &str) -> Option<Arc<CertificateAuthority>> {
        held(&self.read().held, hash)
    }

    /// Whether `signature` over `message` verifies under a CA trusted now: the audit head is
    /// signed again at every append, by the CA that signs, so a head signed by a retired CA
    /// (whose key the rotation may have been for) is not taken.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.trusted_ders()
            .iter()
            .any(|der| verify_under(der, message, signature))
    }

    /// Whether `signature` over `message`, made at `at`, verifies under the CA whose hash is
    /// `hash`: one a rotation step named, and if it was retired, only for what it signed
    /// before its retirement (an audit checkpoint names its signer and its time).
    pub fn verify_by(&self, hash: &str, message: &[u8], signature: &[u8], at: Timestamp) -> bool {
        let retired_at = self
            .read()
            .records
            .iter()
            .find(|r| r.hash == hash && r.state == CaState::Retired)
            .map(|r| r.changed_at);
        if retired_at.is_some_and(|retired| at >= retired) {
            return false;
        }
        self.known_ders()
            .iter()
            .find(|der| CaHash::of_certificate(der).to_string() == hash)
            .is_some_and(|der| verify_under(der, message, signature))
    }

    /// Why this replica cannot serve, if it cannot: the recorded steps retired the CA it
    /// would sign with and made active one whose files it does not hold. It then trusts no
    /// client certificate and refuses every call until the files are copied.
    pub fn out_of_step(&self) -> Option<String> {
        self.read().out_of_step.clone()
    }

    /// Reads the data directory's CAs again and follows the recorded steps: which signs,
    /// which are trusted. A CA a step named that this replica does not hold is logged; it
    /// keeps signing with what it has while that CA is still trusted, and stops serving
    /// (see [`CaSet::out_of_step`]) once the records retire it.
    pub fn apply(&self, records: &[CaRecord]) -> Result<Applied, CaSetError> {
        let (held_now, certificates_only) = match &self.dir {
            Some(dir) => read_dir_cas(dir, &self.read().held)?,
            None => (self.read().held.clone(), Vec::new()),
        };
        let hashes: Vec<String> = held_now.iter().map(|c| c.hash().to_string()).collect();
        let local = match &self.dir {
            Some(dir) => LocalState::read(dir),
            None => LocalState::default(),
        };
        let mut effective = local.over(records, &hashes);
        let mut standing = Standing::of(&self.original, &hashes, &effective);
        // The CAs this replica saw active, in order, and the retirements shaped like a real
        // step (the CA active now is the newest this replica saw active, and the one retired
        // is not it) are kept in the data directory. A database edit that makes an older CA
        // active again changes neither.
        if let (Some(dir), Some(active)) = (&self.dir, standing.active().map(str::to_owned)) {
            let mut local = local.clone();
            if !local.active.contains(&active) {
                local.active.push(active.clone());
            }
            if local.active.last() == Some(&active) {
                let newly: Vec<String> = records
                    .iter()
                    .filter(|r| {
                        r.state == CaState::Retired
                            && r.hash != active
                            && !local.retired.contains(&r.hash)
                    })
                    .map(|r| r.hash.clone())
                    .collect();
                local.retired.extend(newly);
            }
            local.write(dir);
            effective = local.over(records, &hashes);
            standing = Standing::of(&self.original, &hashes, &effective);
        }
        for missing in &standing.missing {
            error!(ca_hash = %missing, "a CA rotation step named a CA this replica does not hold: copy its ca-*.pem and ca-*.key into this replica's data directory");
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let retired = |hash: &str| {
            effective
                .iter()
                .any(|r| r.hash == hash && r.state == CaState::Retired)
        };
        let signing = standing
            .active()
            .and_then(|hash| held(&held_now, hash))
            .unwrap_or_else(|| inner.signing.clone());
        let signing_hash = signing.hash().to_string();
        let active_missing = effective
            .iter()
            .any(|r| r.state == CaState::Active && !hashes.contains(&r.hash));
        let out_of_step = (standing.active().is_none()
            && active_missing
            && retired(&signing_hash))
        .then(|| {
            format!(
                "this replica lacks the active CA {} (its signing CA was retired): copy its ca-*.pem and ca-*.key into this replica's data directory",
                standing.missing.join(", ")
            )
        });
        if let Some(why) = &out_of_step {
            error!("{why}; refusing every call until then");
        }
        // The CA that signs is trusted (a record retiring it without a step having made
        // another active must not leave the controller unable to verify what it issues),
        // unless this replica is out of step.
        let trusted: Vec<String> = std::iter::once(signing_hash.clone())
            .filter(|_| out_of_step.is_none())
            .chain(
                standing
                    .trusted()
                    .into_iter()
                    .filter(|h| *h != signing_hash)
                    .map(str::to_owned),
            )
            .collect();
        let trusted_now = trusted.join(",");
        let applied = Applied {
            signing_changed: signing.hash() != inner.signing.hash(),
            trust_changed: inner.trusted.join(",") != trusted_now,
        };
        let trusted_ders: Vec<Vec<u8>> = trusted
            .iter()
            .filter_map(|hash| held(&held_now, hash))
            .map(|ca| ca.cert_der().to_vec())
            .collect();
        self.trusted.replace(&trusted_ders)?;
        if applied.signing_changed {
            info!(ca_hash = %signing.hash(), "this CA signs from now on");
        }
        if applied.trust_changed {
            info!(trusted = %trusted_now, "trusted CAs changed");
        }
        *inner = Inner {
            held: held_now,
            certificates_only,
            standing,
            records: effective,
            trusted,
            signing,
            out_of_step,
        };
        Ok(applied)
    }

    /// Makes a new CA for a rotation's introduce step and writes it to the data directory
    /// (key 0600, never overwriting). It counts once the step is recorded.
    pub fn create_next(&self, now: Timestamp) -> Result<Arc<CertificateAuthority>, CaSetError> {
        let dir = self.dir.as_ref().ok_or_else(|| {
            CaSetError::Refused("this controller has no data directory to keep a new CA in".into())
        })?;
        let day = now.to_datetime().date();
        let ca = CertificateAuthority::create(&format!("Ward CA {day}"), now.to_datetime())
            .map_err(|e| CaSetError::Refused(format!("cannot make a new CA: {e}")))?;
        let (cert_path, key_path) = next_paths(dir.root(), &ca.hash());
        let file_error = |path: &Path, e: std::io::Error| CaSetError::File {
            path: path.display().to_string(),
            why: format!(
                "{e} (a read-only data directory? run the step on a replica whose data directory is writable, then copy the files)"
            ),
        };
        create_secret_file(&key_path, ca.key().to_pem().as_bytes())
            .map_err(|e| file_error(&key_path, e))?;
        if let Err(e) = ward_files::create_public_file(&cert_path, ca.cert_pem().as_bytes()) {
            let _ = std::fs::remove_file(&key_path);
            return Err(file_error(&cert_path, e));
        }
        let ca = Arc::new(ca);
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .held
            .push(ca.clone());
        Ok(ca)
    }

    /// The files of a CA [`CaSet::create_next`] made in the data directory.
    pub fn files_of(&self, hash: &CaHash) -> Option<Vec<PathBuf>> {
        let dir = self.dir.as_ref()?;
        let (cert, key) = next_paths(dir.root(), hash);
        Some(vec![cert, key])
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What this replica keeps of the rotation in its data directory, beside the database:
/// the CAs it has seen retired (`retired-cas`, one hash a line) and the CAs it saw active,
/// oldest first (`active-cas`). Someone who can write to the database (or restore an old backup) cannot
/// bring back a retired CA, whose key may have been the reason for the rotation, nor make
/// the replica forget which CA signs. A read-only directory (a Kubernetes Secret) cannot
/// keep them; that is logged.
#[derive(Clone, Debug, Default)]
struct LocalState {
    retired: Vec<String>,
    active: Vec<String>,
}

const RETIRED_FILE: &str = "retired-cas";
const ACTIVE_FILE: &str = "active-cas";

impl LocalState {
    fn read(dir: &DataDir) -> Self {
        let hashes = |name: &str| -> Vec<String> {
            std::fs::read_to_string(dir.root().join(name))
                .unwrap_or_default()
                .lines()
                .map(str::trim)
                .filter(|l| l.parse::<CaHash>().is_ok())
                .map(str::to_owned)
                .collect()
        };
        Self {
            retired: hashes(RETIRED_FILE),
            active: hashes(ACTIVE_FILE),
        }
    }

    /// Writes what changed.
    fn write(&self, dir: &DataDir) {
        let before = Self::read(dir);
        let write = |name: &str, text: String| {
            let path = dir.root().join(name);
            if let Err(e) = ward_files::replace_file(&path, text.as_bytes(), 0o644) {
                warn!(path = %path.display(), error = %e, "cannot keep the CA rotation's state in the data directory; it rests on the database alone");
            }
        };
        if before.retired != self.retired {
            write(
                RETIRED_FILE,
                self.retired.iter().map(|h| format!("{h}\n")).collect(),
            );
        }
        if before.active != self.active {
            write(
                ACTIVE_FILE,
                self.active.iter().map(|h| format!("{h}\n")).collect(),
            );
        }
    }

    /// The records as this replica takes them: a CA it saw retired stays retired, and when
    /// no record makes a CA it holds active, the newest it saw active still is.
    fn over(&self, records: &[CaRecord], held: &[String]) -> Vec<CaRecord> {
        let mut effective: Vec<CaRecord> = records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if self.retired.contains(&r.hash) {
                    r.state = CaState::Retired;
                }
                r
            })
            .collect();
        for hash in &self.retired {
            if !effective.iter().any(|r| r.hash == *hash) {
                effective.push(CaRecord {
                    hash: hash.clone(),
                    state: CaState::Retired,
                    changed_at: Timestamp::from_unix_ms(0),
                });
            }
        }
        let held_active = effective
            .iter()
            .any(|r| r.state == CaState::Active && held.contains(&r.hash));
        let retired_by_records = |hash: &str| {
            effective
                .iter()
                .any(|r| r.hash == hash && r.state == CaState::Retired)
        };
        if let Some(active) = self.active.last()
            && !held_active
            && held.contains(active)
            && !retired_by_records(active)
        {
            effective.retain(|r| r.hash != *active);
            effective.push(CaRecord {
                hash: active.clone(),
                state: CaState::Active,
                changed_at: Timestamp::from_unix_ms(0),
            });
        }
        effective
    }
}

fn held(cas: &[Arc<CertificateAuthority>], hash: &str) -> Option<Arc<CertificateAuthority>> {
    cas.iter().find(|ca| ca.hash().to_string() == hash).cloned()
}

fn verify_under(ca_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    ward_certs::validate::public_key_of(ca_der)
        .is_some_and(|spki| ward_certs::sign::verify(&spki, message, signature).is_ok())
}

/// The files of a CA a rotation introduced: `ca-<first 16 hex digits of its hash>.pem/.key`.
fn next_paths(dir: &Path, hash: &CaHash) -> (PathBuf, PathBuf) {
    let hex = hash.to_string();
    let short = hex.trim_start_matches("sha256:").get(..16).unwrap_or("");
    (
        dir.join(format!("ca-{short}.pem")),
        dir.join(format!("ca-{short}.key")),
    )
}

/// The CAs that can sign, and the certificates of those whose key is gone.
type DirCas = (Vec<Arc<CertificateAuthority>>, Vec<Vec<u8>>);

/// `ca.pem`'s CA (kept as loaded) and every `ca-*.pem` beside it: with its key a CA that can
/// sign, without it a certificate to verify with.
fn read_dir_cas(
    dir: &DataDir,
    current: &[Arc<CertificateAuthority>],
) -> Result<DirCas, CaSetError> {
    let mut held: Vec<Arc<CertificateAuthority>> = current.iter().take(1).cloned().collect();
    let mut certificates_only = Vec::new();
    let entries = std::fs::read_dir(dir.root()).map_err(|e| CaSetError::File {
        path: dir.root().display().to_string(),
        why: e.to_string(),
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("ca-") && n.ends_with(".pem"))
        .collect();
    names.sort();
    for name in names {
        let cert_path = dir.root().join(&name);
        let key_path = cert_path.with_extension("key");
        let Ok(cert_pem) = std::fs::read_to_string(&cert_path) else {
            warn!(path = %cert_path.display(), "cannot read a CA certificate; ignored");
            continue;
        };
        // An already loaded CA keeps its loaded key (no re-reading secrets every check).
        if let Some(loaded) = ward_certs::certificates_from_pem(&cert_pem)
            .ok()
            .and_then(|certs| certs.into_iter().next())
            .and_then(|der| {
                current
                    .iter()
                    .find(|ca| ca.cert_der() == der.as_slice())
                    .cloned()
            })
        {
            if !held.iter().any(|ca| ca.hash() == loaded.hash()) {
                held.push(loaded);
            }
            continue;
        }
        match std::fs::read_to_string(&key_path) {
            Ok(key_pem) => {
                let key_pem = zeroize::Zeroizing::new(key_pem);
                match CertificateAuthority::from_pem(&cert_pem, &key_pem) {
                    Ok(ca) if !held.iter().any(|c| c.hash() == ca.hash()) => {
                        held.push(Arc::new(ca));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        error!(path = %cert_path.display(), error = %e, "a CA in the data directory does not load; ignored");
                    }
                }
            }
            Err(_) => match ward_certs::certificates_from_pem(&cert_pem) {
                Ok(certs) => certificates_only.extend(certs.into_iter().take(1)),
                Err(e) => {
                    warn!(path = %cert_path.display(), error = %e, "not a CA certificate; ignored");
                }
            },
        }
    }
    Ok((held, certificates_only))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn record(ca: &CertificateAuthority, state: CaState) -> CaRecord {
        CaRecord {
            hash: ca.hash().to_string(),
            state,
            changed_at: Timestamp::from_unix_ms(1),
        }
    }

    /// Makes `dir` hold `ca` as its `ca.pem` and `ca.key`, as `init` leaves them.
    fn holding(dir: &DataDir, ca: &CertificateAuthority) {
        std::fs::write(dir.ca_cert(), ca.cert_pem()).unwrap();
        create_secret_file(&dir.ca_key(), ca.key().to_pem().as_bytes()).unwrap();
    }

    fn hashes(cas: &[&CertificateAuthority]) -> Vec<String> {
        cas.iter().map(|ca| ca.hash().to_string()).collect()
    }

    #[test]
    fn a_rotation_moves_signing_and_trust_and_a_database_edit_cannot_undo_a_retirement() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
        let old = CertificateAuthority::create("old", now.to_datetime()).unwrap();
        holding(&dir, &old);

        let set = CaSet::load(&dir, &[]).unwrap();
        assert_eq!(set.trusted_hashes(), hashes(&[&old]));
        let new = set.create_next(now).unwrap();
        // Made, but no step names it yet: not trusted.
        set.apply(&[]).unwrap();
        assert_eq!(set.trusted_hashes(), hashes(&[&old]));

        let introduced = [record(&new, CaState::Introduced)];
        set.apply(&introduced).unwrap();
        assert_eq!(set.trusted_hashes(), hashes(&[&old, &new]));
        assert_eq!(set.trust().ders().len(), 2);
        // A hand-written record retiring the CA that signs leaves it signing and trusted.
        set.apply(&[
            record(&old, CaState::Retired),
            record(&new, CaState::Introduced),
        ])
        .unwrap();
        assert_eq!(set.signing().hash(), old.hash());
        assert_eq!(set.trusted_hashes(), hashes(&[&old, &new]));

        let activated = [
            record(&new, CaState::Active),
            record(&old, CaState::Trusted),
        ];
        let applied = set.apply(&activated).unwrap();
        assert!(applied.signing_changed);
        assert_eq!(set.signing().hash(), new.hash());
        assert_eq!(set.trusted_hashes(), hashes(&[&new, &old]));

        let retired = [
            record(&new, CaState::Active),
            record(&old, CaState::Retired),
        ];
        set.apply(&retired).unwrap();
        assert_eq!(set.trusted_hashes(), hashes(&[&new]));
        assert_eq!(set.trust().ders(), vec![new.cert_der().to_vec()]);

        // Someone with the database writes the former CA back, or deletes the records: the
        // retirement holds (kept in the data directory).
        for edited in [
            vec![
                record(&new, CaState::Active),
                record(&old, CaState::Trusted),
            ],
            vec![record(&old, CaState::Active)],
            vec![],
        ] {
            set.apply(&edited).unwrap();
            assert_eq!(set.trusted_hashes(), hashes(&[&new]), "{edited:?}");
            assert_eq!(set.signing().hash(), new.hash(), "{edited:?}");
        }
        // A restart reads the same.
        let again = CaSet::load(&dir, &activated).unwrap();
        assert_eq!(again.trusted_hashes(), hashes(&[&new]));
        // What the former CA signed before its retirement still verifies under its name (a
        // checkpoint), nothing it signs after; an audit head only under a trusted CA.
        let signature = ward_certs::sign::sign(old.key(), b"head").unwrap();
        let before = Timestamp::from_unix_ms(0);
        assert!(again.verify_by(&old.hash().to_string(), b"head", &signature, before));
        assert!(!again.verify_by(&old.hash().to_string(), b"head", &signature, now));
        assert!(!again.verify_by(&new.hash().to_string(), b"head", &signature, before));
        assert!(!again.verify(b"head", &signature));
    }

    /// Sets up a rotation that has run to the end (old retired, new active) in `dir`.
    fn rotated_to_the_end(dir: &DataDir) -> (CertificateAuthority, Arc<CertificateAuthority>) {
        let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
        let old = CertificateAuthority::create("old", now.to_datetime()).unwrap();
        holding(dir, &old);
        let set = CaSet::load(dir, &[]).unwrap();
        let new = set.create_next(now).unwrap();
        set.apply(&[record(&new, CaState::Introduced)]).unwrap();
        set.apply(&[
            record(&new, CaState::Active),
            record(&old, CaState::Trusted),
        ])
        .unwrap();
        set.apply(&[
            record(&new, CaState::Active),
            record(&old, CaState::Retired),
        ])
        .unwrap();
        assert_eq!(set.trusted_hashes(), hashes(&[&new]));
        (old, new)
    }

    #[test]

    fn a_database_edit_cannot_undo_a_retirement_across_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let (old, new) = rotated_to_the_end(&dir);
        let old_hash = old.hash().to_string();
        for edited in [
            // The rows deleted, or a backup from before the rotation restored.
            vec![],
            // The original CA written back as the one that signs.
            vec![record(&old, CaState::Active)],
        ] {
            // A restart of the replica (or a replica started afresh on this directory).
            let restarted = CaSet::load(&dir, &edited).unwrap();
            assert!(
                !restarted.trusted_hashes().contains(&old_hash),
                "the retired CA is trusted again after a restart under {edited:?}: {:?}",
                restarted.trusted_hashes()
            );
            assert_ne!(
                restarted.signing().hash(),
                old.hash(),
                "the retired CA signs again after a restart under {edited:?}"
            );
            assert!(
                restarted.trusted_hashes().contains(&new.hash().to_string()),
                "the active CA is no longer trusted after a restart under {edited:?}"
            );
        }
    }

    #[test]

    fn a_replica_without_the_new_ca_does_not_trust_a_retired_one() {
        // The replica that ran the rotation.
        let first = tempfile::tempdir().unwrap();
        let (old, new) = rotated_to_the_end(&DataDir::new(first.path()));
        // A stale replica: ca.pem/ca.key copied at setup, the new CA's files never copied.
        let stale_tmp = tempfile::tempdir().unwrap();
        let stale_dir = DataDir::new(stale_tmp.path());
        holding(&stale_dir, &old);
        let stale = CaSet::load(&stale_dir, &[]).unwrap();
        // It follows the recorded steps as they come (every 30 s).
        stale.apply(&[record(&new, CaState::Introduced)]).unwrap();
        stale
            .apply(&[
                record(&new, CaState::Active),
                record(&old, CaState::Trusted),
            ])
            .unwrap();
        stale
            .apply(&[
                record(&new, CaState::Active),
                record(&old, CaState::Retired),
            ])
            .unwrap();
        assert_eq!(stale.standing().missing, vec![new.hash().to_string()]);
        // The listener's client verification (what a certificate made with the retired
        // key meets at the handshake) and the CAs given to agents.
        assert!(
            !stale.trust().ders().contains(&old.cert_der().to_vec()),
            "a stale replica's listener still accepts certificates of the retired CA"
        );
        let trusted = stale.trusted_hashes();
        assert!(
            !trusted.contains(&old.hash().to_string()),
            "a stale replica still trusts the retired CA: {trusted:?} (signing: {})",
            stale.signing().hash()
        );
    }

    #[test]

    fn a_database_edit_cannot_retire_the_new_ca_for_good() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
        let old = CertificateAuthority::create("old", now.to_datetime()).unwrap();
        holding(&dir, &old);
        let set = CaSet::load(&dir, &[]).unwrap();
        let new = set.create_next(now).unwrap();
        set.apply(&[record(&new, CaState::Introduced)]).unwrap();
        let activated = [
            record(&new, CaState::Active),
            record(&old, CaState::Trusted),
        ];
        set.apply(&activated).unwrap();
        // Someone with the database flips it back and retires the new CA; two checks pass.
        let edited = [
            record(&old, CaState::Active),
            record(&new, CaState::Retired),
        ];
        set.apply(&edited).unwrap();
        set.apply(&edited).unwrap();
        // The database is put right (the rows restored): the replica follows them again.
        set.apply(&activated).unwrap();
        assert_eq!(
            set.signing().hash(),
            new.hash(),
            "the new CA no longer signs once the records are restored"
        );
        assert_eq!(set.trusted_hashes(), hashes(&[&new, &old]));
    }

    #[test]

    fn a_certificate_file_no_step_named_verifies_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
        let ours = CertificateAuthority::create("ours", now.to_datetime()).unwrap();
        holding(&dir, &ours);
        // Someone who can write a file there (not read ca.key) plants a CA certificate alone.
        let planted = CertificateAuthority::create("Ward CA", now.to_datetime()).unwrap();
        std::fs::write(
            tmp.path().join("ca-0000000000000000.pem"),
            planted.cert_pem(),
        )
        .unwrap();
        let set = CaSet::load(&dir, &[]).unwrap();
        assert_eq!(set.trusted_hashes(), hashes(&[&ours]));
        let forged = ward_certs::sign::sign(planted.key(), b"head").unwrap();
        assert!(
            !set.verify(b"head", &forged),
            "a signature by a CA no step named verifies as the controller's"
        );
        assert!(
            !set.known_ders().contains(&planted.cert_der().to_vec()),
            "a CA no step named is known (wipe attestations check certificates under it)"
        );
    }
}
