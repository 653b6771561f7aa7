//! A command reached a final state: what follows. Offboarding and lost-mode wipes, and a full
//! wipe that succeeded, revoke their device; a retirement that wiped marks the device retired;
//! a disable that did not run clears the record that said the device was disabled. Whoever
//! finishes a command (the device's result, an admin's cancellation) does it through
//! [`App::finish_command`], so no follow-up is forgotten.
//!
//! The command's end and everything that follows it are one job of the store's writer: they
//! commit together or not at all (a failed revocation leaves the command as it was, and the
//! caller's retry does it all again), in one trip through the writer. The ends arriving
//! together share that job ([`Lane`]): ten thousand offboarding wipes reporting at once are
//! written, revoked and audited a thousand at a time, in a few many-row statements each. What
//! acts on the commit on this replica (the revocation list, cached reads, the device's stream,
//! the other replicas) runs once the job has committed.

use std::collections::HashSet;
use std::sync::Arc;

use super::audit::CONTROLLER;
use super::commands::{CAS_ATTEMPTS, transition_event};
use super::devices::{Revoked, revoked_in};
use super::lane::{Failed, Lane, OnFailure, Shape};
use super::lifecycle::encode_posture;
use super::{App, AppError};
use crate::core::audit::AuditEvent;
use crate::core::{
    Clock, Command, CommandId, CommandKind, CommandState, DeviceId, DeviceState, Event, Receipt,
    Timestamp, WipeScope,
};
use crate::store::tx::Tx;
use crate::store::{PostureField, Priority, Store};

/// The most command ends one job takes.
const MAX_BATCH: usize = 1000;

/// One command's end, as asked.
#[derive(Clone, Debug)]
pub(super) struct Finishing {
    /// The command as the caller read it, or as this replica last wrote it: the
    /// compare-and-set starts from it, and `event` and `receipt` were judged on it.
    current: Command,
    event: Event,
    receipt: Option<Receipt>,
    actor: String,
}

/// What a finishing job did to one command.
#[derive(Debug)]
pub(super) enum Finish {
    /// Written with what follows it.
    Done {
        command: Box<Command>,
        after: AfterCommit,
    },
    /// Someone else changed the command first: read it again and retry.
    Changed,
    /// The command does not exist, or the event does not apply to its state (nothing
    /// written).
    Refused(AppError),
}

/// What a job changed that this replica acts on once it has committed.
#[derive(Debug, Default)]
pub(super) struct AfterCommit {
    revoked: Vec<Revoked>,
    /// Devices whose record changed otherwise (retired).
    changed: Vec<DeviceId>,
}

/// The ends of commands arriving together, one writer job for each batch. A batch whose job
/// fails runs again one end per job, so an end whose follow-up fails (a device gone from the
/// store) fails alone and its neighbours commit.
pub(super) type Finishes = Lane<Finishing, Finish>;

pub(super) fn start_finishes(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Finishes {
    Lane::start(
        Shape::new("command finishes", MAX_BATCH, OnFailure::SplitUntilAlone),
        move |batch: Arc<[Finishing]>| {
            let store = Arc::clone(&store);
            let now = clock.now();
            async move {
                let written = store
                    .write_apart(Priority::High, move |tx| {
                        let batch = Arc::clone(&batch);
                        Box::pin(async move { finish_all(tx, &batch, now).await })
                    })
                    .await;
                Failed::of_write(written)
            }
        },
    )
}

impl App {
    /// Moves command `known.id` to a final state with `event` through the state machine,
    /// with what follows, in one job of the store's writer, shared with the other ends
    /// arriving at the same time. The job writes it with a compare-and-set on the version
    /// `known` has (state and delivery count, and its device and action): a change another
    /// replica committed since — a redelivery too, which keeps the state — makes it miss,
    /// and a job of its own runs again from a fresh read, so the fields it writes back
    /// unchanged are never stale ones. That read takes no lock: the command's row is locked
    /// by the write, so the job's lock order is unchanged.
    ///
    /// `event` and `receipt` were judged on `known`: a fresh read that is no longer the same
    /// instruction (moved to another device, its action changed, which only a hand edit of
    /// the database does) is refused, never finished with them.
    pub(super) async fn finish_command(
        &self,
        known: &Command,
        event: &Event,
        receipt: Option<Receipt>,
        actor: &str,
    ) -> Result<Command, AppError> {
        let id = known.id;
        let asked = Finishing {
            current: known.clone(),
            event: event.clone(),
            receipt,
            actor: actor.to_owned(),
        };
        for attempt in 0..CAS_ATTEMPTS {
            let from_known = attempt == 0;
            let finish = if from_known {
                self.finishes.run(asked.clone()).await?
            } else {
                self.finish_read_again(id, &asked).await?
            };
            match finish {
                Finish::Done { command, after } => {
                    self.delivered.written(&command);
                    for revoked in &after.revoked {
                        self.device_revoked(revoked).await;
                    }
                    for device in after.changed {
                        self.reads.device_changed(device);
                    }
                    return Ok(*command);
                }
                Finish::Changed => {}
                // Refused as the caller saw it: the committed command decides.
                Finish::Refused(_) if from_known => {}
                Finish::Refused(e) => return Err(e),
            }
        }
        Err(AppError::Internal(format!(
            "command {id} kept changing under concurrent updates"
        )))
    }

    /// [`App::finish_command`]'s retry: a job of its own that reads the command first.
    async fn finish_read_again(
        &self,
        id: CommandId,
        asked: &Finishing,
    ) -> Result<Finish, AppError> {
        let now = self.now();
        let asked = Arc::new(asked.clone());
        self.store
            .write(Priority::High, move |tx| {
                let asked = Arc::clone(&asked);
                Box::pin(async move {
                    let Some(current) = tx.command(id).await? else {
                        return Ok(Finish::Refused(AppError::NotFound(format!(
                            "no command {id}"
                        ))));
                    };
                    // Only a hand edit of the database moves a command to another device or
                    // changes its action; what was judged on the one is not written to the
                    // other.
                    if !current.is_same_instruction(&asked.current) {
                        tracing::warn!(command_id = %id, "a command's device or action was changed in the database since its result was judged; refused");
                        return Ok(Finish::Refused(AppError::FailedPrecondition(format!(
                            "command {id} is no longer the command its result was judged on \
                             (its device or action was changed in the database)"
                        ))));
                    }
                    let again = Finishing {
                        current,
                        ..(*asked).clone()
                    };
                    let mut finish = finish_all(tx, std::slice::from_ref(&again), now).await?;
                    finish
                        .pop()
                        .ok_or_else(|| AppError::Internal("a command's end went unanswered".into()))
                })
            })
            .await
    }
}

/// The job: each command's end (a compare-and-set from its `current` version, many rows a
/// statement) with its audit entry, then what follows them. An error after the first write
/// fails the job, so the writer keeps none of it; a refusal or a missed compare-and-set
/// writes nothing for that command and is its answer, not an error (an error would make the
/// writer run the rest of its batch again). A command asked for twice in one batch: the first
/// goes ahead, the later one reads again after it.
async fn finish_all(
    tx: &mut dyn Tx,
    batch: &[Finishing],
    now: Timestamp,
) -> Result<Vec<Finish>, AppError> {
    let mut finishes = Vec::with_capacity(batch.len());
    let mut changes = Vec::with_capacity(batch.len());
    let mut planned: Vec<(usize, Command)> = Vec::with_capacity(batch.len());
    let mut taken: HashSet<CommandId> = HashSet::with_capacity(batch.len());
    for (i, asked) in batch.iter().enumerate() {
        let current = &asked.current;
        if !taken.insert(current.id) {
            finishes.push(Finish::Changed);
            continue;
        }
        match current.apply(&asked.event, now) {
            Ok(mut next) => {
                if asked.receipt.is_some() {
                    next.receipt = asked.receipt.clone();
                }
                changes.push((current.version(), next.clone()));
                planned.push((i, next));
                finishes.push(Finish::Changed);
            }
            Err(e) => finishes.push(Finish::Refused(AppError::FailedPrecondition(e.to_string()))),
        }
    }
    if changes.is_empty() {
        return Ok(finishes);
    }
    let written: HashSet<CommandId> = tx.update_commands(&changes).await?.into_iter().collect();
    let mut done = Vec::with_capacity(written.len());
    for (i, next) in planned {
        if !written.contains(&next.id) {
            continue;
        }
        let asked = &batch[i];
        if next.state != asked.current.state {
            tx.audit(transition_event(&asked.actor, &next), now);
        }
        // A command cancelled while it waited for a second admin was refused, not run: the
        // revocation that would have followed it (an offboarding's) does not happen either.
        let refused = asked.current.state == CommandState::AwaitingApproval;
        done.push((i, next, refused));
    }
    let afters = completed(tx, &done, now).await?;
    for ((i, next, _), after) in done.into_iter().zip(afters) {
        finishes[i] = Finish::Done {
            command: Box::new(next),
            after,
        };
    }
    Ok(finishes)
}

/// What follows commands reaching a terminal state: offboarding and lost-mode wipes
/// revoke their device once finished, whatever the outcome; a successful full wipe does
/// too (the device has destroyed its own identity). Each of `done` is the batch's index, the
/// command as written, and whether it was refused before it ran; the answer is what each one
/// changed, in the same order, for its own caller to act on. The batch's revocations are
/// written together, then the retirements' and disables' follow-ups: for any one command
/// the audit entries still come in the order end, revocation, follow-up.
async fn completed(
    tx: &mut dyn Tx,
    done: &[(usize, Command, bool)],
    now: Timestamp,
) -> Result<Vec<AfterCommit>, AppError> {
    let mut afters: Vec<AfterCommit> = done.iter().map(|_| AfterCommit::default()).collect();
    let revocations: Vec<(usize, DeviceId, String)> = done
        .iter()
        .enumerate()
        .filter(|(_, (_, command, refused))| revokes_its_device(command, *refused))
        .map(|(k, (_, command, _))| {
            let why = format!(
                "after {} {} ({})",
                command.kind.name(),
                command.id,
                command.state
            );
            (k, command.device_id, why)
        })
        .collect();
    revoke(tx, &revocations, now, &mut afters).await?;
    for ((_, command, _), after) in done.iter().zip(afters.iter_mut()) {
        match command.kind {
            CommandKind::Retire => after_retire(tx, command, now, after).await?,
            CommandKind::Disable
                if command.state.is_terminal() && command.state != CommandState::Succeeded =>
            {
                after_failed_disable(tx, command, now).await?;
            }
            _ => {}
        }
    }
    Ok(afters)
}

/// Whether `command`'s end revokes its device.
fn revokes_its_device(command: &Command, refused: bool) -> bool {
    let erased = command.kind
        == (CommandKind::Wipe {
            scope: WipeScope::Full,
        })
        && command.state == CommandState::Succeeded;
    erased || (command.revoke_after && command.state.is_terminal() && !refused)
}

/// Revokes each device, with why, in a few statements, each revocation for the command at
/// its index in `afters`; a device named twice is revoked by its first naming (the later
/// ones find no certificate left, as they would one by one).
async fn revoke(
    tx: &mut dyn Tx,
    revocations: &[(usize, DeviceId, String)],
    now: Timestamp,
    afters: &mut [AfterCommit],
) -> Result<(), AppError> {
    if revocations.is_empty() {
        return Ok(());
    }
    let devices: Vec<DeviceId> = revocations.iter().map(|(_, device, _)| *device).collect();
    let mut serials = tx.revoke_devices(&devices, now).await?;
    let found: HashSet<DeviceId> = serials.keys().copied().collect();
    for (k, device, why) in revocations {
        if !found.contains(device) {
            return Err(AppError::NotFound(format!("no device {device}")));
        }
        let revoked = serials.remove(device).unwrap_or_default();
        let revoked = revoked_in(tx, *device, revoked, CONTROLLER, why, None, now);
        afters
            .get_mut(*k)
            .ok_or_else(|| AppError::Internal("a revocation's command is not in its batch".into()))?
            .revoked
            .push(revoked);
    }
    Ok(())
}

/// After a retirement finished. One whose wipe succeeded with a verified receipt revokes
/// the device and marks it retired; one that failed or was cancelled changes nothing (the
/// device stays active, and `retire` can be run again).
async fn after_retire(
    tx: &mut dyn Tx,
    command: &Command,
    now: Timestamp,
    after: &mut AfterCommit,
) -> Result<(), AppError> {
    let wiped = command.state == CommandState::Succeeded
        && command.receipt.as_ref().is_some_and(|r| r.verified);
    if !wiped {
        return Ok(());
    }
    let device = command.device_id;
    let why = format!("retired by command {}", command.id);
    revoke(tx, &[(0, device, why)], now, std::slice::from_mut(after)).await?;
    tx.set_device_state(device, DeviceState::Retired).await?;
    after.changed.push(device);
    if !tx
        .set_device_posture(device, PostureField::Disabled, None)
        .await?
    {
        return Err(AppError::NotFound(format!("no device {device}")));
    }
    tx.audit(
        AuditEvent {
            actor: CONTROLLER.to_owned(),
            action: "device.retired".into(),
            target: device.to_string(),
            details: serde_json::json!({ "command": command.id.to_string() }),
        },
        now,
    );
    Ok(())
}

/// After a disable that failed or was cancelled: the record that said the device was
/// disabled by it is cleared.
async fn after_failed_disable(
    tx: &mut dyn Tx,
    command: &Command,
    now: Timestamp,
) -> Result<(), AppError> {
    let Some(device) = tx.device(command.device_id).await? else {
        return Ok(());
    };
    let Some(disabled) = device
        .disabled
        .filter(|d| d.command_id == command.id.to_string())
    else {
        return Ok(());
    };
    let expected = encode_posture(&disabled)?;
    if tx
        .swap_device_posture(device.id, PostureField::Disabled, Some(&expected), None)
        .await?
    {
        tx.audit(
            AuditEvent {
                actor: CONTROLLER.to_owned(),
                action: "device.disable_undone".into(),
                target: device.id.to_string(),
                details: serde_json::json!({
                    "command": command.id.to_string(),
                    "state": command.state.to_string(),
                    "why": command.failure_reason,
                }),
            },
            now,
        );
    }
    Ok(())
}
