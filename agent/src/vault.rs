//! The messaging-data vault: the messaging app's data directory and its data key.
//!
//! The key lives in the secret store; the app encrypts its data with it. A wipe destroys the
//! key first (crypto-erase: after that, whatever the app encrypted is unrecoverable even if
//! the files survive), then overwrites and deletes every file, syncs, and checks the directory
//! is empty. Each step is recorded in a journal before the next begins, so an agent killed
//! mid-wipe resumes at its next start instead of starting over or forgetting.
//!
//! Overwriting files is best effort on SSDs and copy-on-write filesystems; the key's
//! destruction is what makes the data unrecoverable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::info;
use ward_certs::files::replace_file;

use crate::secrets::{SecretStore, SecretStoreKind, destroy_file};

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
    pub completed_at: Option<String>,
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
    #[error("wipe journal {path} is damaged: {why}")]
    Journal { path: String, why: String },
}

#[derive(Debug)]
pub struct Vault {
    dir: PathBuf,
    key: SecretStore,
    journal: PathBuf,
    clock: crate::clock::SharedClock,
}

fn io(path: &Path, source: std::io::Error) -> VaultError {
    VaultError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Vault {
    /// Opens the vault for `messaging_dir`, creating the directory (0700) and, unless a wipe
    /// has happened, the data key.
    pub async fn open(
        messaging_dir: &Path,
        state_dir: &Path,
        kind: SecretStoreKind,
        device_id: &str,
    ) -> Result<Self, VaultError> {
        if !messaging_dir.is_dir() {
            return Err(VaultError::Missing(messaging_dir.display().to_string()));
        }
        let vault = Self {
            dir: messaging_dir.to_path_buf(),
            key: SecretStore::named(
                kind,
                state_dir.join("messaging.key"),
                "messaging-key",
                device_id,
            ),
            journal: state_dir.join("wipe-journal.json"),
            clock: crate::clock::system(),
        };
        if vault.journal()?.is_none() && !vault.key_present().await? {
            let key: zeroize::Zeroizing<[u8; KEY_BYTES]> = zeroize::Zeroizing::new(rand::random());
            vault
                .key
                .put_bytes(key.as_ref())
                .await
                .map_err(|e| VaultError::Key(e.to_string()))?;
            info!(dir = %messaging_dir.display(), "messaging data key created");
        }
        Ok(vault)
    }

    /// Stamps the journal with `clock` (the agent's) instead of the system clock.
    pub fn with_clock(mut self, clock: crate::clock::SharedClock) -> Self {
        self.clock = clock;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data key, or `None` after a wipe.
    pub async fn key(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, VaultError> {
        self.key
            .get_bytes()
            .await
            .map_err(|e| VaultError::Key(e.to_string()))
    }

    pub async fn key_present(&self) -> Result<bool, VaultError> {
        Ok(self
            .key
            .get_bytes()
            .await
            .map_err(|e| VaultError::Key(e.to_string()))?
            .is_some())
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
                self.write_journal(&j)?;
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
                    completed_at: None,
                };
                self.write_journal(&j)?;
                j
            }
        };
        fail::fail_point!("vault-after-journal-started");
        let stop = |step: WipeStep| stop_after == Some(step);
        if stop(WipeStep::Started) {
            return Ok(journal);
        }
        if journal.step < WipeStep::KeyDestroyed {
            self.key
                .destroy()
                .await
                .map_err(|e| VaultError::Key(e.to_string()))?;
            if self.key_present().await? {
                return Err(VaultError::Key(
                    "the key is still readable after deletion".into(),
                ));
            }
            journal.step = WipeStep::KeyDestroyed;
            self.write_journal(&journal)?;
            info!(cause, "messaging data key destroyed");
            fail::fail_point!("vault-after-key-destroyed");
        }
        if stop(WipeStep::KeyDestroyed) {
            return Ok(journal);
        }
        if journal.step < WipeStep::FilesRemoved {
            if journal.found.is_none() {
                journal.found = Some(walk(&self.dir, Walk::Count)?);
                self.write_journal(&journal)?;
            }
            let (files, bytes) = walk(&self.dir, Walk::Destroy)?;
            let (found_files, found_bytes) = journal.found.unwrap_or_default();
            // Files the app wrote during the wipe are removed too, and counted.
            journal.files_removed = found_files.max(journal.files_removed + files);
            journal.bytes_removed = found_bytes.max(journal.bytes_removed + bytes);
            journal.step = WipeStep::FilesRemoved;
            self.write_journal(&journal)?;
            info!(
                cause,
                files, bytes, "messaging files overwritten and deleted"
            );
            fail::fail_point!("vault-after-files-removed");
        }
        if stop(WipeStep::FilesRemoved) {
            return Ok(journal);
        }
        if journal.step < WipeStep::Done {
            journal.verified_empty = is_empty(&self.dir)?;
            journal.completed_at = Some(crate::rfc3339(self.clock.now()));
            journal.step = WipeStep::Done;
            self.write_journal(&journal)?;
            fail::fail_point!("vault-after-done");
        }
        Ok(journal)
    }
}

/// What [`walk`] does with each file it counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Count only.
    Count,
    /// Overwrite and delete, keeping `dir` itself.
    Destroy,
}

/// Counts (files, bytes) under `dir`, never following symbolic links (a link counts as a file:
/// destroying removes the link itself), and with [`Walk::Destroy`] overwrites and deletes each
/// one as it goes.
fn walk(dir: &Path, how: Walk) -> Result<(u64, u64), VaultError> {
    let mut files = 0;
    let mut bytes = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| io(dir, e))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        if meta.is_dir() {
            let (f, b) = walk(&path, how)?;
            files += f;
            bytes += b;
            if how == Walk::Destroy {
                std::fs::remove_dir(&path).map_err(|e| io(&path, e))?;
            }
            continue;
        }
        if meta.is_file() {
            bytes += meta.len();
        }
        files += 1;
        if how == Walk::Destroy {
            destroy_file(&path).map_err(|e| io(&path, e))?;
            fail::fail_point!("vault-after-file-removed");
        }
    }
    if how == Walk::Destroy {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    Ok((files, bytes))
}

fn is_empty(dir: &Path) -> Result<bool, VaultError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io(dir, e)),
    }
}

#[cfg(test)]
#[path = "vault_tests.rs"]
mod tests;
