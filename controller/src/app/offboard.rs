//! Offboarding a user and lost mode: wipe, then revoke once the wipe has finished (the
//! revocation follows the wipe's end in `completion.rs`).

use std::collections::HashMap;

use tracing::info;

use super::audit::admin_actor;
use super::commands::{Issuer, check_command_text, issue_event, new_command};
use super::{App, AppError};
use crate::core::audit::AuditEvent;
use crate::core::refs::DeviceRef;
use crate::core::{
    Admin, Command, CommandId, CommandKind, CommandState, DeviceBrief, DeviceId, DeviceState,
    IdempotencyKey, Timestamp, UserEmail, WipeScope,
};
use crate::store::tx::Tx;
use crate::store::{Priority, StoreError};

/// The key of the offboarding wipe of one device: a rerun finds it.
fn offboard_key(user: &UserEmail, device: DeviceId) -> IdempotencyKey {
    IdempotencyKey::System(format!("offboard:{user}:{device}"))
}

/// The key of the request that follows `refused`, an offboarding wipe of the same device
/// refused before its approval: each new request names the one it follows, so a rerun finds
/// the latest and a second admin's refusal never blocks the device's offboarding for good.
fn offboard_retry_key(user: &UserEmail, device: DeviceId, refused: CommandId) -> IdempotencyKey {
    IdempotencyKey::System(format!("offboard:{user}:{device}:after:{refused}"))
}

/// The latest offboarding wipe of each device among `commands` (all of the user's): the
/// first key's command, then each request that followed a refused one.
fn latest_attempts(user: &UserEmail, commands: Vec<Command>) -> HashMap<DeviceId, Command> {
    let mut by_key: HashMap<String, Command> = commands
        .into_iter()
        .map(|c| (c.idempotency_key.clone(), c))
        .collect();
    let firsts: Vec<DeviceId> = by_key.values().map(|c| c.device_id).collect();
    let mut latest = HashMap::new();
    for device in firsts {
        let Some(mut command) = by_key.remove(&offboard_key(user, device).stored()) else {
            continue;
        };
        while let Some(next) = by_key.remove(&offboard_retry_key(user, device, command.id).stored())
        {
            command = next;
        }
        latest.insert(device, command);
    }
    latest
}

/// Each of `devices` with its latest offboarding wipe in `latest`.
fn report(
    user: &UserEmail,
    devices: Vec<DeviceBrief>,
    mut latest: HashMap<DeviceId, Command>,
) -> OffboardReport {
    let devices = devices
        .into_iter()
        .map(|device| OffboardDevice {
            command: latest.remove(&device.id),
            device,
        })
        .collect();
    OffboardReport {
        user: user.clone(),
        devices,
        tokens_invalidated: 0,
    }
}

/// The keys of lost mode's lock and wipe.
fn lost_key(device: &str, what: &str) -> IdempotencyKey {
    IdempotencyKey::System(format!("lost:{device}:{what}"))
}

/// Where one device of an offboarding stands.
#[derive(Clone, Debug)]
pub struct OffboardDevice {
    pub device: DeviceBrief,
    /// `None` for a device revoked before the offboarding: it can receive no wipe.
    pub command: Option<Command>,
}

impl OffboardDevice {
    pub fn finished(&self) -> bool {
        self.device.state != DeviceState::Active
            && self.command.as_ref().is_none_or(|c| c.state.is_terminal())
    }

    pub fn succeeded(&self) -> bool {
        self.command.as_ref().is_some_and(|c| {
            c.state == CommandState::Succeeded && c.receipt.as_ref().is_some_and(|r| r.verified)
        })
    }
}

#[derive(Clone, Debug)]
pub struct OffboardReport {
    pub user: UserEmail,
    pub devices: Vec<OffboardDevice>,
    pub tokens_invalidated: u64,
}

impl OffboardReport {
    pub fn complete(&self) -> bool {
        self.devices.iter().all(OffboardDevice::finished)
    }
}

/// What an offboarding's job committed.
#[derive(Debug)]
pub(super) struct Offboarding {
    pub tokens: u64,
    /// The user's devices, in brief, as the job read them.
    pub devices: Vec<DeviceBrief>,
    /// Each active device's wipe as committed: the one issued, or found unfinished by its key.
    pub latest: HashMap<DeviceId, Command>,
    /// The wipes this run issued, for their streams.
    pub issued: Vec<Command>,
}

/// An offboarding inside the caller's job: the user's unused tokens withdrawn (so no
/// enrollment can add a device the list misses), the offboarding's audit entry, and every
/// active device's messaging wipe (revoking the device once finished) with its own entry.
/// A rerun finds the commands its keys name and issues nothing twice. `None` (and nothing
/// written) when the user has neither devices nor tokens. The reason was checked
/// ([`check_command_text`]) before the job.
pub(super) async fn offboard_in(
    tx: &mut dyn Tx,
    issuer: &Issuer,
    user: &UserEmail,
    reason: &str,
    now: Timestamp,
    threshold: Option<usize>,
) -> Result<Option<Offboarding>, StoreError> {
    let tokens = tx.expire_unused_tokens(user, now).await?;
    let mut devices = tx.device_briefs(user).await?;
    if devices.is_empty() && tokens == 0 {
        return Ok(None);
    }
    tx.audit(
        AuditEvent {
            actor: issuer.actor.clone(),
            action: "user.offboard".into(),
            target: user.to_string(),
            details: serde_json::json!({
                "reason": reason,
                "devices": devices.len(),
                "tokens_invalidated": tokens,
            }),
        },
        now,
    );
    let needs_approval = threshold.is_some_and(|limit| devices.len() > limit);
    let mut planned = Vec::new();
    for device in devices.iter().filter(|d| d.state == DeviceState::Active) {
        // A rerun's insert finds the command its key already names.
        let key = offboard_key(user, device.id);
        planned.push(wipe(issuer, device.id, reason, &key, needs_approval, now)?);
    }
    // Many rows a statement; an entry for each command created, in the devices' order. A
    // device whose request a rerun found finished is still in service (any other end revokes
    // it in the same job), so that request was refused before its approval: ask again, under
    // the key that names it. Each round is one statement, and there is a round more only for
    // devices refused once more.
    let mut issued = Vec::new();
    let mut latest = HashMap::with_capacity(planned.len());
    while !planned.is_empty() {
        let mut again = Vec::new();
        let stored = tx.insert_commands(&planned).await?;
        for (asked, (stored, created)) in planned.iter().zip(stored) {
            if !created && (stored.device_id != asked.device_id || stored.kind != asked.kind) {
                // The command its key names is another device's or another action: only a
                // hand edit of the database makes it so. It is not this device's wipe, and
                // no wipe is issued in its name: the device shows as not wiped.
                tracing::warn!(command_id = %stored.id, device_id = %asked.device_id, "an offboarding's command was changed in the database to another device or action; ignored");
                continue;
            }
            if created {
                tx.audit(issue_event(&issuer.actor, &stored), now);
                latest.insert(stored.device_id, stored.clone());
                issued.push(stored);
            } else if !stored.state.is_terminal() {
                latest.insert(stored.device_id, stored);
            } else if !still_active(tx, &mut devices, stored.device_id).await? {
                // Its wipe ended and revoked it since this job read the devices (on another
                // replica): nothing to ask again.
                latest.insert(stored.device_id, stored);
            } else {
                let key = offboard_retry_key(user, stored.device_id, stored.id);
                again.push(wipe(
                    issuer,
                    stored.device_id,
                    reason,
                    &key,
                    needs_approval,
                    now,
                )?);
            }
        }
        planned = again;
    }
    Ok(Some(Offboarding {
        tokens,
        devices,
        latest,
        issued,
    }))
}

/// Whether `device` is still in service, read with its row locked (another replica may have
/// revoked it since the job read `devices`, whose brief is brought up to date).
async fn still_active(
    tx: &mut dyn Tx,
    devices: &mut [DeviceBrief],
    device: DeviceId,
) -> Result<bool, StoreError> {
    let state = tx
        .device_locked(device)
        .await?
        .map_or(DeviceState::Revoked, |d| d.state);
    if let Some(brief) = devices.iter_mut().find(|d| d.id == device) {
        brief.state = state;
    }
    Ok(state == DeviceState::Active)
}

/// An offboarding's messaging wipe of `device`, revoking it once finished.
fn wipe(
    issuer: &Issuer,
    device: DeviceId,
    reason: &str,
    key: &IdempotencyKey,
    needs_approval: bool,
    now: Timestamp,
) -> Result<Command, StoreError> {
    let kind = CommandKind::Wipe {
        scope: WipeScope::Messaging,
    };
    // Checked before the job; should it still fail, the whole job rolls back.
    new_command(issuer, device, kind, reason, key, needs_approval, true, now)
        .map_err(|e| StoreError::Corrupt(format!("offboarding refused part way: {e}")))
}

impl App {
    /// Starts (or repeats, issuing nothing twice) the offboarding of `user`.
    pub async fn offboard_user(
        &self,
        actor: &Admin,
        user: &UserEmail,
        reason: &str,
    ) -> Result<OffboardReport, AppError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AppError::InvalidArgument(
                "offboarding needs a reason (--reason TEXT)".into(),
            ));
        }
        // One job: the tokens withdrawn (so no enrollment can add a device the list misses),
        // the offboarding's audit entry, and every device's wipe with its own entry commit
        // together, and the whole batch commits once however many devices the user has.
        let now = self.now();
        let issuer = Issuer::admin(actor);
        // The wipe's own rules (reason length, no control characters), checked before the job
        // so that a refusal changes nothing: inside it, tokens and the entry are written first.
        check_command_text(
            &CommandKind::Wipe {
                scope: WipeScope::Messaging,
            },
            reason,
        )?;
        let threshold = self.config.approval_threshold;
        let (reason, job_user) = (reason.to_owned(), user.clone());
        let outcome = self
            .store
            .write(Priority::High, move |tx| {
                let (user, reason) = (job_user.clone(), reason.clone());
                let issuer = Issuer {
                    name: issuer.name.clone(),
                    actor: issuer.actor.clone(),
                };
                Box::pin(async move {
                    Ok::<_, StoreError>(
                        match offboard_in(tx, &issuer, &user, &reason, now, threshold).await? {
                            Some(done) => Ok(done),
                            None => Err(AppError::NotFound(format!(
                                "{user} has no devices and no enrollment tokens"
                            ))),
                        },
                    )
                })
            })
            .await?;
        let done = outcome?;
        self.offboarding_started(user, &actor.name.to_string(), &done)
            .await;
        // The report as the job committed it, without reading ten thousand devices and
        // commands again while their wipes go out.
        let mut report = self.report_of(user, done.devices, done.latest).await?;
        report.tokens_invalidated = done.tokens;
        Ok(report)
    }

    /// What follows the commit of an offboarding: its commands pushed to their devices'
    /// streams as they are (no stream reads the store for them; nothing cached changed: the
    /// devices stay active until their wipes end), the other replicas told.
    pub(super) async fn offboarding_started(&self, user: &UserEmail, by: &str, done: &Offboarding) {
        // The devices first: ten thousand log lines take a while to write.
        self.publish(&done.issued).await;
        for command in &done.issued {
            info!(command_id = %command.id, device_id = %command.device_id, kind = command.kind.name(), created_by = %by, "command queued");
        }
        info!(user = %user, devices = done.devices.len(), issued = done.issued.len(), tokens = done.tokens, "offboarding started");
    }

    pub async fn offboard_report(&self, user: &UserEmail) -> Result<OffboardReport, AppError> {
        let report = self.offboard_report_for(user).await?;
        if report.devices.is_empty() {
            return Err(AppError::NotFound(format!("{user} has no devices")));
        }
        Ok(report)
    }

    async fn offboard_report_for(&self, user: &UserEmail) -> Result<OffboardReport, AppError> {
        let devices = self.store.device_briefs(user).await?;
        let latest = self.offboarding_commands(user).await?;
        Ok(report(user, devices, latest))
    }

    /// The report of an offboarding just committed: its job's devices and wipes. A device
    /// already out of service got no wipe from this run: it shows its latest from an
    /// earlier run, read only when there is such a device.
    async fn report_of(
        &self,
        user: &UserEmail,
        devices: Vec<DeviceBrief>,
        mut latest: HashMap<DeviceId, Command>,
    ) -> Result<OffboardReport, AppError> {
        if devices.iter().any(|d| d.state != DeviceState::Active) {
            for (device, command) in self.offboarding_commands(user).await? {
                latest.entry(device).or_insert(command);
            }
        }
        Ok(report(user, devices, latest))
    }

    /// Each device's latest offboarding wipe, in one read however many devices.
    async fn offboarding_commands(
        &self,
        user: &UserEmail,
    ) -> Result<HashMap<DeviceId, Command>, AppError> {
        let prefix = IdempotencyKey::System(format!("offboard:{user}:")).stored();
        Ok(latest_attempts(
            user,
            self.store.commands_by_key_prefix(&prefix).await?,
        ))
    }

    /// Lost mode: lock and messaging wipe now; revocation follows the wipe.
    pub async fn mark_lost(
        &self,
        actor: &Admin,
        device: &DeviceRef,
        reason: &str,
    ) -> Result<(Command, Command), AppError> {
        let reason = super::lifecycle::require_reason("lost mode", reason)?;
        let reason = reason.as_str();
        let device = self.get_device(device).await?;
        if device.state != DeviceState::Active {
            return Err(AppError::FailedPrecondition(format!(
                "device {} is already {}: it can receive no lock or wipe",
                device.id,
                device.state.as_str()
            )));
        }
        let id = device.id.to_string();
        self.audit(
            &admin_actor(actor),
            "device.lost",
            &id,
            serde_json::json!({ "reason": reason }),
        )
        .await?;
        let lock = CommandKind::Lock {
            message: "This device was reported lost.".into(),
        };
        let (lock, _) = self
            .issue_command_with(
                &Issuer::admin(actor),
                device.id,
                lock,
                reason,
                &lost_key(&id, "lock"),
                false,
                false,
                None,
            )
            .await?;
        let wipe = CommandKind::Wipe {
            scope: WipeScope::Messaging,
        };
        let (wipe, _) = self
            .issue_command_with(
                &Issuer::admin(actor),
                device.id,
                wipe,
                reason,
                &lost_key(&id, "wipe"),
                false,
                true,
                None,
            )
            .await?;
        Ok((lock, wipe))
    }

    /// Whether the device is being offboarded or is in lost mode (renewal is refused): a
    /// command that revokes the device once finished, or a retirement, issued and not finished
    /// yet. One that finished revoked the device (refused anyway), unless it was refused
    /// before its approval: then nothing is under way. One that waits for a second admin is not
    /// under way either: refusing renewal meanwhile would let one admin's request, left
    /// unanswered, take the device out of service at its certificate's expiry.
    pub async fn is_being_retired(&self, device: DeviceId) -> Result<bool, AppError> {
        let commands = self.store.list_commands(Some(device), None).await?;
        Ok(commands.iter().any(retires_its_device))
    }
}

/// Whether `command` is under way and takes its device out of service once finished (see
/// [`App::is_being_retired`]).
pub(super) fn retires_its_device(command: &Command) -> bool {
    (command.revoke_after || command.kind == CommandKind::Retire)
        && !command.state.is_terminal()
        && command.state != CommandState::AwaitingApproval
}
