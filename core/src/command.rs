//! Device commands and their state machine.
//!
//! ```text
//! queued → delivered → acknowledged → succeeded
//!                                   ↘ failed (with a reason the admin can read)
//! queued|delivered → cancelled (by an admin)      queued → expired (only with a deadline;
//! queued|delivered → superseded (a newer lock/unlock)                 never a wipe)
//! ```
//! Acknowledgement is the commit point on the device: the agent executes a command only after
//! the controller accepted its acknowledgement, so a cancelled command is never executed and
//! an executed command is never shown as cancelled.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::{DeviceId, Timestamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandId(pub Uuid);

impl CommandId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a command id (expected a UUID, as `wardctl command list` shows)")]
pub struct CommandIdError(String);

impl FromStr for CommandId {
    type Err = CommandIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| CommandIdError(s.chars().take(100).collect()))
    }
}

/// Shared with the agent and the receipt it signs.
pub use ward_vocab::WipeScope;

/// The most devices one bulk wipe selects (and the most entries a list may hold). A request
/// naming 10,000 device ids is about 400 KB, well under the controller's 1 MiB message limit;
/// a larger fleet is wiped in several batches, each with its own key.
pub const MAX_BULK_WIPE: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandKind {
    Lock {
        message: String,
    },
    Unlock,
    Wipe {
        scope: WipeScope,
    },
    /// Withhold the messaging data key (the data stays) until an enable; the command's reason
    /// is shown on the device.
    Disable,
    Enable,
    /// Messaging wipe with a receipt, then the agent destroys its own key and state.
    Retire,
}

impl CommandKind {
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::Lock { .. } => "lock",
            CommandKind::Unlock => "unlock",
            CommandKind::Wipe { .. } => "wipe",
            CommandKind::Disable => "disable",
            CommandKind::Enable => "enable",
            CommandKind::Retire => "retire",
        }
    }

    /// Destroys data: never expires, never superseded.
    pub fn is_destructive(&self) -> bool {
        matches!(self, CommandKind::Wipe { .. } | CommandKind::Retire)
    }

    /// A newer command of this kind replaces a queued older one of the same kind for the
    /// same device: the device needs only the latest lock (with its message) or unlock.
    pub fn supersedes_its_kind(&self) -> bool {
        matches!(self, CommandKind::Lock { .. } | CommandKind::Unlock)
    }
}

/// A command's idempotency key and whose it is. An admin's key is scoped to that admin, so two
/// admins who pick the same text get a command each; the keys the controller makes for itself
/// (offboarding, lost mode, retirement, disable and enable, compliance wipes) live in a
/// namespace no caller can write, so no admin can take one first and make the controller
/// skip or fail its own work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyKey {
    /// Chosen by an admin: stored as `admin:<name>:<key>` (admin names hold no `:`).
    Admin { admin: String, key: String },
    /// Made by the controller: stored as `system:<key>`.
    System(String),
}

impl IdempotencyKey {
    /// The stored form, unique across all commands.
    pub fn stored(&self) -> String {
        match self {
            IdempotencyKey::Admin { admin, key } => format!("admin:{admin}:{key}"),
            IdempotencyKey::System(key) => format!("system:{key}"),
        }
    }
}

/// The longest reason or lock message accepted.
pub const MAX_TEXT_LEN: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandState {
    /// Issued where a second admin must approve it first (full wipes, large offboardings).
    AwaitingApproval,
    Queued,
    Delivered,
    Acknowledged,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
    /// Replaced, before the device started it, by a newer command of the same kind for the
    /// same device (a lock, an unlock): repeated locks of an offline device do not pile up.
    Superseded,
}

ward_vocab::names!(CommandState, "command state" {
    AwaitingApproval => "awaiting_approval",
    Queued => "queued",
    Delivered => "delivered",
    Acknowledged => "acknowledged",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
    Expired => "expired",
    Superseded => "superseded",
});

impl CommandState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CommandState::Succeeded
                | CommandState::Failed
                | CommandState::Cancelled
                | CommandState::Expired
                | CommandState::Superseded
        )
    }
}

/// What can happen to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A second admin released it.
    Approved {
        by: String,
    },
    /// Sent to the device (on its stream or in a check-in answer).
    Delivered,
    /// The device asked to execute it.
    Acknowledged,
    Succeeded,
    Failed {
        reason: String,
    },
    Cancelled,
    Expired,
    /// A newer command of the same kind replaced it before the device started it.
    Superseded,
}

/// How long a non-destructive command may wait for its device (`device lock --ttl`) before
/// it ends `expired`. Wipes never expire.
pub const TTL: crate::duration::DurationRange = crate::duration::DurationRange::new(
    crate::duration::minutes(1),
    crate::duration::days(30),
    "8h",
);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransitionError {
    #[error("command is {from}; it cannot become {to}")]
    Illegal {
        from: CommandState,
        to: &'static str,
    },
    #[error("command has no deadline, so it never expires")]
    NoDeadline,
    #[error("command's deadline has not passed")]
    NotYetDue,
    #[error("command's time-to-live ran out before the device took it: it expires instead")]
    PastDeadline,
    #[error(
        "a wipe never expires: it stays pending until the device runs it or an admin cancels it"
    )]
    WipesNeverExpire,
}

/// A stored command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub id: CommandId,
    pub device_id: DeviceId,
    pub kind: CommandKind,
    pub state: CommandState,
    /// Why the admin issued it.
    pub reason: String,
    /// Why it failed, as the device reported.
    pub failure_reason: Option<String>,
    /// The stored form of its [`IdempotencyKey`].
    pub idempotency_key: String,
    pub created_by: String,
    pub created_at: Timestamp,
    pub deadline: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub acknowledged_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub deliveries: u32,
    pub receipt: Option<Receipt>,
    pub approved_by: Option<String>,
    /// Revoke the device once this command is finished, whatever its outcome (offboarding and
    /// lost-mode wipes).
    pub revoke_after: bool,
}

/// A wipe receipt as the device sent it, and what the controller made of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The canonical JSON the device signed.
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
    pub verified: bool,
    pub error: Option<String>,
}

impl Receipt {
    /// Where the device held the destroyed key, as its verified receipt states; `None` for a
    /// receipt that did not verify or comes from an agent that did not say.
    pub fn key_protection(&self) -> Option<ward_certs::receipt::KeyProtection> {
        if !self.verified {
            return None;
        }
        serde_json::from_slice::<ward_certs::receipt::WipeReceiptBody>(&self.body)
            .ok()?
            .key_protection
    }
}

/// What a compare-and-set of a stored command compares. Every change [`Command::apply`] makes
/// changes the state or counts a delivery, so two commands with the same version differ in
/// nothing a writer changes: a write computed from a read that another writer (another
/// replica) has changed since misses, even when that change kept the state (a redelivery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandVersion {
    pub state: CommandState,
    pub deliveries: u32,
}

impl Command {
    /// The command as a store holds it once inserted: what an insert does not write (its
    /// deliveries, times, receipt and approval) starts at the defaults.
    #[must_use]
    pub fn as_inserted(&self) -> Command {
        Command {
            failure_reason: None,
            delivered_at: None,
            acknowledged_at: None,
            finished_at: None,
            deliveries: 0,
            receipt: None,
            approved_by: None,
            ..self.clone()
        }
    }

    /// Whether `other` is this command's instruction: the same command for the same device
    /// and the same action. No change a controller makes alters these after the insert, so
    /// the row differing from the command a device was sent means someone edited the
    /// database; a device's acknowledgement or result judged on one must never be written
    /// to the other (another device's receipt finishing this device's wipe, a lock's bare
    /// success recorded as a wipe).
    pub fn is_same_instruction(&self, other: &Command) -> bool {
        self.id == other.id && self.device_id == other.device_id && self.kind == other.kind
    }

    /// What a compare-and-set from this command compares ([`CommandVersion`]).
    pub fn version(&self) -> CommandVersion {
        CommandVersion {
            state: self.state,
            deliveries: self.deliveries,
        }
    }

    /// Whether this newer command replaces `older` (queued for the same device): the same
    /// kind, and it waits at least as long. A lock with a time-to-live never replaces one
    /// that would wait longer: otherwise a short-lived lock (a helpdesk admin's, say) would
    /// end the lost-mode lock and then expire, and the device would never be locked.
    pub fn supersedes(&self, older: &Command) -> bool {
        self.kind.supersedes_its_kind()
            && older.kind.name() == self.kind.name()
            && match (self.deadline, older.deadline) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(newer), Some(older)) => newer >= older,
            }
    }

    /// Applies `event` at `now`, or refuses it. The only way a command's state changes.
    pub fn apply(&self, event: &Event, now: Timestamp) -> Result<Command, TransitionError> {
        use CommandState::*;
        let illegal = |to: &'static str| TransitionError::Illegal {
            from: self.state,
            to,
        };
        let mut next = self.clone();
        match (event, self.state) {
            (Event::Approved { by }, AwaitingApproval) => {
                next.state = Queued;
                next.approved_by = Some(by.clone());
            }
            (Event::Approved { .. }, _) => return Err(illegal("approved")),
            // Only a non-destructive command expires: a wipe is delivered whatever deadline
            // it carries (none is ever set on one; a row edited to have one changes nothing).
            (Event::Delivered, Queued)
                if !self.kind.is_destructive() && self.deadline.is_some_and(|d| now >= d) =>
            {
                return Err(TransitionError::PastDeadline);
            }
            // Redelivery of an unfinished command is bookkeeping, not a state change.
            (Event::Delivered, Queued) => {
                next.state = Delivered;
                next.delivered_at = Some(now);
                next.deliveries = next.deliveries.saturating_add(1);
            }
            (Event::Delivered, Delivered | Acknowledged) => {
                next.deliveries = next.deliveries.saturating_add(1);
            }
            (Event::Delivered, _) => return Err(illegal("delivered")),
            (Event::Acknowledged, Queued | Delivered) => {
                next.state = Acknowledged;
                next.acknowledged_at = Some(now);
                next.delivered_at.get_or_insert(now);
            }
            (Event::Acknowledged, _) => return Err(illegal("acknowledged")),
            (Event::Succeeded, Acknowledged) => {
                next.state = Succeeded;
                next.finished_at = Some(now);
            }
            (Event::Succeeded, _) => return Err(illegal("succeeded")),
            (Event::Failed { reason }, Acknowledged) => {
                next.state = Failed;
                next.failure_reason = Some(reason.clone());
                next.finished_at = Some(now);
            }
            (Event::Failed { .. }, _) => return Err(illegal("failed")),
            (Event::Cancelled, AwaitingApproval | Queued | Delivered) => {
                next.state = Cancelled;
                next.finished_at = Some(now);
            }
            (Event::Cancelled, _) => return Err(illegal("cancelled")),
            (Event::Expired, Queued) if self.kind.is_destructive() => {
                return Err(TransitionError::WipesNeverExpire);
            }
            (Event::Expired, Queued) => {
                let deadline = self.deadline.ok_or(TransitionError::NoDeadline)?;
                if now < deadline {
                    return Err(TransitionError::NotYetDue);
                }
                next.state = Expired;
                next.finished_at = Some(now);
            }
            (Event::Expired, _) => return Err(illegal("expired")),
            (Event::Superseded, Queued | Delivered) => {
                next.state = Superseded;
                next.finished_at = Some(now);
            }
            (Event::Superseded, _) => return Err(illegal("superseded")),
        }
        Ok(next)
    }
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
