//! Wire conversions for device posture: inventory, enforcement, remote disable, and the
//! policy's posture rules.

use std::collections::BTreeMap;

use tonic::Status;
use ward_proto::v1;

use ward_core::policy::PolicyError;
use ward_core::{Check, Device, Disabled, Enforcement, EnforcementAction, Inventory, Named};

pub(crate) fn inventory_from_wire(i: v1::Inventory) -> Result<Inventory, Status> {
    let inventory = Inventory::from(i);
    inventory
        .validate()
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(inventory)
}

pub(crate) fn inventory_to_wire(i: &Inventory) -> v1::Inventory {
    v1::Inventory::from(i.clone())
}

pub(crate) fn action_from_wire(a: i32) -> Result<EnforcementAction, Status> {
    ward_proto::vocab::enforcement_action(a).ok_or_else(|| {
        Status::invalid_argument(format!(
            "enforcement action {a} is missing or unknown: use {}",
            EnforcementAction::choices()
        ))
    })
}

/// An admin's check actions: a check name this controller does not know is refused (it
/// could never be required, so its action would silently do nothing).
pub(crate) fn check_actions_from_wire(
    actions: &[v1::CheckAction],
) -> Result<BTreeMap<Check, EnforcementAction>, Status> {
    actions
        .iter()
        .map(|a| {
            let check = Check::named(&a.check).ok_or_else(|| {
                let refused = PolicyError {
                    field: "check_actions",
                    value: a.check.chars().take(64).collect(),
                    allowed: format!("a check name: {}", Check::NAMES.join(", ")),
                };
                Status::invalid_argument(refused.to_string())
            })?;
            Ok((check, action_from_wire(a.action)?))
        })
        .collect()
}

fn disabled_to_wire(d: &Disabled) -> v1::Disabled {
    v1::Disabled {
        reason: d.reason.clone(),
        at_unix_ms: d.at,
        by: d.by.clone(),
        command_id: d.command_id.clone(),
    }
}

fn enforcement_to_wire(e: &Enforcement) -> v1::Enforcement {
    v1::Enforcement {
        check: e.check.clone(),
        action: v1::EnforcementAction::from(e.action) as i32,
        failing_since_unix_ms: e.failing_since,
        action_since_unix_ms: e.action_since.unwrap_or(e.failing_since),
        wipe_due_unix_ms: e.wipe_due.unwrap_or(0),
        wipe_command_id: e.wipe_command.clone().unwrap_or_default(),
    }
}

/// The posture fields of a device as admins see it.
pub(crate) fn posture_to_wire(d: &Device, out: &mut v1::Device) {
    out.inventory = d.inventory.as_ref().map(inventory_to_wire);
    out.disabled = d.disabled.as_ref().map(disabled_to_wire);
    out.enforcement = d.enforcement.iter().map(enforcement_to_wire).collect();
}
