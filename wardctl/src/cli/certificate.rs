//! `wardctl command show ID --certificate`: a wipe's certificate of sanitization, in the terms
//! of NIST SP 800-88 Rev. 2, for a compliance officer. What was done is the device's signed
//! receipt; which command and which admin asked for it is the controller's record. Only a
//! receipt the controller verified gives a certificate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use ward_certs::receipt::{KeyProtection, WipeReceiptBody};
use ward_proto::v1;

use super::error::{CliError, Exit};
use super::output::{OutputFormat, print_fields, print_json};
use ward_core::Timestamp;
use ward_core::command::MAX_TEXT_LEN;
use ward_core::text::clean;

/// Said where a receipt from an older agent does not state a field.
const NOT_STATED: &str =
    "not stated (the receipt comes from an agent before the certificate fields; upgrade the agent)";

#[derive(Debug, Serialize)]
pub(super) struct Certificate {
    pub title: &'static str,
    pub standard: &'static str,
    /// The controller verified the receipt's signature against the device's enrolled key.
    pub receipt_verified: bool,
    pub device: Device,
    pub media: Media,
    pub category: Option<String>,
    pub method: Option<String>,
    pub key: Key,
    pub files_method: Option<String>,
    pub tool: Option<String>,
    pub tool_version: Option<String>,
    pub verification: Verification,
    /// The device's clock, as its receipt states it, written like every other time
    /// (RFC 3339, UTC, milliseconds; the exact text is in the signed bytes).
    pub started_at: Option<String>,
    pub completed_at: String,
    /// The controller's record of who asked for the wipe.
    pub command: CommandRecord,
    pub signature: Signature,
    /// The controller's statement, signed by the Ward CA, that ties the signing key to the
    /// device's certificates and states the command's record.
    pub attestation: Option<Attestation>,
}

#[derive(Debug, Serialize)]
pub(super) struct Device {
    /// The device's id (README, "JSON output": the canonical name).
    pub device_id: String,
    /// Deprecated alias of `device_id`, kept for existing scripts.
    pub id: String,
    pub hostname: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Media {
    pub kind: &'static str,
    pub messaging_dir: Option<String>,
    /// What the directory held when the deletion began.
    pub files: u64,
    pub bytes: u64,
    /// For a full wipe: what the device's erase hook reported (Ward does not verify it).
    pub full_erase_hook: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct Key {
    /// "tpm", "keyring", "file-best-effort"; null from an agent that did not say.
    pub protection: Option<String>,
    pub guarantee: Option<&'static str>,
    pub location: Option<String>,
    pub destruction: Option<String>,
    pub destroyed: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct Verification {
    pub method: Option<String>,
    pub result: Option<String>,
    pub key_destroyed: bool,
    pub directory_verified_empty: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct CommandRecord {
    /// The command's id (README, "JSON output": the canonical name).
    pub command_id: String,
    /// Deprecated alias of `command_id`, kept for existing scripts.
    pub id: String,
    pub kind: String,
    pub scope: Option<String>,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: String,
    pub approved_by: Option<String>,
    /// When the controller recorded the result (its clock).
    pub finished_at: Option<String>,
}

/// What checking the signature needs, with OpenSSL alone (README, "Checking a certificate").
#[derive(Debug, Serialize)]
pub(super) struct Signature {
    pub scheme: Option<&'static str>,
    /// The signing key the receipt names; the controller checked it is the enrolled one.
    pub signer_public_key_pem: Option<String>,
    /// The exact signed bytes, and the signature, in base64.
    pub body_base64: String,
    pub signature_base64: String,
}

/// The controller's signed attestation (README, "Checking a certificate with OpenSSL").
#[derive(Debug, Serialize)]
pub(super) struct Attestation {
    pub signed_by: &'static str,
    pub scheme: &'static str,
    /// What it states, read from the signed bytes (for reading; the bytes are what counts).
    pub statement: Option<serde_json::Value>,
    pub body_base64: String,
    pub signature_base64: String,
}

impl Attestation {
    pub(super) fn new(signed: &v1::WipeAttestation) -> Self {
        Self {
            signed_by: "the Ward CA's key (the public key of ca.pem)",
            scheme: "ECDSA P-256 with SHA-256 (openssl dgst -sha256 -verify)",
            statement: serde_json::from_slice(&signed.body).ok(),
            body_base64: STANDARD.encode(&signed.body),
            signature_base64: STANDARD.encode(&signed.signature),
        }
    }
}

fn shown(text: &str) -> String {
    clean(text, MAX_TEXT_LEN)
}

fn opt(text: &Option<String>) -> Option<String> {
    text.as_deref().map(shown)
}

/// A time the device stated, written like every other time (text that is not RFC 3339 is
/// shown as it is, made safe).
fn device_time(text: &str) -> String {
    Timestamp::parse_rfc3339(text).map_or_else(|| shown(text), Timestamp::rfc3339)
}

fn time(ms: i64) -> Option<String> {
    (ms != 0).then(|| Timestamp::from_unix_ms(ms).rfc3339())
}

/// The certificate for a command, or why there is none.
pub(super) fn certificate(command: &v1::Command) -> Result<Certificate, CliError> {
    let no = |why: String| CliError::new(Exit::Failed, why);
    let id = shown(&command.id);
    let Some(receipt) = &command.receipt else {
        return Err(no(format!(
            "command {id} has no wipe receipt, so there is no certificate of sanitization (only a wipe the device reported with a signed receipt has one)"
        )));
    };
    if !receipt.verified {
        return Err(no(format!(
            "command {id}'s receipt did not verify ({}): no certificate of sanitization is issued for it",
            shown(&receipt.verification_error)
        )));
    }
    let body: WipeReceiptBody = serde_json::from_slice(&receipt.body).map_err(|e| {
        no(format!(
            "command {id}'s receipt verified but this wardctl cannot read it ({e}); use a wardctl as new as the controller"
        ))
    })?;
    let s = body.sanitization.as_ref();
    let signer = s.and_then(|s| STANDARD.decode(&s.signer_public_key).ok());
    Ok(Certificate {
        title: "Certificate of sanitization",
        standard: ward_certs::sanitization::STANDARD,
        receipt_verified: true,
        device: Device {
            device_id: shown(&body.device_id),
            id: shown(&body.device_id),
            hostname: s.map(|s| shown(&s.hostname)),
        },
        media: Media {
            kind: "messaging data directory",
            messaging_dir: s.map(|s| shown(&s.messaging_dir)),
            files: s.map_or(body.files_removed, |s| s.files_found),
            bytes: s.map_or(body.bytes_removed, |s| s.bytes_found),
            full_erase_hook: opt(&body.full_erase),
        },
        category: s.map(|s| shown(&s.category)),
        method: s.map(|s| shown(&s.method)),
        key: Key {
            protection: body.key_protection.map(|k| k.as_str().to_owned()),
            guarantee: body.key_protection.map(KeyProtection::guarantee),
            location: s.map(|s| shown(&s.key_location)),
            destruction: s.map(|s| shown(&s.key_destruction)),
            destroyed: body.key_destroyed,
        },
        files_method: s.map(|s| shown(&s.files_method)),
        tool: s.map(|s| shown(&s.tool)),
        tool_version: s.map(|s| shown(&s.tool_version)),
        verification: Verification {
            method: s.map(|s| shown(&s.verification_method)),
            result: s.map(|s| shown(&s.verification)),
            key_destroyed: body.key_destroyed,
            directory_verified_empty: body.verified_empty,
        },
        started_at: s.and_then(|s| s.started_at.as_deref().map(device_time)),
        completed_at: device_time(&body.completed_at),
        command: CommandRecord {
            command_id: id.clone(),
            id,
            kind: shown(&command.kind),
            scope: (!command.scope.is_empty()).then(|| shown(&command.scope)),
            reason: shown(&command.reason),
            requested_by: shown(&command.created_by),
            requested_at: Timestamp::from_unix_ms(command.created_at_unix_ms).rfc3339(),
            approved_by: (!command.approved_by.is_empty()).then(|| shown(&command.approved_by)),
            finished_at: time(command.finished_at_unix_ms),
        },
        signature: Signature {
            scheme: signer.as_deref().and_then(ward_certs::sign::scheme),
            signer_public_key_pem: signer.as_deref().map(ward_certs::sign::public_key_pem),
            body_base64: STANDARD.encode(&receipt.body),
            signature_base64: STANDARD.encode(&receipt.signature),
        },
        attestation: None,
    })
}

pub(super) fn print(cert: &Certificate, output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => print_json(cert),
        OutputFormat::Table => {
            let or_not = |v: &Option<String>| v.clone().unwrap_or_else(|| NOT_STATED.into());
            let c = &cert.command;
            let mut fields = vec![
                ("certificate", format!("{} ({})", cert.title, cert.standard)),
                (
                    "receipt",
                    "signed by the device key; the controller verified the signature against the key it enrolled".into(),
                ),
                (
                    "device",
                    match &cert.device.hostname {
                        Some(h) => format!("{} (host name {h})", cert.device.id),
                        None => cert.device.id.clone(),
                    },
                ),
                (
                    "media sanitized",
                    format!(
                        "{} {}: {} files, {} bytes",
                        cert.media.kind,
                        or_not(&cert.media.messaging_dir),
                        cert.media.files,
                        cert.media.bytes
                    ),
                ),
                (
                    "category, method",
                    match (&cert.category, &cert.method) {
                        (Some(c), Some(m)) => format!("{c}: {m}"),
                        _ => NOT_STATED.into(),
                    },
                ),
                (
                    "key held",
                    match (&cert.key.protection, cert.key.guarantee) {
                        (Some(p), Some(g)) => {
                            format!("{p}: {}; {g}", or_not(&cert.key.location))
                        }
                        _ => or_not(&cert.key.location),
                    },
                ),
                ("key destroyed by", or_not(&cert.key.destruction)),
                ("files", or_not(&cert.files_method)),
            ];
            if let Some(hook) = &cert.media.full_erase_hook {
                fields.push((
                    "full erase",
                    format!(
                        "{hook} (the device's erase hook ran; Ward does not verify what it erased)"
                    ),
                ));
            }
            fields.extend([
                (
                    "tool",
                    match (&cert.tool, &cert.tool_version) {
                        (Some(t), Some(v)) => format!("{t} {v}"),
                        _ => NOT_STATED.into(),
                    },
                ),
                (
                    "verification",
                    match (&cert.verification.method, &cert.verification.result) {
                        (Some(m), Some(r)) => format!("{m}: {r}"),
                        _ => format!(
                            "key destroyed {}, directory verified empty {}",
                            cert.verification.key_destroyed,
                            cert.verification.directory_verified_empty
                        ),
                    },
                ),
                (
                    "performed",
                    format!(
                        "{} to {} (device clock)",
                        or_not(&cert.started_at),
                        cert.completed_at
                    ),
                ),
                (
                    "command",
                    format!(
                        "{} {}{}",
                        c.id,
                        c.kind,
                        c.scope
                            .as_ref()
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default()
                    ),
                ),
                (
                    "requested by",
                    format!("{} at {}: {:?}", c.requested_by, c.requested_at, c.reason),
                ),
                (
                    "approved by",
                    c.approved_by.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "recorded",
                    c.finished_at.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "signature",
                    cert.signature.scheme.unwrap_or("not stated").to_owned(),
                ),
                ("signed body (base64)", cert.signature.body_base64.clone()),
                (
                    "signature (base64)",
                    cert.signature.signature_base64.clone(),
                ),
            ]);
            if let Some(a) = &cert.attestation {
                fields.extend([
                    (
                        "attested by",
                        format!("the controller, signed with {} ({})", a.signed_by, a.scheme),
                    ),
                    ("attestation (base64)", a.body_base64.clone()),
                    ("attestation signature (base64)", a.signature_base64.clone()),
                ]);
            }
            print_fields(&fields);
            if let Some(pem) = &cert.signature.signer_public_key_pem {
                print!("{pem}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(receipt: Option<v1::StoredReceipt>) -> v1::Command {
        v1::Command {
            id: "c1".into(),
            device_id: "d1".into(),
            kind: "wipe".into(),
            scope: "messaging".into(),
            reason: "stolen".into(),
            created_by: "alice".into(),
            receipt,
            ..Default::default()
        }
    }

    fn stored(verified: bool, body: &[u8]) -> Option<v1::StoredReceipt> {
        Some(v1::StoredReceipt {
            verified,
            body: body.to_vec(),
            signature: vec![1, 2, 3],
            verification_error: if verified { "" } else { "bad signature" }.into(),
        })
    }

    /// The exact body an agent before the certificate fields signed.
    const OLD: &[u8] = br#"{"command_id":"c1","device_id":"d1","completed_at":"2026-11-24T00:00:00Z","scope":"messaging","key_destroyed":true,"files_removed":3,"bytes_removed":42,"verified_empty":true,"key_protection":"file-best-effort"}"#;

    #[test]
    fn only_a_verified_receipt_gives_a_certificate() {
        let none = certificate(&command(None)).unwrap_err();
        assert!(
            none.message.contains("has no wipe receipt"),
            "{}",
            none.message
        );
        let unverified = certificate(&command(stored(false, OLD))).unwrap_err();
        assert!(
            unverified
                .message
                .contains("did not verify (bad signature)"),
            "{}",
            unverified.message
        );
        assert_eq!(unverified.exit, Exit::Failed);
    }

    #[test]
    fn a_receipt_from_an_older_agent_says_what_it_does_not_state() {
        let cert = certificate(&command(stored(true, OLD))).unwrap();
        assert_eq!(cert.media.files, 3);
        assert_eq!(cert.key.protection.as_deref(), Some("file-best-effort"));
        assert_eq!(cert.method, None);
        assert_eq!(cert.signature.signer_public_key_pem, None);
        assert_eq!(cert.command.requested_by, "alice");
        let json = serde_json::to_value(&cert).unwrap();
        assert_eq!(json["key"]["location"], serde_json::Value::Null);
        assert_eq!(json["standard"], "NIST SP 800-88 Rev. 2");
    }
}
