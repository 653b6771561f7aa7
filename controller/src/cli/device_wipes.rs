//! Whether a device's messaging data was wiped, as the controller's records show: a wipe or
//! retirement that succeeded, or the agent's offline timer. Read before an action that would
//! leave the data out of reach (revocation).

use tonic::transport::Channel;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::{self, ListCommandsRequest};

use super::commands::CommandView;
use super::error::CliError;

/// True when a wipe or retirement of `device` succeeded, or its offline timer wiped it.
pub async fn messaging_wiped(
    client: &mut AdminServiceClient<Channel>,
    device: &v1::Device,
) -> Result<bool, CliError> {
    if device.offline_wipe_at_unix_ms != 0 {
        return Ok(true);
    }
    let succeeded = client
        .list_commands(ListCommandsRequest {
            device_id: device.id.clone(),
            state: v1::CommandState::Succeeded as i32,
            limit: 0,
        })
        .await?
        .into_inner();
    Ok(succeeded
        .commands
        .into_iter()
        .map(CommandView::from)
        .any(|c| c.kind == "wipe" || c.kind == "retire"))
}

/// What `device revoke` says when the data it leaves behind was never wiped: a revoked device
/// can receive no wipe, so the order matters.
pub fn unwiped_warning(device: &str) -> String {
    format!(
        "warning: device {device}'s messaging data was never wiped, and a revoked device can \
         receive no wipe (it is refused at every handshake). If the device may hold patient \
         data, wipe first, then revoke: `wardctl device lost {device} --reason TEXT` does both \
         in that order (lock, messaging wipe, revocation once the wipe has finished). For this \
         device, the data can only be wiped by its offline timer or after enrolling it again."
    )
}
