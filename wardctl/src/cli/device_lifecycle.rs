//! `wardctl device disable | enable | return | retire`.

use ward_proto::v1;

use super::ConnectArgs;
use super::commands::{CommandView, print_command, wait_for};
use super::connect::admin_client;
use super::device_view::{DeviceView, print_device};
use super::devices::DeviceReason;
use super::error::CliError;
use super::output::{OutputFormat, print_json};

/// What the three calls return: the device, and the command that carries the change to it;
/// for people, `note` (given the command's id and state) first says what happens next.
fn print_result(
    response: v1::DeviceCommandResponse,
    output: OutputFormat,
    note: impl Fn(&str, &str) -> String,
) -> Result<(), CliError> {
    if output == OutputFormat::Table {
        let command = response.command.clone().unwrap_or_default();
        eprintln!(
            "{}",
            note(&command.id, ward_proto::names::command_state(command.state))
        );
    }
    let device = DeviceView::from(response.device.unwrap_or_default());
    let command = CommandView::from(response.command.unwrap_or_default());
    match output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "device": device,
            "command": command,
        })),
        OutputFormat::Table => {
            print_device(&device, output)?;
            println!();
            print_command(&command, output)
        }
    }
}

/// Refuses an empty `--reason` before anything is sent: every state-changing device command
/// records why.
pub(super) fn require_reason(reason: &str, what: &str) -> Result<(), CliError> {
    if reason.trim().is_empty() {
        return Err(CliError::usage(format!(
            "--reason must not be empty: say why the device is {what}"
        )));
    }
    Ok(())
}

/// A device taken out of service or back in without its data touched; what differs between
/// them is the call, whether a reason is required, and what happens next.
#[derive(Clone, Copy, Debug)]
pub(super) enum Change {
    /// The agent withholds the messaging key; the data stays.
    Disable,
    /// The agent hands the messaging key out again.
    Enable,
    /// `device return`: the controller decides what can be done (enable a disabled device)
    /// and refuses the rest with the way out.
    Return,
}

pub(super) async fn change(
    change: Change,
    DeviceReason {
        device,
        reason,
        connect,
    }: DeviceReason,
    output: OutputFormat,
) -> Result<(), CliError> {
    match change {
        Change::Disable => require_reason(&reason, "disabled")?,
        Change::Return => require_reason(&reason, "returned to service")?,
        Change::Enable => {}
    }
    let mut client = admin_client(&connect).await?;
    let device_id = device;
    let response = match change {
        Change::Disable => {
            let request = v1::DisableDeviceRequest { device_id, reason };
            client.disable_device(request).await?
        }
        Change::Enable => {
            let request = v1::EnableDeviceRequest { device_id, reason };
            client.enable_device(request).await?
        }
        Change::Return => {
            let request = v1::ReturnDeviceRequest { device_id, reason };
            client.return_device(request).await?
        }
    };
    print_result(response.into_inner(), output, |id, state| match change {
        Change::Disable => format!(
            "Device disabled: the agent withholds the messaging key once it runs command {id} \
             (now {state}); the data stays. `wardctl device enable` undoes it."
        ),
        Change::Enable => format!(
            "Device enabled: the agent hands out the messaging key again once it runs command \
             {id} (now {state})."
        ),
        Change::Return => format!(
            "Device back in service: it was disabled with its data kept; the agent hands out \
             the messaging key again once it runs command {id} (now {state})."
        ),
    })
}

pub(super) async fn retire(
    device: String,
    reason: String,
    wait: Option<std::time::Duration>,
    connect: ConnectArgs,
    output: OutputFormat,
) -> Result<(), CliError> {
    require_reason(&reason, "retired")?;
    if wait.is_some_and(|t| t.is_zero()) {
        return Err(CliError::usage("--timeout must be longer than 0s"));
    }
    let mut client = admin_client(&connect).await?;
    let response = client
        .retire_device(v1::RetireDeviceRequest {
            device_id: device,
            reason,
        })
        .await?
        .into_inner();
    let command = response.command.clone().unwrap_or_default();
    if let Some(timeout) = wait {
        if output == OutputFormat::Table {
            eprintln!(
                "Retiring: command {} wipes the messaging data, then the agent destroys its own \
                 state and the certificate is revoked. Waiting up to {}…",
                command.id,
                ward_core::duration::format(timeout)
            );
        }
        return wait_for(&mut client, &command.id, timeout, output).await;
    }
    print_result(response, output, |id, state| {
        format!(
            "Retiring: command {id} is {state}; the device shows as retired once its wipe \
             receipt is verified. Follow it with `wardctl command show {id}`."
        )
    })
}
