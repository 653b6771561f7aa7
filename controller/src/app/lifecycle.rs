//! Remote disable and enable (the key withheld, the data kept) and retirement (a device being
//! discarded or reused: messaging wipe with a receipt, agent state destroyed, revoked, kept in
//! the inventory as retired).

use tracing::info;

use super::audit::admin_actor;
use super::commands::{Issuer, sanitize};
use super::{App, AppError};
use crate::core::refs::DeviceRef;
use crate::core::service::{MessagingWipe, ReturnPlan};
use crate::core::{
    Admin, Command, CommandId, CommandKind, CommandState, Device, DeviceState, Disabled, Event,
    IdempotencyKey,
};
use crate::store::PostureField;

/// The disable command a device's posture names (written by the controller from the command
/// itself, so a malformed one is the store's corruption, not the caller's mistake).
fn stored_command_id(disabled: &Disabled) -> Result<CommandId, AppError> {
    disabled.command_id.parse().map_err(|e| {
        AppError::Internal(format!("the device's disable record names no command: {e}"))
    })
}

/// The first agent version that runs disable, enable and retire commands.
const LIFECYCLE_AGENT: (u64, u64, u64) = (0, 2, 0);

/// Refuses a command the device's agent is too old to run: it would fail there, and a
/// record saying "disabled" or "retiring" would not be true.
fn require_agent_for(device: &Device, what: &str) -> Result<(), AppError> {
    let version = &device.facts.agent_version;
    match crate::core::policy::parse_version(version) {
        Some(v) if v >= LIFECYCLE_AGENT => Ok(()),
        _ => Err(AppError::FailedPrecondition(format!(
            "device {} runs ward-agent {}, which cannot be {what}: update the agent to 0.2.0 or \
             later, or use `wardctl device lost` / `device wipe`",
            device.id,
            if version.is_empty() {
                "of unknown version"
            } else {
                version
            }
        ))),
    }
}

/// The key of a device's disable for the episode after `after` (the command that ended the
/// previous one; `None` for its first): concurrent or retried calls find the same command.
fn disable_key(device: &str, after: Option<&str>) -> IdempotencyKey {
    IdempotencyKey::System(format!(
        "disable:{device}:after:{}",
        after.unwrap_or("none")
    ))
}

/// The key of the enable that answers disable command `disable`.
fn enable_key(device: &str, disable: &str) -> IdempotencyKey {
    IdempotencyKey::System(format!("enable:{device}:{disable}"))
}

/// The key of a device's retirement: the first, or the attempt after `after` ended unwiped.
fn retire_key(device: &str, after: Option<&str>) -> IdempotencyKey {
    match after {
        None => IdempotencyKey::System(format!("retire:{device}")),
        Some(after) => IdempotencyKey::System(format!("retire:{device}:after:{after}")),
    }
}

/// Refuses an empty reason: every lifecycle action (disable, retire, revoke, lost mode,
/// return) records why in its audit entry.
pub(super) fn require_reason(what: &str, reason: &str) -> Result<String, AppError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(AppError::InvalidArgument(format!(
            "{what} needs a reason (--reason TEXT); it is kept for the audit"
        )));
    }
    Ok(reason.to_owned())
}

fn require_active(device: &Device, what: &str) -> Result<(), AppError> {
    match device.state {
        DeviceState::Active => Ok(()),
        state => Err(AppError::FailedPrecondition(format!(
            "device {} is {}: it can no longer be {what}",
            device.id,
            state.as_str()
        ))),
    }
}

impl App {
    /// Disables a device: a disable command carries the reason to the agent, which withholds
    /// the messaging data key until an enable. Disabling a disabled device issues nothing;
    /// concurrent or retried calls find the same command.
    pub async fn disable_device(
        &self,
        actor: &Admin,
        device: &DeviceRef,
        reason: &str,
    ) -> Result<(Device, Command), AppError> {
        let reason = require_reason("disabling a device", reason)?;
        let record = self.get_device(device).await?;
        require_active(&record, "disabled")?;
        if let Some(disabled) = &record.disabled {
            let command = self.get_command(stored_command_id(disabled)?).await?;
            return Ok((record, command));
        }
        require_agent_for(&record, "disabled remotely")?;
        self.require_not_retiring(&record).await?;
        let id = record.id.to_string();
        // One disable per episode: the key names what ended the previous one (an enable, or
        // a disable that failed or was cancelled).
        let after = self.episode_end(&record).await?;
        let key = disable_key(&id, after.as_deref());
        // The command first: a record saying "disabled" without a command that disables
        // would claim something the device was never told.
        let (command, created) = self
            .issue_command_with(
                &Issuer::admin(actor),
                record.id,
                CommandKind::Disable,
                &reason,
                &key,
                false,
                false,
                None,
            )
            .await?;
        // Every caller writes the same record, taken from the command; none writes it once
        // an enable has ended this episode.
        let disabled = Disabled {
            reason: command.reason.clone(),
            at: command.created_at.unix_ms(),
            by: command.created_by.clone(),
            command_id: command.id.to_string(),
        };
        if self.episode_end(&record).await? == after {
            self.swap_posture(record.id, PostureField::Disabled, None, Some(&disabled))
                .await?;
        }
        if created {
            self.audit(
                &admin_actor(actor),
                "device.disable",
                &id,
                serde_json::json!({ "reason": disabled.reason, "command": disabled.command_id }),
            )
            .await?;
            info!(device_id = %id, command_id = %command.id, "device disabled");
        }
        Ok((self.device(record.id).await?, command))
    }

    /// The newest command that ended a disable episode: an enable, or a disable that failed,
    /// was cancelled or expired. The newest by time, then followed along the keys: each
    /// disable names the end it came after, each enable the disable it answers, so a command
    /// issued later on a replica whose clock is behind is still found to be the later one.
    async fn episode_end(&self, device: &Device) -> Result<Option<String>, AppError> {
        let commands = self.store.list_commands(Some(device.id), None).await?;
        let ends = |c: &Command| {
            c.kind == CommandKind::Enable
                || (c.kind == CommandKind::Disable
                    && c.state.is_terminal()
                    && c.state != CommandState::Succeeded)
        };
        let keyed = |key: IdempotencyKey| {
            let key = key.stored();
            commands.iter().find(|c| c.idempotency_key == key)
        };
        let id = device.id.to_string();
        let mut end = commands.iter().find(|c| ends(c)).map(|c| c.id.to_string());
        // Each step moves to a command issued after the last one: at most two a command.
        for _ in 0..=2 * commands.len() {
            // A disable answered by an enable: the enable ended its episode.
            if let Some(enable) = end.as_deref().and_then(|e| keyed(enable_key(&id, e))) {
                end = Some(enable.id.to_string());
                continue;
            }
            let Some(disable) = keyed(disable_key(&id, end.as_deref())) else {
                break;
            };
            let disable_id = disable.id.to_string();
            if ends(disable) || keyed(enable_key(&id, &disable_id)).is_some() {
                end = Some(disable_id);
            } else {
                // That disable's episode goes on.
                break;
            }
        }
        Ok(end)
    }

    /// Enables a disabled device: an enable command lets the agent hand out the key again.
    pub async fn enable_device(
        &self,
        actor: &Admin,
        device: &DeviceRef,
        reason: &str,
    ) -> Result<(Device, Command), AppError> {
        let record = self.get_device(device).await?;
        require_active(&record, "enabled")?;
        self.require_not_retiring(&record).await?;
        let Some(disabled) = &record.disabled else {
            return Err(AppError::FailedPrecondition(format!(
                "device {} is not disabled; `wardctl device show {}` tells its state",
                record.id, record.id
            )));
        };
        let id = record.id.to_string();
        // One enable per disable: a retried call finds the same command.
        let key = enable_key(&id, &disabled.command_id);
        let (command, created) = self
            .issue_command_with(
                &Issuer::admin(actor),
                record.id,
                CommandKind::Enable,
                reason.trim(),
                &key,
                false,
                false,
                None,
            )
            .await?;
        // A disable the device has not started yet is cancelled, so it can never run after
        // this enable (a redelivered disable is then refused at its acknowledgement).
        for pending in self.store.unfinished_commands(record.id).await? {
            if pending.kind == CommandKind::Disable
                && matches!(
                    pending.state,
                    CommandState::Queued | CommandState::Delivered
                )
            {
                match self
                    .transition(pending.id, &Event::Cancelled, &admin_actor(actor))
                    .await
                {
                    Ok(_) | Err(AppError::FailedPrecondition(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // Clears only the disable this enable answers, never a newer one.
        self.swap_posture::<Disabled>(record.id, PostureField::Disabled, Some(disabled), None)
            .await?;
        if created {
            self.audit(
                &admin_actor(actor),
                "device.enable",
                &id,
                serde_json::json!({
                    "reason": sanitize(reason.trim()),
                    "command": command.id.to_string(),
                    "disabled_by": disabled.by,
                    "disable_command": disabled.command_id,
                }),
            )
            .await?;
            info!(device_id = %id, command_id = %command.id, "device enabled");
        }
        Ok((self.device(record.id).await?, command))
    }

    /// Retires a device: a retire command (messaging wipe with a signed receipt, then the
    /// agent destroys its key and state). Only a wipe with a verified receipt revokes the
    /// device and marks it retired; a retirement that failed or was cancelled leaves it active,
    /// and running `retire` again starts a new one. Otherwise running it again returns the
    /// same command.
    pub async fn retire_device(
        &self,
        actor: &Admin,
        device: &DeviceRef,
        reason: &str,
    ) -> Result<(Device, Command), AppError> {
        let reason = require_reason("retiring a device", reason)?;
        let record = self.get_device(device).await?;
        let id = record.id.to_string();
        let previous = self.latest_retire(&record).await?;
        let key = match &previous {
            Some(p) if p.state != CommandState::Succeeded && p.state.is_terminal() => {
                retire_key(&id, Some(&p.id.to_string()))
            }
            Some(p) => return Ok((record, p.clone())),
            None => retire_key(&id, None),
        };
        require_active(&record, "retired (it can receive no wipe)")?;
        require_agent_for(&record, "retired")?;
        let (command, created) = self
            .issue_command_with(
                &Issuer::admin(actor),
                record.id,
                CommandKind::Retire,
                &reason,
                &key,
                false,
                false,
                None,
            )
            .await?;
        if created {
            self.audit(
                &admin_actor(actor),
                "device.retire",
                &id,
                serde_json::json!({
                    "reason": command.reason,
                    "command": command.id.to_string(),
                    "previous_attempt": previous.map(|p| p.id.to_string()),
                }),
            )
            .await?;
            info!(device_id = %id, command_id = %command.id, "device retirement started");
        }
        Ok((self.device(record.id).await?, command))
    }

    /// The newest proven wipe of each device's messaging data (`core::service`): one query
    /// for one device, one for many.
    pub async fn messaging_wipes(
        &self,
        devices: &[Device],
    ) -> Result<std::collections::HashMap<crate::core::DeviceId, MessagingWipe>, AppError> {
        let one = match devices {
            [d] => Some(d.id),
            _ => None,
        };
        // Grouped by device first: each device looks only at its own wipes, not the fleet's.
        let mut wipes: std::collections::HashMap<_, Vec<_>> = std::collections::HashMap::new();
        for wipe in self.store.succeeded_wipes(one).await? {
            wipes.entry(wipe.device_id).or_default().push(wipe);
        }
        Ok(devices
            .iter()
            .filter_map(|d| {
                let own = wipes.get(&d.id).map_or(&[][..], Vec::as_slice);
                crate::core::service::messaging_wipe(d, own).map(|w| (d.id, w))
            })
            .collect())
    }

    /// Puts a found device back into service where the controller can (a disabled device
    /// whose data was kept is enabled, audited as `device.enable` with the reason); anything
    /// else is refused with the way out (`core::service::return_to_service`) and changes
    /// nothing.
    pub async fn return_device(
        &self,
        actor: &Admin,
        device: &DeviceRef,
        reason: &str,
    ) -> Result<(Device, Command), AppError> {
        let reason = require_reason("returning a device to service", reason)?;
        let record = self.get_device(device).await?;
        let wipe = self
            .messaging_wipes(std::slice::from_ref(&record))
            .await?
            .remove(&record.id);
        let lost = self
            .store
            .unfinished_commands(record.id)
            .await?
            .iter()
            .any(|c| c.revoke_after);
        match crate::core::service::return_to_service(&record, wipe.as_ref(), lost)
            .map_err(AppError::FailedPrecondition)?
        {
            ReturnPlan::Enable => self.enable_device(actor, &record.id.into(), &reason).await,
        }
    }

    /// The device's newest retire command, if any: the newest by time, then followed along
    /// the keys (each new attempt names the one it follows), as for [`App::episode_end`].
    async fn latest_retire(&self, device: &Device) -> Result<Option<Command>, AppError> {
        let retirements: Vec<Command> = self
            .store
            .list_commands(Some(device.id), None)
            .await?
            .into_iter()
            .filter(|c| c.kind == CommandKind::Retire)
            .collect();
        let id = device.id.to_string();
        let mut latest = retirements.first();
        for _ in 0..retirements.len() {
            let Some(current) = latest else { break };
            let key = retire_key(&id, Some(&current.id.to_string())).stored();
            match retirements.iter().find(|c| c.idempotency_key == key) {
                Some(next) => latest = Some(next),
                None => break,
            }
        }
        Ok(latest.cloned())
    }

    /// Refuses to disable or enable a device whose retirement is under way.
    async fn require_not_retiring(&self, device: &Device) -> Result<(), AppError> {
        match self.latest_retire(device).await? {
            Some(r) if !r.state.is_terminal() => Err(AppError::FailedPrecondition(format!(
                "device {} is being retired (command {}, {}): it can no longer be disabled or enabled",
                device.id, r.id, r.state
            ))),
            _ => Ok(()),
        }
    }

    /// Compare-and-set of one posture column as JSON; false when it no longer held `expected`.
    pub(super) async fn swap_posture<T: serde::Serialize>(
        &self,
        device: crate::core::DeviceId,
        field: PostureField,
        expected: Option<&T>,
        value: Option<&T>,
    ) -> Result<bool, AppError> {
        let encode = |v: Option<&T>| v.map(encode_posture).transpose();
        let (expected, json) = (encode(expected)?, encode(value)?);
        Ok(self
            .store
            .swap_device_posture(device, field, expected.as_deref(), json.as_deref())
            .await?)
    }
}

/// A posture value as its column holds it (JSON).
pub(super) fn encode_posture<T: serde::Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value)
        .map_err(|e| AppError::Internal(format!("cannot encode the device's posture: {e}")))
}
