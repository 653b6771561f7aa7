//! The controller's attestation of a wipe: what it signs, with the Ward CA's key, about a
//! wipe whose receipt it verified. The device's receipt proves that the holder of a key
//! wiped; the attestation ties that key to the device's certificates under the Ward CA and
//! adds the controller's record of the command (who asked, who approved). An auditor checks
//! both with OpenSSL and the CA certificate alone (README, "Checking a certificate").
//!
//! The attestation states the controller's records when it is made (`attested_at`): those
//! records are protected by the audit chain (`wardctl audit verify`, with checkpoints), not by
//! this signature.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Command, CommandKind, DeviceKey, Timestamp};

/// The attestation's `type`: also what keeps its signed bytes apart from everything else the
/// CA key signs (certificates, and audit heads, which are `ward-audit-head:` text).
pub const TYPE: &str = "ward.wipe-attestation/1";

const STATEMENT: &str = "The Ward controller verified the device-signed wipe receipt whose SHA-256 is receipt.sha256 against the device key whose SubjectPublicKeyInfo SHA-256 is receipt.signer_public_key_sha256, certified by the Ward CA in the certificates listed; the command is as recorded by the controller at attested_at.";

#[derive(Debug, Serialize)]
pub struct WipeAttestation {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub statement: &'static str,
    pub attested_at: String,
    pub device_id: String,
    pub command: AttestedCommand,
    pub receipt: AttestedReceipt,
}

#[derive(Debug, Serialize)]
pub struct AttestedCommand {
    pub id: String,
    pub kind: &'static str,
    pub scope: Option<&'static str>,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: String,
    pub approved_by: Option<String>,
    pub finished_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AttestedReceipt {
    /// Hex SHA-256 of the receipt's exact signed bytes.
    pub sha256: String,
    /// Hex SHA-256 of the DER SubjectPublicKeyInfo of the key that signed it.
    pub signer_public_key_sha256: String,
    /// Serials (hex) of the device certificates the Ward CA issued for that key.
    pub signer_certificates: Vec<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    #[error("command {0} has no wipe receipt")]
    NoReceipt(String),
    #[error("command {0}'s receipt did not verify")]
    NotVerified(String),
    #[error("command {0}'s receipt is signed by none of the device's keys")]
    UnknownSigner(String),
}

/// The attestation of `command`'s verified receipt, given the device's key history: the
/// signer is the device key the receipt's signature verifies with (there may be several
/// certificates for one key).
pub fn attest(
    command: &Command,
    keys: &[DeviceKey],
    now: Timestamp,
) -> Result<WipeAttestation, AttestError> {
    let id = command.id.to_string();
    let receipt = command
        .receipt
        .as_ref()
        .ok_or_else(|| AttestError::NoReceipt(id.clone()))?;
    if !receipt.verified {
        return Err(AttestError::NotVerified(id));
    }
    let signer = keys
        .iter()
        .find(|k| {
            ward_certs::sign::verify(&k.public_key_der, &receipt.body, &receipt.signature).is_ok()
        })
        .ok_or_else(|| AttestError::UnknownSigner(id.clone()))?;
    let signer_certificates = keys
        .iter()
        .filter(|k| k.public_key_der == signer.public_key_der)
        .map(|k| k.serial.clone())
        .collect();
    let scope = match &command.kind {
        CommandKind::Wipe { scope } => Some(scope.as_str()),
        CommandKind::Retire => Some("messaging"),
        _ => None,
    };
    Ok(WipeAttestation {
        kind: TYPE,
        statement: STATEMENT,
        attested_at: now.rfc3339(),
        device_id: command.device_id.to_string(),
        command: AttestedCommand {
            id,
            kind: command.kind.name(),
            scope,
            reason: command.reason.clone(),
            requested_by: command.created_by.clone(),
            requested_at: command.created_at.rfc3339(),
            approved_by: command.approved_by.clone(),
            finished_at: command.finished_at.map(|t| t.rfc3339()),
        },
        receipt: AttestedReceipt {
            sha256: hex::encode(Sha256::digest(&receipt.body)),
            signer_public_key_sha256: hex::encode(Sha256::digest(&signer.public_key_der)),
            signer_certificates,
        },
    })
}

impl WipeAttestation {
    /// The bytes to sign: compact JSON, `type` first.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::core::{CommandId, CommandState, DeviceId, Receipt, WipeScope};

    fn key() -> (ward_certs::PrivateKeyDer, Vec<u8>) {
        let key = ward_certs::PrivateKeyDer::generate().unwrap();
        let spki = key.public_key_der().unwrap();
        (key, spki)
    }

    fn device_key(serial: &str, spki: &[u8]) -> DeviceKey {
        DeviceKey {
            serial: serial.into(),
            public_key_der: spki.to_vec(),
            issued_at: Timestamp::from_unix_ms(0),
            in_use_at: Some(Timestamp::from_unix_ms(0)),
            replaced_at: None,
        }
    }

    fn wiped(signer: &ward_certs::PrivateKeyDer, verified: bool) -> Command {
        let body = br#"{"command_id":"c"}"#.to_vec();
        let signature = ward_certs::sign::sign(signer, &body).unwrap();
        Command {
            id: CommandId::new_random(),
            device_id: DeviceId::new_random(),
            kind: CommandKind::Wipe {
                scope: WipeScope::Messaging,
            },
            state: CommandState::Succeeded,
            reason: "stolen".into(),
            failure_reason: None,
            idempotency_key: "k".into(),
            created_by: "alice".into(),
            created_at: Timestamp::from_unix_ms(0),
            deadline: None,
            delivered_at: None,
            acknowledged_at: None,
            finished_at: Some(Timestamp::from_unix_ms(5)),
            deliveries: 1,
            receipt: Some(Receipt {
                body,
                signature,
                verified,
                error: None,
            }),
            approved_by: Some("bob".into()),
            revoke_after: false,
        }
    }

    #[test]
    fn names_the_key_that_signed_and_every_certificate_of_it() {
        let (old, old_spki) = key();
        let (new, new_spki) = key();
        let keys = [
            device_key("01", &old_spki),
            device_key("02", &new_spki),
            device_key("03", &new_spki),
        ];
        let command = wiped(&new, true);
        let a = attest(&command, &keys, Timestamp::from_unix_ms(9)).unwrap();
        assert_eq!(a.receipt.signer_certificates, ["02", "03"]);
        assert_eq!(
            a.receipt.signer_public_key_sha256,
            hex::encode(Sha256::digest(&new_spki))
        );
        assert_eq!(a.command.requested_by, "alice");
        assert_eq!(a.command.approved_by.as_deref(), Some("bob"));
        assert!(
            a.to_bytes()
                .unwrap()
                .starts_with(br#"{"type":"ward.wipe-attestation/1""#)
        );
        let by_old = attest(&wiped(&old, true), &keys, Timestamp::from_unix_ms(9)).unwrap();
        assert_eq!(by_old.receipt.signer_certificates, ["01"]);
    }

    #[test]
    fn nothing_is_attested_without_a_verified_receipt_by_a_device_key() {
        let (device, spki) = key();
        let (stranger, _) = key();
        let keys = [device_key("01", &spki)];
        let now = Timestamp::from_unix_ms(9);
        assert!(matches!(
            attest(&wiped(&device, false), &keys, now),
            Err(AttestError::NotVerified(_))
        ));
        assert!(matches!(
            attest(&wiped(&stranger, true), &keys, now),
            Err(AttestError::UnknownSigner(_))
        ));
        let mut none = wiped(&device, true);
        none.receipt = None;
        assert!(matches!(
            attest(&none, &keys, now),
            Err(AttestError::NoReceipt(_))
        ));
    }
}
