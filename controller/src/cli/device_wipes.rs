//! Whether a device's messaging data was wiped, as the controller's records show: a wipe or
//! retirement that succeeded, or the agent's offline timer. Read before an action that would
//! leave the data out of reach (revocation).

use tonic::transport::Channel;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::{self, ListCommandsRequest};

use super::commands::CommandView;
use super::error::CliError;

/// True when a wipe or retirement of `device` succeeded, or its offline timer wiped it (with
/// a receipt the controller verified: an unverified one is only the device's claim).
pub async fn messaging_wiped(
    client: &mut AdminServiceClient<Channel>,
    device: &v1::Device,
) -> Result<bool, CliError> {
    if device.offline_wipe_at_unix_ms != 0 && device.offline_wipe_receipt_verified {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A device whose offline wipe is on record, its receipt verified or not.
    fn offline_wiped(verified: bool) -> v1::Device {
        v1::Device {
            id: "7d1e7c8e-1b1a-4c55-9a55-0d1d6a1e2f3a".into(),
            offline_wipe_at_unix_ms: 1_764_583_200_000,
            offline_wipe_receipt_verified: verified,
            ..v1::Device::default()
        }
    }

    /// Attack by whoever can check in as the device: it sends an offline-wipe receipt that
    /// does not verify (the controller records the claim, unverified). `device revoke` must
    /// still warn that the data was never wiped: only a verified receipt counts.
    #[tokio::test]
    async fn an_offline_wipe_whose_receipt_did_not_verify_is_not_a_wipe() {
        // Nothing listens there: the commands cannot be read, so the answer cannot be "wiped".
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9")
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect_lazy();
        let mut client = AdminServiceClient::new(channel);
        let answer = messaging_wiped(&mut client, &offline_wiped(false)).await;
        assert!(
            !matches!(answer, Ok(true)),
            "an unverified offline wipe counted as a wipe: {answer:?}"
        );
        let answer = messaging_wiped(&mut client, &offline_wiped(true)).await;
        assert!(matches!(answer, Ok(true)), "{answer:?}");
    }
}
