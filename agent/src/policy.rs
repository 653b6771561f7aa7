//! The device's effective policy as the controller last sent it, kept in `STATE/policy.json`
//! so checks and the offline timer work while the controller is unreachable.

use std::path::Path;

use serde::{Deserialize, Serialize};
use ward_files::replace_file;
use ward_proto::v1;
use ward_vocab::policy::Policy;
use ward_vocab::{Check, EnforcementAction};

/// The policy as the agent holds it: the controller's rules (the one shared type), with the
/// revision and scope they were sent under. `policy.json` is one flat JSON object, as before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentPolicy {
    #[serde(flatten)]
    pub rules: Policy,
    pub revision: u64,
    pub scope: String,
}

impl std::ops::Deref for AgentPolicy {
    type Target = Policy;

    fn deref(&self) -> &Policy {
        &self.rules
    }
}

impl From<Policy> for AgentPolicy {
    fn from(rules: Policy) -> Self {
        Self {
            rules,
            ..Self::default()
        }
    }
}

/// A required check that fails, with what the policy makes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub check: Check,
    pub detail: String,
    pub action: EnforcementAction,
    /// The device reported `fail` (not unsupported, an error, or nothing): only a definite
    /// failure can lead to a wipe, as the controller judges.
    pub definite: bool,
}

impl Failure {
    /// Whether the messaging data key is withheld for it (block, and wipe during its grace).
    pub fn blocks(&self) -> bool {
        self.action != EnforcementAction::Report
    }
}

/// A check this agent does not know (a newer controller's) is left out: it neither reports nor
/// requires it, so its action has nothing to act on ([`ward_proto::vocab`]).
impl From<v1::Policy> for AgentPolicy {
    fn from(p: v1::Policy) -> Self {
        let rules = Policy::from(&p);
        Self {
            rules,
            revision: p.revision,
            scope: p.scope,
        }
    }
}

impl AgentPolicy {
    /// The required checks `checks` do not pass; empty when the device is compliant.
    pub fn failures(&self, checks: &[v1::ComplianceCheck]) -> Vec<Failure> {
        self.required_checks()
            .into_iter()
            .filter_map(|name: Check| {
                let (detail, definite) = match checks.iter().find(|c| c.name == name.as_str()) {
                    Some(c) if c.status == v1::CheckStatus::Pass as i32 => return None,
                    Some(c) => (c.detail.clone(), c.status == v1::CheckStatus::Fail as i32),
                    None => ("not checked".to_owned(), false),
                };
                Some(Failure {
                    check: name,
                    detail,
                    action: self.action_for(name),
                    definite,
                })
            })
            .collect()
    }

    /// The text the local API gives the messaging app for the failures that withhold the key;
    /// empty when none does.
    pub fn blocking_verdict(&self, failures: &[Failure]) -> String {
        failures
            .iter()
            .filter(|f| f.blocks())
            .map(|f| {
                let consequence = if f.action == EnforcementAction::Wipe && !f.definite {
                    "key withheld until it passes; it cannot be verified here, so it never \
                     leads to a wipe"
                        .to_owned()
                } else if f.action == EnforcementAction::Wipe {
                    format!(
                        "key withheld; the messaging data is wiped if this still fails {} after it started",
                        humanize(self.wipe_grace_seconds)
                    )
                } else {
                    "key withheld until it passes".to_owned()
                };
                format!("{}: {} ({consequence})", f.check, f.detail)
            })
            .collect::<Vec<_>>()
            .join("; ")
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

/// "36h", "2d" style text for a number of seconds.
fn humanize(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 && s > 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 && s > 0 => format!("{}h", s / 3_600),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(check: &str, action: v1::EnforcementAction) -> v1::CheckAction {
        v1::CheckAction {
            check: check.into(),
            action: action as i32,
        }
    }

    fn check(name: &str, status: v1::CheckStatus) -> v1::ComplianceCheck {
        v1::ComplianceCheck {
            name: name.into(),
            status: status as i32,
            detail: format!("{name} detail"),
        }
    }

    #[test]
    fn only_block_and_wipe_failures_withhold_the_key() {
        let wire = v1::Policy {
            require_firewall: true,
            forbidden_packages: vec!["telegram-desktop".into()],
            min_agent_version: "0.1.0".into(),
            check_actions: vec![
                action("forbidden_packages", v1::EnforcementAction::Report),
                action("firewall", v1::EnforcementAction::Wipe),
            ],
            wipe_grace_seconds: 86_400,
            ..v1::Policy::default()
        };
        let policy = AgentPolicy::from(wire);
        assert_eq!(
            policy.required_checks(),
            vec![
                Check::Firewall,
                Check::ForbiddenPackages,
                Check::AgentVersion
            ]
        );
        let reported = [
            check("firewall", v1::CheckStatus::Pass),
            check("forbidden_packages", v1::CheckStatus::Fail),
            check("agent_version", v1::CheckStatus::Pass),
        ];
        let failures = policy.failures(&reported);
        assert_eq!(failures.len(), 1);
        assert_eq!(policy.blocking_verdict(&failures), "", "report only");

        let reported = [
            check("firewall", v1::CheckStatus::Unsupported),
            check("forbidden_packages", v1::CheckStatus::Pass),
        ];
        let failures = policy.failures(&reported);
        let verdict = policy.blocking_verdict(&failures);
        assert!(verdict.contains("firewall: firewall detail"), "{verdict}");
        assert!(
            !verdict.contains("wiped"),
            "a check that cannot be verified never leads to a wipe: {verdict}"
        );
        assert!(verdict.contains("never leads to a wipe"), "{verdict}");

        let reported = [check("firewall", v1::CheckStatus::Fail)];
        let verdict = policy.blocking_verdict(&policy.failures(&reported));
        assert!(
            verdict.contains("wiped if this still fails 1d"),
            "a definite failure: {verdict}"
        );
        assert!(
            verdict.contains("agent_version: not checked"),
            "a missing check blocks by default: {verdict}"
        );
    }

    #[test]
    fn an_unknown_action_from_a_newer_controller_blocks() {
        let policy = AgentPolicy::from(v1::Policy {
            require_firewall: true,
            check_actions: vec![v1::CheckAction {
                check: "firewall".into(),
                action: 42,
            }],
            ..v1::Policy::default()
        });
        assert_eq!(policy.action_for(Check::Firewall), EnforcementAction::Block);
    }

    #[test]
    fn an_unknown_check_from_a_newer_controller_is_never_required_and_its_action_is_dropped() {
        let policy = AgentPolicy::from(v1::Policy {
            require_firewall: true,
            check_actions: vec![
                action("bluetooth", v1::EnforcementAction::Wipe),
                action("firewall", v1::EnforcementAction::Report),
            ],
            ..v1::Policy::default()
        });
        assert_eq!(policy.required_checks(), vec![Check::Firewall]);
        assert_eq!(
            policy.check_actions,
            [(Check::Firewall, EnforcementAction::Report)].into()
        );
    }

    #[test]
    fn policy_json_stays_one_flat_object_and_older_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let policy = AgentPolicy::from(v1::Policy {
            max_uptime_days: 30,
            revision: 7,
            scope: "default".into(),
            check_actions: vec![action("uptime", v1::EnforcementAction::Report)],
            ..v1::Policy::default()
        });
        assert_eq!(policy.required_checks(), vec![Check::Uptime]);
        policy.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("policy.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["revision"], 7);
        assert_eq!(json["max_uptime_days"], 30);
        assert_eq!(json["check_actions"]["uptime"], "report");
        assert_eq!(AgentPolicy::load(dir.path()), Some(policy));
        // As an older agent wrote it: no uptime rule; and a newer one's unknown field and check.
        let older = r#"{"password_min_length":8,"require_firewall":true,"revision":3,
            "scope":"user:a@b.org","check_actions":{"firewall":"wipe","bluetooth":"block"},
            "wipe_grace_seconds":3600,"a_newer_rule":1}"#;
        std::fs::write(dir.path().join("policy.json"), older).unwrap();
        let loaded = AgentPolicy::load(dir.path()).unwrap();
        assert_eq!(
            (loaded.revision, loaded.scope.as_str()),
            (3, "user:a@b.org")
        );
        assert_eq!(loaded.password_min_length, 8);
        assert_eq!(loaded.max_uptime_days, 0, "no limit");
        assert_eq!(loaded.action_for(Check::Firewall), EnforcementAction::Wipe);
        assert_eq!(
            loaded.required_checks(),
            vec![Check::PasswordRules, Check::Firewall]
        );
    }
}
