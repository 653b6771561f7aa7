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
}
