//! Where the device's private key lives: the OS secret store through the `keyring` crate, or a
//! 0600 file in the state directory on headless hosts where no keyring daemon runs (and inside
//! containers, where the kernel keyutils store cannot read back what it stored).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use ward_certs::PrivateKeyDer;
use ward_files::create_secret_file;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SecretStoreKind {
    /// A 0600 file in the state directory
    File,
    /// The OS secret store: Keychain, Credential Manager, or Secret Service on a Linux desktop
    Keyring,
    /// Made inside the TPM and never exported (the device key only; other secrets then go to
    /// a 0600 file)
    Tpm,
}

impl SecretStoreKind {
    /// Linux hosts running the agent as a system service have no keyring daemon; desktops
    /// on macOS and Windows always have one.
    pub fn platform_default() -> Self {
        if cfg!(any(target_os = "macos", target_os = "windows")) {
            SecretStoreKind::Keyring
        } else {
            SecretStoreKind::File
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot store the device key in {path}: {source}")]
    FileWrite {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the device key from {path}: {source}")]
    FileRead {
        path: String,
        source: std::io::Error,
    },
    #[error("the device key in {path} is damaged")]
    Damaged { path: String },
    #[error(
        "the OS keyring is not usable here ({0}); enroll with --secret-store file on hosts without a keyring daemon"
    )]
    Keyring(String),
    #[error(
        "the OS keyring accepted the device key but returned something else when read back; enroll with --secret-store file"
    )]
    KeyringReadBack,
    #[error(
        "the device key is held in a TPM (persistent handle {handle:#010x}) but no TPM is reachable: run with --tpm auto on the device that holds it (the TPM at /dev/tpmrm0, tpm2-tools installed) or --tpm TCTI"
    )]
    NoTpm { handle: u32 },
    #[error("the device key in the TPM: {0}")]
    Tpm(String),
}

/// The device key's home, chosen at enrollment and recorded in state.json.
#[derive(Clone, Debug)]
pub enum SecretStore {
    File { path: PathBuf },
    Keyring { service: String, account: String },
}

const KEYRING_SERVICE: &str = "ward-agent";

impl SecretStore {
    /// The device's private key.
    pub fn new(kind: SecretStoreKind, key_file: PathBuf, device_id: &str) -> Self {
        Self::named(kind, key_file, "device-key", device_id)
    }

    /// A secret called `name` (the keyring account is `name/device_id`; the file store uses
    /// `file`).
    pub fn named(kind: SecretStoreKind, file: PathBuf, name: &str, device_id: &str) -> Self {
        match kind {
            // The TPM holds the device key alone (crate::device_key); other secrets go to a file.
            SecretStoreKind::File | SecretStoreKind::Tpm => SecretStore::File { path: file },
            SecretStoreKind::Keyring => SecretStore::Keyring {
                service: KEYRING_SERVICE.to_owned(),
                account: format!("{name}/{device_id}"),
            },
        }
    }

    /// Checks, before anything is sent anywhere, that this store can keep a secret: a keyring
    /// must store, return and delete a probe entry; a file store needs a writable directory.
    pub async fn probe(kind: SecretStoreKind, dir: &std::path::Path) -> Result<(), SecretError> {
        match kind {
            SecretStoreKind::File | SecretStoreKind::Tpm => {
                ward_files::create_private_dir(dir).map_err(|source| SecretError::FileWrite {
                    path: dir.display().to_string(),
                    source,
                })?;
                let probe = dir.join(".probe");
                let _ = std::fs::remove_file(&probe);
                create_secret_file(&probe, b"probe")
                    .and_then(|()| std::fs::remove_file(&probe))
                    .map_err(|source| SecretError::FileWrite {
                        path: dir.display().to_string(),
                        source,
                    })
            }
            SecretStoreKind::Keyring => {
                let account = format!("probe/{}", uuid::Uuid::new_v4());
                let store = SecretStore::Keyring {
                    service: KEYRING_SERVICE.to_owned(),
                    account,
                };
                let probe = [0x5a_u8; 16];
                store.put_bytes(&probe).await?;
                store.destroy().await
            }
        }
    }

    /// Stores a new key; a file store refuses to replace an existing key. The keyring store
    /// reads the key back and fails unless it gets the same bytes.
    pub async fn put(&self, key: &PrivateKeyDer) -> Result<(), SecretError> {
        match self {
            SecretStore::File { path } => create_secret_file(path, key.to_pem().as_bytes())
                .map_err(|source| SecretError::FileWrite {
                    path: path.display().to_string(),
                    source,
                }),
            SecretStore::Keyring { service, account } => {
                let (service, account) = (service.clone(), account.clone());
                let bytes = Zeroizing::new(key.as_bytes().to_vec());
                run_blocking(move || {
                    let entry = keyring::Entry::new(&service, &account).map_err(keyring_err)?;
                    entry.set_secret(&bytes).map_err(keyring_err)?;
                    let back = Zeroizing::new(entry.get_secret().map_err(keyring_err)?);
                    if back.as_slice() != bytes.as_slice() {
                        let _ = entry.delete_credential();
                        return Err(SecretError::KeyringReadBack);
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// Replaces the private key (certificate renewal): atomically for a file, by overwriting
    /// for a keyring entry (read back to be sure).
    pub async fn replace(&self, key: &PrivateKeyDer) -> Result<(), SecretError> {
        match self {
            SecretStore::File { path } => {
                ward_files::replace_file(path, key.to_pem().as_bytes(), 0o600).map_err(|source| {
                    SecretError::FileWrite {
                        path: path.display().to_string(),
                        source,
                    }
                })
            }
            SecretStore::Keyring { .. } => self.put(key).await,
        }
    }

    /// Stores raw secret bytes (a data key); refuses to replace an existing file.
    pub async fn put_bytes(&self, secret: &[u8]) -> Result<(), SecretError> {
        match self {
            SecretStore::File { path } => {
                create_secret_file(path, secret).map_err(|source| SecretError::FileWrite {
                    path: path.display().to_string(),
                    source,
                })
            }
            SecretStore::Keyring { service, account } => {
                let (service, account) = (service.clone(), account.clone());
                let bytes = Zeroizing::new(secret.to_vec());
                run_blocking(move || {
                    let entry = keyring::Entry::new(&service, &account).map_err(keyring_err)?;
                    entry.set_secret(&bytes).map_err(keyring_err)?;
                    let back = Zeroizing::new(entry.get_secret().map_err(keyring_err)?);
                    if back.as_slice() != bytes.as_slice() {
                        let _ = entry.delete_credential();
                        return Err(SecretError::KeyringReadBack);
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// The raw secret, or `None` when there is none.
    pub async fn get_bytes(&self) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError> {
        match self {
            SecretStore::File { path } => match read_no_follow(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(SecretError::FileRead {
                    path: path.display().to_string(),
                    source,
                }),
            },
            SecretStore::Keyring { service, account } => {
                let (service, account) = (service.clone(), account.clone());
                run_blocking(move || {
                    let entry = keyring::Entry::new(&service, &account).map_err(keyring_err)?;
                    match entry.get_secret() {
                        Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
                        Err(keyring::Error::NoEntry) => Ok(None),
                        Err(e) => Err(keyring_err(e)),
                    }
                })
                .await
            }
        }
    }

    /// Destroys the secret: a file is overwritten with zeros, synced and unlinked; a keyring
    /// entry is deleted. Succeeds if there was nothing to destroy.
    pub async fn destroy(&self) -> Result<(), SecretError> {
        match self {
            SecretStore::File { path } => {
                destroy_file(path).map_err(|source| SecretError::FileWrite {
                    path: path.display().to_string(),
                    source,
                })
            }
            SecretStore::Keyring { service, account } => {
                let (service, account) = (service.clone(), account.clone());
                run_blocking(move || {
                    let entry = keyring::Entry::new(&service, &account).map_err(keyring_err)?;
                    match entry.delete_credential() {
                        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                        Err(e) => Err(keyring_err(e)),
                    }
                })
                .await
            }
        }
    }

    pub async fn get(&self) -> Result<PrivateKeyDer, SecretError> {
        match self {
            SecretStore::File { path } => {
                let bytes = read_no_follow(path).map_err(|source| SecretError::FileRead {
                    path: path.display().to_string(),
                    source,
                })?;
                let text = std::str::from_utf8(&bytes).map_err(|_| SecretError::Damaged {
                    path: path.display().to_string(),
                })?;
                PrivateKeyDer::from_pem(text).map_err(|_| SecretError::Damaged {
                    path: path.display().to_string(),
                })
            }
            SecretStore::Keyring { service, account } => {
                let (service, account) = (service.clone(), account.clone());
                run_blocking(move || {
                    let entry = keyring::Entry::new(&service, &account).map_err(keyring_err)?;
                    Ok(PrivateKeyDer::new(entry.get_secret().map_err(keyring_err)?))
                })
                .await
            }
        }
    }
}

/// Reads a secret file, refusing a symbolic link in its place (opened `O_NOFOLLOW`), into a
/// buffer sized up front (growing it would leave copies behind) that is zeroized on drop.
fn read_no_follow(path: &std::path::Path) -> std::io::Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    let mut file = crate::vault_fs::open_no_follow(path)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(0);
    let mut bytes = Zeroizing::new(Vec::with_capacity(len + 1));
    file.by_ref()
        .take(u64::try_from(len).unwrap_or(0))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Overwrites a file with zeros, syncs, unlinks it and syncs its directory. A symbolic link
/// (or anything but a regular file with one link) in its place is only unlinked: nothing is
/// written through it.
pub fn destroy_file(path: &std::path::Path) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = match rustix::fs::openat(
        rustix::fs::CWD,
        path,
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Some(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NXIO) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(fd) = fd {
        let mut file = std::fs::File::from(fd);
        let meta = file.metadata()?;
        if meta.is_file() && std::os::unix::fs::MetadataExt::nlink(&meta) == 1 {
            crate::vault_fs::zero_fill(&mut file, meta.len())?;
        }
    }
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn keyring_err(e: keyring::Error) -> SecretError {
    SecretError::Keyring(e.to_string())
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SecretError> + Send + 'static,
) -> Result<T, SecretError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SecretError::Keyring(format!("keyring task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trips_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let store = SecretStore::new(SecretStoreKind::File, dir.path().join("device.key"), "x");
        let key = PrivateKeyDer::generate().unwrap();
        store.put(&key).await.unwrap();
        assert_eq!(store.get().await.unwrap().as_bytes(), key.as_bytes());
        let other = PrivateKeyDer::generate().unwrap();
        assert!(store.put(&other).await.is_err());
        assert_eq!(store.get().await.unwrap().as_bytes(), key.as_bytes());
    }
}
