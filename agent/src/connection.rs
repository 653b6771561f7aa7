//! What the agent last learned about its standing with the controller, for the logs and for
//! `ward-agent status` (`STATE/connection.json`).
//!
//! A controller refuses a revoked or expired device certificate in the TLS handshake: the
//! agent sees a TLS alert (`certificate_revoked`, `certificate_expired`) inside a transport
//! error, not a gRPC status, and only while a connection made before the refusal still stands
//! does it get the controller's own words. Both are recognised here. A server certificate the
//! agent cannot verify (unknown CA, expired, wrong name) is told apart too: for the offline
//! timer it is the same as silence.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rustls::AlertDescription;
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::clock::SharedClock;

/// The last thing learned from (or about) the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// A check-in completed.
    CheckedIn,
    /// The controller refused this device's certificate as revoked.
    Revoked,
    /// The controller refused this device's certificate as expired.
    CertificateExpired,
    /// The controller refused this device for another reason (see the detail).
    Refused,
    /// The server's certificate could not be verified: not our controller, as far as this
    /// device can tell.
    UntrustedServer,
    /// No answer: network, controller down, timeout.
    Unreachable,
    /// The agent could not start a session (its key or certificate cannot be used).
    CannotStart,
}

impl Finding {
    /// A name scripts can match.
    pub fn as_str(self) -> &'static str {
        match self {
            Finding::CheckedIn => "checked_in",
            Finding::Revoked => "revoked",
            Finding::CertificateExpired => "certificate_expired",
            Finding::Refused => "refused",
            Finding::UntrustedServer => "untrusted_server",
            Finding::Unreachable => "unreachable",
            Finding::CannotStart => "cannot_start",
        }
    }

    /// What it means and what to do, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            Finding::CheckedIn => "the controller accepts this device",
            Finding::Revoked => {
                "the controller refuses this device: its certificate was revoked. Enroll it again with a new token (`wardctl token create`, then `ward-agent enroll`); the offline timer keeps running meanwhile"
            }
            Finding::CertificateExpired => {
                "the controller refuses this device: its certificate has expired. Enroll it again with a new token (`wardctl token create`, then `ward-agent enroll`); the offline timer keeps running meanwhile"
            }
            Finding::Refused => {
                "the controller refuses this device (see the detail); if it was revoked or retired, enroll it again with a new token"
            }
            Finding::UntrustedServer => {
                "the server's certificate cannot be verified against this device's CA: it is not the controller this device enrolled with, or its certificate expired. For the offline timer this counts as no contact at all"
            }
            Finding::Unreachable => "the controller cannot be reached; the agent keeps trying",
            Finding::CannotStart => {
                "the agent cannot use its key or certificate (see the detail); it retries, and the offline timer keeps running meanwhile"
            }
        }
    }

    /// Whether `status` reports it as a problem.
    pub fn is_problem(self) -> bool {
        self != Finding::CheckedIn
    }

    /// An answer from the controller (or about its identity) outlives later attempts that get
    /// no answer at all: a revoked device whose controller is down is still revoked.
    fn outlives_silence(self) -> bool {
        matches!(
            self,
            Finding::Revoked
                | Finding::CertificateExpired
                | Finding::Refused
                | Finding::UntrustedServer
        )
    }
}

/// A refusal by a TLS alert or a certificate we could not verify, from an error's text.
/// (h2 keeps only the text of the I/O error that carries rustls's error, so the text is what
/// reaches us; the tests below pin rustls's wording.)
pub fn classify_text(text: &str) -> Option<Finding> {
    let alert = |a: AlertDescription| text.contains(&rustls::Error::AlertReceived(a).to_string());
    if alert(AlertDescription::CertificateRevoked) {
        Some(Finding::Revoked)
    } else if alert(AlertDescription::CertificateExpired) {
        Some(Finding::CertificateExpired)
    } else if [
        AlertDescription::BadCertificate,
        AlertDescription::UnsupportedCertificate,
        AlertDescription::CertificateUnknown,
        AlertDescription::UnknownCA,
        AlertDescription::AccessDenied,
        AlertDescription::CertificateRequired,
    ]
    .into_iter()
    .any(alert)
    {
        Some(Finding::Refused)
    } else if text.contains("invalid peer certificate: ") || text.contains("CA pin mismatch") {
        Some(Finding::UntrustedServer)
    } else {
        None
    }
}

/// Classifies a failed call: the controller's own refusal, a refusal in the handshake, or
/// no answer.
pub fn classify_status(status: &tonic::Status) -> Finding {
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied | Code::NotFound => {
            if status.message().contains("revoked") {
                Finding::Revoked
            } else {
                Finding::Refused
            }
        }
        _ => classify_text(&ward_proto::transport::error_chain(status))
            .unwrap_or(Finding::Unreachable),
    }
}

/// `STATE/connection.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    /// The device this was learned for (a re-enrollment starts afresh).
    pub device_id: String,
    pub finding: Finding,
    /// The error or the controller's words.
    pub detail: String,
    /// Since when this has been the finding, and when it was last confirmed (RFC 3339).
    pub since: String,
    pub seen_at: String,
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("connection.json")
}

/// What is on record for `device_id`, if anything.
pub fn load(state_dir: &Path, device_id: &str) -> Option<Standing> {
    let bytes = std::fs::read(path(state_dir)).ok()?;
    serde_json::from_slice::<Standing>(&bytes)
        .ok()
        .filter(|s| s.device_id == device_id)
}

/// Keeps the standing up to date, writing only when it changes (or every ten minutes, so
/// `seen_at` stays meaningful).
#[derive(Debug)]
pub struct Recorder {
    state_dir: PathBuf,
    device_id: String,
    clock: SharedClock,
    current: Mutex<Option<Standing>>,
}

impl Recorder {
    pub fn new(state_dir: &Path, device_id: &str, clock: SharedClock) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            device_id: device_id.to_owned(),
            clock,
            current: Mutex::new(load(state_dir, device_id)),
        }
    }

    /// The finding on record, if any.
    pub fn finding(&self) -> Option<Finding> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|s| s.finding)
    }

    /// Records a finding; true when it changed what is on record (worth a log line).
    pub fn record(&self, finding: Finding, detail: &str) -> bool {
        let now = self.clock.now();
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = match current.as_mut() {
            Some(s) if finding == Finding::Unreachable && s.finding.outlives_silence() => {
                return false;
            }
            Some(s) if s.finding == finding => {
                let seen = crate::parse_rfc3339(&s.seen_at);
                if seen.is_some_and(|t| (now - t).whole_minutes().abs() < 10) {
                    return false;
                }
                s.seen_at = crate::rfc3339(now);
                false
            }
            _ => {
                *current = Some(Standing {
                    device_id: self.device_id.clone(),
                    finding,
                    detail: detail.chars().take(500).collect(),
                    since: crate::rfc3339(now),
                    seen_at: crate::rfc3339(now),
                });
                true
            }
        };
        if let Some(standing) = current.as_ref() {
            let bytes = serde_json::to_vec_pretty(standing).unwrap_or_default();
            if let Err(e) = ward_files::replace_file(&path(&self.state_dir), &bytes, 0o600) {
                tracing::warn!(error = %e, "cannot record the connection state for `status`");
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    #[test]
    fn handshake_refusals_are_recognised_in_rustls_wording() {
        let chain = |e: rustls::Error| {
            format!(
                "status: Unknown, message: \"transport error\", source: hyper::Error(Io, Custom {{ kind: InvalidData, error: \"{e}\" }})"
            )
        };
        let revoked = chain(rustls::Error::AlertReceived(
            AlertDescription::CertificateRevoked,
        ));
        assert_eq!(classify_text(&revoked), Some(Finding::Revoked));
        let expired = chain(rustls::Error::AlertReceived(
            AlertDescription::CertificateExpired,
        ));
        assert_eq!(classify_text(&expired), Some(Finding::CertificateExpired));
        let unknown_ca = chain(rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(classify_text(&unknown_ca), Some(Finding::Refused));
        let untrusted = chain(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(classify_text(&untrusted), Some(Finding::UntrustedServer));
        let server_expired = chain(rustls::Error::InvalidCertificate(CertificateError::Expired));
        assert_eq!(
            classify_text(&server_expired),
            Some(Finding::UntrustedServer)
        );
        assert_eq!(classify_text("connection refused (os error 111)"), None);
    }

    #[test]
    fn the_controllers_own_refusals_are_recognised() {
        let revoked =
            tonic::Status::unauthenticated("device 1 has been revoked; enroll it again to use it");
        assert_eq!(classify_status(&revoked), Finding::Revoked);
        let retired = tonic::Status::unauthenticated("device 1 has been retired");
        assert_eq!(classify_status(&retired), Finding::Refused);
        let down = tonic::Status::unavailable("connection refused");
        assert_eq!(classify_status(&down), Finding::Unreachable);
    }

    #[test]
    fn a_refusal_outlives_later_silence_but_not_a_check_in() {
        let tmp = tempfile::tempdir().unwrap();
        let clock = crate::clock::ManualClock::new(
            time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        );
        let recorder = Recorder::new(tmp.path(), "dev-1", clock.shared());
        assert!(recorder.record(Finding::Revoked, "received fatal alert"));
        assert!(!recorder.record(Finding::Revoked, "again"));
        assert!(!recorder.record(Finding::Unreachable, "connection closed"));
        assert_eq!(load(tmp.path(), "dev-1").unwrap().finding, Finding::Revoked);
        assert!(load(tmp.path(), "another-device").is_none());
        assert!(recorder.record(Finding::CheckedIn, ""));
        assert!(recorder.record(Finding::Unreachable, "down"));
        assert_eq!(
            load(tmp.path(), "dev-1").unwrap().finding,
            Finding::Unreachable
        );
    }
}
