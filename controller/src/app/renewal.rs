//! Device certificate renewal that does not fork the identity.
//!
//! A renewal issues a certificate that is *pending*: the device's record keeps its current
//! certificate and key until the device first calls with the new one. That call makes the
//! new certificate the device's one and revokes the previous certificate and any other
//! pending renewal (handshake list, other replicas through the usual announcement). An answer
//! lost on the way therefore never locks a device out, and the old certificate lives on for
//! no longer than the device's next call.
//!
//! A second party holding the device's identity shows in one of two ways, both refused,
//! audited as `device.renewal_conflict` and kept on the device for admins
//! (`wardctl device show`): a call or renewal with a certificate a renewal replaced, or two
//! renewals with different keys from the same certificate. The device itself is not revoked:
//! the party that called first with its renewal keeps the identity, and an admin decides.

use std::sync::Arc;

use time::OffsetDateTime;
use tracing::{info, warn};
use ward_certs::receipt::{ReceiptError, SignedReceipt, WipeReceiptBody, verify_receipt};
use ward_certs::{Identity, IssuedCertificate, VerifiedCsr};

use super::lane::{Lane, OnFailure, Shape, Threads};
use super::offboard::retires_its_device;
use super::{App, AppError, audit, certificate_record};
use crate::core::audit::AuditEvent;
use crate::core::keys::{
    MAX_PENDING_KEYS, MAX_RENEWALS_PER_WINDOW, RENEWAL_WINDOW_MS, live_pending_other_keys,
    renewals_in_window,
};
use crate::core::{Device, DeviceId, DeviceKey, DeviceState, RenewalConflict, Timestamp};
use crate::store::{Announcement, Priority, Store, StoreError};

/// The audit action of a suspected clone.
pub(super) const RENEWAL_CONFLICT: &str = "device.renewal_conflict";

/// The audit action of a renewal refused for coming too often.
pub(super) const RENEWAL_LIMITED: &str = "device.renewal_limited";

/// Devices refused for renewing too often, with the start of the window whose refusal was
/// audited.
#[derive(Debug, Default)]
pub(super) struct RenewalLimits(std::sync::Mutex<std::collections::HashMap<DeviceId, i64>>);

impl RenewalLimits {
    /// Whether this is the first refusal of `device` in the window starting at `window`.
    fn first(&self, device: DeviceId, window: i64) -> bool {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, w| *w >= window.saturating_sub(RENEWAL_WINDOW_MS));
        seen.insert(device, window) != Some(window)
    }
}

fn limited_error(device: DeviceId) -> AppError {
    AppError::FailedPrecondition(format!(
        "device {device} was issued {MAX_RENEWALS_PER_WINDOW} renewed certificates in the last {} minutes: renewal refused until the oldest of them is older than that",
        RENEWAL_WINDOW_MS / 60_000
    ))
}

/// A renewal refused because the device is being offboarded or is in lost mode.
fn being_retired_error(device: DeviceId) -> AppError {
    AppError::PermissionDenied(format!(
        "device {device} is being offboarded or is in lost mode: its certificate is not renewed"
    ))
}

/// What a renewal job came to.
enum Renewal {
    Recorded,
    /// An offboarding, lost-mode wipe or retirement is under way.
    BeingRetired,
    /// Too many renewals in the window.
    Limited,
    /// The presented certificate is not the device's current one.
    Conflict(String),
    /// Too many renewals wait unused.
    TooManyPending,
    /// The device was revoked or retired meanwhile.
    NotActive(DeviceState),
}

fn conflict_event(device: DeviceId, serial: &str, detail: &str) -> AuditEvent {
    AuditEvent {
        actor: audit::device_actor(device),
        action: RENEWAL_CONFLICT.into(),
        target: device.to_string(),
        details: serde_json::json!({ "certificate_serial": serial, "why": detail, "suspected": "clone" }),
    }
}

impl App {
    /// Issues a new certificate for an enrolled, active device (same identity, the CSR's key),
    /// renewing from `presented`, the certificate of the call. Refused, audited and flagged
    /// when `presented` is no longer the device's current certificate.
    pub async fn renew(
        &self,
        device: DeviceId,
        presented: &str,
        csr: &VerifiedCsr,
    ) -> Result<IssuedCertificate, AppError> {
        // Refused early, before a signature; the job decides, in its own transaction, so an
        // offboarding committed between this read and the job's write refuses it too.
        if self.is_being_retired(device).await? {
            return Err(being_retired_error(device));
        }
        let now = self.now();
        // Refused before a signature or a write: a device renewing in a loop costs reads.
        self.check_renewal_rate(device, now).await?;
        let identity = Identity::Device(device.0);
        let certificate = self
            .ca()
            .issue_client(
                csr,
                &identity,
                now.to_datetime(),
                self.config.device_cert_lifetime,
            )
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let record = certificate_record(&certificate, &identity, now);
        let key = csr.public_key_der().to_vec();
        let presented_owned = presented.to_owned();
        let not_after = Timestamp::from_datetime(certificate.not_after);
        let outcome = self
            .store
            .write(Priority::High, move |tx| {
                let (record, key, presented) =
                    (record.clone(), key.clone(), presented_owned.clone());
                Box::pin(async move {
                    // Locked: an offboarding another replica is committing (its wipe's
                    // insert locks the device's row too) is either committed before this
                    // reads the commands below, or waits for this renewal and then revokes
                    // the certificate issued here with the others when its wipe finishes.
                    let Some(current) = tx.device_locked(device).await? else {
                        return Err(StoreError::Corrupt(format!("device {device} vanished")));
                    };
                    // Checked again in the transaction that records the renewal: a device
                    // whose wipe ended (and revoked it) while this waited for its row gets no
                    // certificate the revocation did not cover.
                    if current.state != DeviceState::Active {
                        return Ok(Renewal::NotActive(current.state));
                    }
                    let unfinished = tx.unfinished_commands(device).await?;
                    if unfinished.iter().any(retires_its_device) {
                        return Ok(Renewal::BeingRetired);
                    }
                    if current.certificate_serial != presented {
                        let detail = format!(
                            "a renewal was asked for with certificate {presented}, which is not the device's current one ({}): another party may hold a copy of the device's key (suspected clone)",
                            current.certificate_serial
                        );
                        tx.flag_renewal_conflict(
                            device,
                            &RenewalConflict {
                                at: now.unix_ms(),
                                serial: presented.clone(),
                                detail: detail.clone(),
                                reported: Vec::new(),
                            },
                        )
                        .await?;
                        tx.audit(conflict_event(device, &presented, &detail), now);
                        return Ok(Renewal::Conflict(detail));
                    }
                    let keys = tx.device_keys(device).await?;
                    if renewals_in_window(&keys, now) >= MAX_RENEWALS_PER_WINDOW {
                        return Ok(Renewal::Limited);
                    }
                    // Renewals older than the lapse time no longer count.
                    let pending = live_pending_other_keys(&keys, &key, now);
                    if !pending.is_empty() {
                        // The agent retries with the key it made first (kept across
                        // restarts): another key from the same certificate is someone else.
                        let mut serials: Vec<&str> =
                            pending.iter().map(|k| k.serial.as_str()).collect();
                        serials.sort_unstable();
                        let detail = format!(
                            "a renewal was asked for with a new key while renewal(s) {} from the same certificate with other keys wait unused: two parties are renewing this device (suspected clone)",
                            serials.join(", ")
                        );
                        tx.flag_renewal_conflict(
                            device,
                            &RenewalConflict {
                                at: now.unix_ms(),
                                serial: serials.join(","),
                                detail: detail.clone(),
                                reported: Vec::new(),
                            },
                        )
                        .await?;
                        tx.audit(conflict_event(device, &serials.join(","), &detail), now);
                    }
                    if pending.len() >= MAX_PENDING_KEYS {
                        return Ok(Renewal::TooManyPending);
                    }
                    tx.record_renewal(device, &record, &key).await?;
                    tx.audit(
                        AuditEvent {
                            actor: audit::device_actor(device),
                            action: "device.renew".into(),
                            target: device.to_string(),
                            details: serde_json::json!({
                                "certificate_serial": record.serial,
                                "renewed_from": presented,
                                "not_after": not_after.rfc3339(),
                                "pending": "in use from the device's first call with it",
                            }),
                        },
                        now,
                    );
                    Ok::<_, StoreError>(Renewal::Recorded)
                })
            })
            .await?;
        match outcome {
            Renewal::Recorded => {
                info!(device_id = %device, serial = %certificate.serial, not_after = %not_after, "certificate renewed (pending its first use)");
                Ok(certificate)
            }
            Renewal::Conflict(detail) => {
                self.metrics.denied_calls.inc();
                warn!(device_id = %device, presented, "renewal refused: suspected clone");
                Err(AppError::PermissionDenied(format!(
                    "renewal refused: {detail}; an admin has been alerted"
                )))
            }
            Renewal::Limited => Err(limited_error(device)),
            Renewal::BeingRetired => Err(being_retired_error(device)),
            Renewal::NotActive(state) => Err(AppError::PermissionDenied(format!(
                "device {device} is {}: its certificate is not renewed",
                state.as_str()
            ))),
            Renewal::TooManyPending => {
                warn!(device_id = %device, "renewal refused: too many unused renewals with other keys (suspected clone)");
                Err(AppError::FailedPrecondition(format!(
                    "device {device} has {MAX_PENDING_KEYS} renewed certificates with other keys it never used (reported to an admin as a suspected clone); they lapse {} minutes after their issue, or retry with the key of the last renewal",
                    crate::core::keys::PENDING_LAPSES_AFTER_MS / 60_000
                )))
            }
        }
    }

    /// Refuses a renewal when the device was issued [`MAX_RENEWALS_PER_WINDOW`] renewals in
    /// the window, whatever their keys; the first refusal of a window is audited.
    async fn check_renewal_rate(&self, device: DeviceId, now: Timestamp) -> Result<(), AppError> {
        let keys = self.store.device_keys(device).await?;
        if renewals_in_window(&keys, now) < MAX_RENEWALS_PER_WINDOW {
            return Ok(());
        }
        // The window is named by the newest renewal it holds: a refusal after another
        // renewal is a new window.
        let window = keys
            .iter()
            .map(|k| k.issued_at.unix_ms())
            .max()
            .unwrap_or_default();
        if self.renewal_limits.first(device, window) {
            warn!(device_id = %device, "renewal refused: too many renewals in the window");
            self.store
                .write(Priority::High, move |tx| {
                    Box::pin(async move {
                        tx.audit(
                            AuditEvent {
                                actor: audit::device_actor(device),
                                action: RENEWAL_LIMITED.into(),
                                target: device.to_string(),
                                details: serde_json::json!({
                                    "renewals": MAX_RENEWALS_PER_WINDOW,
                                    "window_minutes": RENEWAL_WINDOW_MS / 60_000,
                                }),
                            },
                            now,
                        );
                        Ok::<_, StoreError>(())
                    })
                })
                .await?;
        }
        Err(limited_error(device))
    }

    /// The first call with the renewed certificate `serial`: it becomes the device's one, and
    /// the previous certificate and other pending renewals are revoked. Refused when `serial`
    /// is neither current nor pending (a race with another switch).
    pub(super) async fn certificate_in_use(
        &self,
        device: Device,
        serial: &str,
    ) -> Result<Device, AppError> {
        let id = device.id;
        let now = self.now();
        let owned = serial.to_owned();
        let switched = self
            .store
            .write(Priority::High, move |tx| {
                let serial = owned.clone();
                Box::pin(async move {
                    let Some(switch) = tx.switch_key(id, &serial, now).await? else {
                        let current = tx.device(id).await?;
                        let current = current.is_some_and(|d| d.certificate_serial == serial);
                        return Ok(current.then(Vec::new));
                    };
                    tx.audit(
                        AuditEvent {
                            actor: audit::device_actor(id),
                            action: "device.certificate_in_use".into(),
                            target: id.to_string(),
                            details: serde_json::json!({ "certificate_serial": serial, "revoked": switch.revoked }),
                        },
                        now,
                    );
                    if !switch.other_parties.is_empty() {
                        let detail = format!(
                            "certificate {serial} came into use while renewal(s) {} from the same certificate with other keys were waiting: two parties renewed this device (suspected clone); the others are revoked",
                            switch.other_parties.join(", ")
                        );
                        tx.flag_renewal_conflict(
                            id,
                            &RenewalConflict {
                                at: now.unix_ms(),
                                serial: switch.other_parties.join(","),
                                detail: detail.clone(),
                                reported: Vec::new(),
                            },
                        )
                        .await?;
                        tx.audit(
                            conflict_event(id, &switch.other_parties.join(","), &detail),
                            now,
                        );
                    }
                    Ok::<_, StoreError>(Some(switch.revoked))
                })
            })
            .await?;
        let Some(revoked) = switched else {
            return Err(AppError::Unauthenticated(
                "client certificate refused: a renewal replaced it".into(),
            ));
        };
        // This replica refuses the replaced certificates from now on; the others reload
        // their list when they hear of it. Open streams re-check their certificate.
        for serial in &revoked {
            self.revoked.insert(serial);
        }
        info!(device_id = %id, serial, "renewed certificate in use; the previous one is revoked");
        self.hub.wake(id);
        self.announce(Announcement::RevocationsChanged).await;
        self.check_device_active(id).await
    }

    /// A call with a revoked certificate of `device`: if a renewal replaced it while the
    /// device is active, whoever calls with it is not the device (or the device lost track
    /// of its renewal): flagged and audited once per certificate.
    pub(super) async fn superseded_certificate_used(
        &self,
        device: DeviceId,
        serial: &str,
    ) -> Result<(), AppError> {
        let replaced = self
            .store
            .device_keys(device)
            .await?
            .into_iter()
            .any(|k| k.serial == serial && k.replaced_at.is_some());
        if !replaced {
            return Ok(());
        }
        // Reported once per certificate: a copy calling in a loop costs reads, not writes.
        let reported = self.store.get_device(device).await?.is_none_or(|d| {
            d.state != crate::core::DeviceState::Active
                || d.renewal_conflict.is_some_and(|c| c.covers(serial))
        });
        if reported {
            return Ok(());
        }
        let now = self.now();
        let owned = serial.to_owned();
        let flagged = self
            .store
            .write(Priority::High, move |tx| {
                let serial = owned.clone();
                Box::pin(async move {
                    let Some(record) = tx.device(device).await? else {
                        return Ok(false);
                    };
                    let already = record
                        .renewal_conflict
                        .as_ref()
                        .is_some_and(|c| c.covers(&serial));
                    if record.state != crate::core::DeviceState::Active || already {
                        return Ok(false);
                    }
                    let detail = format!(
                        "a call was made with certificate {serial}, which a renewal replaced (now {}): another party may hold a copy of the device's key (suspected clone)",
                        record.certificate_serial
                    );
                    let conflict = match &record.renewal_conflict {
                        Some(before) => before.then(now.unix_ms(), serial.clone(), detail.clone()),
                        None => RenewalConflict {
                            at: now.unix_ms(),
                            serial: serial.clone(),
                            detail: detail.clone(),
                            reported: Vec::new(),
                        },
                    };
                    tx.flag_renewal_conflict(device, &conflict).await?;
                    tx.audit(conflict_event(device, &serial, &detail), now);
                    Ok::<_, StoreError>(true)
                })
            })
            .await?;
        if flagged {
            self.metrics.denied_calls.inc();
            warn!(device_id = %device, serial, "a replaced device certificate was used: suspected clone");
        }
        Ok(())
    }

    /// Whether a stream opened with `serial` must end: the certificate was revoked (a
    /// renewal replaced it, or the device was revoked).
    pub fn certificate_revoked(&self, serial: &str) -> bool {
        self.revoked.contains(&serial.to_ascii_lowercase())
    }

    /// The device's certificates and keys, oldest first (`device show`).
    pub async fn device_keys(&self, device: DeviceId) -> Result<Vec<DeviceKey>, AppError> {
        Ok(self.store.device_keys(device).await?)
    }

    /// [`App::keys_of`] device `id`, reading its record only when it has no key history
    /// (one read per receipt instead of two, when thousands of wipes finish at once).
    pub(super) async fn keys_of_id(&self, id: DeviceId) -> Result<Vec<DeviceKey>, AppError> {
        let keys = self.key_reads.run(id).await?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        let device = self
            .store
            .get_device(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("device {id} is not enrolled")))?;
        Ok(enrolled_key(&device).into_iter().collect())
    }

    /// The device's key history, for verifying what it signed.
    pub(super) async fn keys_of(&self, device: &Device) -> Result<Vec<DeviceKey>, AppError> {
        let keys = self.key_reads.run(device.id).await?;
        if keys.is_empty() {
            return Ok(enrolled_key(device).into_iter().collect());
        }
        Ok(keys)
    }
}

/// Reads of device key histories, gathered: the receipts of thousands of wipes finishing at
/// once each need their device's keys, and one read for many devices replaces thousands of
/// one-row reads. Each read still happens after it was asked for, as it would alone.
/// A read that finds a history it cannot read ([`crate::store::StoreError::Corrupt`]) runs
/// again in halves until that device is alone, so one unreadable history fails only its own
/// receipt; a read the database itself fails (the pool exhausted, the server gone) fails
/// every receipt in it at once, and the devices report again. It runs on the caller's
/// runtime, not the commit path's threads.
pub(super) type KeyReads = Lane<DeviceId, Vec<DeviceKey>>;

/// The most devices one read takes.
const MAX_KEY_READS: usize = 1000;

pub(super) fn start_key_reads(store: Arc<dyn Store>) -> KeyReads {
    Lane::start(
        Shape::new(
            "device key reads",
            MAX_KEY_READS,
            OnFailure::SplitUntilAlone,
        )
        .on(Threads::Caller),
        move |devices: Arc<[DeviceId]>| {
            let store = Arc::clone(&store);
            async move {
                let keys = store.device_keys_of(&devices).await?;
                // A device asked for twice (two of its wipes finishing) gets its keys twice.
                Ok(devices
                    .iter()
                    .map(|device| keys.get(device).cloned().unwrap_or_default())
                    .collect())
            }
        },
    )
}

/// The one key of a device recorded before key histories.
fn enrolled_key(device: &Device) -> Option<DeviceKey> {
    let spki = device.public_key_der.as_ref()?;
    Some(DeviceKey {
        serial: device.certificate_serial.clone(),
        public_key_der: spki.clone(),
        issued_at: device.enrolled_at,
        in_use_at: Some(device.enrolled_at),
        replaced_at: None,
    })
}

/// How far the device's own clock is trusted when a receipt with a replaced key says when
/// it was signed (the agent's own tolerance for clock differences).
pub(super) const RECEIPT_CLOCK_TOLERANCE_MS: i64 = 24 * 3600 * 1000;

/// Verifies a receipt against the device's keys, newest first: it must verify with one of
/// them, and that key must `cover` it (not replaced before the command was issued, or before
/// the receipt says it was signed).
pub(super) fn verify_with_history(
    keys: &[DeviceKey],
    receipt: &SignedReceipt,
    command_id: &str,
    device_id: &str,
    covers: impl Fn(&DeviceKey, &WipeReceiptBody) -> bool,
) -> Result<WipeReceiptBody, String> {
    if keys.is_empty() {
        return Err("the controller has no public key on record for this device".into());
    }
    let mut first_error: Option<ReceiptError> = None;
    let mut replaced: Option<&DeviceKey> = None;
    for key in keys.iter().rev() {
        match verify_receipt(receipt, &key.public_key_der, command_id, device_id) {
            Ok(body) if covers(key, &body) => return Ok(body),
            Ok(_) => replaced = replaced.or(Some(key)),
            // Another key's signature: try the older ones.
            Err(e @ ReceiptError::Signature(_)) => {
                first_error.get_or_insert(e);
            }
            Err(other) => return Err(other.to_string()),
        }
    }
    if let Some(key) = replaced {
        let at = key
            .replaced_at
            .map_or_else(String::new, |t| format!(" on {}", t.rfc3339()));
        return Err(format!(
            "the receipt is signed with the key of certificate {}, which a renewal replaced{at}, before what it vouches for",
            key.serial
        ));
    }
    Err(first_error.map_or_else(
        || "the receipt does not verify".to_owned(),
        |e| e.to_string(),
    ))
}

/// When the receipt says it was signed, if it says so readably.
pub(super) fn signed_at(body: &WipeReceiptBody) -> Option<Timestamp> {
    OffsetDateTime::parse(
        &body.completed_at,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()
    .map(Timestamp::from_datetime)
}
