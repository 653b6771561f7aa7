//! The words Ward's agent, controller and CLI share, defined once: what a wipe erases, which
//! compliance checks exist, what a failing one leads to, the policy ([`policy`]), the
//! inventory a device reports ([`inventory`]) and the one rule for text others chose
//! ([`text`]). Plain values with their names; no I/O, no protocol, no
//! storage (this crate depends on serde only), so the domain core, the agent and the signed
//! receipt can all use them.

pub mod inventory;
mod named;
pub mod policy;
pub mod text;

pub use named::Named;

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

crate::names!(WipeScope, "wipe scope" {
    Messaging => "messaging",
    Full => "full",
});

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

crate::names!(EnforcementAction, "action" {
    Report => "report",
    Block => "block",
    Wipe => "wipe",
});

/// A compliance check, by the name agent, controller, policy and scripts all use for it. The
/// agent reports every one of them; a policy requires some ([`policy::Policy::requires`]).
///
/// A name this build does not know (a newer agent's report, a newer controller's action) is
/// not a `Check`: reports keep such a name as text and it is never required; a policy's
/// action for it is dropped when read ([`policy`]) and refused when an admin sets it.
/// Checks order by name, as the string names they replace did (stored maps keep their order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    DiskEncryption,
    PasswordRules,
    AutoLock,
    Firewall,
    ForbiddenPackages,
    OsUpdates,
    AgentVersion,
    /// Days since boot within the policy's limit: the device runs the kernel it installed.
    Uptime,
}

// In the order the agent reports them.
crate::names!(Check, "check" {
    DiskEncryption => "disk_encryption",
    PasswordRules => "password_rules",
    AutoLock => "auto_lock",
    Firewall => "firewall",
    ForbiddenPackages => "forbidden_packages",
    OsUpdates => "os_updates",
    AgentVersion => "agent_version",
    Uptime => "uptime",
});

impl Ord for Check {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Check {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Check {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::{Check, Named, WipeScope};

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
        // Ordered by name, as the strings were.
        let mut sorted = Check::ALL.to_vec();
        sorted.sort_unstable();
        let sorted: Vec<&str> = sorted.into_iter().map(Check::as_str).collect();
        assert_eq!(sorted, names);
        assert!("antivirus".parse::<Check>().unwrap_err().contains("uptime"));
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
