//! Where the device's own key lives, chosen at enrollment and recorded in state.json: the
//! secret store (a 0600 file or the OS keyring, the key then read into memory) or the TPM
//! (the key never leaves it; see [`crate::tpm_key`]).

use std::path::PathBuf;
use std::sync::Arc;

use ward_certs::DeviceKey;

use crate::secrets::{SecretError, SecretStore, SecretStoreKind};
use crate::state::{AgentState, StateDir};
use crate::tpm::{Tpm, TpmChoice};
use crate::tpm_key::TpmDeviceKey;

#[derive(Clone, Debug)]
pub enum DeviceKeyStore {
    Secret(SecretStore),
    Tpm {
        /// The TPM `--tpm` names; `None` when it names none or none is found.
        tpm: Option<Tpm>,
        handle: u32,
        state_dir: PathBuf,
    },
}

impl DeviceKeyStore {
    /// The store state.json records, reached through the TPM `tpm` chooses when it is a TPM.
    pub fn of(state: &AgentState, dir: &StateDir, tpm: &TpmChoice) -> Self {
        match (state.secret_store, state.tpm_key_handle) {
            (SecretStoreKind::Tpm, Some(handle)) => DeviceKeyStore::Tpm {
                tpm: tpm.resolve(),
                handle,
                state_dir: dir.root().to_path_buf(),
            },
            (kind, _) => {
                DeviceKeyStore::Secret(SecretStore::new(kind, dir.key_file(), &state.device_id))
            }
        }
    }

    /// The device key, ready to sign.
    pub async fn load(&self) -> Result<DeviceKey, SecretError> {
        match self {
            DeviceKeyStore::Secret(store) => Ok(DeviceKey::from(store.get().await?)),
            DeviceKeyStore::Tpm {
                tpm,
                handle,
                state_dir,
            } => {
                let tpm = tpm.as_ref().ok_or(SecretError::NoTpm { handle: *handle })?;
                let held = TpmDeviceKey::open(tpm, *handle, state_dir)
                    .await
                    .map_err(|e| SecretError::Tpm(e.to_string()))?;
                DeviceKey::held(Arc::new(held)).map_err(|e| SecretError::Tpm(e.to_string()))
            }
        }
    }

    /// Stores `key` in place of the current one (a renewal). The TPM keeps its key across
    /// renewals: only that same key is accepted there.
    pub async fn replace(&self, key: &DeviceKey) -> Result<(), SecretError> {
        match (self, key) {
            (DeviceKeyStore::Secret(store), DeviceKey::Memory(key)) => store.replace(key).await,
            (DeviceKeyStore::Tpm { .. }, DeviceKey::Held(_)) => {
                let current = self.load().await?;
                if current.public_key_der().ok() == key.public_key_der().ok() {
                    Ok(())
                } else {
                    Err(SecretError::Tpm(
                        "a renewal may not replace the key the TPM holds".into(),
                    ))
                }
            }
            _ => Err(SecretError::Tpm(
                "a key cannot move between the TPM and the secret store".into(),
            )),
        }
    }

    /// Destroys the device key: deleted from the secret store, or evicted from the TPM.
    pub async fn destroy(&self) -> Result<(), SecretError> {
        match self {
            DeviceKeyStore::Secret(store) => store.destroy().await,
            DeviceKeyStore::Tpm {
                tpm,
                handle,
                state_dir,
            } => {
                let Some(tpm) = tpm.as_ref() else {
                    // The key stays in the TPM, but without its authorization value it signs
                    // for no one: destroy that (not only unlink it with the state directory).
                    let auth = crate::tpm_key::auth_file(state_dir);
                    if let Err(e) = crate::secrets::destroy_file(&auth) {
                        tracing::error!(error = %e, path = %auth.display(), "cannot destroy the device key's TPM authorization value");
                    }
                    return Err(SecretError::NoTpm { handle: *handle });
                };
                TpmDeviceKey::destroy(tpm, *handle, state_dir)
                    .await
                    .map_err(|e| SecretError::Tpm(e.to_string()))
            }
        }
    }

    /// Whether renewals make a new key (a key in memory) or keep this one (a TPM's).
    pub fn renews_key(&self) -> bool {
        matches!(self, DeviceKeyStore::Secret(_))
    }
}

#[cfg(test)]
#[path = "device_key_tests.rs"]
mod tests;
