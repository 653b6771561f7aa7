//! What each admin role may do. Every admin API call names the permission it needs.

use super::AdminRole;

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
    /// Issue or revoke admins.
    Admins,
    /// Revoke devices, put them in lost mode.
    Revoke,
    /// Offboard a user: messaging wipe and revocation of all their devices.
    Offboard,
    /// Approve another admin's command (second-admin rule).
    Approve,
    /// Disable or enable a device (its messaging key withheld, its data kept).
    Disable,
    /// Retire a device: messaging wipe, agent state destroyed, revoked, kept for the record.
    Retire,
}

impl Permission {
    /// Every permission, in the order `WhoAmI` lists them.
    pub const ALL: [Permission; 13] = [
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
        }
    }

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
            | Permission::Retire => &[Admin],
        }
    }
}

impl AdminRole {
    pub fn allows(self, permission: Permission) -> bool {
        permission.roles().contains(&self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ];
        assert!(all.iter().all(|p| AdminRole::Admin.allows(*p)));
        let helpdesk: Vec<_> = all
            .iter()
            .filter(|p| AdminRole::Helpdesk.allows(**p))
            .collect();
        assert_eq!(helpdesk, [&Read, &Lock]);
        let offboarding: Vec<_> = all
            .iter()
            .filter(|p| AdminRole::Offboarding.allows(**p))
            .collect();
        assert_eq!(offboarding, [&Read, &MessagingWipe, &Offboard]);
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
