//! Remote disable and enable (the key withheld, the data kept) and retirement (a device being
//! discarded or reused: messaging wipe with a receipt, agent state destroyed, revoked, kept in
//! the inventory as retired).

use tracing::info;

use super::audit::{CONTROLLER, admin_actor};
use super::commands::{Issuer, sanitize};
use super::{App, AppError};
use crate::core::{Admin, Command, CommandKind, CommandState, Device, DeviceState, Disabled};
use crate::store::PostureField;

/// The idempotency-key prefix of retirement: running it again finds its command.
const RETIRE: &str = "retire:";

fn require_reason(what: &str, reason: &str) -> Result<String, AppError> {
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
        device: &str,
        reason: &str,
    ) -> Result<(Device, Command), AppError> {
        let reason = require_reason("disabling a device", reason)?;
        let record = self.get_device(device).await?;
        require_active(&record, "disabled")?;
        if let Some(disabled) = &record.disabled {
            let command = self.get_command(&disabled.command_id).await?;
            return Ok((record, command));
        }
        let id = record.id.to_string();
        // One disable per episode: the key names the enable that ended the previous one.
        let after = self.latest_enable(&record).await?;
        let key = format!("disable:{id}:after:{}", after.as_deref().unwrap_or("none"));
        // The command first: a record saying "disabled" without a command that disables
        // would claim something the device was never told.
        let (command, created) = self
            .issue_command_with(
                &Issuer::admin(actor),
                &id,
                CommandKind::Disable,
                &reason,
                &key,
                false,
                false,
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
        if self.latest_enable(&record).await? == after {
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
        Ok((self.get_device(&id).await?, command))
    }

    /// The newest enable command of the device, if any.
    async fn latest_enable(&self, device: &Device) -> Result<Option<String>, AppError> {
        Ok(self
            .store
            .list_commands(Some(device.id), None)
            .await?
            .into_iter()
            .find(|c| c.kind == CommandKind::Enable)
            .map(|c| c.id.to_string()))
    }

    /// Enables a disabled device: an enable command lets the agent hand out the key again.
    pub async fn enable_device(
        &self,
        actor: &Admin,
        device: &str,
        reason: &str,
    ) -> Result<(Device, Command), AppError> {
        let record = self.get_device(device).await?;
        require_active(&record, "enabled")?;
        let Some(disabled) = &record.disabled else {
            return Err(AppError::FailedPrecondition(format!(
                "device {} is not disabled; `wardctl device show {}` tells its state",
                record.id, record.id
            )));
        };
        let id = record.id.to_string();
        // One enable per disable: a retried call finds the same command.
        let key = format!("enable:{id}:{}", disabled.command_id);
        let (command, created) = self
            .issue_command_with(
                &Issuer::admin(actor),
                &id,
                CommandKind::Enable,
                reason.trim(),
                &key,
                false,
                false,
            )
            .await?;
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
        Ok((self.get_device(&id).await?, command))
    }

    /// Retires a device: a retire command (messaging wipe with a signed receipt, then the
    /// agent destroys its key and state); once it is finished the device is revoked, and
    /// marked retired if the receipt verified. Running it again returns the same command.
    pub async fn retire_device(
        &self,
        actor: &Admin,
        device: &str,
        reason: &str,
    ) -> Result<(Device, Command), AppError> {
        let reason = require_reason("retiring a device", reason)?;
        let record = self.get_device(device).await?;
        let id = record.id.to_string();
        let key = format!("{RETIRE}{id}");
        if let Some(existing) = self.store.command_by_key(&key).await? {
            return Ok((record, existing));
        }
        require_active(&record, "retired (it can receive no wipe)")?;
        let (command, created) = self
            .issue_command_with(
                &Issuer::admin(actor),
                &id,
                CommandKind::Retire,
                &reason,
                &key,
                false,
                true,
            )
            .await?;
        if created {
            self.audit(
                &admin_actor(actor),
                "device.retire",
                &id,
                serde_json::json!({ "reason": command.reason, "command": command.id.to_string() }),
            )
            .await?;
            info!(device_id = %id, command_id = %command.id, "device retirement started");
        }
        Ok((self.get_device(&id).await?, command))
    }

    /// After a retire command finished (and the device was revoked): retired for the record
    /// if the wipe succeeded with a verified receipt; otherwise the device stays revoked and
    /// the command shows why.
    pub(super) async fn after_retire(&self, command: &Command) -> Result<(), AppError> {
        let wiped = command.state == CommandState::Succeeded
            && command.receipt.as_ref().is_some_and(|r| r.verified);
        if command.kind != CommandKind::Retire || !wiped {
            return Ok(());
        }
        self.store
            .set_device_state(command.device_id, DeviceState::Retired)
            .await?;
        self.set_posture::<Disabled>(command.device_id, PostureField::Disabled, None)
            .await?;
        self.audit(
            CONTROLLER,
            "device.retired",
            &command.device_id.to_string(),
            serde_json::json!({ "command": command.id.to_string() }),
        )
        .await?;
        Ok(())
    }

    /// Compare-and-set of one posture column as JSON; false when it no longer held `expected`.
    pub(super) async fn swap_posture<T: serde::Serialize>(
        &self,
        device: crate::core::DeviceId,
        field: PostureField,
        expected: Option<&T>,
        value: Option<&T>,
    ) -> Result<bool, AppError> {
        let encode = |v: Option<&T>| {
            v.map(serde_json::to_string)
                .transpose()
                .map_err(|e| AppError::Internal(format!("cannot encode the device's posture: {e}")))
        };
        let (expected, json) = (encode(expected)?, encode(value)?);
        Ok(self
            .store
            .swap_device_posture(device, field, expected.as_deref(), json.as_deref())
            .await?)
    }

    /// Writes one posture column as JSON.
    pub(super) async fn set_posture<T: serde::Serialize>(
        &self,
        device: crate::core::DeviceId,
        field: PostureField,
        value: Option<&T>,
    ) -> Result<(), AppError> {
        let json = value
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| AppError::Internal(format!("cannot encode the device's posture: {e}")))?;
        if !self
            .store
            .set_device_posture(device, field, json.as_deref())
            .await?
        {
            return Err(AppError::NotFound(format!("no device {device}")));
        }
        Ok(())
    }
}
