//! The policy a device must meet, one type for the controller that stores and sends it and
//! the agent that holds it (`STATE/policy.json`): its fields, what each allows, the changes an
//! admin makes, and which checks a policy requires. The wire form (protobuf) is converted at
//! each edge; the JSON names here are the stored ones.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Check, EnforcementAction, Named};

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
    pub require_firewall: bool,
    /// Package names that must not be installed; empty: no rule.
    pub forbidden_packages: Vec<String>,
    /// 0: no rule; else no pending security update and a package update within this many days.
    pub os_updates_max_age_days: u32,
    /// Empty: no rule; else a version such as "0.2.0" the agent may not be older than.
    pub min_agent_version: String,
    /// What a failing required check leads to; a check not listed blocks.
    #[serde(deserialize_with = "known_checks")]
    pub check_actions: BTreeMap<Check, EnforcementAction>,
    /// For checks whose action is `wipe`: how long they may fail first.
    pub wipe_grace_seconds: u64,
    /// 0: no rule; else the device may not have been up longer than this many days (so it
    /// has booted into the kernel updates it installed).
    pub max_uptime_days: u32,
}

/// Some fields of a policy: a change an admin asks for, and a user's override, which is kept
/// as only the fields it sets, so the user's devices follow every other change of the default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_min_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_min_classes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_max_age_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_history: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_failed_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_lock_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_disk_encryption: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_wipe_after_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_firewall: Option<bool>,
    /// Replaces the whole denylist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forbidden_packages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_updates_max_age_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_agent_version: Option<String>,
    /// Only the checks listed change their action.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "known_checks"
    )]
    pub check_actions: BTreeMap<Check, EnforcementAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wipe_grace_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_uptime_days: Option<u32>,
}

/// A check-action map as stored or held, keeping the checks this build knows. A name it does
/// not know (written by a newer version) can be required by no policy this build judges, so
/// it is dropped as it was ignored before the names were typed; the wire and `policy set`
/// refuse such a name when an admin sets it.
fn known_checks<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<Check, EnforcementAction>, D::Error> {
    let named = BTreeMap::<String, EnforcementAction>::deserialize(deserializer)?;
    Ok(named
        .into_iter()
        .filter_map(|(name, action)| Some((Check::named(&name)?, action)))
        .collect())
}

#[derive(Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub field: &'static str,
    pub value: String,
    pub allowed: String,
}

/// The `wardctl policy set` flag that sets each field, and the unit its stored value is in: an
/// admin is told what to pass, not the stored name.
const FLAGS: [(&str, &str, &str); 13] = [
    ("password_min_length", "--min-length", ""),
    ("password_min_classes", "--min-classes", ""),
    ("password_max_age_days", "--max-age", "d"),
    ("password_history", "--history", ""),
    ("max_failed_attempts", "--max-failed-attempts", ""),
    ("auto_lock_seconds", "--max-inactivity", "s"),
    ("offline_wipe_after_seconds", "--offline-wipe-after", "s"),
    ("os_updates_max_age_days", "--os-updates-max-age", "d"),
    ("forbidden_packages", "--forbid-package", ""),
    ("min_agent_version", "--min-agent-version", ""),
    ("max_uptime_days", "--max-uptime", "d"),
    ("wipe_grace_seconds", "--wipe-grace", "s"),
    ("check_actions", "--action", ""),
];

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match FLAGS.iter().find(|(field, _, _)| *field == self.field) {
            Some((_, flag, unit)) => write!(
                f,
                "policy set {flag} {}{unit} is not allowed: {}",
                self.value, self.allowed
            ),
            None => write!(
                f,
                "policy field {} = {} is not allowed: {}",
                self.field, self.value, self.allowed
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

/// The most packages a denylist may hold, and the longest name.
pub const MAX_FORBIDDEN_PACKAGES: usize = 200;
pub const MAX_PACKAGE_NAME: usize = 128;
/// The longest uptime limit a policy may set, in days.
pub const MAX_UPTIME_DAYS: u32 = 365;

/// Whether `name` can be a package name of dpkg, rpm, flatpak or snap.
fn valid_package_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PACKAGE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_' | '~'))
}

impl PolicyChanges {
    pub fn is_empty(&self) -> bool {
        *self == PolicyChanges::default()
    }

    /// The names of the policy fields this sets (as in [`Policy`]'s serialized form).
    pub fn fields(&self) -> Vec<&'static str> {
        let set = [
            ("password_min_length", self.password_min_length.is_some()),
            ("password_min_classes", self.password_min_classes.is_some()),
            (
                "password_max_age_days",
                self.password_max_age_days.is_some(),
            ),
            ("password_history", self.password_history.is_some()),
            ("max_failed_attempts", self.max_failed_attempts.is_some()),
            ("auto_lock_seconds", self.auto_lock_seconds.is_some()),
            (
                "require_disk_encryption",
                self.require_disk_encryption.is_some(),
            ),
            (
                "offline_wipe_after_seconds",
                self.offline_wipe_after_seconds.is_some(),
            ),
            ("enforce", self.enforce.is_some()),
            ("require_firewall", self.require_firewall.is_some()),
            ("forbidden_packages", self.forbidden_packages.is_some()),
            (
                "os_updates_max_age_days",
                self.os_updates_max_age_days.is_some(),
            ),
            ("min_agent_version", self.min_agent_version.is_some()),
            ("check_actions", !self.check_actions.is_empty()),
            ("wipe_grace_seconds", self.wipe_grace_seconds.is_some()),
            ("max_uptime_days", self.max_uptime_days.is_some()),
        ];
        set.into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect()
    }

    /// These changes, then `later` on top (a field `later` sets wins; check actions merge).
    pub fn then(&self, later: &PolicyChanges) -> PolicyChanges {
        let pick = |a: Option<u32>, b: Option<u32>| b.or(a);
        PolicyChanges {
            password_min_length: pick(self.password_min_length, later.password_min_length),
            password_min_classes: pick(self.password_min_classes, later.password_min_classes),
            password_max_age_days: pick(self.password_max_age_days, later.password_max_age_days),
            password_history: pick(self.password_history, later.password_history),
            max_failed_attempts: pick(self.max_failed_attempts, later.max_failed_attempts),
            auto_lock_seconds: pick(self.auto_lock_seconds, later.auto_lock_seconds),
            require_disk_encryption: later
                .require_disk_encryption
                .or(self.require_disk_encryption),
            offline_wipe_after_seconds: later
                .offline_wipe_after_seconds
                .or(self.offline_wipe_after_seconds),
            enforce: later.enforce.or(self.enforce),
            require_firewall: later.require_firewall.or(self.require_firewall),
            forbidden_packages: later
                .forbidden_packages
                .clone()
                .or_else(|| self.forbidden_packages.clone()),
            os_updates_max_age_days: pick(
                self.os_updates_max_age_days,
                later.os_updates_max_age_days,
            ),
            min_agent_version: later
                .min_agent_version
                .clone()
                .or_else(|| self.min_agent_version.clone()),
            check_actions: {
                let mut actions = self.check_actions.clone();
                actions.extend(later.check_actions.iter().map(|(k, v)| (*k, *v)));
                actions
            },
            wipe_grace_seconds: later.wipe_grace_seconds.or(self.wipe_grace_seconds),
            max_uptime_days: pick(self.max_uptime_days, later.max_uptime_days),
        }
    }

    /// The fields of `policy` that differ from `base`: what a full copy of a policy adds to
    /// it (used to turn the full copies older versions stored as overrides into overrides).
    pub fn difference(base: &Policy, policy: &Policy) -> PolicyChanges {
        fn differs<T: PartialEq + Clone>(a: &T, b: &T) -> Option<T> {
            (a != b).then(|| b.clone())
        }
        PolicyChanges {
            password_min_length: differs(&base.password_min_length, &policy.password_min_length),
            password_min_classes: differs(&base.password_min_classes, &policy.password_min_classes),
            password_max_age_days: differs(
                &base.password_max_age_days,
                &policy.password_max_age_days,
            ),
            password_history: differs(&base.password_history, &policy.password_history),
            max_failed_attempts: differs(&base.max_failed_attempts, &policy.max_failed_attempts),
            auto_lock_seconds: differs(&base.auto_lock_seconds, &policy.auto_lock_seconds),
            require_disk_encryption: differs(
                &base.require_disk_encryption,
                &policy.require_disk_encryption,
            ),
            offline_wipe_after_seconds: differs(
                &base.offline_wipe_after_seconds,
                &policy.offline_wipe_after_seconds,
            ),
            enforce: differs(&base.enforce, &policy.enforce),
            require_firewall: differs(&base.require_firewall, &policy.require_firewall),
            forbidden_packages: differs(&base.forbidden_packages, &policy.forbidden_packages),
            os_updates_max_age_days: differs(
                &base.os_updates_max_age_days,
                &policy.os_updates_max_age_days,
            ),
            min_agent_version: differs(&base.min_agent_version, &policy.min_agent_version),
            check_actions: policy
                .check_actions
                .iter()
                .filter(|(k, v)| base.check_actions.get(*k) != Some(v))
                .map(|(k, v)| (*k, *v))
                .collect(),
            wipe_grace_seconds: differs(&base.wipe_grace_seconds, &policy.wipe_grace_seconds),
            max_uptime_days: differs(&base.max_uptime_days, &policy.max_uptime_days),
        }
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
            require_firewall: c.require_firewall.unwrap_or(self.require_firewall),
            forbidden_packages: c
                .forbidden_packages
                .clone()
                .unwrap_or_else(|| self.forbidden_packages.clone()),
            os_updates_max_age_days: c
                .os_updates_max_age_days
                .unwrap_or(self.os_updates_max_age_days),
            min_agent_version: c
                .min_agent_version
                .clone()
                .unwrap_or_else(|| self.min_agent_version.clone()),
            check_actions: {
                let mut actions = self.check_actions.clone();
                actions.extend(c.check_actions.iter().map(|(k, v)| (*k, *v)));
                actions
            },
            wipe_grace_seconds: c.wipe_grace_seconds.unwrap_or(self.wipe_grace_seconds),
            max_uptime_days: c.max_uptime_days.unwrap_or(self.max_uptime_days),
        };
        next.validate()?;
        Ok(next)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let check = |field, value: u64, max: u64, allowed: &str| {
            if value > max {
                Err(PolicyError {
                    field,
                    value: value.to_string(),
                    allowed: allowed.to_owned(),
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
                value: self.offline_wipe_after_seconds.to_string(),
                allowed: "0 (never) or 1h to 365d".into(),
            });
        }
        check(
            "os_updates_max_age_days",
            self.os_updates_max_age_days.into(),
            3650,
            "0 (no rule) to 3650 days",
        )?;
        self.validate_packages()?;
        if !self.min_agent_version.is_empty() && parse_version(&self.min_agent_version).is_none() {
            return Err(PolicyError {
                field: "min_agent_version",
                value: self.min_agent_version.chars().take(64).collect(),
                allowed: "a version such as 0.2.0 (major.minor.patch), or empty for no rule".into(),
            });
        }
        check(
            "max_uptime_days",
            self.max_uptime_days.into(),
            MAX_UPTIME_DAYS.into(),
            "0 (no limit) to 365 days",
        )?;
        let wipes = self
            .check_actions
            .values()
            .any(|a| *a == EnforcementAction::Wipe);
        let grace = self.wipe_grace_seconds;
        if wipes && grace == 0 {
            return Err(PolicyError {
                field: "wipe_grace_seconds",
                value: "0".into(),
                allowed: "a check whose action is wipe needs a grace first, 1h to 365d: how long \
                          it may fail before the wipe (e.g. --wipe-grace 72h)"
                    .into(),
            });
        }
        if grace > 365 * 24 * 3600 || (grace > 0 && grace < 3600) {
            return Err(PolicyError {
                field: "wipe_grace_seconds",
                value: grace.to_string(),
                allowed: "0 (off) or 1h to 365d, e.g. --wipe-grace 72h".into(),
            });
        }
        Ok(())
    }

    fn validate_packages(&self) -> Result<(), PolicyError> {
        let bad = |value: String, allowed: String| PolicyError {
            field: "forbidden_packages",
            value,
            allowed,
        };
        if self.forbidden_packages.len() > MAX_FORBIDDEN_PACKAGES {
            return Err(bad(
                self.forbidden_packages.len().to_string(),
                format!("at most {MAX_FORBIDDEN_PACKAGES} names"),
            ));
        }
        for name in &self.forbidden_packages {
            if !valid_package_name(name) {
                return Err(bad(
                    format!("{:?}", name.chars().take(64).collect::<String>()),
                    format!(
                        "package names are 1-{MAX_PACKAGE_NAME} characters of letters, digits and . + - _ ~"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// What a failing `check` leads to under this policy.
    pub fn action_for(&self, check: Check) -> EnforcementAction {
        self.check_actions
            .get(&check)
            .copied()
            .unwrap_or(EnforcementAction::Block)
    }

    /// Whether any password rule is set (the `password_rules` check is then required).
    pub fn has_password_rules(&self) -> bool {
        self.password_min_length > 0
            || self.password_min_classes > 0
            || self.password_max_age_days > 0
            || self.password_history > 0
            || self.max_failed_attempts > 0
    }

    /// Whether this policy requires `check` to pass: the one place a rule names its check.
    pub fn requires(&self, check: Check) -> bool {
        match check {
            Check::DiskEncryption => self.require_disk_encryption,
            Check::PasswordRules => self.has_password_rules(),
            Check::AutoLock => self.auto_lock_seconds > 0,
            Check::Firewall => self.require_firewall,
            Check::ForbiddenPackages => !self.forbidden_packages.is_empty(),
            Check::OsUpdates => self.os_updates_max_age_days > 0,
            Check::AgentVersion => !self.min_agent_version.is_empty(),
            Check::Uptime => self.max_uptime_days > 0,
        }
    }

    /// The compliance checks this policy requires to pass, in report order (the agent and
    /// the controller judge the same way).
    pub fn required_checks(&self) -> Vec<Check> {
        Check::ALL
            .into_iter()
            .filter(|check| self.requires(*check))
            .collect()
    }
}

/// "1.2.3" or "1.2" as (major, minor, patch).
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let parts: Vec<&str> = text.trim().split('.').collect();
    let number = |part: &str| -> Option<u64> {
        let digits =
            !part.is_empty() && part.len() <= 9 && part.chars().all(|c| c.is_ascii_digit());
        digits.then(|| part.parse().ok()).flatten()
    };
    match parts.as_slice() {
        [major, minor] => Some((number(major)?, number(minor)?, 0)),
        [major, minor, patch] => Some((number(major)?, number(minor)?, number(patch)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn posture_rules_are_validated() {
        let base = Policy::default();
        let with = |c: PolicyChanges| base.with(&c);
        let packages = |names: &[&str]| PolicyChanges {
            forbidden_packages: Some(names.iter().map(|n| (*n).to_owned()).collect()),
            ..Default::default()
        };
        let ok = with(packages(&[
            "telegram-desktop",
            "org.telegram.desktop",
            "libc6:amd64",
        ]));
        assert_eq!(
            ok.unwrap_err().field,
            "forbidden_packages",
            "':' is no package name"
        );
        let ok = with(packages(&[
            "telegram-desktop",
            "org.telegram.desktop",
            "g++",
        ]))
        .unwrap();
        assert_eq!(ok.required_checks(), vec![Check::ForbiddenPackages]);
        for bad in [&[""][..], &["a b"], &["x\n"], &[&"a".repeat(129) as &str]] {
            assert!(with(packages(bad)).is_err(), "{bad:?} accepted");
        }
        let too_many: Vec<String> = (0..=MAX_FORBIDDEN_PACKAGES)
            .map(|i| format!("p{i}"))
            .collect();
        assert!(
            with(PolicyChanges {
                forbidden_packages: Some(too_many),
                ..Default::default()
            })
            .is_err()
        );
        for (version, valid) in [
            ("0.2.0", true),
            ("1.2", true),
            ("1", false),
            ("1.2.3.4", false),
            ("v1.2", false),
            ("1.-2.0", false),
        ] {
            let made = with(PolicyChanges {
                min_agent_version: Some(version.into()),
                ..Default::default()
            });
            assert_eq!(made.is_ok(), valid, "{version}");
        }
        let action = |check: Check, action| PolicyChanges {
            check_actions: [(check, action)].into_iter().collect(),
            ..Default::default()
        };
        let wipe = with(action(Check::Firewall, EnforcementAction::Wipe));
        let err = wipe.unwrap_err();
        assert_eq!(err.field, "wipe_grace_seconds", "wipe needs a grace");
        // Named by the flag to pass, not by the stored field.
        assert_eq!(
            err.to_string(),
            "policy set --wipe-grace 0s is not allowed: a check whose action is wipe needs a \
             grace first, 1h to 365d: how long it may fail before the wipe (e.g. --wipe-grace 72h)"
        );
        let mut graced = action(Check::Firewall, EnforcementAction::Wipe);
        graced.wipe_grace_seconds = Some(1800);
        assert!(with(graced.clone()).is_err(), "under an hour");
        graced.wipe_grace_seconds = Some(24 * 3600);
        let p = with(graced).unwrap();
        assert_eq!(p.action_for(Check::Firewall), EnforcementAction::Wipe);
        assert_eq!(
            p.action_for(Check::AutoLock),
            EnforcementAction::Block,
            "default"
        );
        // Actions merge: a later change of one check keeps the others.
        let p = p
            .with(&action(Check::OsUpdates, EnforcementAction::Report))
            .unwrap();
        assert_eq!(p.action_for(Check::Firewall), EnforcementAction::Wipe);
        assert_eq!(p.action_for(Check::OsUpdates), EnforcementAction::Report);
    }

    #[test]
    fn policies_stored_before_the_posture_rules_still_load() {
        let old = r#"{"password_min_length":8,"password_min_classes":0,"password_max_age_days":0,
            "password_history":0,"max_failed_attempts":0,"auto_lock_seconds":300,
            "require_disk_encryption":true,"offline_wipe_after_seconds":0,"enforce":false}"#;
        let p: Policy = serde_json::from_str(old).unwrap();
        assert!(p.forbidden_packages.is_empty() && p.check_actions.is_empty());
        assert_eq!(
            p.action_for(Check::DiskEncryption),
            EnforcementAction::Block
        );
    }

    #[test]
    fn the_uptime_limit_is_a_rule_of_its_own_within_a_year() {
        let base = Policy::default();
        assert!(!base.requires(Check::Uptime), "unset: no limit");
        let limit = |days| {
            base.with(&PolicyChanges {
                max_uptime_days: Some(days),
                ..Default::default()
            })
        };
        let p = limit(30).unwrap();
        assert_eq!(p.required_checks(), vec![Check::Uptime]);
        assert_eq!(p.action_for(Check::Uptime), EnforcementAction::Block);
        assert!(limit(MAX_UPTIME_DAYS).is_ok());
        let err = limit(MAX_UPTIME_DAYS + 1).unwrap_err();
        assert_eq!(err.field, "max_uptime_days");
        assert_eq!(
            err.to_string(),
            "policy set --max-uptime 366d is not allowed: 0 (no limit) to 365 days"
        );
        assert_eq!(
            PolicyChanges {
                max_uptime_days: Some(7),
                ..Default::default()
            }
            .fields(),
            vec!["max_uptime_days"]
        );
        assert!(!limit(0).unwrap().requires(Check::Uptime));
    }

    #[test]
    fn check_actions_keep_their_stored_names_and_drop_unknown_ones() {
        let stored = r#"{"check_actions":{"uptime":"wipe","firewall":"report","bluetooth":"block"},
            "wipe_grace_seconds":86400}"#;
        let p: Policy = serde_json::from_str(stored).unwrap();
        assert_eq!(
            p.check_actions,
            BTreeMap::from([
                (Check::Firewall, EnforcementAction::Report),
                (Check::Uptime, EnforcementAction::Wipe),
            ]),
            "a newer version's check is not one this build can require"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["check_actions"],
            serde_json::json!({"firewall": "report", "uptime": "wipe"})
        );
        let changes: PolicyChanges =
            serde_json::from_str(r#"{"check_actions":{"os_updates":"report"}}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&changes).unwrap(),
            r#"{"check_actions":{"os_updates":"report"}}"#
        );
    }
}
