//! Wipes a device's offline timer made by itself, reported with their signed receipts: with a
//! check-in (mutual TLS), or without a certificate by a device that can no longer authenticate
//! (its certificate expired or was revoked while it was offline).

use tracing::warn;
use ward_certs::receipt::{SignedReceipt, WipeReceiptBody};

use super::commands::MAX_RECEIPT_BYTES;
use super::renewal::{RECEIPT_CLOCK_TOLERANCE_MS, signed_at, verify_with_history};
use super::{App, AppError, OFFLINE_TIMER, audit, sanitize};
use crate::core::{Device, DeviceId, DeviceKey, OfflineWipe, Timestamp};

/// How the receipt arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// With a check-in, from the authenticated device.
    CheckIn,
    /// Without a client certificate: only the receipt's signature speaks for the device.
    ReceiptOnly,
}

impl App {
    /// Records a wipe the device's offline timer made, with whether its receipt verified.
    pub async fn record_offline_wipe(
        &self,
        device: DeviceId,
        receipt: &SignedReceipt,
    ) -> Result<(), AppError> {
        let record = self.offline_wipe_device(device).await?;
        let keys = self.keys_of(&record).await?;
        let verified = verify(&record, &keys, receipt);
        self.store_offline_wipe(&record, receipt, verified, Channel::CheckIn)
            .await
    }

    /// The same for a device that cannot authenticate any more: accepted only if the receipt
    /// verifies against the key on record, so nobody else can make a device look wiped.
    /// Refused receipts change nothing and are not audited (anyone may send one); the refusal
    /// is logged.
    pub async fn record_offline_wipe_receipt_only(
        &self,
        device: DeviceId,
        receipt: &SignedReceipt,
    ) -> Result<(), AppError> {
        let record = self.offline_wipe_device(device).await?;
        let keys = self.keys_of(&record).await?;
        let body = match verify(&record, &keys, receipt) {
            Ok(body) => body,
            Err(why) => {
                let why = sanitize(&why);
                warn!(device_id = %device, reason = %why, "offline-wipe receipt without a certificate refused");
                return Err(AppError::PermissionDenied(format!(
                    "the receipt does not verify against the key on record for device {device} ({why}); nothing was recorded"
                )));
            }
        };
        // The same receipt again (its answer was lost): already on record.
        if record
            .offline_wipe
            .as_ref()
            .is_some_and(|w| w.verified && w.at == completed_at(&body, self.now()))
        {
            return Ok(());
        }
        self.store_offline_wipe(&record, receipt, Ok(body), Channel::ReceiptOnly)
            .await
    }

    async fn offline_wipe_device(&self, device: DeviceId) -> Result<Device, AppError> {
        self.store
            .get_device(device)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("device {device} is not enrolled")))
    }

    async fn store_offline_wipe(
        &self,
        record: &Device,
        receipt: &SignedReceipt,
        verified: Result<WipeReceiptBody, String>,
        channel: Channel,
    ) -> Result<(), AppError> {
        let device = record.id;
        let at = match &verified {
            Ok(body) => completed_at(body, self.now()),
            Err(_) => self.now(),
        };
        match &verified {
            Ok(_) => {
                warn!(device_id = %device, at = %at, ?channel, "device reports its offline timer wiped the messaging data")
            }
            Err(why) => {
                warn!(device_id = %device, reason = %sanitize(why), "offline-wipe receipt did not verify")
            }
        }
        // An oversized receipt is not kept.
        let empty = SignedReceipt {
            body: Vec::new(),
            signature: Vec::new(),
        };
        let receipt = if oversized(receipt) { &empty } else { receipt };
        let wipe = OfflineWipe {
            at,
            verified: verified.is_ok(),
        };
        self.store
            .record_offline_wipe(device, &wipe, receipt)
            .await?;
        let mut details =
            serde_json::json!({ "at": at.rfc3339(), "receipt_verified": wipe.verified });
        if channel == Channel::ReceiptOnly {
            details["without_certificate"] = true.into();
            details["device_state"] = record.state.as_str().into();
        }
        self.audit(
            &audit::device_actor(device),
            "device.offline_wipe",
            &device.to_string(),
            details,
        )
        .await?;
        Ok(())
    }
}

/// Whether the receipt is too large to keep.
fn oversized(receipt: &SignedReceipt) -> bool {
    receipt.body.len() + receipt.signature.len() > MAX_RECEIPT_BYTES
}

/// Against the key of its time: one the device held when the receipt says it was signed
/// (the device's clock, within [`RECEIPT_CLOCK_TOLERANCE_MS`]).
fn verify(
    record: &Device,
    keys: &[DeviceKey],
    receipt: &SignedReceipt,
) -> Result<WipeReceiptBody, String> {
    if oversized(receipt) {
        return Err(format!(
            "the receipt is larger than the {MAX_RECEIPT_BYTES} bytes a receipt may have"
        ));
    }
    verify_with_history(
        keys,
        receipt,
        OFFLINE_TIMER,
        &record.id.to_string(),
        |key, body| {
            key.replaced_at.is_none()
                || signed_at(body).is_some_and(|at| key.covers_time(at, RECEIPT_CLOCK_TOLERANCE_MS))
        },
    )
}

fn completed_at(body: &WipeReceiptBody, fallback: Timestamp) -> Timestamp {
    time::OffsetDateTime::parse(
        &body.completed_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(Timestamp::from_datetime)
    .unwrap_or(fallback)
}
