//! The device's effective policy as the controller last sent it, kept in `STATE/policy.json`
//! so checks and the offline timer work while the controller is unreachable.

use std::path::Path;

use serde::{Deserialize, Serialize};
use ward_certs::files::replace_file;
use ward_proto::v1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentPolicy {
    pub password_min_length: u32,
    pub password_min_classes: u32,
    pub password_max_age_days: u32,
    pub password_history: u32,
    pub max_failed_attempts: u32,
    pub auto_lock_seconds: u32,
    pub require_disk_encryption: bool,
    pub offline_wipe_after_seconds: u64,
    pub enforce: bool,
    pub revision: u64,
    pub scope: String,
}

impl From<v1::Policy> for AgentPolicy {
    fn from(p: v1::Policy) -> Self {
        Self {
            password_min_length: p.password_min_length,
            password_min_classes: p.password_min_classes,
            password_max_age_days: p.password_max_age_days,
            password_history: p.password_history,
            max_failed_attempts: p.max_failed_attempts,
            auto_lock_seconds: p.auto_lock_seconds,
            require_disk_encryption: p.require_disk_encryption,
            offline_wipe_after_seconds: p.offline_wipe_after_seconds,
            enforce: p.enforce,
            revision: p.revision,
            scope: p.scope,
        }
    }
}

impl AgentPolicy {
    pub fn has_password_rules(&self) -> bool {
        self.password_min_length > 0
            || self.password_min_classes > 0
            || self.password_max_age_days > 0
            || self.password_history > 0
            || self.max_failed_attempts > 0
    }

    /// Names of the checks this policy requires to pass (the controller judges the same way).
    pub fn required_checks(&self) -> Vec<&'static str> {
        let mut checks = Vec::new();
        if self.require_disk_encryption {
            checks.push("disk_encryption");
        }
        if self.has_password_rules() {
            checks.push("password_rules");
        }
        if self.auto_lock_seconds > 0 {
            checks.push("auto_lock");
        }
        checks
    }

    /// Why `checks` do not satisfy this policy; empty when they do.
    pub fn failures(&self, checks: &[v1::ComplianceCheck]) -> Vec<String> {
        self.required_checks()
            .into_iter()
            .filter_map(|name| match checks.iter().find(|c| c.name == name) {
                Some(c) if c.status == v1::CheckStatus::Pass as i32 => None,
                Some(c) => Some(format!("{name}: {}", c.detail)),
                None => Some(format!("{name}: not checked")),
            })
            .collect()
    }

    pub fn load(state_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(state_dir.join("policy.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        replace_file(&state_dir.join("policy.json"), &bytes, 0o600)
    }
}
