//! Wipes a device's offline timer made by itself, reported with their signed receipts: with a
//! check-in (mutual TLS), or without a certificate by a device that can no longer authenticate
//! (its certificate expired while it was offline). A device revoked before its receipt came
//! has its receipt recorded as a claim, not as a wipe: a revoked key is presumed stolen.

use tracing::warn;
use ward_certs::receipt::{SignedReceipt, WipeReceiptBody};

use super::commands::MAX_RECEIPT_BYTES;
use super::renewal::{RECEIPT_CLOCK_TOLERANCE_MS, signed_at, verify_with_history};
use super::{App, AppError, audit, sanitize};
use crate::core::audit::AuditEvent;
use crate::core::{Device, DeviceId, DeviceKey, DeviceState, OfflineWipe, Timestamp};
use crate::store::{Priority, StoreError};

/// The command id in receipts of wipes the agent's offline timer made.
pub const OFFLINE_TIMER: &str = "offline-timer";

/// How the receipt arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Channel {
    /// With a check-in, from the authenticated device.
    CheckIn,
    /// Without a client certificate: only the receipt's signature speaks for the device.
    ReceiptOnly,
}

impl App {
    /// Records a wipe the device's offline timer made, reported by a device that cannot
    /// authenticate any more: accepted only if the receipt verifies against the key on
    /// record, so nobody else can make a device look wiped. Refused receipts change nothing
    /// and are not audited (anyone may send one); the refusal is logged. (A receipt sent with
    /// a check-in is recorded by the check-in's own job.)
    pub async fn record_offline_wipe_receipt_only(
        &self,
        device: DeviceId,
        receipt: &SignedReceipt,
    ) -> Result<(), AppError> {
        let record = self.offline_wipe_device(device).await?;
        let keys = self.keys_of(&record).await?;
        let body = match verify(&record, &keys, receipt, Channel::ReceiptOnly) {
            Ok(body) => body,
            Err(why) => {
                let why = sanitize(&why);
                warn!(device_id = %device, reason = %why, "offline-wipe receipt without a certificate refused");
                return Err(AppError::PermissionDenied(format!(
                    "the receipt does not verify against the key on record for device {device} ({why}); nothing was recorded"
                )));
            }
        };
        // Revoked (or retired) before the receipt came: the key is presumed in other hands (a
        // thief with a copy of the state directory can sign anything), so what it signs now
        // is recorded as the device's claim, never as proof of a wipe.
        let (at, ahead) = (
            completed_at(&body, self.now()),
            dated_ahead(&body, self.now()),
        );
        if record.state != DeviceState::Active {
            // A wipe verified before the revocation stands; a claim is replaced only by a
            // later one (each audited): the same claim again, or an older one, adds nothing.
            if record
                .offline_wipe
                .as_ref()
                .is_some_and(|w| w.verified || w.at >= at || ahead)
            {
                return Ok(());
            }
            let why = format!(
                "device {device} was {} before this receipt arrived: its key is presumed in other hands, so the receipt is the device's claim, not proof of a wipe",
                record.state.as_str()
            );
            warn!(device_id = %device, "offline-wipe receipt from a revoked device recorded as a claim, not as a wipe");
            return self
                .store_offline_wipe(&record, receipt, Err(why), Channel::ReceiptOnly)
                .await;
        }
        // The same receipt again (its answer was lost), or an older one (a replay: anyone may
        // send one): the later wipe on record stands.
        if record
            .offline_wipe
            .as_ref()
            .is_some_and(|w| w.verified && (w.at >= at || ahead))
        {
            warn!(device_id = %device, receipt_at = %at, "an offline-wipe receipt no newer than the verified wipe on record was ignored (a repeat, or a replay)");
            return Ok(());
        }
        self.store_offline_wipe(&record, receipt, Ok(body), Channel::ReceiptOnly)
            .await
    }

    pub(super) async fn offline_wipe_device(&self, device: DeviceId) -> Result<Device, AppError> {
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
        let entry = offline_wipe_entry(record, receipt, verified, channel, self.now());
        // The record and its audit entry commit together.
        let now = self.now();
        let found = self
            .store
            .write(Priority::High, move |tx| {
                let entry = entry.clone();
                Box::pin(async move {
                    let found = tx
                        .record_offline_wipe(device, &entry.wipe, &entry.receipt)
                        .await?;
                    if found {
                        tx.audit(entry.event, now);
                    }
                    Ok::<_, StoreError>(found)
                })
            })
            .await?;
        if !found {
            return Err(AppError::NotFound(format!(
                "device {device} is not enrolled"
            )));
        }
        Ok(())
    }
}

/// What a reported offline wipe leaves on record: the wipe, the receipt kept, the audit entry.
#[derive(Clone, Debug)]
pub(super) struct OfflineWipeEntry {
    pub wipe: OfflineWipe,
    pub receipt: SignedReceipt,
    pub event: AuditEvent,
}

/// Checks an offline-wipe receipt sent with a check-in against the device's keys (logging
/// what it found) and makes its record.
pub(super) fn check_offline_wipe(
    record: &Device,
    keys: &[DeviceKey],
    receipt: &SignedReceipt,
    now: Timestamp,
) -> OfflineWipeEntry {
    let verified = verify(record, keys, receipt, Channel::CheckIn);
    offline_wipe_entry(record, receipt, verified, Channel::CheckIn, now)
}

fn offline_wipe_entry(
    record: &Device,
    receipt: &SignedReceipt,
    verified: Result<WipeReceiptBody, String>,
    channel: Channel,
    now: Timestamp,
) -> OfflineWipeEntry {
    let device = record.id;
    let at = match &verified {
        Ok(body) => completed_at(body, now),
        Err(_) => now,
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
    let receipt = if oversized(receipt) {
        SignedReceipt {
            body: Vec::new(),
            signature: Vec::new(),
        }
    } else {
        receipt.clone()
    };
    let wipe = OfflineWipe {
        at,
        verified: verified.is_ok(),
    };
    let mut details = serde_json::json!({ "at": at.rfc3339(), "receipt_verified": wipe.verified });
    if let Err(why) = &verified {
        details["why"] = sanitize(why).into();
    }
    if channel == Channel::ReceiptOnly {
        details["without_certificate"] = true.into();
        details["device_state"] = record.state.as_str().into();
    }
    OfflineWipeEntry {
        wipe,
        receipt,
        event: AuditEvent {
            actor: audit::device_actor(device),
            action: "device.offline_wipe".into(),
            target: device.to_string(),
            details,
        },
    }
}

/// Whether the receipt is too large to keep.
fn oversized(receipt: &SignedReceipt) -> bool {
    receipt.body.len() + receipt.signature.len() > MAX_RECEIPT_BYTES
}

/// Against a key the device really used, and only one it may still speak for:
/// - without a certificate (anyone may send one), only the device's current key, in use: a
///   key replaced by a renewal may be in a thief's hands, and the receipt's time is the
///   device's own claim;
/// - with a check-in (the device authenticated with its current certificate), also a key it
///   used before, for a receipt dated before that key was replaced (the device's clock,
///   within [`RECEIPT_CLOCK_TOLERANCE_MS`]).
///
/// A key that was never in use (a renewal nobody completed) never verifies a receipt.
fn verify(
    record: &Device,
    keys: &[DeviceKey],
    receipt: &SignedReceipt,
    channel: Channel,
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
            key.in_use_at.is_some()
                && match channel {
                    Channel::ReceiptOnly => key.replaced_at.is_none(),
                    Channel::CheckIn => {
                        key.replaced_at.is_none()
                            || signed_at(body)
                                .is_some_and(|at| key.covers_time(at, RECEIPT_CLOCK_TOLERANCE_MS))
                    }
                }
        },
    )
}

/// When the receipt says the wipe was completed, never later than `now` (the controller's
/// clock): a receipt dated in the future (a device clock ahead, or a key holder's forgery)
/// must not outrank every later one.
fn completed_at(body: &WipeReceiptBody, now: Timestamp) -> Timestamp {
    signed_at(body).map_or(now, |at| at.min(now))
}

/// Whether the receipt is dated after the controller's clock. Such a receipt is taken only
/// when nothing is on record yet: its time, clamped to the controller's, would look newer at
/// every replay.
fn dated_ahead(body: &WipeReceiptBody, now: Timestamp) -> bool {
    signed_at(body).is_some_and(|at| at > now)
}
