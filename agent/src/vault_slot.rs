//! The vault as the running agent holds it.
//!
//! Opening the vault can fail for a while after a boot: the TPM's resource manager is not
//! up yet, the OS keyring is not unlocked yet. That must never stop the agent, nor its
//! offline timer: the slot is tried at the agent's start and, until it opens, again by each
//! user (the timer at every tick, a wipe command, the messaging app asking for its key), each
//! of which says why it could not reach the key.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::clock::SharedClock;
use crate::secrets::SecretStoreKind;
use crate::tpm::TpmChoice;
use crate::vault::{Vault, VaultError};

/// What [`Vault::open_with`] needs.
#[derive(Debug)]
pub struct VaultOpener {
    pub messaging_dir: PathBuf,
    pub state_dir: PathBuf,
    pub kind: SecretStoreKind,
    pub device_id: String,
    pub tpm: TpmChoice,
    pub clock: SharedClock,
}

#[derive(Debug)]
pub struct VaultSlot {
    /// `None`: no messaging directory is managed on this device.
    opener: Option<VaultOpener>,
    vault: OnceCell<Arc<Vault>>,
}

impl VaultSlot {
    /// No messaging directory is managed (`ward-agent run` without `--messaging-dir`).
    pub fn none() -> Self {
        Self {
            opener: None,
            vault: OnceCell::new(),
        }
    }

    /// Opened at the first [`VaultSlot::get`] that succeeds.
    pub fn open_later(opener: VaultOpener) -> Self {
        Self {
            opener: Some(opener),
            vault: OnceCell::new(),
        }
    }

    /// A vault already open.
    pub fn opened(vault: Arc<Vault>) -> Self {
        Self {
            opener: None,
            vault: OnceCell::new_with(Some(vault)),
        }
    }

    /// The vault if it is open already (no attempt to open it).
    pub fn if_open(&self) -> Option<Arc<Vault>> {
        self.vault.get().cloned()
    }

    /// The vault; `Ok(None)` when no messaging directory is managed, `Err` (why) while it
    /// cannot be opened.
    pub async fn get(&self) -> Result<Option<Arc<Vault>>, VaultError> {
        if let Some(vault) = self.vault.get() {
            return Ok(Some(vault.clone()));
        }
        let Some(o) = &self.opener else {
            return Ok(None);
        };
        let vault = self
            .vault
            .get_or_try_init(|| async {
                let vault =
                    Vault::open_with(&o.messaging_dir, &o.state_dir, o.kind, &o.device_id, &o.tpm)
                        .await?
                        .with_clock(o.clock.clone());
                Ok::<_, VaultError>(Arc::new(vault))
            })
            .await?;
        Ok(Some(vault.clone()))
    }
}
