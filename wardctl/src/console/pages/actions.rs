//! Actions on one device. Destructive ones need a reason and the host name typed to confirm;
//! the console offers only what the admin's role allows, and the controller checks every
//! call itself (a forged form gets the controller's refusal).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::{
    DisableDeviceRequest, EnableDeviceRequest, GetDeviceRequest, IssueCommandRequest, LockAction,
    MarkLostRequest, RetireDeviceRequest, RevokeDeviceRequest, UnlockAction, WipeAction, WipeScope,
};

use super::{Page, answer};
use crate::console::http::{CsrfForm, Shared};

/// An action the device page offers.
pub(crate) struct DeviceAction {
    pub key: &'static str,
    pub label: &'static str,
    /// The `WhoAmI` permission it needs.
    pub permission: &'static str,
    pub explain: &'static str,
    /// Asks for a reason.
    pub reason: bool,
    /// Destructive: asks for the host name typed to confirm.
    pub confirm: bool,
}

pub(crate) const ACTIONS: &[DeviceAction] = &[
    DeviceAction {
        key: "lock",
        label: "Lock",
        permission: "lock",
        explain: "Locks the screen now.",
        reason: false,
        confirm: false,
    },
    DeviceAction {
        key: "unlock",
        label: "Unlock",
        permission: "lock",
        explain: "Lifts a lock sent from Ward.",
        reason: false,
        confirm: false,
    },
    DeviceAction {
        key: "disable",
        label: "Disable",
        permission: "disable",
        explain: "Withholds the messaging data key; the data stays until Enable.",
        reason: true,
        confirm: false,
    },
    DeviceAction {
        key: "enable",
        label: "Enable",
        permission: "disable",
        explain: "Gives the messaging data key back after a Disable.",
        reason: false,
        confirm: false,
    },
    DeviceAction {
        key: "wipe_messaging",
        label: "Wipe messaging data",
        permission: "messaging_wipe",
        explain: "Destroys the messaging data key and files; the device signs a receipt.",
        reason: true,
        confirm: true,
    },
    DeviceAction {
        key: "wipe_full",
        label: "Wipe the whole device",
        permission: "full_wipe",
        explain: "Erases the device (where the platform allows it).",
        reason: true,
        confirm: true,
    },
    DeviceAction {
        key: "lost",
        label: "Lost: lock, wipe, revoke",
        permission: "revoke",
        explain: "Locks, wipes the messaging data, then revokes the device once the wipe is done.",
        reason: true,
        confirm: true,
    },
    DeviceAction {
        key: "retire",
        label: "Retire",
        permission: "retire",
        explain: "For a device being discarded or reused: messaging wipe with a receipt, agent state destroyed, revoked; kept on record.",
        reason: true,
        confirm: true,
    },
    DeviceAction {
        key: "revoke",
        label: "Revoke",
        permission: "revoke",
        explain: "Refuses the device's certificate from now on. Wipe first: a revoked device receives no wipe.",
        reason: true,
        confirm: true,
    },
];

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    action: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    message: String,
    /// The form's idempotency key.
    #[serde(default)]
    key: String,
}

/// An action the console would not send, with the field at fault.
#[derive(Clone, Debug)]
pub(crate) struct ActionError {
    pub action: String,
    pub field: &'static str,
    pub message: String,
}

pub(crate) async fn act(
    State(console): State<Shared>,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ActionForm>,
) -> Page {
    let Some(action) = ACTIONS.iter().find(|a| a.key == form.action) else {
        return Err(crate::console::ui::refusal(
            axum::http::StatusCode::BAD_REQUEST,
            "Unknown action",
            "Nothing was changed.",
        ));
    };
    let device = answer(
        &console,
        console
            .client()
            .get_device(GetDeviceRequest {
                device_id: id.clone(),
            })
            .await,
    )?;
    let hostname = device
        .facts
        .as_ref()
        .map(|f| f.hostname.clone())
        .unwrap_or_default();
    let name = if hostname.is_empty() {
        device.id.clone()
    } else {
        hostname
    };
    let reason = form.reason.trim().to_owned();
    let refuse = |field: &'static str, message: String| ActionError {
        action: action.key.to_owned(),
        field,
        message,
    };
    if action.reason && reason.is_empty() {
        let e = refuse(
            "reason",
            "Give a reason: it is kept with the command in the audit log.".into(),
        );
        return super::device::render(&console, &device.id, Some(e)).await;
    }
    if action.confirm && !form.confirm.trim().eq_ignore_ascii_case(&name) {
        let e = refuse(
            "confirm",
            format!("Type the host name {name} exactly to confirm; nothing was sent."),
        );
        return super::device::render(&console, &device.id, Some(e)).await;
    }
    let issue = |action: Action| IssueCommandRequest {
        device_id: device.id.clone(),
        action: Some(action),
        reason: reason.clone(),
        idempotency_key: format!("console:{}", form.key),
        ttl_seconds: 0,
    };
    let mut client = console.client();
    let command_id = match action.key {
        "lock" => {
            answer(
                &console,
                client
                    .issue_command(issue(Action::Lock(LockAction {
                        message: form.message.clone(),
                    })))
                    .await,
            )?
            .id
        }
        "unlock" => {
            answer(
                &console,
                client
                    .issue_command(issue(Action::Unlock(UnlockAction {})))
                    .await,
            )?
            .id
        }
        "wipe_messaging" => {
            answer(
                &console,
                client
                    .issue_command(issue(Action::Wipe(WipeAction {
                        scope: WipeScope::Messaging as i32,
                    })))
                    .await,
            )?
            .id
        }
        "wipe_full" => {
            answer(
                &console,
                client
                    .issue_command(issue(Action::Wipe(WipeAction {
                        scope: WipeScope::Full as i32,
                    })))
                    .await,
            )?
            .id
        }
        // Each answers with the device and the command that carries the change to it.
        "disable" | "enable" | "retire" => {
            let device_id = device.id.clone();
            let done = match action.key {
                "disable" => {
                    client
                        .disable_device(DisableDeviceRequest { device_id, reason })
                        .await
                }
                "enable" => {
                    client
                        .enable_device(EnableDeviceRequest { device_id, reason })
                        .await
                }
                _ => {
                    client
                        .retire_device(RetireDeviceRequest { device_id, reason })
                        .await
                }
            };
            answer(&console, done)?
                .command
                .map(|c| c.id)
                .unwrap_or_default()
        }
        "lost" => answer(
            &console,
            client
                .mark_lost(MarkLostRequest {
                    device_id: device.id.clone(),
                    reason,
                })
                .await,
        )?
        .wipe
        .map(|c| c.id)
        .unwrap_or_default(),
        _ => {
            answer(
                &console,
                client
                    .revoke_device(RevokeDeviceRequest {
                        device_id: device.id.clone(),
                        reason,
                    })
                    .await,
            )?;
            String::new()
        }
    };
    let to = if command_id.is_empty() {
        format!("/devices/{}", device.id)
    } else {
        format!("/commands/{command_id}")
    };
    Ok(Redirect::to(&to).into_response())
}
