//! What each admin role may do (every admin API call names the permission it needs), and who
//! may approve what another admin asks for (the two-person rule of `serve --require-approval`).

use super::ca_rotation::RotationStep;
use super::{Admin, AdminRole, CommandKind, WipeScope};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// List and show devices, commands, policies, admins, audit.
    Read,
    /// Create enrollment tokens.
    Enroll,
    /// Lock or unlock screens.
    Lock,
    /// Wipe the messaging data.
    MessagingWipe,
    /// Wipe a whole device.
    FullWipe,
    /// Cancel a command.
    Cancel,
    /// Change policies.
    Policy,
    /// Issue, renew (someone else's identity) or revoke admins. Any admin may renew their own.
    Admins,
    /// Revoke devices, put them in lost mode.
    Revoke,
    /// Offboard a user: messaging wipe and revocation of all their devices.
    Offboard,
    /// Approve another admin's command or admin identity (second-admin rule).
    Approve,
    /// Disable or enable a device (its messaging key withheld, its data kept).
    Disable,
    /// Retire a device: messaging wipe, agent state destroyed, revoked, kept for the record.
    Retire,
    /// Add, list and remove integrations (signed webhooks) and read their delivery log.
    Integrations,
}

/// An admin's change to one device's service, each a call of its own with a reason: disable
/// (the messaging key withheld), enable, return (a found device back into service) and retire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChange {
    Disable,
    Enable,
    Return,
    Retire,
}

/// What an admin does to one command by its id: cancel it before the device starts it, or
/// approve it as the second admin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandDecision {
    Cancel,
    Approve,
}

impl Permission {
    /// Every permission, in the order `WhoAmI` lists them.
    pub const ALL: [Permission; 14] = [
        Permission::Read,
        Permission::Enroll,
        Permission::Lock,
        Permission::MessagingWipe,
        Permission::FullWipe,
        Permission::Cancel,
        Permission::Policy,
        Permission::Admins,
        Permission::Revoke,
        Permission::Offboard,
        Permission::Approve,
        Permission::Disable,
        Permission::Retire,
        Permission::Integrations,
    ];

    /// The stable name clients see (`WhoAmI`): lower case, `_` between words.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Enroll => "enroll",
            Permission::Lock => "lock",
            Permission::MessagingWipe => "messaging_wipe",
            Permission::FullWipe => "full_wipe",
            Permission::Cancel => "cancel",
            Permission::Policy => "policy",
            Permission::Admins => "admins",
            Permission::Revoke => "revoke",
            Permission::Offboard => "offboard",
            Permission::Approve => "approve",
            Permission::Disable => "disable",
            Permission::Retire => "retire",
            Permission::Integrations => "integrations",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Enroll => "create enrollment tokens",
            Permission::Lock => "lock or unlock devices",
            Permission::MessagingWipe => "wipe messaging data",
            Permission::FullWipe => "wipe whole devices",
            Permission::Cancel => "cancel commands",
            Permission::Policy => "change policy",
            Permission::Admins => "manage admins",
            Permission::Revoke => "revoke devices",
            Permission::Offboard => "offboard users",
            Permission::Approve => "approve commands",
            Permission::Disable => "disable or enable devices",
            Permission::Retire => "retire devices",
            Permission::Integrations => "manage webhooks",
        }
    }

    /// The permission issuing a command of `kind` needs (the same as the call of its own
    /// that lifecycle commands have).
    pub fn to_issue(kind: &CommandKind) -> Permission {
        match kind {
            CommandKind::Lock { .. } | CommandKind::Unlock => Permission::Lock,
            CommandKind::Wipe { scope } => Permission::to_wipe(*scope),
            CommandKind::Disable | CommandKind::Enable => Permission::Disable,
            CommandKind::Retire => Permission::Retire,
        }
    }

    /// The permission a change to a device's service needs (a return puts a disabled device
    /// back, so it needs what disabling it did).
    pub fn to_change(change: DeviceChange) -> Permission {
        match change {
            DeviceChange::Disable | DeviceChange::Enable | DeviceChange::Return => {
                Permission::Disable
            }
            DeviceChange::Retire => Permission::Retire,
        }
    }

    /// The permission cancelling or approving a command needs.
    pub fn to_decide(decision: CommandDecision) -> Permission {
        match decision {
            CommandDecision::Cancel => Permission::Cancel,
            CommandDecision::Approve => Permission::Approve,
        }
    }

    /// The permission a wipe of `scope` needs, one device or many.
    pub fn to_wipe(scope: WipeScope) -> Permission {
        match scope {
            WipeScope::Messaging => Permission::MessagingWipe,
            WipeScope::Full => Permission::FullWipe,
        }
    }

    /// The permission a CA rotation step needs: reading its status is a read.
    pub fn to_rotate(step: RotationStep) -> Permission {
        match step {
            RotationStep::Status => Permission::Read,
            RotationStep::Introduce
            | RotationStep::Activate
            | RotationStep::Retire
            | RotationStep::Cancel => Permission::Admins,
        }
    }

    /// What `IssueCommand` may need, by the command's kind: a caller whose role holds none of
    /// these is refused before the request is read.
    pub const ISSUE_COMMAND: [Permission; 3] = [
        Permission::Lock,
        Permission::MessagingWipe,
        Permission::FullWipe,
    ];
    /// What `BulkWipe` may need, by the wipe's scope.
    pub const BULK_WIPE: [Permission; 2] = [Permission::MessagingWipe, Permission::FullWipe];
    /// What `RotateCa` may need, by the step.
    pub const ROTATE_CA: [Permission; 2] = [Permission::Read, Permission::Admins];

    /// The roles that hold this permission.
    pub fn roles(self) -> &'static [AdminRole] {
        use AdminRole::*;
        match self {
            Permission::Read => &[Admin, Helpdesk, Offboarding],
            Permission::Lock | Permission::Disable => &[Admin, Helpdesk],
            Permission::MessagingWipe | Permission::Offboard => &[Admin, Offboarding],
            Permission::Enroll
            | Permission::FullWipe
            | Permission::Cancel
            | Permission::Policy
            | Permission::Admins
            | Permission::Revoke
            | Permission::Approve
            | Permission::Retire
            | Permission::Integrations => &[Admin],
        }
    }
}

impl AdminRole {
    pub fn allows(self, permission: Permission) -> bool {
        permission.roles().contains(&self)
    }

    /// The first of `permissions` this role holds, if any: a call whose permission depends on
    /// what it asks checks this before reading the request.
    pub fn allows_any(self, permissions: &[Permission]) -> Option<Permission> {
        permissions.iter().copied().find(|p| self.allows(*p))
    }
}

/// Why `approver` may not approve what `requester` asked for, or `None` when they may.
///
/// Two identities are two people only if neither could be the other's: an approver may not be
/// the requester, an admin whose identity the requester created, renewed (both made its key)
/// or approved, nor the admin who created or renewed the requester's identity. Only direct
/// links count (not a chain of them); approving the requester's identity is no link in that
/// direction, since the approver never held its key.
pub fn approval_refusal(requester: &Admin, approver: &Admin) -> Option<String> {
    let (r, a) = (requester.name.as_str(), approver.name.as_str());
    let made = |admin: &Admin, by: &str| {
        admin.created_by == by || admin.certificate_by.as_deref() == Some(by)
    };
    if r == a {
        Some(format!(
            "admin {a} asked for it: a second admin must approve it"
        ))
    } else if made(approver, r) {
        Some(format!(
            "admin {r} created or renewed {a}'s identity (and made its key): another admin must approve it"
        ))
    } else if approver.approved_by.as_deref() == Some(r) {
        Some(format!(
            "admin {r} approved {a}'s identity: another admin must approve it"
        ))
    } else if made(requester, a) {
        Some(format!(
            "admin {a} created or renewed {r}'s identity (and made its key): another admin must approve it"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    #[test]
    fn roles_hold_exactly_their_permissions() {
        use Permission::*;
        let all = [
            Read,
            Enroll,
            Lock,
            MessagingWipe,
            FullWipe,
            Cancel,
            Policy,
            Admins,
            Revoke,
            Offboard,
            Approve,
            Disable,
            Retire,
            Integrations,
        ];
        assert!(all.iter().all(|p| AdminRole::Admin.allows(*p)));
        let helpdesk: Vec<_> = all
            .iter()
            .filter(|p| AdminRole::Helpdesk.allows(**p))
            .collect();
        assert_eq!(helpdesk, [&Read, &Lock, &Disable]);
        let offboarding: Vec<_> = all
            .iter()
            .filter(|p| AdminRole::Offboarding.allows(**p))
            .collect();
        assert_eq!(offboarding, [&Read, &MessagingWipe, &Offboard]);
    }

    fn admin(name: &str, created_by: &str) -> Admin {
        Admin::new(
            name.parse().unwrap(),
            AdminRole::Admin,
            Timestamp::from_unix_ms(0),
            created_by,
        )
    }

    #[test]
    fn an_approver_is_a_second_person_only_without_a_direct_link() {
        let alice = admin("alice", "init");
        let bob = admin("bob", "init");
        assert_eq!(approval_refusal(&alice, &bob), None);

        let refused = |r: &Admin, a: &Admin| approval_refusal(r, a).is_some();
        assert!(refused(&alice, &alice));
        // Alice's sock puppet, either way round.
        let sock = admin("sock", "alice");
        assert!(refused(&alice, &sock));
        assert!(refused(&sock, &alice));
        // Bob approved sock's issuance: sock may not approve Bob's requests…
        let sock = Admin {
            approved_by: Some("bob".into()),
            ..sock
        };
        assert!(refused(&bob, &sock));
        // …but Bob, who never held sock's key, may approve sock's.
        assert!(!refused(&sock, &bob));
        // Carol renewed Dave's identity with a key of her own.
        let dave = Admin {
            certificate_by: Some("carol".into()),
            ..admin("dave", "init")
        };
        let carol = admin("carol", "init");
        assert!(refused(&carol, &dave));
        assert!(refused(&dave, &carol));
        // Links are direct only: sock's own creations are not Alice's.
        let sock2 = admin("sock2", "sock");
        assert!(!refused(&alice, &sock2));
    }

    #[test]
    fn a_command_needs_the_permission_of_its_kind() {
        use Permission::*;
        let kinds = [
            (
                CommandKind::Lock {
                    message: String::new(),
                },
                Lock,
            ),
            (CommandKind::Unlock, Lock),
            (
                CommandKind::Wipe {
                    scope: WipeScope::Messaging,
                },
                MessagingWipe,
            ),
            (
                CommandKind::Wipe {
                    scope: WipeScope::Full,
                },
                FullWipe,
            ),
            (CommandKind::Disable, Disable),
            (CommandKind::Enable, Disable),
            (CommandKind::Retire, Retire),
        ];
        for (kind, permission) in kinds {
            assert_eq!(Permission::to_issue(&kind), permission, "{kind:?}");
        }
        // A lifecycle call needs what the command it issues needs; a return undoes a disable.
        for (change, kind) in [
            (DeviceChange::Disable, CommandKind::Disable),
            (DeviceChange::Enable, CommandKind::Enable),
            (DeviceChange::Return, CommandKind::Enable),
            (DeviceChange::Retire, CommandKind::Retire),
        ] {
            assert_eq!(
                Permission::to_change(change),
                Permission::to_issue(&kind),
                "{change:?}"
            );
        }
        assert_eq!(Permission::to_decide(CommandDecision::Cancel), Cancel);
        assert_eq!(Permission::to_decide(CommandDecision::Approve), Approve);
        assert_eq!(Permission::to_rotate(RotationStep::Status), Read);
        // Every role may issue some command, and read a rotation's status.
        for role in [
            AdminRole::Admin,
            AdminRole::Helpdesk,
            AdminRole::Offboarding,
        ] {
            assert!(role.allows_any(&Permission::ISSUE_COMMAND).is_some());
            assert!(role.allows_any(&Permission::ROTATE_CA).is_some());
        }
        // Helpdesk wipes nothing.
        assert_eq!(AdminRole::Helpdesk.allows_any(&Permission::BULK_WIPE), None);
    }

    #[test]
    fn every_permission_has_a_distinct_name() {
        let mut names: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
    }
}
