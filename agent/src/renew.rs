//! Certificate renewal: at about two thirds of the certificate's lifetime (with jitter, so a
//! fleet enrolled together does not renew together) the agent makes a new key, sends a CSR,
//! and swaps key and certificate so that a crash at any point leaves a working pair.

use std::time::Duration;

use time::OffsetDateTime;
use tracing::{info, warn};
use ward_certs::validate::validate_client_certificate_by_any;
use ward_certs::{DeviceKey, Identity, PrivateKeyDer, certificate_to_pem};
use ward_proto::v1::RenewRequest;

use crate::clock::SharedClock;
use crate::device_key::DeviceKeyStore;
use crate::link::{CALL_TIMEOUT, Link};
use crate::state::StateDir;

/// When to renew: `not_before` plus two thirds of the lifetime, moved by up to ±5 % of it
/// (`jitter` in [-1, 1]).
pub fn renew_at(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    jitter: f64,
) -> OffsetDateTime {
    let lifetime = (not_after - not_before).max(time::Duration::ZERO);
    not_before + lifetime * (2.0 / 3.0 + 0.05 * jitter.clamp(-1.0, 1.0))
}

/// The validity window of a DER certificate.
pub fn validity(cert_der: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der).ok()?;
    Some((
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
    ))
}

fn pending_path(dir: &StateDir) -> std::path::PathBuf {
    dir.root().join("device.pem.new")
}

/// The key of a renewal under way, kept until the renewal completes so that a retry after a
/// restart sends the same key (a new key would look like a second party to the controller).
pub fn renewal_key_path(dir: &StateDir) -> std::path::PathBuf {
    dir.root().join("renewal-key.pem")
}

/// The key of the renewal under way: the one saved in the state directory, or a new one,
/// saved (atomically, 0600) before any request is sent with it.
pub fn renewal_key(dir: &StateDir) -> Result<PrivateKeyDer, String> {
    let path = renewal_key_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => match PrivateKeyDer::from_pem(&text) {
            Ok(key) => return Ok(key),
            // Unreadable (a torn disk, an edit): a new key, and the controller's lapse of
            // unused renewals takes care of the old one.
            Err(_) => {
                warn!(path = %path.display(), "the saved renewal key is unreadable; making a new one")
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let key = PrivateKeyDer::generate().map_err(|e| e.to_string())?;
    ward_files::replace_file(&path, key.to_pem().as_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

/// Finishes a renewal a crash interrupted: the new certificate is kept only if it belongs to
/// the device key (the one in the secret store, or the TPM's).
pub fn recover(dir: &StateDir, key: &DeviceKey) {
    // A crash after the renewed key went into the secret store: that renewal is done.
    let saved = renewal_key_path(dir);
    if let Some(key) = key.in_memory()
        && let Ok(text) = std::fs::read_to_string(&saved)
        && let Ok(renewal) = PrivateKeyDer::from_pem(&text)
        && renewal.as_bytes() == key.as_bytes()
    {
        let _ = std::fs::remove_file(&saved);
    }
    let pending = pending_path(dir);
    let Ok(text) = std::fs::read_to_string(&pending) else {
        return;
    };
    let matches = ward_certs::certificates_from_pem(&text)
        .ok()
        .and_then(|certs| certs.into_iter().next())
        .is_some_and(|cert| key.matches_certificate(&cert));
    let outcome = if matches {
        std::fs::rename(&pending, dir.certificate())
    } else {
        std::fs::remove_file(&pending)
    };
    match outcome {
        Ok(()) => info!(
            kept = matches,
            "finished an interrupted certificate renewal"
        ),
        Err(e) => warn!(error = %e, "cannot finish an interrupted certificate renewal"),
    }
}

/// Renews now: new key (the same one for a key the TPM holds), CSR, new certificate for the
/// same identity, stored safely.
pub async fn renew(
    dir: &StateDir,
    device_id: &str,
    (store, current): (&DeviceKeyStore, &DeviceKey),
    link: &Link,
    cas: &[Vec<u8>],
    clock: &SharedClock,
) -> Result<OffsetDateTime, String> {
    let key = key_for_renewal(dir, store, current)?;
    renew_with(&key, dir, device_id, store, link, cas, clock).await
}

/// The key a renewal sends: a new one from [`renewal_key`] for a key in memory, the TPM's own.
fn key_for_renewal(
    dir: &StateDir,
    store: &DeviceKeyStore,
    current: &DeviceKey,
) -> Result<DeviceKey, String> {
    if store.renews_key() {
        renewal_key(dir).map(DeviceKey::from)
    } else {
        Ok(current.clone())
    }
}

/// Renews with `key`. A retry after a lost answer must send the same key: the controller
/// tells a retry from a second party renewing the same device by the key.
pub async fn renew_with(
    key: &DeviceKey,
    dir: &StateDir,
    device_id: &str,
    store: &DeviceKeyStore,
    link: &Link,
    cas: &[Vec<u8>],
    clock: &SharedClock,
) -> Result<OffsetDateTime, String> {
    let csr = key
        .make_csr(&crate::facts::collect().hostname)
        .map_err(|e| e.to_string())?;
    let mut connected = link.client().await.map_err(|(_, e)| e)?;
    let response = tokio::time::timeout(
        CALL_TIMEOUT,
        connected.client.renew(RenewRequest { csr_der: csr }),
    )
    .await
    .map_err(|_| "renewal timed out".to_owned())?
    .map_err(|status| status.message().to_owned())?
    .into_inner();
    let peer = validate_client_certificate_by_any(
        &response.certificate_der,
        cas,
        clock.now(),
        crate::AGENT_CLOCK_TOLERANCE,
    )
    .map_err(|e| format!("the renewed certificate is not valid: {e}"))?;
    if peer.identity.to_uri() != Identity::Device(parse_uuid(device_id)?).to_uri() {
        return Err(format!(
            "the renewed certificate is for {}, not this device",
            peer.identity
        ));
    }
    if !key.matches_certificate(&response.certificate_der) {
        return Err("the renewed certificate is not for the key this agent sent".into());
    }
    // New certificate beside the old one, then the key, then the certificate into place:
    // `recover` completes or undoes a crash between the steps.
    let pending = pending_path(dir);
    ward_files::replace_file(
        &pending,
        certificate_to_pem(&response.certificate_der).as_bytes(),
        0o644,
    )
    .map_err(|e| format!("cannot write {}: {e}", pending.display()))?;
    store.replace(key).await.map_err(|e| e.to_string())?;
    std::fs::rename(&pending, dir.certificate())
        .map_err(|e| format!("cannot install the renewed certificate: {e}"))?;
    // Done: the next renewal makes a new key.
    match std::fs::remove_file(renewal_key_path(dir)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(error = %e, "cannot remove the key of the finished renewal"),
    }
    info!(not_after = %crate::rfc3339(peer.not_after), "certificate renewed");
    Ok(peer.not_after)
}

fn parse_uuid(id: &str) -> Result<uuid::Uuid, String> {
    uuid::Uuid::parse_str(id).map_err(|_| format!("state.json holds an invalid device id {id:?}"))
}

/// Renews when due, retrying with backoff; returns once a renewal succeeded (the agent then
/// restarts its session with the new certificate). Never returns if renewal keeps failing.
pub async fn renewal_loop(
    dir: StateDir,
    device_id: String,
    (store, current): (DeviceKeyStore, DeviceKey),
    link: std::sync::Arc<Link>,
    cas: Vec<Vec<u8>>,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    clock: SharedClock,
) {
    let jitter = rand::random_range(-1.0..=1.0);
    let due = renew_at(not_before, not_after, jitter);
    info!(renew_at = %crate::rfc3339(due), "certificate renewal scheduled");
    // One key for every attempt, kept in the state directory across restarts: a retry after
    // an answer that never arrived is then the same party to the controller, not a second
    // one renewing this device.
    let mut key = None;
    loop {
        let now = clock.now();
        if now < due {
            let wait = (due - now).try_into().unwrap_or(Duration::from_secs(3600));
            // Sleep in bounded steps so a suspended laptop notices when it wakes.
            tokio::time::sleep(wait.min(Duration::from_secs(3600))).await;
            continue;
        }
        if key.is_none() {
            match key_for_renewal(&dir, &store, &current) {
                Ok(made) => key = Some(made),
                Err(e) => warn!(error = %e, "cannot make a key for the renewal"),
            }
        }
        let attempt = match &key {
            Some(key) => renew_with(key, &dir, &device_id, &store, &link, &cas, &clock).await,
            None => Err("no key for the renewal".to_owned()),
        };
        match attempt {
            Ok(_) => return,
            Err(e) => {
                let wait = retry_after(now, not_after);
                warn!(error = %e, retry_in_s = wait.as_secs(), "certificate renewal failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// How long to wait before retrying a failed renewal: a tenth of what is left, between one
/// minute and one hour.
pub fn retry_after(now: OffsetDateTime, not_after: OffsetDateTime) -> Duration {
    let left = (not_after - now).max(time::Duration::ZERO);
    Duration::from_secs_f64((left.as_seconds_f64() / 10.0).clamp(60.0, 3600.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn renewal_falls_at_two_thirds_with_bounded_jitter() {
        let week = 7 * 86_400;
        let (nb, na) = (t(0), t(week));
        assert_eq!(renew_at(nb, na, 0.0), t(week * 2 / 3));
        let early = renew_at(nb, na, -1.0);
        let late = renew_at(nb, na, 1.0);
        assert!(early < t(week * 2 / 3) && late > t(week * 2 / 3));
        assert!(early >= t(week * 6 / 10) && late <= t(week * 72 / 100));
        assert_eq!(renew_at(nb, na, 7.0), late, "jitter is clamped");
    }

    #[test]
    fn retries_back_off_within_bounds() {
        assert_eq!(retry_after(t(0), t(100)), Duration::from_secs(60));
        assert_eq!(retry_after(t(0), t(10 * 86_400)), Duration::from_secs(3600));
        assert_eq!(retry_after(t(100), t(0)), Duration::from_secs(60));
    }
}
