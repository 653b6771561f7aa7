//! The lower-case names scripts and logs use for wire enums (`succeeded`, not
//! `COMMAND_STATE_SUCCEEDED`), in one place for the agent and `wardctl`.

use crate::v1;

/// `queued`, `delivered`, …; `unknown` for a value this build does not know.
pub fn command_state(state: i32) -> &'static str {
    match v1::CommandState::try_from(state) {
        Ok(v1::CommandState::AwaitingApproval) => "awaiting_approval",
        Ok(v1::CommandState::Queued) => "queued",
        Ok(v1::CommandState::Delivered) => "delivered",
        Ok(v1::CommandState::Acknowledged) => "acknowledged",
        Ok(v1::CommandState::Succeeded) => "succeeded",
        Ok(v1::CommandState::Failed) => "failed",
        Ok(v1::CommandState::Cancelled) => "cancelled",
        Ok(v1::CommandState::Expired) => "expired",
        Ok(v1::CommandState::Superseded) => "superseded",
        Ok(v1::CommandState::Unspecified) | Err(_) => "unknown",
    }
}

/// `report`, `block`, `wipe`; `unknown` for a value this build does not know.
pub fn enforcement_action(action: i32) -> &'static str {
    crate::vocab::enforcement_action(action).map_or("unknown", |action| action.as_str())
}

/// True for states a command never leaves.
pub fn command_state_is_final(state: i32) -> bool {
    matches!(
        command_state(state),
        "succeeded" | "failed" | "cancelled" | "expired" | "superseded"
    )
}

/// `admin`, `helpdesk`, `offboarding`; `unknown` for a value this build does not know.
pub fn admin_role(role: i32) -> &'static str {
    match v1::AdminRole::try_from(role) {
        Ok(v1::AdminRole::Admin) => "admin",
        Ok(v1::AdminRole::Helpdesk) => "helpdesk",
        Ok(v1::AdminRole::Offboarding) => "offboarding",
        Ok(v1::AdminRole::Unspecified) | Err(_) => "unknown",
    }
}

/// The wire state named `name` (the inverse of [`command_state`]); `None` for a name no state
/// has (`unknown` included).
pub fn command_state_named(name: &str) -> Option<v1::CommandState> {
    named(name, command_state)
}

/// The wire role named `name` (the inverse of [`admin_role`]); `None` for a name no role has.
pub fn admin_role_named(name: &str) -> Option<v1::AdminRole> {
    named(name, admin_role)
}

/// The value whose name is `name`, among the values a wire enum of this build knows (they are
/// small, non-negative numbers).
fn named<E: TryFrom<i32>>(name: &str, name_of: fn(i32) -> &'static str) -> Option<E> {
    (1..=i32::from(u8::MAX))
        .find(|&value| name_of(value) == name)
        .and_then(|value| E::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_state_and_role_is_found_by_its_name() {
        for value in 0..=i32::from(u8::MAX) {
            if let Ok(state) = v1::CommandState::try_from(value)
                && state != v1::CommandState::Unspecified
            {
                assert_eq!(command_state_named(command_state(value)), Some(state));
            }
            if let Ok(role) = v1::AdminRole::try_from(value)
                && role != v1::AdminRole::Unspecified
            {
                assert_eq!(admin_role_named(admin_role(value)), Some(role));
            }
        }
        assert_eq!(command_state_named("unknown"), None);
        assert_eq!(admin_role_named("unknown"), None);
        assert_eq!(admin_role_named("root"), None);
    }
}
