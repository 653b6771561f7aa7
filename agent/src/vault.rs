//! The messaging-data vault: the messaging app's data directory and its data key.
//!
//! The key lives in a TPM 2.0 where there is one (an NV index: it never rests on disk), else in
//! the OS secret store where the agent was enrolled with one, else in a 0600 file; the vault
//! records which ([`KeyProtection`]) and every wipe journal and receipt carries it. The app
//! encrypts its data with the key. A wipe destroys the key first (crypto-erase: after that,
//! whatever the app encrypted is unrecoverable even if the files survive), then overwrites
//! and deletes every file through file descriptors ([`crate::vault_fs`]: no local user can
//! redirect it with a symbolic link), syncs, and checks the directory is empty. Each step is
//! recorded in a journal before the next begins, so an agent killed mid-wipe resumes at its
//! next start instead of starting over or forgetting.
//!
//! Overwriting files is best effort on SSDs and copy-on-write filesystems; the key's
//! destruction is what makes the data unrecoverable, and only a key held in the TPM is gone
//! from every copy of the disk.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
pub use ward_certs::receipt::KeyProtection;
use ward_files::replace_file;
use zeroize::Zeroizing;

use crate::secrets::{SecretStore, SecretStoreKind, destroy_file};
use crate::tpm::{NvState, Tpm, TpmChoice, TpmError};
use crate::vault_fs::{self, Walk, WalkError};

/// The cause in the journal of a key found gone at start with no journal saying why.
pub const KEY_FOUND_GONE: &str = "key-found-gone";

/// The data key's size.
pub const KEY_BYTES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeStep {
    Started,
    KeyDestroyed,
    FilesRemoved,
    Done,
}

/// The wipe journal (`STATE/wipe-journal.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WipeJournal {
    /// The command being executed, or `offline-timer` for a wipe the agent started itself.
    pub cause: String,
    pub step: WipeStep,
    pub files_removed: u64,
    pub bytes_removed: u64,
    /// What the directory held (files, bytes) when the removal began, recorded before the
    /// first file goes: a removal interrupted by a crash and resumed still reports the whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<(u64, u64)>,
    pub verified_empty: bool,
    /// The messaging directory the key was made for was not there when the wipe read it
    /// again, so its files were neither removed nor seen gone (the key's destruction still
    /// makes what the app encrypted unreadable): nothing at its path (a home not mounted, the
    /// directory moved away), or something else there (see `directory_replaced`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub directory_missing: bool,
    /// With `directory_missing`: something else stood at the path (another directory, a
    /// link, a file), not nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub directory_replaced: bool,
    pub completed_at: Option<String>,
    /// Where the destroyed key was held (absent in journals written before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_protection: Option<KeyProtection>,
    /// When the wipe began (absent in journals written before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "messaging directory {0} does not exist: check --messaging-dir (the agent never creates it, so a typo cannot look like a successful wipe)"
    )]
    Missing(String),
    #[error("messaging directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the messaging data key: {0}")]
    Key(String),
    #[error("the messaging data key in the TPM: {0}")]
    Tpm(#[from] TpmError),
    #[error(
        "the data key is destroyed, but the wipe cannot go on without its journal ({0}): the offline timer tries again; a commanded wipe must be issued again once there is space (the data stays locked meanwhile)"
    )]
    KeyDestroyedUnrecorded(String),
    #[error("wipe journal {path} is damaged: {why}")]
    Journal { path: String, why: String },
    #[error("{path} is damaged: {why}")]
    Record { path: String, why: String },
}

/// Where the key lives (`STATE/messaging-key.json`), written before the key is made, so a
/// restart never looks for it elsewhere or silently makes a weaker one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    protection: KeyProtection,
    /// The TPM NV index, e.g. "0x01300057".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nv_index: Option<String>,
    /// The messaging directory the key was made for (absent in records before this field:
    /// taken at the next start). A wipe that finds another directory at its path (moved away
    /// and a new one made) neither empties nor vouches for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    directory: Option<DirIdentity>,
    /// The key was made (false only between this record and the key's creation). Records from
    /// before this field say nothing: the key is taken as made, the safe reading, so a key
    /// found gone without a wipe journal is never silently replaced by a new one.
    #[serde(default = "made")]
    key_made: bool,
}

fn made() -> bool {
    true
}

/// A directory's identity: its filesystem and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct DirIdentity {
    device: u64,
    inode: u64,
}

impl DirIdentity {
    /// The identity of the directory at `path`, if a directory (not a link) is there.
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).ok()?;
        meta.is_dir().then(|| Self {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }
}

/// What a wipe finds at the messaging directory's path.
enum Found {
    /// The directory the key was made for, opened without following links.
    Own(std::os::fd::OwnedFd),
    /// Nothing: not there now (a home mounted at login and not mounted, the directory moved
    /// away). Not "replaced": it may come back, and it is then the key's directory again.
    Absent,
    /// A link or a file put in its place, or another directory.
    Other,
}

#[derive(Debug)]
enum KeyHome {
    Tpm { tpm: Tpm, auth: PathBuf },
    Store(SecretStore),
}

#[derive(Debug)]
pub struct Vault {
    /// Canonical: the wipe refuses a symbolic link found in it later.
    dir: PathBuf,
    home: KeyHome,
    protection: KeyProtection,
    journal: PathBuf,
    clock: crate::clock::SharedClock,
    /// The directory the key was made for, when known.
    identity: Option<DirIdentity>,
    key_made: bool,
}

fn io(path: &Path, source: std::io::Error) -> VaultError {
    VaultError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn walk_error(e: WalkError) -> VaultError {
    VaultError::Io {
        path: e.path,
        source: e.source,
    }
}

fn key_err(e: impl std::fmt::Display) -> VaultError {
    VaultError::Key(e.to_string())
}

fn store_protection(kind: SecretStoreKind) -> KeyProtection {
    match kind {
        // A device key in the TPM leaves other secrets to a file (SecretStore::named).
        SecretStoreKind::File | SecretStoreKind::Tpm => KeyProtection::FileBestEffort,
        SecretStoreKind::Keyring => KeyProtection::Keyring,
    }
}

fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("messaging-key.json")
}

/// Whether a vault was set up in `state_dir` (its key's record written).
pub fn is_set_up(state_dir: &Path) -> bool {
    std::fs::symlink_metadata(record_path(state_dir)).is_ok()
}

impl Vault {
    /// Opens the vault for `messaging_dir` without a TPM (the key in `kind`'s store).
    pub async fn open(
        messaging_dir: &Path,
        state_dir: &Path,
        kind: SecretStoreKind,
        device_id: &str,
    ) -> Result<Self, VaultError> {
        Self::open_with(messaging_dir, state_dir, kind, device_id, &TpmChoice::None).await
    }

    /// Opens the vault for `messaging_dir` (which must exist) and, unless a wipe has happened,
    /// makes the data key: in the TPM `tpm` finds, else in `kind`'s store. A key made earlier
    /// stays where it was made.
    pub async fn open_with(
        messaging_dir: &Path,
        state_dir: &Path,
        kind: SecretStoreKind,
        device_id: &str,
        tpm: &TpmChoice,
    ) -> Result<Self, VaultError> {
        let record_file = record_path(state_dir);
        let record = read_record(&record_file)?;
        let dir = messaging_path(messaging_dir, record.is_some())?;
        let journal = state_dir.join("wipe-journal.json");
        let store = SecretStore::named(
            kind,
            state_dir.join("messaging.key"),
            "messaging-key",
            device_id,
        );
        let mut vault = Self {
            dir,
            home: KeyHome::Store(store.clone()),
            protection: store_protection(kind),
            journal,
            clock: crate::clock::system(),
            identity: None,
            key_made: false,
        };
        match record {
            Some(record) => {
                let (identity, key_made) = (record.directory, record.key_made);
                vault.home_from(record, store, state_dir, tpm)?;
                vault.key_made = key_made;
                vault.identity = identity;
                if identity.is_none() {
                    // A record from before identities were kept: this directory, from now on.
                    vault.identity = DirIdentity::of(&vault.dir);
                    if vault.identity.is_some() {
                        vault.write_record(&record_file)?;
                    }
                }
            }
            None => {
                vault.identity = DirIdentity::of(&vault.dir);
                // A key made before the vault kept a record (or already wiped) stays where
                // it is; a new one goes to the TPM where there is one.
                let existing = vault.journal()?.is_some() || vault.key_present().await?;
                // A key made before the vault kept a record was made: found gone later, it
                // is never replaced (attack review).
                vault.key_made = existing;
                if !existing && let Some(t) = usable_tpm(tpm).await? {
                    vault.home = KeyHome::Tpm {
                        tpm: t,
                        auth: crate::tpm::auth_file(state_dir),
                    };
                    vault.protection = KeyProtection::Tpm;
                }
                vault.write_record(&record_file)?;
            }
        }
        if vault.journal()?.is_none() && !vault.key_present().await? {
            if vault.key_made {
                // Destroyed by a wipe whose journal could not be written (a full disk), or by
                // someone else: never replaced by a new key the app would be handed. Recorded
                // as a wipe under way, which the next wipe (the timer's or a command's) ends.
                warn!(dir = %vault.dir.display(), "the messaging data key is gone but no wipe journal says why: the data stays locked, and the next wipe finishes the job");
                vault.write_journal(&WipeJournal {
                    cause: KEY_FOUND_GONE.into(),
                    step: WipeStep::KeyDestroyed,
                    files_removed: 0,
                    bytes_removed: 0,
                    found: None,
                    verified_empty: false,
                    directory_missing: false,
                    directory_replaced: false,
                    completed_at: None,
                    key_protection: Some(vault.protection),
                    started_at: None,
                })?;
            } else {
                vault.create_key().await?;
                vault.key_made = true;
                vault.write_record(&record_file)?;
                info!(dir = %vault.dir.display(), key_protection = %vault.protection, "messaging data key created");
            }
        }
        Ok(vault)
    }

    fn home_from(
        &mut self,
        record: KeyRecord,
        store: SecretStore,
        state_dir: &Path,
        choice: &TpmChoice,
    ) -> Result<(), VaultError> {
        self.protection = record.protection;
        if record.protection != KeyProtection::Tpm && matches!(choice, TpmChoice::Tcti(_)) {
            warn!(
                key_protection = %record.protection,
                "--tpm is given, but the messaging key was made earlier outside the TPM and stays where it is (receipts say so); to move it into the TPM, retire the device and enroll it again"
            );
        }
        self.home = match record.protection {
            KeyProtection::Tpm => {
                let index = record
                    .nv_index
                    .as_deref()
                    .and_then(|i| i.strip_prefix("0x"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| VaultError::Record {
                        path: record_path(state_dir).display().to_string(),
                        why: "a TPM key without its NV index".into(),
                    })?;
                let Some(tpm) = choice.resolve() else {
                    return Err(VaultError::Key(format!(
                        "it is held in a TPM (NV index {index:#010x}) but no TPM is available (--tpm {choice}): give the TPM with --tpm TCTI, e.g. --tpm device:/dev/tpmrm0"
                    )));
                };
                KeyHome::Tpm {
                    tpm: tpm.with_index(index),
                    auth: crate::tpm::auth_file(state_dir),
                }
            }
            // The store the record names, whatever the enrollment's choice is now.
            KeyProtection::Keyring => KeyHome::Store(match store {
                SecretStore::Keyring { .. } => store,
                SecretStore::File { .. } => {
                    return Err(VaultError::Key(
                        "it is held in the OS keyring, but this device's secret store is a file"
                            .into(),
                    ));
                }
            }),
            KeyProtection::FileBestEffort => KeyHome::Store(match store {
                SecretStore::File { .. } => store,
                SecretStore::Keyring { .. } => SecretStore::File {
                    path: state_dir.join("messaging.key"),
                },
            }),
        };
        Ok(())
    }

    fn write_record(&self, path: &Path) -> Result<(), VaultError> {
        let record = KeyRecord {
            protection: self.protection,
            nv_index: match &self.home {
                KeyHome::Tpm { tpm, .. } => Some(format!("{:#010x}", tpm.index())),
                KeyHome::Store(_) => None,
            },
            directory: self.identity,
            key_made: self.key_made,
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| VaultError::Record {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        replace_file(path, &bytes, 0o600).map_err(|e| io(path, e))
    }

    async fn create_key(&self) -> Result<(), VaultError> {
        let key: Zeroizing<[u8; KEY_BYTES]> = Zeroizing::new(rand::random());
        match &self.home {
            KeyHome::Store(store) => store.put_bytes(key.as_ref()).await.map_err(key_err),
            KeyHome::Tpm { tpm, auth } => {
                match tpm.state().await? {
                    NvState::Absent => {
                        if std::fs::symlink_metadata(auth).is_err() {
                            let secret: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
                            ward_files::create_secret_file(auth, secret.as_ref())
                                .map_err(|e| io(auth, e))?;
                        }
                        tpm.define(auth).await?;
                    }
                    // Ours from an interrupted start (our authorization opens it), or
                    // someone else's (it does not).
                    NvState::Unwritten | NvState::Written => {
                        if std::fs::symlink_metadata(auth).is_err() {
                            return Err(TpmError::IndexInUse { index: tpm.index() }.into());
                        }
                    }
                }
                tpm.write(auth, key.as_ref()).await?;
                Ok(())
            }
        }
    }

    /// Stamps the journal with `clock` (the agent's) instead of the system clock.
    pub fn with_clock(mut self, clock: crate::clock::SharedClock) -> Self {
        self.clock = clock;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the key is held.
    pub fn protection(&self) -> KeyProtection {
        self.protection
    }

    /// Where the key is held, in words for a certificate of sanitization.
    pub fn key_location(&self) -> String {
        match &self.home {
            KeyHome::Tpm { tpm, .. } => format!(
                "TPM 2.0 NV index {:#010x} (TCTI {}), read with its own authorization value",
                tpm.index(),
                tpm.tcti()
            ),
            KeyHome::Store(SecretStore::Keyring { service, account }) => {
                format!("OS secret store, service {service:?}, entry {account:?}")
            }
            KeyHome::Store(SecretStore::File { path }) => {
                format!("file {} (mode 0600)", path.display())
            }
        }
    }

    /// How [`Vault::wipe`] destroys the key where it is held, for a certificate of
    /// sanitization.
    pub fn key_destruction(&self) -> &'static str {
        match &self.home {
            KeyHome::Tpm { .. } => {
                "overwritten inside the TPM with random bytes (tpm2_nvwrite), then the NV index undefined (tpm2_nvundefine, owner hierarchy); its authorization file overwritten with zeros and deleted"
            }
            KeyHome::Store(SecretStore::Keyring { .. }) => {
                "the entry deleted from the OS secret store"
            }
            KeyHome::Store(SecretStore::File { .. }) => {
                "the file overwritten once with zeros, synced, and deleted (best effort: SSDs and copy-on-write filesystems may keep the old blocks)"
            }
        }
    }

    /// Where the key a wipe destroyed was held (journals from before the field: this vault's).
    pub fn protection_in(&self, journal: &WipeJournal) -> KeyProtection {
        journal.key_protection.unwrap_or(self.protection)
    }

    /// The data key, or `None` after a wipe.
    pub async fn key(&self) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        match &self.home {
            KeyHome::Store(store) => store.get_bytes().await.map_err(key_err),
            KeyHome::Tpm { tpm, auth } => match tpm.state().await? {
                NvState::Written => Ok(Some(tpm.read(auth).await?)),
                NvState::Absent | NvState::Unwritten => Ok(None),
            },
        }
    }

    pub async fn key_present(&self) -> Result<bool, VaultError> {
        match &self.home {
            KeyHome::Store(store) => Ok(store.get_bytes().await.map_err(key_err)?.is_some()),
            KeyHome::Tpm { tpm, .. } => Ok(tpm.state().await? == NvState::Written),
        }
    }

    /// Destroys the key: in the TPM, overwritten then deleted (the index undefined), then its
    /// authorization file; in a store, deleted (a file overwritten first).
    async fn destroy_key(&self) -> Result<(), VaultError> {
        match &self.home {
            KeyHome::Store(store) => store.destroy().await.map_err(key_err),
            KeyHome::Tpm { tpm, auth } => {
                if tpm.state().await? != NvState::Absent {
                    if std::fs::symlink_metadata(auth).is_err() {
                        return Err(VaultError::Key(format!(
                            "the TPM's NV index {:#010x} is still defined but its authorization file {} is gone: delete it with tpm2_nvundefine {:#010x} -C o",
                            tpm.index(),
                            auth.display(),
                            tpm.index()
                        )));
                    }
                    let noise: Zeroizing<[u8; KEY_BYTES]> = Zeroizing::new(rand::random());
                    tpm.write(auth, noise.as_ref()).await?;
                    tpm.undefine().await?;
                }
                destroy_file(auth).map_err(|e| io(auth, e))
            }
        }
    }

    /// The journal, if a wipe was ever started.
    pub fn journal(&self) -> Result<Option<WipeJournal>, VaultError> {
        match std::fs::read(&self.journal) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| VaultError::Journal {
                        path: self.journal.display().to_string(),
                        why: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&self.journal, e)),
        }
    }

    fn write_journal(&self, journal: &WipeJournal) -> Result<(), VaultError> {
        let bytes = serde_json::to_vec_pretty(journal).map_err(|e| VaultError::Journal {
            path: self.journal.display().to_string(),
            why: e.to_string(),
        })?;
        replace_file(&self.journal, &bytes, 0o600).map_err(|e| io(&self.journal, e))
    }

    /// Wipes for `cause` (a command id), resuming a wipe of the same cause where it stopped.
    /// A finished wipe is answered from the journal.
    pub async fn wipe(&self, cause: &str) -> Result<WipeJournal, VaultError> {
        self.wipe_until(cause, None).await
    }

    /// [`Vault::wipe`], stopping after `stop_after` as if the process died there (tests).
    #[doc(hidden)]
    pub async fn wipe_until(
        &self,
        cause: &str,
        stop_after: Option<WipeStep>,
    ) -> Result<WipeJournal, VaultError> {
        let mut journal = match self.journal()? {
            Some(j) if j.cause == cause => j,
            // An earlier wipe stopped part-way (it failed, or its cause was the offline
            // timer): this one takes it over and finishes the destruction.
            Some(mut j) if j.step != WipeStep::Done => {
                info!(previous = %j.cause, cause, "taking over an unfinished wipe");
                j.cause = cause.to_owned();
                j.key_protection.get_or_insert(self.protection);
                self.journal_or_key_first(&j).await?;
                j
            }
            // A new wipe (possibly after an earlier, finished one).
            _ => {
                let j = WipeJournal {
                    cause: cause.to_owned(),
                    step: WipeStep::Started,
                    files_removed: 0,
                    bytes_removed: 0,
                    found: None,
                    verified_empty: false,
                    directory_missing: false,
                    directory_replaced: false,
                    completed_at: None,
                    key_protection: Some(self.protection),
                    started_at: Some(crate::rfc3339(self.clock.now())),
                };
                self.journal_or_key_first(&j).await?;
                j
            }
        };
        fail::fail_point!("vault-after-journal-started");
        let stop = |step: WipeStep| stop_after == Some(step);
        if stop(WipeStep::Started) {
            return Ok(journal);
        }
        if journal.step < WipeStep::KeyDestroyed {
            self.destroy_key_and_check().await?;
            journal.step = WipeStep::KeyDestroyed;
            self.write_journal(&journal)?;
            info!(cause, key_protection = %self.protection, "messaging data key destroyed");
            fail::fail_point!("vault-after-key-destroyed");
        }
        if stop(WipeStep::KeyDestroyed) {
            return Ok(journal);
        }
        if journal.step < WipeStep::FilesRemoved {
            if journal.found.is_none() {
                let found = self.walk(Walk::Count)?;
                journal.found = Some((found.files, found.bytes));
                self.write_journal(&journal)?;
            }
            let removed = self.walk(Walk::Destroy)?;
            let (found_files, found_bytes) = journal.found.unwrap_or_default();
            // Files the app wrote during the wipe are removed too, and counted.
            journal.files_removed = found_files.max(journal.files_removed + removed.files);
            journal.bytes_removed = found_bytes.max(journal.bytes_removed + removed.bytes);
            journal.step = WipeStep::FilesRemoved;
            self.write_journal(&journal)?;
            info!(
                cause,
                files = removed.files,
                bytes = removed.bytes,
                "messaging files overwritten and deleted"
            );
            fail::fail_point!("vault-after-files-removed");
        }
        if stop(WipeStep::FilesRemoved) {
            return Ok(journal);
        }
        if journal.step < WipeStep::Done {
            match self.is_empty()? {
                Ok(empty) => journal.verified_empty = empty,
                Err(replaced) => {
                    warn!(dir = %self.dir.display(), replaced, "the messaging directory the key was made for is not there (not mounted, moved away, or replaced): its files were not removed and nothing shows they are gone (the key is destroyed). The receipt says NOT FOUND");
                    journal.verified_empty = false;
                    journal.directory_missing = true;
                    journal.directory_replaced = replaced;
                }
            }
            journal.completed_at = Some(crate::rfc3339(self.clock.now()));
            journal.step = WipeStep::Done;
            self.write_journal(&journal)?;
            fail::fail_point!("vault-after-done");
        }
        Ok(journal)
    }

    /// The messaging directory, if what is at its path is still the one the key was made
    /// for.
    fn open_own(&self) -> Result<Found, VaultError> {
        let fd = match vault_fs::open_dir(&self.dir) {
            Ok(fd) => fd,
            Err(e)
                if matches!(
                    e.source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                // ENOENT: nothing at the path, or a parent missing (a home not mounted);
                // ENOTDIR: a file (or a link, not followed) at the path or in a parent.
                let absent = e.source.kind() == std::io::ErrorKind::NotFound;
                warn!(dir = %self.dir.display(), error = %e, "the messaging directory is not there now (not mounted, moved away, or replaced by a link or a file)");
                return Ok(if absent { Found::Absent } else { Found::Other });
            }
            Err(e) => return Err(walk_error(e)),
        };
        if let Some(expected) = self.identity {
            let stat = rustix::fs::fstat(&fd).map_err(|e| io(&self.dir, e.into()))?;
            let found = DirIdentity {
                device: stat.st_dev,
                inode: stat.st_ino,
            };
            if found != expected {
                warn!(dir = %self.dir.display(), "another directory stands at the messaging directory's path (the one the key was made for was moved away, or a filesystem mounted over it): it is neither emptied nor vouched for");
                return Ok(Found::Other);
            }
        }
        Ok(Found::Own(fd))
    }

    /// Counts or destroys the directory's contents; one that is not the key's holds nothing
    /// the wipe may touch.
    fn walk(&self, how: Walk) -> Result<vault_fs::Tally, VaultError> {
        match self.open_own()? {
            Found::Own(fd) => vault_fs::walk(fd.as_fd(), &self.dir, how).map_err(walk_error),
            Found::Absent | Found::Other => Ok(vault_fs::Tally::default()),
        }
    }

    /// `Ok(whether the directory is empty)`; `Err(replaced)` when the key's directory is not
    /// there (`false`: nothing at its path; `true`: something else), which is never "empty":
    /// the files may live on elsewhere, or come back when a home is mounted.
    fn is_empty(&self) -> Result<Result<bool, bool>, VaultError> {
        match self.open_own()? {
            Found::Own(fd) => vault_fs::is_empty(fd.as_fd(), &self.dir)
                .map(Ok)
                .map_err(walk_error),
            Found::Absent => Ok(Err(false)),
            Found::Other => Ok(Err(true)),
        }
    }

    async fn destroy_key_and_check(&self) -> Result<(), VaultError> {
        self.destroy_key().await?;
        if self.key_present().await? {
            return Err(VaultError::Key(
                "the key is still readable after deletion".into(),
            ));
        }
        Ok(())
    }

    /// Writes the journal a wipe starts with; if it cannot be written (a full disk), destroys
    /// the key all the same before failing: the journal serves recovery, the key's
    /// destruction is the wipe, and it must never wait for disk space.
    async fn journal_or_key_first(&self, journal: &WipeJournal) -> Result<(), VaultError> {
        let Err(written) = self.write_journal(journal) else {
            return Ok(());
        };
        warn!(error = %written, "the wipe journal cannot be written; destroying the data key first all the same");
        self.destroy_key_and_check().await?;
        info!(cause = %journal.cause, key_protection = %self.protection, "messaging data key destroyed");
        Err(VaultError::KeyDestroyedUnrecorded(written.to_string()))
    }
}

/// The messaging directory's path for the vault: its real path, given as such (no symbolic
/// link or `..` in it). The app's user owns the directory and may replace it with a link, or
/// move it away, while the agent is stopped: for a vault set up earlier (`set_up`) the agent
/// then keeps the path it was given, warns, and goes on (so its offline timer and wipes still
/// destroy the key, and the wipe refuses to follow the link); a new vault is refused.
fn messaging_path(given: &Path, set_up: bool) -> Result<PathBuf, VaultError> {
    let absolute = std::path::absolute(given).map_err(|e| io(given, e))?;
    let why = match std::fs::canonicalize(&absolute) {
        Ok(real) if real.is_dir() && real == absolute => return Ok(real),
        Ok(real) if real.is_dir() => format!(
            "resolves to {} through a symbolic link or '..': give that real path instead (a link the app's user can change would redirect the wipe)",
            real.display()
        ),
        Ok(_) => "is a file, not a directory".to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !set_up {
                return Err(VaultError::Missing(given.display().to_string()));
            }
            "does not exist".to_owned()
        }
        // E.g. a link to itself: a loop.
        Err(e) => format!("cannot be resolved ({e})"),
    };
    if !set_up {
        return Err(io(given, std::io::Error::other(why)));
    }
    warn!(
        dir = %absolute.display(),
        "the messaging directory {why}; it was a directory when its key was made, so it has been moved or replaced since: the agent runs on (its offline timer and wipes still destroy the key), but a wipe neither follows a link nor removes files elsewhere. Put the directory back, or enroll again with the right one"
    );
    Ok(absolute)
}

fn read_record(path: &Path) -> Result<Option<KeyRecord>, VaultError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| VaultError::Record {
                path: path.display().to_string(),
                why: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path, e)),
    }
}

/// The TPM a new key goes to: an explicit TCTI must answer; one found by `auto` that does not
/// is passed over with a warning (the key then goes to the store, and receipts say so).
async fn usable_tpm(choice: &TpmChoice) -> Result<Option<Tpm>, VaultError> {
    let Some(tpm) = choice.resolve() else {
        return Ok(None);
    };
    match tpm.probe().await {
        Ok(()) => Ok(Some(tpm)),
        Err(e) if *choice == TpmChoice::Auto => {
            warn!(tcti = tpm.tcti(), error = %e, "the TPM does not answer; the messaging key is kept without it");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "vault_tests.rs"]
mod tests;
