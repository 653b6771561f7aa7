//! `command list --stale AGE` and `command cancel --device D --kind K`: finding and clearing
//! the commands that wait for a device, in one call.

use std::time::Duration;

use tonic::transport::Channel;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::{self, CancelCommandRequest, ListCommandsRequest};

use super::commands::CommandView;
use super::error::CliError;
use ward_core::duration::{DurationRange, days, seconds};

/// The kinds `command cancel --kind` takes.
pub(super) const KINDS: [&str; 6] = ["lock", "unlock", "wipe", "disable", "enable", "retire"];

/// `command list --stale AGE`.
pub(super) const STALE: DurationRange = DurationRange::new(seconds(1), days(3650), "7d");

/// Keeps the unfinished commands created more than `age` before now.
pub(super) fn stale(commands: Vec<v1::Command>, age: Duration) -> Vec<v1::Command> {
    let now = ward_core::Clock::now(&ward_core::SystemClock);
    let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now.unix_ms().saturating_sub(age_ms);
    commands
        .into_iter()
        .filter(|c| {
            !ward_proto::names::command_state_is_final(c.state) && c.created_at_unix_ms <= cutoff
        })
        .collect()
}

/// Cancels every command of `kind` for `device` that the device has not started; the
/// commands as they are after it. One the device started meanwhile is left as it is.
pub(super) async fn cancel_by_kind(
    client: &mut AdminServiceClient<Channel>,
    device: &str,
    kind: &str,
) -> Result<Vec<CommandView>, CliError> {
    let listed = client
        .list_commands(ListCommandsRequest {
            device_id: device.to_owned(),
            state: 0,
            limit: 10_000,
        })
        .await?
        .into_inner();
    let cancellable = |state: i32| {
        matches!(
            ward_proto::names::command_state(state),
            "awaiting_approval" | "queued" | "delivered"
        )
    };
    let mut cancelled = Vec::new();
    for command in listed
        .commands
        .into_iter()
        .filter(|c| c.kind == kind && cancellable(c.state))
    {
        match client
            .cancel_command(CancelCommandRequest {
                command_id: command.id.clone(),
            })
            .await
        {
            Ok(done) => cancelled.push(CommandView::from(done.into_inner())),
            // The device acknowledged it meanwhile: it runs, and is not reported as cancelled.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                eprintln!(
                    "note: command {} was not cancelled: {}",
                    command.id,
                    status.message()
                );
            }
            Err(status) => return Err(status.into()),
        }
    }
    Ok(cancelled)
}
