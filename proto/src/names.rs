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
    match v1::EnforcementAction::try_from(action) {
        Ok(v1::EnforcementAction::Report) => "report",
        Ok(v1::EnforcementAction::Block) => "block",
        Ok(v1::EnforcementAction::Wipe) => "wipe",
        Ok(v1::EnforcementAction::Unspecified) | Err(_) => "unknown",
    }
}

/// True for states a command never leaves.
pub fn command_state_is_final(state: i32) -> bool {
    matches!(
        command_state(state),
        "succeeded" | "failed" | "cancelled" | "expired" | "superseded"
    )
}
