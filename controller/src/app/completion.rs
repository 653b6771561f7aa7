//! A command reached a final state: what follows. Offboarding and lost-mode wipes, and a full
//! wipe that succeeded, revoke their device; a retirement that wiped marks the device retired;
//! a disable that did not run clears the record that said the device was disabled. Whoever
//! finishes a command (the device's result, an admin's cancellation) does it through
//! [`App::finish_command`], so no follow-up is forgotten.

use super::audit::CONTROLLER;
use super::{App, AppError};
use crate::core::{
    Command, CommandId, CommandKind, CommandState, DeviceState, Disabled, Event, Receipt, WipeScope,
};
use crate::store::PostureField;

impl App {
    /// Moves command `id` to a final state with `event` through the state machine (see
    /// [`App::transition_with`]), then does what follows.
    pub(super) async fn finish_command(
        &self,
        id: CommandId,
        event: &Event,
        receipt: Option<Receipt>,
        actor: &str,
    ) -> Result<Command, AppError> {
        let finished = self.transition_with(id, event, receipt, actor).await?;
        self.completed(&finished).await?;
        Ok(finished)
    }

    /// What follows a command reaching a terminal state: offboarding and lost-mode wipes
    /// revoke their device once finished, whatever the outcome; a successful full wipe does
    /// too (the device has destroyed its own identity).
    async fn completed(&self, command: &Command) -> Result<(), AppError> {
        let erased = command.kind
            == (CommandKind::Wipe {
                scope: WipeScope::Full,
            })
            && command.state == CommandState::Succeeded;
        if erased || (command.revoke_after && command.state.is_terminal()) {
            self.revoke(
                command.device_id,
                CONTROLLER,
                &format!(
                    "after {} {} ({})",
                    command.kind.name(),
                    command.id,
                    command.state
                ),
                None,
            )
            .await?;
        }
        self.after_lifecycle(command).await?;
        Ok(())
    }

    /// After a lifecycle command finished. A retirement whose wipe succeeded with a verified
    /// receipt revokes the device and marks it retired; one that failed or was cancelled
    /// changes nothing (the device stays active, and `retire` can be run again). A disable
    /// that failed or was cancelled clears the record that said the device was disabled.
    async fn after_lifecycle(&self, command: &Command) -> Result<(), AppError> {
        match command.kind {
            CommandKind::Retire => self.after_retire(command).await,
            CommandKind::Disable
                if command.state.is_terminal() && command.state != CommandState::Succeeded =>
            {
                self.after_failed_disable(command).await
            }
            _ => Ok(()),
        }
    }

    async fn after_retire(&self, command: &Command) -> Result<(), AppError> {
        let wiped = command.state == CommandState::Succeeded
            && command.receipt.as_ref().is_some_and(|r| r.verified);
        if !wiped {
            return Ok(());
        }
        self.revoke(
            command.device_id,
            CONTROLLER,
            &format!("retired by command {}", command.id),
            None,
        )
        .await?;
        self.store
            .set_device_state(command.device_id, DeviceState::Retired)
            .await?;
        self.reads.device_changed(command.device_id);
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

    async fn after_failed_disable(&self, command: &Command) -> Result<(), AppError> {
        let Some(device) = self.store.get_device(command.device_id).await? else {
            return Ok(());
        };
        let Some(disabled) = device
            .disabled
            .filter(|d| d.command_id == command.id.to_string())
        else {
            return Ok(());
        };
        if self
            .swap_posture(device.id, PostureField::Disabled, Some(&disabled), None)
            .await?
        {
            self.audit(
                CONTROLLER,
                "device.disable_undone",
                &device.id.to_string(),
                serde_json::json!({
                    "command": command.id.to_string(),
                    "state": command.state.to_string(),
                    "why": command.failure_reason,
                }),
            )
            .await?;
        }
        Ok(())
    }
}
