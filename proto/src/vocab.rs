//! The wire's messages to and from Ward's shared vocabulary (`ward-vocab`), written once for
//! the agent (which sends them), the edge (which checks them into the domain) and `wardctl`
//! (which prints them). Conversions only: what a value may hold is checked by its vocabulary
//! type (e.g. `Inventory::validate`), where the controller takes it in.

use ward_vocab::inventory::{Filesystem, Inventory, PackageCount};
use ward_vocab::policy::Policy;
use ward_vocab::{Check, EnforcementAction, Named, WipeScope};

use crate::v1;

/// The value of a closed set that the wire number `number` stands for, read back through the
/// set's one mapping onto the wire (`W: From<T>`), so each mapping is written once; `None` for
/// none given (no value maps to the wire's unspecified 0) or one this build does not know.
fn from_wire<T, W>(number: i32) -> Option<T>
where
    T: Named,
    W: From<T> + Into<i32>,
{
    T::ALL
        .iter()
        .copied()
        .find(|value| W::from(*value).into() == number)
}

/// The scope a wire number names; `None` for none given or one this build does not know.
pub fn wipe_scope(number: i32) -> Option<WipeScope> {
    from_wire::<WipeScope, v1::WipeScope>(number)
}

impl From<WipeScope> for v1::WipeScope {
    fn from(scope: WipeScope) -> Self {
        match scope {
            WipeScope::Messaging => Self::Messaging,
            WipeScope::Full => Self::Full,
        }
    }
}

/// The action a wire number names; `None` for none given or one this build does not know.
pub fn enforcement_action(number: i32) -> Option<EnforcementAction> {
    from_wire::<EnforcementAction, v1::EnforcementAction>(number)
}

impl From<EnforcementAction> for v1::EnforcementAction {
    fn from(action: EnforcementAction) -> Self {
        match action {
            EnforcementAction::Report => Self::Report,
            EnforcementAction::Block => Self::Block,
            EnforcementAction::Wipe => Self::Wipe,
        }
    }
}

/// `Self` from the policy `$p` with every rule a policy and its wire message hold alike (the
/// same name and type), then `$rest`: a rule both hold is written here once, for both
/// directions.
macro_rules! with_shared_rules {
    ($p:ident { $($rest:tt)* }) => {
        Self {
            password_min_length: $p.password_min_length,
            password_min_classes: $p.password_min_classes,
            password_max_age_days: $p.password_max_age_days,
            password_history: $p.password_history,
            max_failed_attempts: $p.max_failed_attempts,
            auto_lock_seconds: $p.auto_lock_seconds,
            require_disk_encryption: $p.require_disk_encryption,
            offline_wipe_after_seconds: $p.offline_wipe_after_seconds,
            enforce: $p.enforce,
            require_firewall: $p.require_firewall,
            forbidden_packages: $p.forbidden_packages.clone(),
            os_updates_max_age_days: $p.os_updates_max_age_days,
            min_agent_version: $p.min_agent_version.clone(),
            wipe_grace_seconds: $p.wipe_grace_seconds,
            max_uptime_days: $p.max_uptime_days,
            $($rest)*
        }
    };
}

/// A policy's rules for the wire; its scope, revision and overridden fields are the sender's
/// to fill in.
impl From<&Policy> for v1::Policy {
    fn from(p: &Policy) -> Self {
        with_shared_rules!(p {
            check_actions: p
                .check_actions
                .iter()
                .map(|(check, action)| v1::CheckAction {
                    check: check.as_str().to_owned(),
                    action: v1::EnforcementAction::from(*action) as i32,
                })
                .collect(),
            scope: String::new(),
            revision: 0,
            overridden: Vec::new(),
        })
    }
}

/// The rules of a policy as sent, read by the agent that holds it and the CLI that shows it:
/// a check this build does not know is left out (nothing here reports or requires it), and an
/// action it does not know is read as block, the stricter reading of a newer controller's.
/// (The controller refuses both when an admin sets them.)
impl From<&v1::Policy> for Policy {
    fn from(p: &v1::Policy) -> Self {
        with_shared_rules!(p {
            check_actions: p
                .check_actions
                .iter()
                .filter_map(|a| {
                    let action = enforcement_action(a.action).unwrap_or(EnforcementAction::Block);
                    Some((Check::named(&a.check)?, action))
                })
                .collect(),
        })
    }
}

impl From<Inventory> for v1::Inventory {
    fn from(i: Inventory) -> Self {
        Self {
            hardware_vendor: i.hardware_vendor,
            hardware_model: i.hardware_model,
            cpu_model: i.cpu_model,
            cpu_count: i.cpu_count,
            memory_bytes: i.memory_bytes,
            packages: i
                .packages
                .into_iter()
                .map(|p| v1::PackageCount {
                    manager: p.manager,
                    count: p.count,
                })
                .collect(),
            filesystems: i
                .filesystems
                .into_iter()
                .map(|f| v1::Filesystem {
                    mount_point: f.mount_point,
                    fs_type: f.fs_type,
                    source: f.source,
                    encryption: f.encryption,
                })
                .collect(),
            firewall: i.firewall,
        }
    }
}

impl From<v1::Inventory> for Inventory {
    fn from(i: v1::Inventory) -> Self {
        Self {
            hardware_vendor: i.hardware_vendor,
            hardware_model: i.hardware_model,
            cpu_model: i.cpu_model,
            cpu_count: i.cpu_count,
            memory_bytes: i.memory_bytes,
            packages: i
                .packages
                .into_iter()
                .map(|p| PackageCount {
                    manager: p.manager,
                    count: p.count,
                })
                .collect(),
            filesystems: i
                .filesystems
                .into_iter()
                .map(|f| Filesystem {
                    mount_point: f.mount_point,
                    fs_type: f.fs_type,
                    source: f.source,
                    encryption: f.encryption,
                })
                .collect(),
            firewall: i.firewall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inventory_crosses_the_wire_and_back_unchanged() {
        let sent = Inventory {
            hardware_vendor: "LENOVO".into(),
            hardware_model: "ThinkPad T14".into(),
            cpu_model: "AMD Ryzen 7".into(),
            cpu_count: 16,
            memory_bytes: 32 << 30,
            packages: vec![PackageCount {
                manager: "dpkg".into(),
                count: 1834,
            }],
            filesystems: vec![Filesystem {
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                source: "/dev/mapper/root".into(),
                encryption: "encrypted".into(),
            }],
            firewall: "active".into(),
        };
        let wire = v1::Inventory::from(sent.clone());
        assert_eq!(wire.packages[0].count, 1834);
        assert_eq!(Inventory::from(wire), sent);
    }

    #[test]
    fn scopes_and_actions_read_back_as_sent_and_nothing_else_reads_as_one() {
        for scope in WipeScope::ALL {
            assert_eq!(wipe_scope(v1::WipeScope::from(scope) as i32), Some(scope));
        }
        for action in EnforcementAction::ALL {
            let number = v1::EnforcementAction::from(action) as i32;
            assert_eq!(enforcement_action(number), Some(action));
        }
        for unknown in [0, 99, -1] {
            assert_eq!(wipe_scope(unknown), None, "{unknown}");
            assert_eq!(enforcement_action(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn a_policy_crosses_the_wire_and_back_and_a_newer_controllers_words_read_strictly() {
        // Every field its own value, so that two fields swapped in the conversion show.
        let sent = Policy {
            password_min_length: 12,
            password_min_classes: 3,
            password_max_age_days: 90,
            password_history: 5,
            max_failed_attempts: 10,
            auto_lock_seconds: 300,
            require_disk_encryption: true,
            offline_wipe_after_seconds: 7 * 86_400,
            enforce: true,
            require_firewall: true,
            forbidden_packages: vec!["telegram-desktop".into()],
            os_updates_max_age_days: 14,
            min_agent_version: "0.2.0".into(),
            check_actions: [(Check::Firewall, EnforcementAction::Wipe)].into(),
            wipe_grace_seconds: 3600,
            max_uptime_days: 30,
        };
        let mut wire = v1::Policy::from(&sent);
        assert_eq!(Policy::from(&wire), sent);
        // A check this build does not know is left out; an action it does not know blocks.
        wire.check_actions = vec![
            v1::CheckAction {
                check: "bluetooth".into(),
                action: v1::EnforcementAction::Report as i32,
            },
            v1::CheckAction {
                check: "uptime".into(),
                action: 99,
            },
        ];
        assert_eq!(
            Policy::from(&wire).check_actions,
            [(Check::Uptime, EnforcementAction::Block)].into()
        );
    }
}
