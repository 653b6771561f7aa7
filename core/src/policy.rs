//! Device policy and compliance: what a device must meet, and whether its last report met it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Timestamp, UserEmail};

/// The rules, their changes and limits: one type with the agent (`ward_vocab::policy`).
pub use ward_vocab::policy::{
    MAX_FORBIDDEN_PACKAGES, MAX_PACKAGE_NAME, MAX_UPTIME_DAYS, Policy, PolicyChanges, PolicyError,
    parse_version,
};
/// Shared with the agent.
pub use ward_vocab::{Check, EnforcementAction, Named};

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

/// What a stored policy rule holds: the default policy in full, or a user's override as the
/// fields it sets. (Versions before 0.3 stored a user's override as a full copy of the
/// policy; such a rule reads as [`PolicyBody::Full`] until the controller converts it at start.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PolicyBody {
    Override {
        #[serde(rename = "override")]
        fields: PolicyChanges,
    },
    Full(Policy),
}

/// A stored rule: its scope, revision (increasing across all changes) and authorship.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRule {
    pub scope: PolicyScope,
    pub body: PolicyBody,
    pub revision: u64,
    pub updated_at: Timestamp,
    pub updated_by: String,
}

/// The policy that applies to a device: the default with the user's override on top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    /// `user:<email>` when the user has an override, else `default`.
    pub scope: PolicyScope,
    pub policy: Policy,
    /// The higher of the default's and the override's revisions: it changes whenever either
    /// does, so devices are sent the policy again.
    pub revision: u64,
    pub updated_at: Timestamp,
    pub updated_by: String,
    /// The fields the user's override sets; every other field comes from the default.
    pub overridden: Vec<&'static str>,
}

/// The policy for a user's devices: the default rule (built-in when none is stored) with the
/// user's override on top. An override that no longer combines with the default into a valid
/// policy (only possible for data written by an older version) is left out, with the error.
pub fn effective(
    default: Option<&PolicyRule>,
    own: Option<&PolicyRule>,
) -> (StoredPolicy, Option<PolicyError>) {
    let (base, base_revision, base_at, base_by) = match default {
        Some(rule) => (
            match &rule.body {
                PolicyBody::Full(policy) => policy.clone(),
                PolicyBody::Override { fields } => {
                    Policy::default().with(fields).unwrap_or_default()
                }
            },
            rule.revision,
            rule.updated_at,
            rule.updated_by.clone(),
        ),
        None => (
            Policy::default(),
            0,
            Timestamp::from_unix_ms(0),
            "built-in".to_owned(),
        ),
    };
    let base_view = StoredPolicy {
        scope: PolicyScope::Default,
        policy: base.clone(),
        revision: base_revision,
        updated_at: base_at,
        updated_by: base_by,
        overridden: Vec::new(),
    };
    let Some(own) = own else {
        return (base_view, None);
    };
    let fields = match &own.body {
        PolicyBody::Override { fields } => fields.clone(),
        PolicyBody::Full(policy) => PolicyChanges::difference(&base, policy),
    };
    match base.with(&fields) {
        Ok(policy) => (
            StoredPolicy {
                scope: own.scope.clone(),
                policy,
                revision: own.revision.max(base_revision),
                updated_at: own.updated_at.max(base_view.updated_at),
                updated_by: if own.revision > base_revision {
                    own.updated_by.clone()
                } else {
                    base_view.updated_by.clone()
                },
                overridden: fields.fields(),
            },
            None,
        ),
        Err(e) => (base_view, Some(e)),
    }
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
            match checks.iter().find(|c| c.name == required.as_str()) {
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

    /// The required checks that did not pass (each reason starts with its check's name).
    pub fn failing(&self) -> impl Iterator<Item = Check> {
        self.reasons
            .iter()
            .filter_map(|r| Check::named(r.split([' ', ':']).next()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(check: Check, status: CheckStatus) -> ComplianceCheck {
        ComplianceCheck {
            name: check.as_str().into(),
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
                check(Check::DiskEncryption, CheckStatus::Pass),
                check(Check::AutoLock, CheckStatus::Pass),
                check(Check::PasswordRules, CheckStatus::Fail),
            ],
            now,
            1,
        );
        assert!(ok.compliant, "{:?}", ok.reasons);
        let bad = Compliance::judge(
            &policy,
            vec![check(Check::DiskEncryption, CheckStatus::Unsupported)],
            now,
            1,
        );
        assert!(!bad.compliant);
        assert_eq!(bad.reasons.len(), 2);
        assert_eq!(
            bad.failing().collect::<Vec<_>>(),
            vec![Check::DiskEncryption, Check::AutoLock]
        );
    }

    #[test]
    fn the_uptime_rule_is_judged_like_every_other_check() {
        let policy = Policy {
            max_uptime_days: 30,
            ..Policy::default()
        };
        let now = Timestamp::from_unix_ms(0);
        let up_too_long = ComplianceCheck {
            name: "uptime".into(),
            status: CheckStatus::Fail,
            detail: "up 41 days".into(),
        };
        let judged = Compliance::judge(&policy, vec![up_too_long], now, 1);
        assert!(!judged.compliant);
        assert_eq!(judged.reasons, ["uptime fails: up 41 days"]);
        assert_eq!(judged.failing().collect::<Vec<_>>(), [Check::Uptime]);
        let ok = Compliance::judge(
            &policy,
            vec![check(Check::Uptime, CheckStatus::Pass)],
            now,
            1,
        );
        assert!(ok.compliant);
        // An older agent does not report it: not a pass.
        let older = Compliance::judge(&policy, Vec::new(), now, 1);
        assert_eq!(older.reasons, ["uptime: not reported by the agent"]);
        // A newer agent's check this controller does not know is kept, never required.
        let newer = Compliance::judge(
            &Policy::default(),
            vec![ComplianceCheck {
                name: "bluetooth".into(),
                status: CheckStatus::Fail,
                detail: "on".into(),
            }],
            now,
            1,
        );
        assert!(newer.compliant);
        assert_eq!(newer.checks[0].name, "bluetooth");
    }

    #[test]
    fn scopes_round_trip() {
        for s in ["default", "user:alice@hospital.org"] {
            assert_eq!(s.parse::<PolicyScope>().unwrap().to_string(), s);
        }
        assert!("user:nope".parse::<PolicyScope>().is_err());
    }
}
