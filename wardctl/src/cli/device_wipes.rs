//! Whether a device's messaging data was wiped, as the controller reports it
//! (`Device.messaging_wipe`, from `core::service::messaging_wipe`: a wipe or retirement that
//! succeeded, or the offline timer's wipe with a verified receipt). Read before an action that
//! would leave the data out of reach (revocation), and shown by `device list` and `show`.

use serde::Serialize;
use ward_proto::v1;

use ward_core::Timestamp;

/// A device's newest proven messaging wipe, as scripts see it (`messaging_wipe` in
/// `device list|show --output json`; null: never wiped).
#[derive(Clone, Debug, Serialize)]
pub(super) struct MessagingWipeView {
    /// When the data was wiped (RFC 3339).
    pub at: String,
    /// "wipe", "retire" or "offline_timer".
    pub by: String,
    /// The wipe or retire command (null for the offline timer).
    pub command_id: Option<String>,
}

impl MessagingWipeView {
    pub(super) fn from_wire(wipe: Option<v1::MessagingWipe>) -> Option<Self> {
        wipe.map(|w| Self {
            at: Timestamp::from_unix_ms(w.at_unix_ms).rfc3339(),
            by: w.by,
            command_id: (!w.command_id.is_empty()).then_some(w.command_id),
        })
    }
}

/// True when the controller holds proof that `device`'s messaging data was wiped.
pub(super) fn messaging_wiped(device: &v1::Device) -> bool {
    device.messaging_wipe.is_some()
}

/// What `device revoke` says when the data it leaves behind was never wiped: a revoked device
/// can receive no wipe, so the order matters.
pub(super) fn unwiped_warning(device: &str) -> String {
    format!(
        "warning: device {device}'s messaging data was never wiped, and a revoked device can \
         receive no wipe (it is refused at every handshake). If the device may hold patient \
         data, wipe first, then revoke: `wardctl device lost {device} --reason TEXT` does both \
         in that order (lock, messaging wipe, revocation once the wipe has finished). For this \
         device, the data can only be wiped by its offline timer or after enrolling it again."
    )
}
