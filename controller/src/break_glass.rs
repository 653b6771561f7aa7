//! The break-glass identity `init` makes beside the everyday first admin: an `admin`-role
//! identity named `break-glass`, valid for two years, whose key is encrypted under a random
//! passphrase. Both files are written into the data directory only to be moved out of it, into
//! an offline safe, apart from each other: the bundle in one place, the passphrase (printed,
//! in a sealed envelope) in another, so that using it takes two people. It is the way back in
//! the day no other admin can act (and, under `--require-approval`, the one identity that may
//! issue an `admin` without a second admin's approval).

use std::path::{Path, PathBuf};

use rand::TryRngCore;
use ward_certs::{CertificateAuthority, Identity, PrivateKeyDer, csr::make_csr};
use zeroize::Zeroizing;

use crate::app::certificate_record;
use crate::core::admins::{BREAK_GLASS_LIFETIME, BREAK_GLASS_NAME};
use crate::core::{Admin, AdminRole, Timestamp};
use crate::datadir::DataDirError;
use crate::store::Store;
use ward_files::bundle::LockedBundle;

pub const BUNDLE_FILE: &str = "break-glass.pem";
pub const PASSPHRASE_FILE: &str = "break-glass.passphrase";

/// What to do with the two files: printed by `init`, logged by `serve` while they are still here.
pub const ADVICE: &str = "Move break-glass.pem and break-glass.passphrase out of the data directory into your offline safe, apart from each other (the passphrase printed, in a sealed envelope), then delete them here. See deploy/OPERATIONS.md, \"Emergency access\".";

/// Where `init` wrote the break-glass bundle and its passphrase.
#[derive(Clone, Debug)]
pub struct BreakGlassFiles {
    pub bundle: PathBuf,
    pub passphrase: PathBuf,
}

impl BreakGlassFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            bundle: dir.join(BUNDLE_FILE),
            passphrase: dir.join(PASSPHRASE_FILE),
        }
    }

    /// Whether either file is still in the data directory (it belongs in the safe).
    pub fn still_here(&self) -> bool {
        self.bundle.exists() || self.passphrase.exists()
    }
}

/// 32 characters of Crockford's base32 (160 random bits) in groups of four, easy to copy by
/// hand from paper.
fn passphrase() -> Result<Zeroizing<String>, DataDirError> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut bytes = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|e| DataDirError::Cert(format!("no randomness from the OS: {e}")))?;
    let mut text = Zeroizing::new(String::with_capacity(40));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            text.push('-');
        }
        text.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    Ok(text)
}

/// Registers the break-glass identity and writes its bundle (key encrypted) and passphrase,
/// both 0600, into `dir`.
pub async fn create(
    dir: &Path,
    ca: &CertificateAuthority,
    store: &dyn Store,
    now: Timestamp,
) -> Result<BreakGlassFiles, DataDirError> {
    let cert_err = |e: ward_certs::CertError| DataDirError::Cert(e.to_string());
    let files = BreakGlassFiles::in_dir(dir);
    let name: ward_certs::AdminName = BREAK_GLASS_NAME
        .parse()
        .map_err(|e| DataDirError::Cert(format!("{e}")))?;
    let key = PrivateKeyDer::generate().map_err(cert_err)?;
    let csr =
        ward_certs::VerifiedCsr::from_der(&make_csr(&key, BREAK_GLASS_NAME).map_err(cert_err)?)
            .map_err(|e| DataDirError::Cert(e.to_string()))?;
    let identity = Identity::Admin(name.clone());
    let certificate = ca
        .issue_client(&csr, &identity, now.to_datetime(), BREAK_GLASS_LIFETIME)
        .map_err(cert_err)?;
    let secret = passphrase()?;
    let sealed = ward_certs::keyfile::encrypt(&key, secret.as_bytes())
        .map_err(|e| DataDirError::Cert(e.to_string()))?;
    let mut admin = Admin::new(name, AdminRole::Admin, now, "init");
    admin.break_glass = true;
    store
        .insert_admin(&admin, &certificate_record(&certificate, &identity, now))
        .await?;
    let event = crate::core::audit::AuditEvent {
        actor: "init".into(),
        action: "admin.issue".into(),
        target: BREAK_GLASS_NAME.into(),
        details: serde_json::json!({
            "role": "admin",
            "break_glass": true,
            "certificate_serial": certificate.serial,
            "not_after": Timestamp::from_datetime(certificate.not_after).rfc3339(),
        }),
    };
    let sign =
        |message: &[u8]| ward_certs::sign::sign(ca.key(), message).map_err(|e| e.to_string());
    // `init` wrote the only entry before this one a moment ago.
    store
        .append_audit(&event, now, &sign, &|_: &[u8], _: &[u8]| true)
        .await?;
    let bundle = LockedBundle {
        certificate_der: certificate.der,
        ca_der: ca.cert_der().to_vec(),
        other_cas: Vec::new(),
        key: sealed,
    };
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| DataDirError::Io {
            what: "cannot create",
            path,
            source,
        }
    };
    ward_files::create_secret_file(&files.bundle, bundle.to_pem().as_bytes())
        .map_err(io(&files.bundle))?;
    ward_files::create_secret_file(&files.passphrase, format!("{}\n", *secret).as_bytes())
        .map_err(io(&files.passphrase))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn passphrases_are_long_random_and_copyable() {
        let a = super::passphrase().unwrap();
        let b = super::passphrase().unwrap();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 39);
        assert!(
            a.split('-')
                .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_alphanumeric()))
        );
    }
}
