//! The admin credential bundle: one 0600 PEM file holding the admin certificate, the CA
//! certificate it chains to, and the admin's private key: "PRIVATE KEY", or "ENCRYPTED PRIVATE
//! KEY" (PKCS#8 with scrypt and AES-256-CBC, see [`ward_certs::keyfile`]) when the bundle was
//! issued with a passphrase. `init` writes the controller host's own bundle unencrypted.

use std::path::Path;

use zeroize::Zeroizing;

use ward_certs::keyfile::{EncryptedKey, KeyFileError, StoredKey};
use ward_certs::{PrivateKeyDer, certificate_to_pem, certificates_from_pem};

/// At most this many CAs beside the first in a bundle.
const MAX_OTHER_CAS: usize = 7;

/// The largest file read as a bundle. A bundle is a few certificates and a key, some
/// kilobytes; a path naming anything else (a log, a disk image, `/dev/zero`) is refused after
/// this much, not read whole into memory.
const MAX_BUNDLE_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub struct AdminBundle {
    pub certificate_der: Vec<u8>,
    pub ca_der: Vec<u8>,
    /// Further CAs to trust for the controller's certificate: during a CA rotation, the new
    /// CA (or the former one) beside `ca_der`.
    pub other_cas: Vec<Vec<u8>>,
    pub key: PrivateKeyDer,
}

/// A bundle whose private key is encrypted with a passphrase.
#[derive(Debug)]
pub struct LockedBundle {
    pub certificate_der: Vec<u8>,
    pub ca_der: Vec<u8>,
    pub other_cas: Vec<Vec<u8>>,
    pub key: EncryptedKey,
}

/// A bundle as stored: its key in the clear, or still encrypted.
#[derive(Debug)]
pub enum BundleFile {
    Plain(AdminBundle),
    Encrypted(LockedBundle),
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read the admin bundle {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the admin bundle {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not an admin bundle: expected the admin certificate, the CA certificate and a private key in PEM"
    )]
    Malformed { path: String },
    #[error("the private key in {path} is encrypted: it needs its passphrase")]
    Encrypted { path: String },
    #[error("the passphrase does not decrypt {path}")]
    WrongPassphrase { path: String },
    #[error("cannot use the private key in {path}: {source}")]
    Key { path: String, source: KeyFileError },
    #[error(
        "{path} is larger than {} KiB: it is not an admin bundle (a certificate, its CA and a key in PEM); check the path",
        MAX_BUNDLE_BYTES / 1024
    )]
    TooLarge { path: String },
}

impl AdminBundle {
    /// The mutual-TLS client configuration that speaks as this admin to its controller.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ward_certs::tls::TlsError> {
        ward_certs::tls::client_config_trusting(
            &self.cas(),
            Some((std::slice::from_ref(&self.certificate_der), &self.key)),
        )
    }

    /// Every CA this bundle trusts for the controller's certificate.
    pub fn cas(&self) -> Vec<Vec<u8>> {
        std::iter::once(self.ca_der.clone())
            .chain(self.other_cas.iter().cloned())
            .collect()
    }

    /// The bundle's PEM text with the key in the clear.
    pub fn to_pem(&self) -> Zeroizing<String> {
        // Room for a whole bundle at once: a buffer that grew would leave copies of the key in
        // the memory it freed, which `Zeroizing` never sees.
        let mut text = Zeroizing::new(String::with_capacity(MAX_BUNDLE_BYTES + 1));
        text.push_str(&certificate_to_pem(&self.certificate_der));
        text.push_str(&certificate_to_pem(&self.ca_der));
        for ca in &self.other_cas {
            text.push_str(&certificate_to_pem(ca));
        }
        text.push_str(&self.key.to_pem());
        text
    }

    /// Writes the bundle with mode 0600. Refuses to replace an existing file.
    pub fn write_new(&self, path: &Path) -> Result<(), BundleError> {
        crate::create_secret_file(path, self.to_pem().as_bytes()).map_err(|source| {
            BundleError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }

    /// Reads a bundle whose key is in the clear (the one `init` writes); an encrypted one is
    /// [`BundleError::Encrypted`]: read those with [`BundleFile::read`].
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        Self::plain(BundleFile::read(path)?, path)
    }

    /// Parses the bundle's PEM text; `path` only names it in the error. The key must be in the
    /// clear, as for [`AdminBundle::read`].
    pub fn from_pem(text: &str, path: &Path) -> Result<Self, BundleError> {
        Self::plain(BundleFile::from_pem(text, path)?, path)
    }

    fn plain(file: BundleFile, path: &Path) -> Result<Self, BundleError> {
        match file {
            BundleFile::Plain(bundle) => Ok(bundle),
            BundleFile::Encrypted(_) => Err(BundleError::Encrypted {
                path: path.display().to_string(),
            }),
        }
    }
}

impl BundleFile {
    /// Reads the bundle at `path`, at most [`MAX_BUNDLE_BYTES`] of it.
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        use std::io::Read;
        let named = || path.display().to_string();
        // Room for the whole bound at once, as in `to_pem`.
        let mut text = Zeroizing::new(String::with_capacity(MAX_BUNDLE_BYTES + 1));
        std::fs::File::open(path)
            .and_then(|file| {
                file.take(MAX_BUNDLE_BYTES as u64 + 1)
                    .read_to_string(&mut text)
            })
            .map_err(|source| BundleError::Read {
                path: named(),
                source,
            })?;
        if text.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge { path: named() });
        }
        Self::from_pem(&text, path)
    }

    /// Parses the bundle's PEM text; `path` only names it in errors. An encrypted key is
    /// checked to be an `EncryptedPrivateKeyInfo`, not decrypted.
    pub fn from_pem(text: &str, path: &Path) -> Result<Self, BundleError> {
        let malformed = || BundleError::Malformed {
            path: path.display().to_string(),
        };
        let certs = certificates_from_pem(text).map_err(|_| malformed())?;
        let key = StoredKey::from_pem(text).map_err(|_| malformed())?;
        // The admin certificate, its CA, and at most a few more CAs (a CA rotation's).
        let [leaf, ca, others @ ..] = certs.as_slice() else {
            return Err(malformed());
        };
        if others.len() > MAX_OTHER_CAS {
            return Err(malformed());
        }
        let (certificate_der, ca_der, other_cas) = (leaf.clone(), ca.clone(), others.to_vec());
        Ok(match key {
            StoredKey::Plain(key) => Self::Plain(AdminBundle {
                certificate_der,
                ca_der,
                other_cas,
                key,
            }),
            StoredKey::Encrypted(key) => Self::Encrypted(LockedBundle {
                certificate_der,
                ca_der,
                other_cas,
                key,
            }),
        })
    }
}

impl LockedBundle {
    /// Decrypts the key; `path` only names the bundle in errors.
    pub fn unlock(&self, passphrase: &[u8], path: &Path) -> Result<AdminBundle, BundleError> {
        let key = self
            .key
            .decrypt(passphrase)
            .map_err(|source| match source {
                KeyFileError::WrongPassphrase | KeyFileError::EmptyPassphrase => {
                    BundleError::WrongPassphrase {
                        path: path.display().to_string(),
                    }
                }
                source => BundleError::Key {
                    path: path.display().to_string(),
                    source,
                },
            })?;
        Ok(AdminBundle {
            certificate_der: self.certificate_der.clone(),
            ca_der: self.ca_der.clone(),
            other_cas: self.other_cas.clone(),
            key,
        })
    }

    /// The bundle's PEM text: certificate, CA certificate, encrypted key. Holds no secret in
    /// the clear.
    pub fn to_pem(&self) -> String {
        let mut text = certificate_to_pem(&self.certificate_der);
        text.push_str(&certificate_to_pem(&self.ca_der));
        for ca in &self.other_cas {
            text.push_str(&certificate_to_pem(ca));
        }
        text.push_str(&self.key.to_pem());
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parts() -> (Vec<u8>, Vec<u8>, PrivateKeyDer) {
        let ca =
            ward_certs::CertificateAuthority::create("Test CA", time::OffsetDateTime::now_utc())
                .unwrap();
        let key = PrivateKeyDer::generate().unwrap();
        let csr = ward_certs::csr::make_csr(&key, "alice").unwrap();
        let csr = ward_certs::VerifiedCsr::from_der(&csr).unwrap();
        let identity = ward_certs::Identity::Admin("alice".parse().unwrap());
        let cert = ca
            .issue_client(
                &csr,
                &identity,
                time::OffsetDateTime::now_utc(),
                ward_certs::ca::ADMIN_LIFETIME,
            )
            .unwrap();
        (cert.der, ca.cert_der().to_vec(), key)
    }

    fn plain_bundle() -> AdminBundle {
        let (certificate_der, ca_der, key) = parts();
        AdminBundle {
            certificate_der,
            ca_der,
            other_cas: Vec::new(),
            key,
        }
    }

    #[test]
    fn an_encrypted_bundle_reads_back_only_with_its_passphrase() {
        let (certificate_der, ca_der, key) = parts();
        let path = Path::new("alice.pem");
        let locked = LockedBundle {
            certificate_der: certificate_der.clone(),
            ca_der: ca_der.clone(),
            other_cas: Vec::new(),
            key: ward_certs::keyfile::encrypt(&key, b"twelve chars or more").unwrap(),
        };
        let text = locked.to_pem();
        assert!(text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        // The only key block is the encrypted one (its BEGIN and END lines).
        assert_eq!(text.matches("PRIVATE KEY-----").count(), 2);

        let Ok(BundleFile::Encrypted(read)) = BundleFile::from_pem(&text, path) else {
            panic!("not read as an encrypted bundle");
        };
        let err = read.unlock(b"twelve chars or less", path).err().unwrap();
        assert_eq!(err.to_string(), "the passphrase does not decrypt alice.pem");
        let bundle = read.unlock(b"twelve chars or more", path).unwrap();
        assert_eq!(bundle.certificate_der, certificate_der);
        assert_eq!(bundle.ca_der, ca_der);
        assert_eq!(bundle.key.as_bytes(), key.as_bytes());
        assert!(bundle.client_config().is_ok());

        // The plain-only readers say why they cannot use it.
        let err = AdminBundle::from_pem(&text, path).err().unwrap();
        assert!(matches!(err, BundleError::Encrypted { .. }), "{err}");
    }

    /// A path to something that is not a bundle and never ends (`/dev/zero`) or is large
    /// is refused after a bounded read, with what to check; a bundle itself still reads.
    #[test]
    fn a_large_or_endless_file_is_refused_as_a_bundle_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.pem");
        let mut text = plain_bundle().to_pem();
        text.push_str(&"# padding\n".repeat(40_000));
        std::fs::write(&big, text.as_bytes()).unwrap();
        for path in [big.as_path(), Path::new("/dev/zero")] {
            let err = BundleFile::read(path).err().unwrap();
            assert!(matches!(err, BundleError::TooLarge { .. }), "{err}");
            assert!(err.to_string().contains("check the path"), "{err}");
        }
        let fine = dir.path().join("admin.pem");
        plain_bundle().write_new(&fine).unwrap();
        assert!(AdminBundle::read(&fine).is_ok());
    }

    /// The bundle holds the admin's key in the clear: written 0600, never over an existing
    /// file, and never through a symlink planted where it goes (a dangling one included: the
    /// key would land wherever it points).
    #[test]
    fn a_new_bundle_is_private_and_never_written_over_a_file_or_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let bundle = plain_bundle();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.pem");
        bundle.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            bundle.write_new(&path).is_err(),
            "an existing bundle was replaced"
        );

        let elsewhere = dir.path().join("elsewhere.pem");
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        assert!(
            bundle.write_new(&link).is_err(),
            "written through a symlink"
        );
        assert!(
            !elsewhere.exists(),
            "the key landed where the symlink points"
        );
    }

    #[test]
    fn a_plain_bundle_is_read_as_plain() {
        let bundle = plain_bundle();
        let text = bundle.to_pem();
        assert!(matches!(
            BundleFile::from_pem(&text, Path::new("a.pem")),
            Ok(BundleFile::Plain(_))
        ));
        let again = AdminBundle::from_pem(&text, Path::new("a.pem")).unwrap();
        assert_eq!(again.key.as_bytes(), bundle.key.as_bytes());
    }
}
