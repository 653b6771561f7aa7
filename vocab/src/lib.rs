//! The words Ward's agent, controller and CLI share, defined once: what a wipe erases, which
//! compliance checks exist, the inventory a device reports ([`inventory`]) and the one rule
//! for text others chose ([`text`]). Plain values with their names; no I/O, no protocol, no
//! storage (this crate depends on serde only), so the domain core, the agent and the signed
//! receipt can all use them.

pub mod inventory;
pub mod text;

use serde::{Deserialize, Serialize};

/// What a wipe erases: one vocabulary for the controller's commands, the agent's ledger and
/// the receipt (`"messaging"` or `"full"` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeScope {
    /// The messaging app's data: key destroyed, files overwritten and deleted.
    Messaging,
    /// Messaging data, the agent's own data, then the platform's full-erase hook.
    Full,
}

impl WipeScope {
    pub fn as_str(self) -> &'static str {
        match self {
            WipeScope::Messaging => "messaging",
            WipeScope::Full => "full",
        }
    }
}

impl std::fmt::Display for WipeScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WipeScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "messaging" => Ok(WipeScope::Messaging),
            "full" => Ok(WipeScope::Full),
            other => Err(format!(
                "unknown wipe scope {other:?}: use messaging or full"
            )),
        }
    }
}

/// What a failing required check leads to, from mildest to strictest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementAction {
    /// Shown to the admin; the messaging app keeps its key.
    Report,
    /// The agent withholds the messaging data key until the check passes again.
    Block,
    /// Blocked, and once the check has failed for the wipe grace period the controller wipes
    /// the messaging data.
    Wipe,
}

impl EnforcementAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementAction::Report => "report",
            EnforcementAction::Block => "block",
            EnforcementAction::Wipe => "wipe",
        }
    }
}

impl std::fmt::Display for EnforcementAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EnforcementAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "report" => Ok(EnforcementAction::Report),
            "block" => Ok(EnforcementAction::Block),
            "wipe" => Ok(EnforcementAction::Wipe),
            other => Err(format!(
                "unknown action {other:?}: use report, block or wipe"
            )),
        }
    }
}

/// A compliance check, by the name agent, controller, policy and scripts all use for it. The
/// agent reports every one of them; a policy requires some.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    DiskEncryption,
    PasswordRules,
    AutoLock,
    Firewall,
    ForbiddenPackages,
    OsUpdates,
    AgentVersion,
}

impl Check {
    /// Every check, in the order the agent reports them.
    pub const ALL: [Check; 7] = [
        Check::DiskEncryption,
        Check::PasswordRules,
        Check::AutoLock,
        Check::Firewall,
        Check::ForbiddenPackages,
        Check::OsUpdates,
        Check::AgentVersion,
    ];

    /// Every check's name, in the same order.
    pub const NAMES: [&'static str; 7] = [
        Check::DiskEncryption.as_str(),
        Check::PasswordRules.as_str(),
        Check::AutoLock.as_str(),
        Check::Firewall.as_str(),
        Check::ForbiddenPackages.as_str(),
        Check::OsUpdates.as_str(),
        Check::AgentVersion.as_str(),
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Check::DiskEncryption => "disk_encryption",
            Check::PasswordRules => "password_rules",
            Check::AutoLock => "auto_lock",
            Check::Firewall => "firewall",
            Check::ForbiddenPackages => "forbidden_packages",
            Check::OsUpdates => "os_updates",
            Check::AgentVersion => "agent_version",
        }
    }

    /// The check named `name`; `None` for a name this build does not know.
    pub fn named(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|check| check.as_str() == name)
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{Check, WipeScope};

    #[test]
    fn every_check_has_one_name_and_is_found_by_it() {
        for (check, name) in Check::ALL.into_iter().zip(Check::NAMES) {
            assert_eq!(check.as_str(), name);
            assert_eq!(Check::named(name), Some(check));
        }
        assert_eq!(Check::named("antivirus"), None);
        let mut names = Check::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Check::ALL.len());
    }

    #[test]
    fn wipe_scopes_read_and_write_the_same_names() {
        for scope in [WipeScope::Messaging, WipeScope::Full] {
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{scope}\""));
            assert_eq!(scope.as_str().parse::<WipeScope>(), Ok(scope));
        }
    }
}
