//! The controller's attestation of a wipe: what it signs, with the Ward CA's key, about a
//! wipe whose receipt it verified. The device's receipt proves that the holder of a key
//! wiped; the attestation ties that key to the device's certificates under the Ward CA and
//! adds the controller's record of the command (who asked, who approved). An auditor checks
//! both with OpenSSL and the CA certificate alone (README, "Checking a certificate").
//!
//! The attestation states the controller's records when it is made (`attested_at`): those
//! records are protected by the audit chain (`wardctl audit verify`, with checkpoints), not by
//! this signature.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use ward_certs::Identity;

use super::{Command, CommandKind, DeviceKey, Timestamp};

/// The attestation's `type`: also what keeps its signed bytes apart from everything else the
/// CA key signs (certificates, and audit heads, which are `ward-audit-head:` text).
pub const TYPE: &str = "ward.wipe-attestation/1";

const STATEMENT: &str = "The Ward controller verified the device-signed wipe receipt whose SHA-256 is receipt.sha256 against the device key whose SubjectPublicKeyInfo SHA-256 is receipt.signer_public_key_sha256; each certificate in receipt.signer_certificates was issued by the Ward CA for this device and that key; the command is as recorded by the controller at attested_at.";

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
    /// The device certificates the Ward CA issued for that key, each checked under the CA
    /// (issued for this device, certifying this key) when attested.
    pub signer_certificates: Vec<AttestedCertificate>,
    /// Serials of certificates recorded for that key whose certificate Ward did not keep
    /// (issued before it kept them): not checked, only the controller's record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unkept_certificates: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AttestedCertificate {
    /// Lower-case hex, as `openssl x509 -serial` shows it (upper-case there).
    pub serial: String,
    pub pem: String,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    #[error("command {0} has no wipe receipt")]
    NoReceipt(String),
    #[error("command {0}'s receipt did not verify")]
    NotVerified(String),
    #[error("command {0}'s receipt is signed by none of the device's keys")]
    UnknownSigner(String),
    #[error(
        "the kept certificate {serial} does not certify the device's key under the Ward CA ({why}); the database may have been edited"
    )]
    BadCertificate { serial: String, why: String },
    #[error(
        "no kept certificate certifies the key that signed command {0}'s receipt (the device's certificate was issued before the controller kept certificates; it has one after its next renewal)"
    )]
    Uncertified(String),
}

/// The attestation of `command`'s verified receipt, given the device's key history and the
/// certificates kept (DER by serial): the signer is the device key the receipt's signature
/// verifies with, and each kept certificate for that key must check under the CA of `cas`
/// that issued it (the former CA's too, after a rotation) as issued for this device and this
/// key (a row someone added to the database does not).
pub fn attest(
    command: &Command,
    keys: &[DeviceKey],
    kept: &BTreeMap<String, Vec<u8>>,
    cas: &[Vec<u8>],
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
    let device = Identity::Device(command.device_id.0);
    let mut signer_certificates = Vec::new();
    let mut unkept_certificates = Vec::new();
    for key in keys
        .iter()
        .filter(|k| k.public_key_der == signer.public_key_der)
    {
        let Some(der) = kept.get(&key.serial) else {
            unkept_certificates.push(key.serial.clone());
            continue;
        };
        let bad = |why: String| AttestError::BadCertificate {
            serial: key.serial.clone(),
            why,
        };
        let issuer = cas
            .iter()
            .find(|ca| ward_certs::validate::issued_by(der, ca))
            .or(cas.first())
            .ok_or_else(|| bad("no CA to check it under".into()))?;
        let peer = ward_certs::validate::certifies_key(der, issuer, &signer.public_key_der)
            .map_err(|e| bad(e.to_string()))?;
        if peer.identity != device || peer.serial != key.serial {
            return Err(bad(format!(
                "it was issued for {} with serial {}",
                peer.identity.to_uri(),
                peer.serial
            )));
        }
        signer_certificates.push(AttestedCertificate {
            serial: key.serial.clone(),
            pem: ward_certs::certificate_to_pem(der),
        });
    }
    // Only the CA's own certificate ties a key to the device: a key row alone (which someone
    // holding the database could add) is never attested.
    if signer_certificates.is_empty() {
        return Err(AttestError::Uncertified(id));
    }
    let scope = match &command.kind {
        CommandKind::Wipe { scope } => Some(scope.as_str()),
        CommandKind::Retire => Some(super::WipeScope::Messaging.as_str()),
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
            unkept_certificates,
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
    use crate::{CommandId, CommandState, DeviceId, Receipt, WipeScope};

    struct Setup {
        ca: ward_certs::CertificateAuthority,
        device: DeviceId,
    }

    impl Setup {
        fn new() -> Self {
            let now = time::OffsetDateTime::now_utc();
            Self {
                ca: ward_certs::CertificateAuthority::create("test", now).unwrap(),
                device: DeviceId::new_random(),
            }
        }

        /// A key, and a certificate for it issued to `device`: (key, its row, the DER).
        fn certified(&self, device: DeviceId) -> (ward_certs::PrivateKeyDer, DeviceKey, Vec<u8>) {
            let key = ward_certs::PrivateKeyDer::generate().unwrap();
            let csr = ward_certs::VerifiedCsr::from_der(
                &ward_certs::csr::make_csr(&key, "laptop").unwrap(),
            )
            .unwrap();
            let issued = self
                .ca
                .issue_client(
                    &csr,
                    &Identity::Device(device.0),
                    time::OffsetDateTime::now_utc(),
                    std::time::Duration::from_secs(3600),
                )
                .unwrap();
            let row = DeviceKey {
                serial: issued.serial.clone(),
                public_key_der: csr.public_key_der().to_vec(),
                issued_at: Timestamp::from_unix_ms(0),
                in_use_at: Some(Timestamp::from_unix_ms(0)),
                replaced_at: None,
            };
            (key, row, issued.der)
        }

        fn wiped(&self, signer: &ward_certs::PrivateKeyDer, verified: bool) -> Command {
            let body = br#"{"command_id":"c"}"#.to_vec();
            let signature = ward_certs::sign::sign(signer, &body).unwrap();
            Command {
                id: CommandId::new_random(),
                device_id: self.device,
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

        fn attest(
            &self,
            command: &Command,
            keys: &[DeviceKey],
            kept: &BTreeMap<String, Vec<u8>>,
        ) -> Result<WipeAttestation, AttestError> {
            attest(
                command,
                keys,
                kept,
                &[self.ca.cert_der().to_vec()],
                Timestamp::from_unix_ms(9),
            )
        }
    }

    #[test]
    fn names_the_key_that_signed_and_its_certificates_checked_under_the_ca() {
        let s = Setup::new();
        let (old, old_row, old_der) = s.certified(s.device);
        let (new, new_row, new_der) = s.certified(s.device);
        // A certificate issued before Ward kept them, for the same key.
        let mut unkept = new_row.clone();
        unkept.serial = "00ff".into();
        let keys = [old_row.clone(), new_row.clone(), unkept];
        let kept = BTreeMap::from([
            (old_row.serial.clone(), old_der),
            (new_row.serial.clone(), new_der),
        ]);
        let a = s.attest(&s.wiped(&new, true), &keys, &kept).unwrap();
        let serials: Vec<&str> = a
            .receipt
            .signer_certificates
            .iter()
            .map(|c| c.serial.as_str())
            .collect();
        assert_eq!(serials, [new_row.serial.as_str()]);
        assert!(
            a.receipt.signer_certificates[0]
                .pem
                .contains("BEGIN CERTIFICATE")
        );
        assert_eq!(a.receipt.unkept_certificates, ["00ff"]);
        assert_eq!(
            a.receipt.signer_public_key_sha256,
            hex::encode(Sha256::digest(&new_row.public_key_der))
        );
        assert_eq!(a.command.requested_by, "alice");
        assert_eq!(a.command.approved_by.as_deref(), Some("bob"));
        assert!(
            a.to_bytes()
                .unwrap()
                .starts_with(br#"{"type":"ward.wipe-attestation/1""#)
        );
        let by_old = s.attest(&s.wiped(&old, true), &keys, &kept).unwrap();
        assert_eq!(by_old.receipt.signer_certificates[0].serial, old_row.serial);
    }

    /// Someone holding the database adds a key row for a key of their own, with a
    /// certificate from another CA or another device's certificate: nothing is attested.
    #[test]
    fn a_key_row_added_to_the_database_is_not_attested() {
        let s = Setup::new();
        let (_, real_row, real_der) = s.certified(s.device);
        let other_ca = Setup::new();
        let (forger, forged_row, forged_der) = other_ca.certified(s.device);
        let keys = [real_row.clone(), forged_row.clone()];
        let kept = BTreeMap::from([
            (real_row.serial.clone(), real_der.clone()),
            (forged_row.serial.clone(), forged_der),
        ]);
        let err = s.attest(&s.wiped(&forger, true), &keys, &kept).unwrap_err();
        assert!(matches!(err, AttestError::BadCertificate { .. }), "{err}");

        // A genuine certificate, but of another device.
        let (thief, stolen_row, stolen_der) = s.certified(DeviceId::new_random());
        let keys = [real_row.clone(), stolen_row.clone()];
        let kept = BTreeMap::from([
            (real_row.serial.clone(), real_der),
            (stolen_row.serial.clone(), stolen_der),
        ]);
        let err = s.attest(&s.wiped(&thief, true), &keys, &kept).unwrap_err();
        assert!(matches!(err, AttestError::BadCertificate { .. }), "{err}");
    }

    /// A key row with no kept certificate (added to the database, or from before certificates
    /// were kept): the CA does not vouch for it.
    #[test]
    fn a_key_row_without_a_kept_certificate_is_not_attested() {
        let s = Setup::new();
        let (_, real_row, real_der) = s.certified(s.device);
        let (forger, forged_row, _) = s.certified(s.device);
        let keys = [real_row.clone(), forged_row];
        let kept = BTreeMap::from([(real_row.serial.clone(), real_der)]);
        let err = s.attest(&s.wiped(&forger, true), &keys, &kept).unwrap_err();
        assert!(matches!(err, AttestError::Uncertified(_)), "{err}");
    }

    #[test]
    fn nothing_is_attested_without_a_verified_receipt_by_a_device_key() {
        let s = Setup::new();
        let (device, row, der) = s.certified(s.device);
        let stranger = ward_certs::PrivateKeyDer::generate().unwrap();
        let keys = [row.clone()];
        let kept = BTreeMap::from([(row.serial.clone(), der)]);
        assert!(matches!(
            s.attest(&s.wiped(&device, false), &keys, &kept),
            Err(AttestError::NotVerified(_))
        ));
        assert!(matches!(
            s.attest(&s.wiped(&stranger, true), &keys, &kept),
            Err(AttestError::UnknownSigner(_))
        ));
        let mut none = s.wiped(&device, true);
        none.receipt = None;
        assert!(matches!(
            s.attest(&none, &keys, &kept),
            Err(AttestError::NoReceipt(_))
        ));
    }
}
