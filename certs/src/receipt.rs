//! The wipe receipt: what a device states it destroyed, signed with its device key.
//!
//! The signed bytes are the receipt's JSON exactly as the device serialized it; the controller
//! verifies the signature over those bytes first and only then parses them.

use serde::{Deserialize, Serialize};

pub use crate::sanitization::Sanitization;
use crate::sign::{SignatureError, sign, verify};
use crate::{CertError, PrivateKeyDer};

/// Where the messaging data key was held until the wipe destroyed it: what a receipt's
/// "the key is gone" is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProtection {
    /// In a TPM 2.0 (an NV index), never on disk: the wipe deleted it inside the TPM, so a
    /// copy of the disk taken before the wipe does not hold it.
    Tpm,
    /// In the OS secret store (Keychain, Credential Manager, Secret Service): deleted there;
    /// what a copy of the disk still holds depends on that store.
    Keyring,
    /// In a 0600 file: overwritten and deleted, which SSDs and copy-on-write filesystems do
    /// not guarantee; a copy of the disk taken before the wipe holds the key.
    FileBestEffort,
}

impl KeyProtection {
    /// The name receipts and JSON use: `tpm`, `keyring`, `file-best-effort`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyProtection::Tpm => "tpm",
            KeyProtection::Keyring => "keyring",
            KeyProtection::FileBestEffort => "file-best-effort",
        }
    }
}

impl KeyProtection {
    /// What the key's destruction is worth, in a sentence for a compliance officer.
    pub fn guarantee(self) -> &'static str {
        match self {
            KeyProtection::Tpm => {
                "held in the TPM and deleted there: no copy of the disk holds the key"
            }
            KeyProtection::Keyring => {
                "held in the OS secret store and deleted there: what a copy of the disk holds depends on that store"
            }
            KeyProtection::FileBestEffort => {
                "held in a file, overwritten and deleted (best effort): a copy of the disk taken before the wipe may still hold the key"
            }
        }
    }
}

impl std::fmt::Display for KeyProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shared with the controller's commands and the agent's ledger.
pub use ward_vocab::WipeScope;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WipeReceiptBody {
    pub command_id: String,
    pub device_id: String,
    /// RFC 3339, the device's clock.
    pub completed_at: String,
    pub scope: WipeScope,
    /// The data key was deleted from the secret store and is no longer readable there.
    pub key_destroyed: bool,
    pub files_removed: u64,
    pub bytes_removed: u64,
    /// The messaging directory was verified empty after the deletion.
    pub verified_empty: bool,
    /// For a full wipe: that the device's full-erase hook ran, and its exit status ("hook
    /// ran: PATH exited 0 ..."). Ward does not verify what the hook erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_erase: Option<String>,
    /// Where the data key was held (absent in receipts from agents before this field: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_protection: Option<KeyProtection>,
    /// The certificate-of-sanitization fields (absent in receipts from older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitization: Option<Sanitization>,
}

/// A signed receipt as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedReceipt {
    pub body: Vec<u8>,
    pub signature: Vec<u8>,
}

impl WipeReceiptBody {
    pub fn sign(&self, key: &PrivateKeyDer) -> Result<SignedReceipt, CertError> {
        let body = serde_json::to_vec(self).map_err(|e| CertError::Invalid(e.to_string()))?;
        let signature = sign(key, &body)?;
        Ok(SignedReceipt { body, signature })
    }

    /// Signs with the device's key wherever it is held (a TPM signs inside the TPM).
    pub fn sign_with(&self, key: &crate::DeviceKey) -> Result<SignedReceipt, CertError> {
        let body = serde_json::to_vec(self).map_err(|e| CertError::Invalid(e.to_string()))?;
        let signature = key.sign(&body)?;
        Ok(SignedReceipt { body, signature })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("receipt signature invalid: {0}")]
    Signature(#[from] SignatureError),
    #[error("receipt body is not valid: {0}")]
    Body(String),
    #[error("receipt is for command {found}, not {expected}")]
    WrongCommand { expected: String, found: String },
    #[error("receipt is for device {found}, not {expected}")]
    WrongDevice { expected: String, found: String },
    #[error("receipt does not state that the data key was destroyed")]
    KeyNotDestroyed,
    #[error("receipt does not state that the messaging directory was verified empty")]
    NotVerifiedEmpty,
    #[error(
        "the receipt names a signing key that is not the device's enrolled key (it verified against the enrolled key, so its certificate fields cannot be checked with the key it names)"
    )]
    SignerMismatch,
    #[error(
        "the receipt states the sanitization category {stated:?} but its key protection allows only {allowed:?} (purge needs a key destroyed inside a TPM)"
    )]
    CategoryOverstated { stated: String, allowed: String },
}

/// Verifies a receipt against the device's public key and the command it claims to answer.
pub fn verify_receipt(
    receipt: &SignedReceipt,
    spki_der: &[u8],
    command_id: &str,
    device_id: &str,
) -> Result<WipeReceiptBody, ReceiptError> {
    verify(spki_der, &receipt.body, &receipt.signature)?;
    let body: WipeReceiptBody =
        serde_json::from_slice(&receipt.body).map_err(|e| ReceiptError::Body(e.to_string()))?;
    if body.command_id != command_id {
        return Err(ReceiptError::WrongCommand {
            expected: command_id.into(),
            found: body.command_id,
        });
    }
    if body.device_id != device_id {
        return Err(ReceiptError::WrongDevice {
            expected: device_id.into(),
            found: body.device_id,
        });
    }
    if !body.key_destroyed {
        return Err(ReceiptError::KeyNotDestroyed);
    }
    if !body.verified_empty {
        return Err(ReceiptError::NotVerifiedEmpty);
    }
    // The key it names is the one an auditor checks it with: it must be the enrolled one.
    if let Some(s) = &body.sanitization {
        use base64::Engine;
        let named = base64::engine::general_purpose::STANDARD.decode(&s.signer_public_key);
        if named.as_deref() != Ok(spki_der) {
            return Err(ReceiptError::SignerMismatch);
        }
        // The category follows from where the key was held; a receipt may not claim more.
        let allowed = crate::sanitization::category_for(body.key_protection.as_ref());
        if s.category != allowed {
            return Err(ReceiptError::CategoryOverstated {
                stated: s.category.clone(),
                allowed: allowed.to_owned(),
            });
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VerifiedCsr;
    use crate::csr::make_csr;

    fn body() -> WipeReceiptBody {
        WipeReceiptBody {
            command_id: "c1".into(),
            device_id: "d1".into(),
            completed_at: "2026-11-24T00:00:00Z".into(),
            scope: WipeScope::Messaging,
            key_destroyed: true,
            files_removed: 3,
            bytes_removed: 42,
            verified_empty: true,
            full_erase: None,
            key_protection: Some(KeyProtection::Tpm),
            sanitization: None,
        }
    }

    fn sanitization(signer: &PrivateKeyDer) -> Sanitization {
        use base64::Engine;
        Sanitization {
            standard: crate::sanitization::STANDARD.into(),
            hostname: "ward-test-01".into(),
            messaging_dir: "/home/ann/.local/share/chat".into(),
            files_found: 3,
            bytes_found: 42,
            category: crate::sanitization::CATEGORY_PURGE.into(),
            method: crate::sanitization::METHOD.into(),
            key_location: "TPM 2.0 NV index 0x01300057".into(),
            key_destruction: "overwritten, then the index undefined".into(),
            files_method: crate::sanitization::FILES_METHOD.into(),
            tool: "ward-agent".into(),
            tool_version: "0.2.0".into(),
            verification_method: crate::sanitization::VERIFICATION_METHOD.into(),
            verification: "key absent; directory empty".into(),
            started_at: Some("2026-11-24T00:00:00Z".into()),
            signer_public_key: base64::engine::general_purpose::STANDARD
                .encode(signer.public_key_der().unwrap()),
        }
    }

    /// The scope is one of the two the controller issues; a receipt naming another (or
    /// spelling one differently) is not a receipt.
    #[test]
    fn a_receipt_scope_is_messaging_or_full_and_nothing_else() {
        let text = serde_json::to_string(&body()).unwrap();
        assert!(text.contains(r#""scope":"messaging""#), "{text}");
        for other in ["everything", "Messaging", ""] {
            let bad = text.replace(r#""scope":"messaging""#, &format!(r#""scope":"{other}""#));
            assert!(
                serde_json::from_str::<WipeReceiptBody>(&bad).is_err(),
                "{other}"
            );
        }
        assert_eq!("full".parse::<WipeScope>(), Ok(WipeScope::Full));
        assert!(
            "all"
                .parse::<WipeScope>()
                .unwrap_err()
                .contains("messaging or full")
        );
    }

    #[test]
    fn the_certificate_fields_are_signed_and_must_name_the_enrolled_key() {
        let key = PrivateKeyDer::generate().unwrap();
        let spki = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
        assert_eq!(key.public_key_der().unwrap(), spki.public_key_der());
        let with = WipeReceiptBody {
            sanitization: Some(sanitization(&key)),
            ..body()
        };
        let signed = with.sign(&key).unwrap();
        let verified = verify_receipt(&signed, spki.public_key_der(), "c1", "d1").unwrap();
        assert_eq!(verified, with);
        let text = String::from_utf8(signed.body.clone()).unwrap();
        assert!(
            text.contains(r#""category":"purge","method":"cryptographic erase""#),
            "{text}"
        );
        // Naming another key than the one that signed: refused, though the signature holds.
        let other = PrivateKeyDer::generate().unwrap();
        let lying = WipeReceiptBody {
            sanitization: Some(sanitization(&other)),
            ..body()
        }
        .sign(&key)
        .unwrap();
        assert_eq!(
            verify_receipt(&lying, spki.public_key_der(), "c1", "d1"),
            Err(ReceiptError::SignerMismatch)
        );
        // A key held in a file whose receipt claims a purge: refused (a modified or old agent
        // may sign what it likes; the category follows from where the key was held).
        let overstated = WipeReceiptBody {
            key_protection: Some(KeyProtection::FileBestEffort),
            sanitization: Some(sanitization(&key)),
            ..body()
        }
        .sign(&key)
        .unwrap();
        assert_eq!(
            verify_receipt(&overstated, spki.public_key_der(), "c1", "d1"),
            Err(ReceiptError::CategoryOverstated {
                stated: "purge".into(),
                allowed: "clear".into()
            })
        );
    }

    #[test]
    fn key_protection_is_carried_and_named_as_scripts_read_it() {
        let key = PrivateKeyDer::generate().unwrap();
        let spki = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
        for (protection, name) in [
            (KeyProtection::Tpm, "tpm"),
            (KeyProtection::Keyring, "keyring"),
            (KeyProtection::FileBestEffort, "file-best-effort"),
        ] {
            let signed = WipeReceiptBody {
                key_protection: Some(protection),
                ..body()
            }
            .sign(&key)
            .unwrap();
            let text = String::from_utf8(signed.body.clone()).unwrap();
            assert!(
                text.contains(&format!("\"key_protection\":\"{name}\"")),
                "{text}"
            );
            let verified = verify_receipt(&signed, spki.public_key_der(), "c1", "d1").unwrap();
            assert_eq!(verified.key_protection, Some(protection));
            assert_eq!(protection.to_string(), name);
        }
    }

    #[test]
    fn a_receipt_from_an_agent_before_key_protection_still_verifies() {
        // The exact bytes an older agent signed: no key_protection field.
        let key = PrivateKeyDer::generate().unwrap();
        let spki = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
        let body = br#"{"command_id":"c1","device_id":"d1","completed_at":"2026-11-24T00:00:00Z","scope":"messaging","key_destroyed":true,"files_removed":3,"bytes_removed":42,"verified_empty":true}"#.to_vec();
        let signed = SignedReceipt {
            signature: sign(&key, &body).unwrap(),
            body,
        };
        let verified = verify_receipt(&signed, spki.public_key_der(), "c1", "d1").unwrap();
        assert_eq!(verified.key_protection, None);
    }

    #[test]
    fn a_signed_receipt_verifies_and_any_edit_breaks_it() {
        let key = PrivateKeyDer::generate().unwrap();
        let spki = VerifiedCsr::from_der(&make_csr(&key, "x").unwrap()).unwrap();
        let signed = body().sign(&key).unwrap();
        assert_eq!(
            verify_receipt(&signed, spki.public_key_der(), "c1", "d1").unwrap(),
            body()
        );
        let mut edited = signed.clone();
        edited.body = String::from_utf8(edited.body)
            .unwrap()
            .replace("42", "43")
            .into_bytes();
        assert!(matches!(
            verify_receipt(&edited, spki.public_key_der(), "c1", "d1"),
            Err(ReceiptError::Signature(_))
        ));
        assert!(matches!(
            verify_receipt(&signed, spki.public_key_der(), "c2", "d1"),
            Err(ReceiptError::WrongCommand { .. })
        ));
        assert!(matches!(
            verify_receipt(&signed, spki.public_key_der(), "c1", "d2"),
            Err(ReceiptError::WrongDevice { .. })
        ));
    }
}
