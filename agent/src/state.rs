//! The agent's state directory: what enrollment produced and what `run` last achieved.
//!
//! ```text
//! STATE/             0700
//!   state.json       identity, server, secret-store choice, last check-in (0600)
//!   device.pem       the device certificate
//!   ca.pem           the controller's CA, pinned at enrollment
//!   device.key       the private key, 0600 (file secret store only)
//!   device-key.tpm-auth  the authorization value of the key in the TPM, 0600 (tpm only)
//! ```
//! `state.json` is written last at enrollment: its presence means "enrolled".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ward_files::replace_file;

use crate::secrets::SecretStoreKind;

pub const STATE_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentState {
    pub version: u32,
    pub device_id: String,
    pub user: String,
    pub server_url: String,
    pub ca_hash: String,
    pub secret_store: SecretStoreKind,
    /// The TPM persistent handle of the device key (`secret_store: tpm` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm_key_handle: Option<u32>,
    pub enrolled_at: String,
    pub certificate_expires_at: String,
    pub checkin_interval_seconds: u32,
    pub last_checkin: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "{dir} holds no enrollment (no state.json): enroll first with `ward-agent enroll --server URL --token TOKEN --ca-hash sha256:…`"
    )]
    NotEnrolled { dir: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {why}")]
    Damaged { path: String, why: String },
}

#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn certificate(&self) -> PathBuf {
        self.root.join("device.pem")
    }
    pub fn ca(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn key_file(&self) -> PathBuf {
        self.root.join("device.key")
    }

    pub fn is_enrolled(&self) -> bool {
        self.state_file().exists()
    }

    pub fn load(&self) -> Result<AgentState, StateError> {
        let path = self.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotEnrolled {
                    dir: self.root.display().to_string(),
                });
            }
            Err(source) => return Err(self.io("cannot read", &path, source)),
        };
        let state: AgentState = serde_json::from_str(&text).map_err(|e| StateError::Damaged {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Damaged {
                path: path.display().to_string(),
                why: format!(
                    "state version {} is not supported by this agent (expects {STATE_VERSION})",
                    state.version
                ),
            });
        }
        if (state.secret_store == SecretStoreKind::Tpm) != state.tpm_key_handle.is_some() {
            return Err(StateError::Damaged {
                path: path.display().to_string(),
                why: "secret_store tpm and tpm_key_handle go together".into(),
            });
        }
        Ok(state)
    }

    pub fn save(&self, state: &AgentState) -> Result<(), StateError> {
        let path = self.state_file();
        let text = serde_json::to_vec_pretty(state).map_err(|e| StateError::Damaged {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        replace_file(&path, &text, 0o600).map_err(|source| self.io("cannot write", &path, source))
    }

    pub fn read_pem_certificates(&self, path: &Path) -> Result<Vec<Vec<u8>>, StateError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| self.io("cannot read", path, source))?;
        ward_certs::certificates_from_pem(&text).map_err(|e| StateError::Damaged {
            path: path.display().to_string(),
            why: e.to_string(),
        })
    }

    pub fn io(&self, what: &'static str, path: &Path, source: std::io::Error) -> StateError {
        StateError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }
}
