//! The command ledger: one file per command id in `STATE/ledger/`, written atomically, so each
//! command is executed at most once across restarts and duplicates are answered with the
//! recorded result.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ward_certs::receipt::WipeScope;
use ward_files::{create_private_dir, replace_file};

use crate::state::StateError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    Lock {
        message: String,
    },
    Unlock,
    Wipe {
        scope: WipeScope,
    },
    /// Withhold the messaging data key (the data stays) until an enable.
    Disable {
        reason: String,
    },
    Enable,
    /// Messaging wipe with a receipt; once the controller accepted it, the agent destroys its
    /// own key and state.
    Retire,
    /// A command this agent does not know (a newer controller's): recorded, so its refusal
    /// is reported once and a redelivery is answered from here.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Status {
    /// Acknowledged by the controller; executing (or interrupted while executing).
    Started,
    /// The controller told us not to run it (cancelled or finished elsewhere).
    Refused { state: String },
    Finished {
        succeeded: bool,
        failure_reason: String,
        /// base64 of the signed receipt body and signature, for wipes.
        receipt_body: Option<String>,
        receipt_signature: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub command_id: String,
    pub action: Action,
    pub status: Status,
    /// The controller has accepted the result.
    pub reported: bool,
    pub updated_at: String,
}

#[derive(Clone, Debug)]
pub struct Ledger {
    dir: PathBuf,
}

fn io(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        what: "ledger",
        path: path.display().to_string(),
        source,
    }
}

impl Ledger {
    pub fn open(state_dir: &Path) -> Result<Self, StateError> {
        let dir = state_dir.join("ledger");
        create_private_dir(&dir).map_err(|e| io(&dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, command_id: &str) -> Result<PathBuf, StateError> {
        // Ids come from the network: only a UUID may become a file name.
        let id = uuid::Uuid::parse_str(command_id).map_err(|_| StateError::Damaged {
            path: self.dir.display().to_string(),
            why: format!("command id {command_id:?} is not a UUID"),
        })?;
        Ok(self.dir.join(format!("{}.json", id.hyphenated())))
    }

    pub fn get(&self, command_id: &str) -> Result<Option<Entry>, StateError> {
        let path = self.path(command_id)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StateError::Damaged {
                        path: path.display().to_string(),
                        why: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    pub fn put(&self, entry: &Entry) -> Result<(), StateError> {
        let path = self.path(&entry.command_id)?;
        let bytes = serde_json::to_vec_pretty(entry).map_err(|e| StateError::Damaged {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        replace_file(&path, &bytes, 0o600).map_err(|e| io(&path, e))
    }

    /// Entries that still need work: started ones to resume, finished ones to report.
    pub fn unfinished_business(&self) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        for dirent in std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))? {
            let path = dirent.map_err(|e| io(&self.dir, e))?.path();
            let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let entry = match self.get(id) {
                Ok(entry) => entry,
                Err(e) => {
                    // One damaged file must not stop every other command from finishing.
                    tracing::error!(error = %e, "skipping a damaged ledger entry");
                    continue;
                }
            };
            if let Some(entry) = entry {
                let pending = match entry.status {
                    Status::Started => true,
                    Status::Finished { .. } => !entry.reported,
                    Status::Refused { .. } => false,
                };
                if pending {
                    out.push(entry);
                }
            }
        }
        out.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_only_uuids_become_files() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        assert!(ledger.get(&id).unwrap().is_none());
        let entry = Entry {
            command_id: id.clone(),
            action: Action::Wipe {
                scope: WipeScope::Messaging,
            },
            status: Status::Started,
            reported: false,
            updated_at: "t".into(),
        };
        ledger.put(&entry).unwrap();
        assert_eq!(ledger.get(&id).unwrap(), Some(entry.clone()));
        assert_eq!(ledger.unfinished_business().unwrap(), vec![entry]);
        assert!(ledger.get("../../etc/passwd").is_err());
    }
}
