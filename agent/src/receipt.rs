//! The wipe receipt the agent signs: what the vault's journal says was done, with the fields of
//! a certificate of sanitization (NIST SP 800-88 Rev. 2, [`ward_certs::sanitization`]).
//! Command wipes (`executor`) and offline-timer wipes (`offline`) build it the same way.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ward_certs::receipt::{Sanitization, SignedReceipt, WipeReceiptBody, WipeScope};
use ward_certs::sanitization::{FILES_METHOD, METHOD, VERIFICATION_METHOD};
use ward_certs::{CertError, DeviceKey};

use crate::vault::{Vault, WipeJournal};

/// What the caller knows beyond the journal.
#[derive(Debug)]
pub struct Wiped {
    /// The command id, or the offline timer's cause.
    pub command_id: String,
    pub device_id: String,
    pub scope: WipeScope,
    /// For a full wipe: that the hook ran, and how it ended.
    pub full_erase: Option<String>,
    /// The key read back after its destruction and found absent.
    pub key_destroyed: bool,
    /// RFC 3339, the device's clock.
    pub completed_at: String,
}

/// The receipt body for `wiped`, signed with `device_key`.
pub fn sign(
    vault: &Vault,
    journal: &WipeJournal,
    wiped: Wiped,
    device_key: &DeviceKey,
) -> Result<SignedReceipt, CertError> {
    body(vault, journal, wiped, device_key)?.sign_with(device_key)
}

/// The receipt body, unsigned (tests read it).
pub fn body(
    vault: &Vault,
    journal: &WipeJournal,
    wiped: Wiped,
    device_key: &DeviceKey,
) -> Result<WipeReceiptBody, CertError> {
    let (files_found, bytes_found) = journal
        .found
        .unwrap_or((journal.files_removed, journal.bytes_removed));
    let verification = format!(
        "the data key read back from where it was held after its destruction: {}; the messaging directory read again after the deletion: {}; each step written to the wipe journal before the next began",
        if wiped.key_destroyed {
            "absent"
        } else {
            "STILL PRESENT"
        },
        if journal.verified_empty {
            "empty"
        } else if journal.directory_replaced {
            "NOT FOUND (something else stood at its path: another directory, a link or a file; the directory the key was made for was moved away or a filesystem mounted over it, and its files were not removed)"
        } else if journal.directory_missing {
            "NOT FOUND (nothing at its path: not mounted, or moved away; its files, wherever they are, were not removed)"
        } else {
            "NOT empty"
        },
    );
    let protection = vault.protection_in(journal);
    // Purge only where the key's own destruction is assured (inside the TPM).
    let category = ward_certs::sanitization::category_for(Some(&protection));
    let sanitization = Sanitization {
        standard: ward_certs::sanitization::STANDARD.into(),
        hostname: crate::facts::collect().hostname,
        messaging_dir: vault.dir().display().to_string(),
        files_found,
        bytes_found,
        category: category.into(),
        method: METHOD.into(),
        key_location: vault.key_location(),
        key_destruction: vault.key_destruction().into(),
        files_method: FILES_METHOD.into(),
        tool: "ward-agent".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        verification_method: VERIFICATION_METHOD.into(),
        verification,
        started_at: journal.started_at.clone(),
        signer_public_key: STANDARD.encode(device_key.public_key_der()?),
    };
    Ok(WipeReceiptBody {
        command_id: wiped.command_id,
        device_id: wiped.device_id,
        completed_at: wiped.completed_at,
        scope: wiped.scope,
        key_destroyed: wiped.key_destroyed,
        files_removed: journal.files_removed,
        bytes_removed: journal.bytes_removed,
        verified_empty: journal.verified_empty,
        full_erase: wiped.full_erase,
        key_protection: Some(protection),
        sanitization: Some(sanitization),
    })
}
