//! Enrollment-token SQL both backends share (`$N` placeholders, which sqlx also binds for
//! SQLite).

/// Withdraws the user's unused tokens that have not expired, ending them now; the rows counted
/// are what offboarding reports. `$1` now, `$2` the user.
pub const WITHDRAW_UNEXPIRED_TOKENS: &str =
    "UPDATE enrollment_tokens SET withdrawn_at = $1, expires_at = $1
     WHERE user_email = $2 AND used_at IS NULL AND withdrawn_at IS NULL AND expires_at > $1";

/// Withdraws the user's other unused tokens (already expired by the offboarding's clock, but
/// perhaps not by that of an enrollment already under way).
pub const WITHDRAW_OTHER_TOKENS: &str = "UPDATE enrollment_tokens SET withdrawn_at = $1
     WHERE user_email = $2 AND used_at IS NULL AND withdrawn_at IS NULL";
