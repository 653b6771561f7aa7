//! A device's posture beyond its compliance report: the inventory it reports, whether an admin
//! disabled it, and the graded enforcement of the checks it fails (report, block, wipe after a
//! grace period), with when each step happened.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CheckStatus, CommandId, Compliance, EnforcementAction, Policy, Timestamp};

/// The inventory a device reports, defined once for the agent and the controller.
pub use ward_vocab::inventory::{
    ENCRYPTION_STATES, Filesystem, Inventory, InventoryError, MAX_INVENTORY_ENTRIES,
    MAX_INVENTORY_TEXT, PackageCount,
};

/// An admin's remote disable: the device keeps its data, its key is withheld.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub reason: String,
    pub at: i64,
    pub by: String,
    /// The disable command that carries it to the device.
    pub command_id: String,
}

/// One required check that fails, and what that has led to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub check: String,
    pub action: EnforcementAction,
    /// The first report in which the check failed (unix ms).
    pub failing_since: i64,
    /// When the current action took effect (unix ms): the failure's start, or the report
    /// after a policy change gave it a new action. The grace of a wipe counts from here, so
    /// switching a long-failing check to `wipe` still gives the user the whole grace period.
    #[serde(default)]
    pub action_since: Option<i64>,
    /// For `wipe`: when the grace period ends (unix ms).
    pub wipe_due: Option<i64>,
    /// For `wipe`, once the controller issued it.
    pub wipe_command: Option<String>,
}

/// What changed between two enforcement states, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A required check started failing, with the action it leads to.
    Failing {
        check: String,
        action: EnforcementAction,
    },
    /// The policy changed the action of a still-failing check.
    ActionChanged {
        check: String,
        action: EnforcementAction,
    },
    /// The check passes again (or is no longer required).
    Cleared { check: String },
}

/// The enforcement state after a compliance report: failing checks keep the time they first
/// failed; checks that pass again are dropped. Returns the new state and the steps taken.
pub fn next_enforcement(
    previous: &[Enforcement],
    compliance: &Compliance,
    policy: &Policy,
    now: Timestamp,
) -> (Vec<Enforcement>, Vec<Step>) {
    let grace = Duration::from_secs(policy.wipe_grace_seconds);
    let mut next = Vec::new();
    let mut steps = Vec::new();
    for check in compliance.failing() {
        // A wipe needs a definite failure: a check the device could not make (unsupported,
        // an error) or did not report blocks instead, and is given no wipe date. When it
        // later definitely fails, the action changes and the grace counts from then.
        let definite = compliance
            .checks
            .iter()
            .any(|c| c.name == check.as_str() && c.status == CheckStatus::Fail);
        let action = match policy.action_for(check) {
            EnforcementAction::Wipe if !definite => EnforcementAction::Block,
            action => action,
        };
        let earlier = previous.iter().find(|e| e.check == check.as_str());
        let failing_since = earlier.map_or(now.unix_ms(), |e| e.failing_since);
        let action_since = match earlier {
            None => {
                steps.push(Step::Failing {
                    check: check.as_str().to_owned(),
                    action,
                });
                now.unix_ms()
            }
            Some(e) if e.action != action => {
                steps.push(Step::ActionChanged {
                    check: check.as_str().to_owned(),
                    action,
                });
                now.unix_ms()
            }
            Some(e) => e.action_since.unwrap_or(e.failing_since),
        };
        let wipe_due = (action == EnforcementAction::Wipe).then(|| {
            Timestamp::from_unix_ms(action_since)
                .saturating_add(grace)
                .unix_ms()
        });
        // A wipe once issued stays on the record for this failure, even if the action changes.
        let wipe_command = earlier.and_then(|e| e.wipe_command.clone());
        next.push(Enforcement {
            check: check.as_str().to_owned(),
            action,
            failing_since,
            action_since: Some(action_since),
            wipe_due,
            wipe_command,
        });
    }
    for e in previous {
        if !next.iter().any(|n| n.check == e.check) {
            steps.push(Step::Cleared {
                check: e.check.clone(),
            });
        }
    }
    (next, steps)
}

/// The failing checks whose wipe is due at `now` and not yet issued. A wipe needs a definite
/// failure in `report`, judged against the policy in force (`revision`): a check the device
/// could not make, did not report, or judged against an older policy blocks the key but never
/// destroys data.
pub fn wipes_due<'a>(
    state: &'a [Enforcement],
    report: &'a Compliance,
    revision: u64,
    now: Timestamp,
) -> impl Iterator<Item = &'a Enforcement> {
    let current = report.policy_revision == revision;
    state.iter().filter(move |e| {
        let definite = report
            .checks
            .iter()
            .any(|c| c.name == e.check && c.status == CheckStatus::Fail);
        current
            && definite
            && e.action == EnforcementAction::Wipe
            && e.wipe_command.is_none()
            && e.wipe_due.is_some_and(|due| due <= now.unix_ms())
    })
}

/// The idempotency key of the wipe for one failure episode: a retried check-in issues it once.
pub fn wipe_key(device: super::DeviceId, e: &Enforcement) -> super::IdempotencyKey {
    super::IdempotencyKey::System(format!(
        "compliance:{device}:{}:{}",
        e.check, e.failing_since
    ))
}

/// Records that the wipe for `check` was issued as `command`.
pub fn mark_wipe_issued(state: &mut [Enforcement], check: &str, command: CommandId) {
    if let Some(e) = state.iter_mut().find(|e| e.check == check) {
        e.wipe_command = Some(command.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Check, CheckStatus, ComplianceCheck};

    fn policy() -> Policy {
        let mut p = Policy {
            require_firewall: true,
            forbidden_packages: vec!["telegram-desktop".into()],
            wipe_grace_seconds: 3600,
            ..Policy::default()
        };
        p.check_actions
            .insert(Check::Firewall, EnforcementAction::Wipe);
        p.check_actions
            .insert(Check::ForbiddenPackages, EnforcementAction::Report);
        p
    }

    fn report(policy: &Policy, failing: &[Check], at: i64) -> Compliance {
        let checks = [Check::Firewall, Check::ForbiddenPackages]
            .iter()
            .map(|check| ComplianceCheck {
                name: check.as_str().to_owned(),
                status: if failing.contains(check) {
                    CheckStatus::Fail
                } else {
                    CheckStatus::Pass
                },
                detail: "d".into(),
            })
            .collect();
        Compliance::judge(policy, checks, Timestamp::from_unix_ms(at), 1)
    }

    #[test]
    fn a_failure_keeps_its_start_and_the_wipe_falls_due_after_the_grace() {
        let p = policy();
        let t0 = 1_000_000;
        let (s1, steps) = next_enforcement(
            &[],
            &report(&p, &[Check::Firewall, Check::ForbiddenPackages], t0),
            &p,
            Timestamp::from_unix_ms(t0),
        );
        assert_eq!(steps.len(), 2);
        let fw = s1
            .iter()
            .find(|e| e.check == Check::Firewall.as_str())
            .unwrap();
        assert_eq!(fw.wipe_due, Some(t0 + 3_600_000));
        let pk = s1
            .iter()
            .find(|e| e.check == Check::ForbiddenPackages.as_str())
            .unwrap();
        assert_eq!((pk.action, pk.wipe_due), (EnforcementAction::Report, None));
        let t1 = t0 + 3_599_999;
        let (s2, steps) = next_enforcement(
            &s1,
            &report(&p, &[Check::Firewall], t1),
            &p,
            Timestamp::from_unix_ms(t1),
        );
        assert_eq!(
            steps,
            vec![Step::Cleared {
                check: Check::ForbiddenPackages.as_str().to_owned()
            }]
        );
        assert_eq!(s2[0].failing_since, t0);
        let r1 = report(&p, &[Check::Firewall], t1);
        assert_eq!(
            wipes_due(&s2, &r1, 1, Timestamp::from_unix_ms(t1)).count(),
            0
        );
        let t2 = t0 + 3_600_000;
        let r2 = report(&p, &[Check::Firewall], t2);
        let mut s3 = next_enforcement(&s2, &r2, &p, Timestamp::from_unix_ms(t2)).0;
        let due: Vec<_> = wipes_due(&s3, &r2, 1, Timestamp::from_unix_ms(t2))
            .cloned()
            .collect();
        assert_eq!(due.len(), 1);
        // The same failure judged against an older policy, or not definite: no wipe.
        assert_eq!(
            wipes_due(&s3, &r2, 2, Timestamp::from_unix_ms(t2)).count(),
            0
        );
        let mut unsure = r2.clone();
        unsure
            .checks
            .iter_mut()
            .for_each(|c| c.status = CheckStatus::Unsupported);
        assert_eq!(
            wipes_due(&s3, &unsure, 1, Timestamp::from_unix_ms(t2)).count(),
            0
        );
        mark_wipe_issued(&mut s3, Check::Firewall.as_str(), CommandId::new_random());
        assert_eq!(
            wipes_due(&s3, &r2, 1, Timestamp::from_unix_ms(t2 + 1)).count(),
            0
        );
        // Switching a long-failing check to wipe gives the whole grace from the switch.
        let mut p2 = policy();
        p2.check_actions
            .insert(Check::ForbiddenPackages, EnforcementAction::Wipe);
        let t3 = t2 + 10 * 3_600_000;
        let failing_both = report(&p2, &[Check::Firewall, Check::ForbiddenPackages], t3);
        let (s3b, _) = next_enforcement(
            &[],
            &report(&p, &[Check::ForbiddenPackages], t0),
            &p,
            Timestamp::from_unix_ms(t0),
        );
        let (s3c, steps) = next_enforcement(&s3b, &failing_both, &p2, Timestamp::from_unix_ms(t3));
        assert!(steps.contains(&Step::ActionChanged {
            check: Check::ForbiddenPackages.as_str().to_owned(),
            action: EnforcementAction::Wipe
        }));
        let pk = s3c
            .iter()
            .find(|e| e.check == Check::ForbiddenPackages.as_str())
            .unwrap();
        assert_eq!((pk.failing_since, pk.wipe_due), (t0, Some(t3 + 3_600_000)));
        // Passing again ends the episode: a later failure starts a new one with a new key.
        let (s4, _) = next_enforcement(
            &s3,
            &report(&p, &[], t2 + 5),
            &p,
            Timestamp::from_unix_ms(t2 + 5),
        );
        assert!(s4.is_empty());
    }

    #[test]
    fn a_check_that_cannot_be_verified_blocks_but_is_never_given_a_wipe_date() {
        let p = policy();
        let t0 = 1_000_000;
        let mut unsure = report(&p, &[], t0);
        for c in &mut unsure.checks {
            if c.name == Check::Firewall.as_str() {
                c.status = CheckStatus::Unsupported;
            }
        }
        let unsure = Compliance::judge(&p, unsure.checks, Timestamp::from_unix_ms(t0), 1);
        let (s1, _) = next_enforcement(&[], &unsure, &p, Timestamp::from_unix_ms(t0));
        let fw = s1
            .iter()
            .find(|e| e.check == Check::Firewall.as_str())
            .unwrap();
        assert_eq!((fw.action, fw.wipe_due), (EnforcementAction::Block, None));
        // Once it definitely fails, the wipe's grace counts from that report.
        let t1 = t0 + 10 * 3_600_000;
        let failing = report(&p, &[Check::Firewall], t1);
        let (s2, steps) = next_enforcement(&s1, &failing, &p, Timestamp::from_unix_ms(t1));
        let fw = s2
            .iter()
            .find(|e| e.check == Check::Firewall.as_str())
            .unwrap();
        assert_eq!(
            (fw.action, fw.wipe_due, fw.failing_since),
            (EnforcementAction::Wipe, Some(t1 + 3_600_000), t0)
        );
        assert!(steps.contains(&Step::ActionChanged {
            check: Check::Firewall.as_str().to_owned(),
            action: EnforcementAction::Wipe
        }));
    }

    #[test]
    fn inventory_text_is_bounded() {
        let mut inv = Inventory {
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                source: "/dev/vda1".into(),
                encryption: "not encrypted".into(),
            }],
            ..Inventory::default()
        };
        inv.validate().unwrap();
        inv.filesystems[0].encryption = "maybe".into();
        assert!(inv.validate().is_err());
        inv.filesystems[0].encryption = "unknown".into();
        inv.cpu_model = "x\u{1b}".into();
        assert_eq!(inv.validate().unwrap_err().field, "cpu_model");
    }
}
