//! A command reached a final state: what follows. Offboarding and lost-mode wipes, and a full
//! wipe that succeeded, revoke their device; a retirement that wiped marks the device retired;
//! a disable that did not run clears the record that said the device was disabled. Whoever
//! finishes a command (the device's result, an admin's cancellation) does it through
//! [`App::finish_command`], so no follow-up is forgotten.
//!
//! The command's end and everything that follows it are one job of the store's writer: they
//! commit together or not at all (a failed revocation leaves the command as it was, and the
//! caller's retry does it all again), in one trip through the writer. What acts on the commit
//! on this replica (the revocation list, cached reads, the device's stream, the other
//! replicas) runs once the job has committed.

use std::sync::Arc;

use super::audit::CONTROLLER;
use super::commands::{CAS_ATTEMPTS, transition_event};
use super::devices::{Revoked, revoke_in};
use super::lifecycle::encode_posture;
use super::{App, AppError};
use crate::core::audit::AuditEvent;
use crate::core::{
    Command, CommandKind, CommandState, DeviceId, DeviceState, Event, Receipt, Timestamp, WipeScope,
};
use crate::store::tx::Tx;
use crate::store::{PostureField, Priority};

/// What a finishing job did.
#[derive(Debug)]
enum Finish {
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

/// What the job changed that this replica acts on once it has committed.
#[derive(Debug, Default)]
struct AfterCommit {
    revoked: Vec<Revoked>,
    /// Devices whose record changed otherwise (retired).
    changed: Vec<DeviceId>,
}

impl App {
    /// Moves command `id` to a final state with `event` through the state machine, with what
    /// follows, in one job of the store's writer. The job reads the command inside its
    /// transaction and writes it with a compare-and-set on the version it read (state and
    /// delivery count): a change another replica commits between the read and the write —
    /// a redelivery too, which keeps the state — makes it miss, and the job runs again from a
    /// fresh read, so the fields it writes back unchanged are never stale ones. The read takes
    /// no lock: the command's row is locked by the write, as before, so the job's lock order
    /// is unchanged.
    ///
    /// `known` is the command as the caller just read it: the first attempt writes from it
    /// without reading again (the compare-and-set on its version misses if it changed since),
    /// which spares the writer a statement per result when thousands of wipes finish at once.
    pub(super) async fn finish_command(
        &self,
        known: &Command,
        event: &Event,
        receipt: Option<Receipt>,
        actor: &str,
    ) -> Result<Command, AppError> {
        let now = self.now();
        let id = known.id;
        // What `event` and `receipt` were judged on: a command read again must still be it.
        let judged = Arc::new(known.clone());
        let mut known = Some(known.clone());
        for _ in 0..CAS_ATTEMPTS {
            let (event, receipt, actor) = (event.clone(), receipt.clone(), actor.to_owned());
            let read = known.take();
            let from_known = read.is_some();
            let judged = Arc::clone(&judged);
            let finish = self
                .store
                .write(Priority::High, move |tx| {
                    let (event, receipt, actor) = (event.clone(), receipt.clone(), actor.clone());
                    let (read, judged) = (read.clone(), Arc::clone(&judged));
                    Box::pin(async move {
                        let current = match read {
                            Some(current) => current,
                            None => match tx.command(id).await? {
                                Some(current) => current,
                                None => {
                                    return Ok(Finish::Refused(AppError::NotFound(format!(
                                        "no command {id}"
                                    ))));
                                }
                            },
                        };
                        // Only a hand edit of the database moves a command to another device
                        // or changes its action; what was judged on the one is not written
                        // to the other.
                        if !current.is_same_instruction(&judged) {
                            return Ok(Finish::Refused(AppError::FailedPrecondition(format!(
                                "command {id} is no longer the command its result was judged \
                                 on (its device or action was changed in the database)"
                            ))));
                        }
                        finish_in(tx, &current, &event, receipt, &actor, now).await
                    })
                })
                .await?;
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
}

/// The job: the command's end (a compare-and-set from `current`'s version) with its audit
/// entry, then what follows it. An error after the first write fails the job, so the writer
/// keeps none of it; a refusal or a missed compare-and-set writes nothing and is an answer,
/// not an error (an error would make the writer run the rest of its batch again).
async fn finish_in(
    tx: &mut dyn Tx,
    current: &Command,
    event: &Event,
    receipt: Option<Receipt>,
    actor: &str,
    now: Timestamp,
) -> Result<Finish, AppError> {
    let mut next = match current.apply(event, now) {
        Ok(next) => next,
        Err(e) => return Ok(Finish::Refused(AppError::FailedPrecondition(e.to_string()))),
    };
    if receipt.is_some() {
        next.receipt = receipt;
    }
    if !tx.update_command(current.version(), &next).await? {
        return Ok(Finish::Changed);
    }
    if next.state != current.state {
        tx.audit(transition_event(actor, &next), now);
    }
    let mut after = AfterCommit::default();
    // A command cancelled while it waited for a second admin was refused, not run: the
    // revocation that would have followed it (an offboarding's) does not happen either.
    let refused = current.state == CommandState::AwaitingApproval;
    completed(tx, &next, refused, now, &mut after).await?;
    Ok(Finish::Done {
        command: Box::new(next),
        after,
    })
}

/// What follows a command reaching a terminal state: offboarding and lost-mode wipes
/// revoke their device once finished, whatever the outcome; a successful full wipe does
/// too (the device has destroyed its own identity).
async fn completed(
    tx: &mut dyn Tx,
    command: &Command,
    refused: bool,
    now: Timestamp,
    after: &mut AfterCommit,
) -> Result<(), AppError> {
    let erased = command.kind
        == (CommandKind::Wipe {
            scope: WipeScope::Full,
        })
        && command.state == CommandState::Succeeded;
    if erased || (command.revoke_after && command.state.is_terminal() && !refused) {
        let why = format!(
            "after {} {} ({})",
            command.kind.name(),
            command.id,
            command.state
        );
        revoke(tx, command.device_id, &why, now, after).await?;
    }
    match command.kind {
        CommandKind::Retire => after_retire(tx, command, now, after).await,
        CommandKind::Disable
            if command.state.is_terminal() && command.state != CommandState::Succeeded =>
        {
            after_failed_disable(tx, command, now).await
        }
        _ => Ok(()),
    }
}

async fn revoke(
    tx: &mut dyn Tx,
    device: DeviceId,
    why: &str,
    now: Timestamp,
    after: &mut AfterCommit,
) -> Result<(), AppError> {
    let revoked = revoke_in(tx, device, CONTROLLER, why, None, now)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no device {device}")))?;
    after.revoked.push(revoked);
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
    revoke(
        tx,
        device,
        &format!("retired by command {}", command.id),
        now,
        after,
    )
    .await?;
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
