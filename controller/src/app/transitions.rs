//! Command transitions from many callers, run together: every request waiting when the last
//! batch finished becomes one job of the store's writer, with one read of the commands it
//! does not already hold and one compare-and-set write for all of them (a few hundred rows a
//! statement), each with its own audit entry. Ten thousand devices acknowledging a wipe at
//! once cost tens of statements, not tens of thousands. The state machine stays in
//! `core::command`; the store only compares and sets.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::AppError;
use super::commands::transition_event;
use crate::core::{Clock, Command, CommandId, CommandState, DeviceId, Event, Receipt};
use crate::store::{Priority, Store, StoreError};

/// The most requests one job takes.
const MAX_BATCH: usize = 5000;

/// One caller's transition.
#[derive(Clone, Debug)]
pub(super) struct Request {
    pub id: CommandId,
    /// The command as the caller holds it; it spares the read when it is still current.
    pub known: Option<Command>,
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

type Pending = (Request, oneshot::Sender<Result<Outcome, AppError>>);

#[derive(Debug, Clone)]
pub(super) struct Transitions {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Transitions {
    pub(super) fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let (queue, mut requests) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            while let Some(first) = requests.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match requests.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                tracing::debug!(requests = batch.len(), "command transitions");
                let (asked, answers): (Vec<Request>, Vec<_>) = batch.into_iter().unzip();
                let outcomes = run(store.as_ref(), asked, clock.as_ref()).await;
                match outcomes {
                    Ok(outcomes) => {
                        for (answer, outcome) in answers.into_iter().zip(outcomes) {
                            let _ = answer.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        for answer in answers {
                            let _ = answer.send(Err(AppError::from(e.clone())));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    pub(super) async fn run(&self, request: Request) -> Result<Outcome, AppError> {
        let (answer, outcome) = oneshot::channel();
        self.queue
            .send((request, answer))
            .map_err(|_| AppError::Internal("the command transitions task has stopped".into()))?;
        outcome.await.map_err(|_| {
            AppError::Internal("the command transitions task stopped before answering".into())
        })?
    }
}

/// One job for the whole batch.
async fn run(
    store: &dyn Store,
    requests: Vec<Request>,
    clock: &dyn Clock,
) -> Result<Vec<Outcome>, StoreError> {
    let now = clock.now();
    store
        .write(Priority::High, move |tx| {
            let requests = requests.clone();
            Box::pin(async move {
                let unknown: Vec<CommandId> = requests
                    .iter()
                    .filter(|r| r.known.is_none())
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
                for request in &requests {
                    let current = request.known.as_ref().or_else(|| read.get(&request.id));
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
