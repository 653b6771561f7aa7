//! Command transitions from many callers, run together: every request waiting when the last
//! batch finished becomes one job of the store's writer, with one read of the commands it
//! does not already hold and one compare-and-set write for all of them (a few hundred rows a
//! statement), each with its own audit entry. Ten thousand devices acknowledging a wipe at
//! once cost tens of statements, not tens of thousands. The state machine stays in
//! `core::command`; the store only compares and sets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::AppError;
use super::commands::transition_event;
use super::lane::{Lane, OnFailure, Shape};
use crate::core::{Clock, Command, CommandId, CommandState, DeviceId, Event, Receipt, Timestamp};
use crate::store::{Priority, Store, StoreError};

/// The most requests one job takes.
const MAX_BATCH: usize = 5000;

/// One caller's transition.
#[derive(Clone, Debug)]
pub(super) struct Request {
    pub id: CommandId,
    /// The command the caller decided on, when it holds one: a first attempt starts from it
    /// (no read while it is still current); a command read again must still be this
    /// instruction (its device and action), which only a hand edit of the database changes,
    /// or the event is refused.
    pub known: Option<Command>,
    /// Whether to read the command in the job (a retry, or nothing known).
    pub read_again: bool,
    pub event: Event,
    pub receipt: Option<Receipt>,
    pub actor: String,
    /// When set, the command must be this device's: another device's is refused as unknown
    /// (a device learns nothing of others' commands).
    pub device: Option<DeviceId>,
}

#[derive(Debug)]
pub(super) enum Outcome {
    /// Written, with the state it left.
    Done {
        was: CommandState,
        next: Box<Command>,
    },
    /// Someone else changed the command first: read it again and retry.
    Changed,
    /// The command does not exist, or the event does not apply to its state.
    Refused(AppError),
}

/// The transitions arriving together, one writer job for each batch.
pub(super) type Transitions = Lane<Request, Outcome>;

pub(super) fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Transitions {
    // A batch's job fails only as the store does: every request in it would fail alone too.
    Lane::start(
        Shape::new("command transitions", MAX_BATCH, OnFailure::FailAll),
        move |batch| {
            let store = Arc::clone(&store);
            let now = clock.now();
            async move { Ok(run(store.as_ref(), batch, now).await?) }
        },
    )
}

/// One job for the whole batch.
async fn run(
    store: &dyn Store,
    requests: Arc<[Request]>,
    now: Timestamp,
) -> Result<Vec<Outcome>, StoreError> {
    store
        .write(Priority::High, move |tx| {
            let requests = Arc::clone(&requests);
            Box::pin(async move {
                let unknown: Vec<CommandId> = requests
                    .iter()
                    .filter(|r| r.read_again)
                    .map(|r| r.id)
                    .collect();
                let read: HashMap<CommandId, Command> = if unknown.is_empty() {
                    HashMap::new()
                } else {
                    tx.commands(&unknown)
                        .await?
                        .into_iter()
                        .map(|c| (c.id, c))
                        .collect()
                };
                let mut outcomes: Vec<Outcome> = Vec::with_capacity(requests.len());
                let mut changes = Vec::new();
                let mut planned: Vec<Option<(CommandState, Command)>> = Vec::new();
                // A command asked for twice in one batch: the first request goes ahead, the
                // later one reads again after it.
                let mut taken = HashSet::new();
                for request in requests.iter() {
                    let current = if request.read_again {
                        read.get(&request.id)
                    } else {
                        request.known.as_ref()
                    };
                    let current = match (current, request.device) {
                        (Some(current), Some(device)) if current.device_id != device => None,
                        (current, _) => current,
                    };
                    let Some(current) = current else {
                        let whose = if request.device.is_some() {
                            " for this device"
                        } else {
                            ""
                        };
                        outcomes.push(Outcome::Refused(AppError::NotFound(format!(
                            "no command {}{whose}",
                            request.id
                        ))));
                        planned.push(None);
                        continue;
                    };
                    if request
                        .known
                        .as_ref()
                        .is_some_and(|asked| !current.is_same_instruction(asked))
                    {
                        tracing::warn!(command_id = %request.id, "a command's device or action was changed in the database since it was read; refused");
                        outcomes.push(Outcome::Refused(AppError::FailedPrecondition(format!(
                            "command {} was changed in the database since it was read: it is \
                             no longer the command this call is about",
                            request.id
                        ))));
                        planned.push(None);
                        continue;
                    }
                    if !taken.insert(request.id) {
                        outcomes.push(Outcome::Changed);
                        planned.push(None);
                        continue;
                    }
                    match current.apply(&request.event, now) {
                        Ok(mut next) => {
                            if request.receipt.is_some() {
                                next.receipt = request.receipt.clone();
                            }
                            changes.push((current.version(), next.clone()));
                            planned.push(Some((current.state, next)));
                            outcomes.push(Outcome::Changed);
                        }
                        Err(e) => {
                            outcomes.push(Outcome::Refused(AppError::FailedPrecondition(
                                e.to_string(),
                            )));
                            planned.push(None);
                        }
                    }
                }
                let written: HashSet<CommandId> = if changes.is_empty() {
                    HashSet::new()
                } else {
                    tx.update_commands(&changes).await?.into_iter().collect()
                };
                for ((request, plan), outcome) in
                    requests.iter().zip(planned).zip(outcomes.iter_mut())
                {
                    let Some((was, next)) = plan else { continue };
                    if written.contains(&next.id) {
                        if next.state != was {
                            tx.audit(transition_event(&request.actor, &next), now);
                        }
                        *outcome = Outcome::Done {
                            was,
                            next: Box::new(next),
                        };
                    }
                }
                Ok(outcomes)
            })
        })
        .await
}
