//! What a check-in's posture leads to: the inventory is kept, and failing required checks are
//! enforced as the policy grades them. Report and block are the agent's to act on (it holds
//! the policy); a wipe after the grace period is the controller's, issued as an ordinary
//! messaging-wipe command so it carries a receipt and goes through the audit log.

use tracing::warn;

use super::audit::CONTROLLER;
use super::commands::Issuer;
use super::{App, AppError};
use crate::core::posture::{self, Step, next_enforcement, wipes_due};
use crate::core::{CommandKind, Compliance, Device, Inventory, StoredPolicy, Timestamp, WipeScope};
use crate::store::PostureField;

impl App {
    /// Keeps the device's latest inventory (already validated at the edge).
    pub async fn record_inventory(
        &self,
        device: crate::core::DeviceId,
        inventory: &Inventory,
    ) -> Result<(), AppError> {
        inventory
            .validate()
            .map_err(|e| AppError::InvalidArgument(e.to_string()))?;
        self.set_posture(device, PostureField::Inventory, Some(inventory))
            .await
    }

    /// Updates the device's enforcement after a judged report: each failing check keeps the
    /// time it first failed, each change is audited, and a wipe whose grace period is over is
    /// issued (once per failure: its idempotency key names the failure's start).
    pub async fn enforce(
        &self,
        device: &Device,
        policy: &StoredPolicy,
        compliance: &Compliance,
    ) -> Result<(), AppError> {
        let now = self.now();
        let (mut next, steps) =
            next_enforcement(&device.enforcement, compliance, &policy.policy, now);
        let id = device.id.to_string();
        for step in &steps {
            let (what, check, action) = match step {
                Step::Failing { check, action } => ("failing", check, Some(*action)),
                Step::ActionChanged { check, action } => ("action_changed", check, Some(*action)),
                Step::Cleared { check } => ("cleared", check, None),
            };
            self.audit(
                CONTROLLER,
                "device.enforcement",
                &id,
                serde_json::json!({
                    "step": what,
                    "check": check,
                    "action": action.map(|a| a.as_str()),
                    "policy_revision": policy.revision,
                }),
            )
            .await?;
        }
        let due: Vec<_> = wipes_due(&next, compliance, policy.revision, now)
            .cloned()
            .collect();
        for failure in due {
            let reason = format!(
                "compliance: {} has failed since {} and the policy wipes after {}",
                failure.check,
                Timestamp::from_unix_ms(failure.failing_since).rfc3339(),
                humantime::format_duration(std::time::Duration::from_secs(
                    policy.policy.wipe_grace_seconds
                )),
            );
            let issued = self
                .issue_command_with(
                    &Issuer::controller(),
                    &id,
                    CommandKind::Wipe {
                        scope: WipeScope::Messaging,
                    },
                    &reason,
                    &posture::wipe_key(device.id, &failure),
                    false,
                    false,
                )
                .await;
            match issued {
                Ok((command, _)) => {
                    warn!(device_id = %id, check = %failure.check, command_id = %command.id, "compliance wipe issued");
                    posture::mark_wipe_issued(&mut next, &failure.check, command.id);
                }
                // Still reported as due: the next check-in tries again.
                Err(e) => {
                    warn!(device_id = %id, check = %failure.check, error = %e, "cannot issue the compliance wipe")
                }
            }
        }
        if next != device.enforcement {
            let value = (!next.is_empty()).then_some(&next);
            self.set_posture(device.id, PostureField::Enforcement, value)
                .await?;
        }
        Ok(())
    }
}
