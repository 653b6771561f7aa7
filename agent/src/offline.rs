//! The offline timer (dead-man switch): when the agent has not completed a check-in for
//! longer than the policy's `offline_wipe_after`, it wipes the messaging data by itself, signs
//! a receipt, and sends it with its next successful check-in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{error, warn};
use ward_certs::PrivateKeyDer;
use ward_certs::files::replace_file;
use ward_certs::receipt::WipeReceiptBody;
use ward_proto::v1::WipeReceipt;

use crate::policy::AgentPolicy;
use crate::vault::{Vault, WipeStep};

/// The cause recorded in the wipe journal and the receipt's command id.
pub const CAUSE: &str = "offline-timer";

/// True when the policy has a timer and `now - last_success` has reached it.
pub fn due(policy: &AgentPolicy, last_success: OffsetDateTime, now: OffsetDateTime) -> bool {
    policy.offline_wipe_after_seconds > 0
        && now - last_success >= Duration::from_secs(policy.offline_wipe_after_seconds)
}

/// The signed receipt waiting to be reported (`STATE/offline-wipe.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReport {
    pub body: String,
    pub signature: String,
}

fn report_path(state_dir: &Path) -> PathBuf {
    state_dir.join("offline-wipe.json")
}

pub fn pending(state_dir: &Path) -> Option<WipeReceipt> {
    let bytes = std::fs::read(report_path(state_dir)).ok()?;
    let report: PendingReport = serde_json::from_slice(&bytes).ok()?;
    Some(WipeReceipt {
        body: STANDARD.decode(report.body).ok()?,
        signature: STANDARD.decode(report.signature).ok()?,
    })
}

pub fn reported(state_dir: &Path) {
    if let Err(e) = std::fs::remove_file(report_path(state_dir))
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(error = %e, "cannot clear the offline-wipe report");
    }
}

/// Wipes if the timer is due and the data is not wiped yet; records the receipt to report.
/// Returns true when a wipe ran (or resumed) now.
pub async fn tick(
    vault: &Vault,
    state_dir: &Path,
    policy: &AgentPolicy,
    device_id: &str,
    device_key: &PrivateKeyDer,
    last_success: OffsetDateTime,
    now: OffsetDateTime,
) -> bool {
    if !due(policy, last_success, now) {
        return false;
    }
    match vault.journal() {
        // Already wiped (by a command or by the timer): nothing left to protect.
        Ok(Some(j)) if j.step == WipeStep::Done => return false,
        Ok(_) => {}
        Err(e) => {
            error!(error = %e, "offline timer: cannot read the wipe journal");
            return false;
        }
    }
    warn!(
        offline_for_s = (now - last_success).whole_seconds(),
        limit_s = policy.offline_wipe_after_seconds,
        "no check-in for longer than the policy allows: wiping the messaging data"
    );
    let journal = match vault.wipe(CAUSE).await {
        Ok(j) => j,
        Err(e) => {
            error!(error = %e, "offline wipe failed; retrying at the next tick");
            return false;
        }
    };
    let key_destroyed = vault.key_present().await.is_ok_and(|present| !present);
    let body = WipeReceiptBody {
        command_id: CAUSE.into(),
        device_id: device_id.into(),
        completed_at: journal
            .completed_at
            .clone()
            .unwrap_or_else(crate::now_rfc3339),
        scope: "messaging".into(),
        key_destroyed,
        files_removed: journal.files_removed,
        bytes_removed: journal.bytes_removed,
        verified_empty: journal.verified_empty,
        full_erase: None,
        key_protection: Some(vault.protection_in(&journal)),
    };
    match body.sign(device_key) {
        Ok(signed) => {
            let report = PendingReport {
                body: STANDARD.encode(&signed.body),
                signature: STANDARD.encode(&signed.signature),
            };
            let bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
            if let Err(e) = replace_file(&report_path(state_dir), &bytes, 0o600) {
                error!(error = %e, "cannot record the offline-wipe receipt");
            }
        }
        Err(e) => error!(error = %e, "the data is wiped but the receipt could not be signed"),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretStoreKind;

    fn policy(hours: u64) -> AgentPolicy {
        AgentPolicy {
            offline_wipe_after_seconds: hours * 3600,
            ..AgentPolicy::default()
        }
    }

    #[test]
    fn due_only_after_the_limit_and_never_without_one() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert!(!due(
            &policy(72),
            t0,
            t0 + Duration::from_secs(72 * 3600 - 1)
        ));
        assert!(due(&policy(72), t0, t0 + Duration::from_secs(72 * 3600)));
        assert!(!due(&policy(0), t0, t0 + Duration::from_secs(1000 * 3600)));
    }

    #[tokio::test]
    async fn the_timer_wipes_once_and_leaves_a_signed_receipt_to_report() {
        let tmp = tempfile::tempdir().unwrap();
        let (state, messaging) = (tmp.path().join("state"), tmp.path().join("messaging"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&messaging).unwrap();
        std::fs::write(messaging.join("chat.db"), b"CANARY").unwrap();
        let vault = Vault::open(&messaging, &state, SecretStoreKind::File, "dev-1")
            .await
            .unwrap();
        let key = PrivateKeyDer::generate().unwrap();
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();

        // An injected clock: an hour short of the limit, nothing happens.
        assert!(
            !tick(
                &vault,
                &state,
                &policy(72),
                "dev-1",
                &key,
                t0,
                t0 + Duration::from_secs(71 * 3600)
            )
            .await
        );
        assert!(messaging.join("chat.db").exists());
        assert!(pending(&state).is_none());

        // Past the limit: wiped, with a receipt waiting.
        assert!(
            tick(
                &vault,
                &state,
                &policy(72),
                "dev-1",
                &key,
                t0,
                t0 + Duration::from_secs(73 * 3600)
            )
            .await
        );
        assert!(!messaging.join("chat.db").exists());
        assert!(!vault.key_present().await.unwrap());
        let receipt = pending(&state).unwrap();
        let spki =
            ward_certs::VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "x").unwrap())
                .unwrap();
        let signed = ward_certs::receipt::SignedReceipt {
            body: receipt.body,
            signature: receipt.signature,
        };
        ward_certs::receipt::verify_receipt(&signed, spki.public_key_der(), CAUSE, "dev-1")
            .unwrap();

        // Later ticks do not wipe again; once reported, the receipt is cleared.
        assert!(
            !tick(
                &vault,
                &state,
                &policy(72),
                "dev-1",
                &key,
                t0,
                t0 + Duration::from_secs(200 * 3600)
            )
            .await
        );
        reported(&state);
        assert!(pending(&state).is_none());
    }
}
