//! Device policy and compliance: what a device must meet, and whether its last report met it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Timestamp, UserEmail};

/// The rules. Zero / false means "no requirement".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub password_min_length: u32,
    pub password_min_classes: u32,
    pub password_max_age_days: u32,
    pub password_history: u32,
    pub max_failed_attempts: u32,
    pub auto_lock_seconds: u32,
    pub require_disk_encryption: bool,
    pub offline_wipe_after_seconds: u64,
    pub enforce: bool,
}

/// A change to some fields of a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyChanges {
    pub password_min_length: Option<u32>,
    pub password_min_classes: Option<u32>,
    pub password_max_age_days: Option<u32>,
    pub password_history: Option<u32>,
    pub max_failed_attempts: Option<u32>,
    pub auto_lock_seconds: Option<u32>,
    pub require_disk_encryption: Option<bool>,
    pub offline_wipe_after_seconds: Option<u64>,
    pub enforce: Option<bool>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("policy field {field} = {value} is out of range: {allowed}")]
pub struct PolicyError {
    pub field: &'static str,
    pub value: u64,
    pub allowed: &'static str,
}

impl PolicyChanges {
    pub fn is_empty(&self) -> bool {
        *self == PolicyChanges::default()
    }
}

impl Policy {
    /// This policy with `changes` applied, validated as a whole.
    pub fn with(&self, changes: &PolicyChanges) -> Result<Policy, PolicyError> {
        let c = changes;
        let next = Policy {
            password_min_length: c.password_min_length.unwrap_or(self.password_min_length),
            password_min_classes: c.password_min_classes.unwrap_or(self.password_min_classes),
            password_max_age_days: c
                .password_max_age_days
                .unwrap_or(self.password_max_age_days),
            password_history: c.password_history.unwrap_or(self.password_history),
            max_failed_attempts: c.max_failed_attempts.unwrap_or(self.max_failed_attempts),
            auto_lock_seconds: c.auto_lock_seconds.unwrap_or(self.auto_lock_seconds),
            require_disk_encryption: c
                .require_disk_encryption
                .unwrap_or(self.require_disk_encryption),
            offline_wipe_after_seconds: c
                .offline_wipe_after_seconds
                .unwrap_or(self.offline_wipe_after_seconds),
            enforce: c.enforce.unwrap_or(self.enforce),
        };
        next.validate()?;
        Ok(next)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let check = |field, value: u64, max: u64, allowed| {
            if value > max {
                Err(PolicyError {
                    field,
                    value,
                    allowed,
                })
            } else {
                Ok(())
            }
        };
        check(
            "password_min_length",
            self.password_min_length.into(),
            128,
            "0 to 128",
        )?;
        check(
            "password_min_classes",
            self.password_min_classes.into(),
            4,
            "0 to 4",
        )?;
        check(
            "password_max_age_days",
            self.password_max_age_days.into(),
            3650,
            "0 to 3650 days",
        )?;
        check(
            "password_history",
            self.password_history.into(),
            50,
            "0 to 50",
        )?;
        check(
            "max_failed_attempts",
            self.max_failed_attempts.into(),
            100,
            "0 to 100",
        )?;
        check(
            "auto_lock_seconds",
            self.auto_lock_seconds.into(),
            24 * 3600,
            "0 to 24h",
        )?;
        check(
            "offline_wipe_after_seconds",
            self.offline_wipe_after_seconds,
            365 * 24 * 3600,
            "0 (never) or 1h to 365d",
        )?;
        if self.offline_wipe_after_seconds > 0 && self.offline_wipe_after_seconds < 3600 {
            return Err(PolicyError {
                field: "offline_wipe_after_seconds",
                value: self.offline_wipe_after_seconds,
                allowed: "0 (never) or 1h to 365d",
            });
        }
        Ok(())
    }

    /// The compliance checks this policy requires to pass.
    pub fn required_checks(&self) -> Vec<&'static str> {
        let mut checks = Vec::new();
        if self.require_disk_encryption {
            checks.push(CHECK_DISK_ENCRYPTION);
        }
        if self.password_min_length > 0
            || self.password_min_classes > 0
            || self.password_max_age_days > 0
            || self.password_history > 0
            || self.max_failed_attempts > 0
        {
            checks.push(CHECK_PASSWORD_RULES);
        }
        if self.auto_lock_seconds > 0 {
            checks.push(CHECK_AUTO_LOCK);
        }
        checks
    }
}

pub const CHECK_DISK_ENCRYPTION: &str = "disk_encryption";
pub const CHECK_PASSWORD_RULES: &str = "password_rules";
pub const CHECK_AUTO_LOCK: &str = "auto_lock";

/// Which devices a stored policy applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PolicyScope {
    Default,
    User(UserEmail),
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyScope::Default => f.write_str("default"),
            PolicyScope::User(user) => write!(f, "user:{user}"),
        }
    }
}

impl FromStr for PolicyScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("user:") {
            None if s == "default" => Ok(PolicyScope::Default),
            Some(user) => user
                .parse()
                .map(PolicyScope::User)
                .map_err(|e| e.to_string()),
            None => Err(format!("unknown policy scope {s:?}")),
        }
    }
}

/// A policy as stored: its scope, revision (increasing across all changes) and authorship.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    pub scope: PolicyScope,
    pub policy: Policy,
    pub revision: u64,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// The platform cannot tell: never counted as a pass.
    Unsupported,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplianceCheck {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
}

/// A device's last compliance report, judged against its effective policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compliance {
    pub compliant: bool,
    pub reasons: Vec<String>,
    pub checks: Vec<ComplianceCheck>,
    pub reported_at: Timestamp,
    pub policy_revision: u64,
}

/// The longest check name or detail accepted from a device.
pub const MAX_CHECK_TEXT: usize = 1000;
pub const MAX_CHECKS: usize = 64;

impl Compliance {
    /// Judges `checks` against `policy`: compliant only if every required check passed.
    pub fn judge(
        policy: &Policy,
        checks: Vec<ComplianceCheck>,
        reported_at: Timestamp,
        policy_revision: u64,
    ) -> Self {
        let mut reasons = Vec::new();
        for required in policy.required_checks() {
            match checks.iter().find(|c| c.name == required) {
                None => reasons.push(format!("{required}: not reported by the agent")),
                Some(c) if c.status == CheckStatus::Pass => {}
                Some(c) => {
                    let status = match c.status {
                        CheckStatus::Fail => "fails",
                        CheckStatus::Unsupported => "cannot be verified on this device",
                        _ => "check failed to run",
                    };
                    reasons.push(format!("{required} {status}: {}", c.detail));
                }
            }
        }
        Self {
            compliant: reasons.is_empty(),
            reasons,
            checks,
            reported_at,
            policy_revision,
        }
    }

    /// The names of required checks that did not pass.
    pub fn failing(&self) -> impl Iterator<Item = &str> {
        self.reasons
            .iter()
            .filter_map(|r| r.split([' ', ':']).next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, status: CheckStatus) -> ComplianceCheck {
        ComplianceCheck {
            name: name.into(),
            status,
            detail: "d".into(),
        }
    }

    #[test]
    fn only_required_checks_count_and_unsupported_is_not_a_pass() {
        let policy = Policy {
            require_disk_encryption: true,
            auto_lock_seconds: 300,
            ..Policy::default()
        };
        let now = Timestamp::from_unix_ms(0);
        let ok = Compliance::judge(
            &policy,
            vec![
                check(CHECK_DISK_ENCRYPTION, CheckStatus::Pass),
                check(CHECK_AUTO_LOCK, CheckStatus::Pass),
                check(CHECK_PASSWORD_RULES, CheckStatus::Fail),
            ],
            now,
            1,
        );
        assert!(ok.compliant, "{:?}", ok.reasons);
        let bad = Compliance::judge(
            &policy,
            vec![check(CHECK_DISK_ENCRYPTION, CheckStatus::Unsupported)],
            now,
            1,
        );
        assert!(!bad.compliant);
        assert_eq!(bad.reasons.len(), 2);
        assert_eq!(
            bad.failing().collect::<Vec<_>>(),
            vec![CHECK_DISK_ENCRYPTION, CHECK_AUTO_LOCK]
        );
    }

    #[test]
    fn changes_apply_field_by_field_and_are_validated() {
        let base = Policy::default();
        let next = base
            .with(&PolicyChanges {
                password_min_length: Some(12),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(next.password_min_length, 12);
        assert!(
            base.with(&PolicyChanges {
                password_min_classes: Some(5),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            base.with(&PolicyChanges {
                offline_wipe_after_seconds: Some(60),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            base.with(&PolicyChanges {
                offline_wipe_after_seconds: Some(72 * 3600),
                ..Default::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn scopes_round_trip() {
        for s in ["default", "user:alice@hospital.org"] {
            assert_eq!(s.parse::<PolicyScope>().unwrap().to_string(), s);
        }
        assert!("user:nope".parse::<PolicyScope>().is_err());
    }
}
