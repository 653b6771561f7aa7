//! `ward-agent enroll`: make a key pair here, prove it to the controller with a CSR over a
//! connection pinned to the CA hash, and keep what comes back.

use tonic::Code;
use tracing::info;
use ward_certs::validate::validate_client_certificate;
use ward_certs::{CaHash, DeviceKey, Identity, PrivateKeyDer, certificate_to_pem};
use ward_files::{create_private_dir, create_public_file};
use ward_proto::transport::{ChannelOptions, ServerUrl, connect, error_chain};
use ward_proto::v1::EnrollRequest;
use ward_proto::v1::enrollment_service_client::EnrollmentServiceClient;

use crate::clock::{SharedClock, tls_time};
use crate::error::AgentError;
use crate::facts;
use crate::secrets::{SecretStore, SecretStoreKind};
use crate::state::{AgentState, STATE_VERSION, StateDir};
use crate::tpm_key::TpmDeviceKey;

#[derive(Debug)]
pub struct EnrollOptions {
    pub server: ServerUrl,
    pub token: zeroize::Zeroizing<String>,
    pub ca_hash: CaHash,
    pub secret_store: SecretStoreKind,
    /// The TPM that makes and holds the device key (`secret_store: Tpm`).
    pub tpm: Option<crate::tpm::Tpm>,
}

/// Enrolls this device. Nothing is written to the state directory unless the controller
/// accepted the token and returned a certificate that checks out: issued by the pinned CA,
/// for the device id the answer names, and for the key this agent sent.
pub async fn enroll(dir: &StateDir, options: EnrollOptions) -> Result<AgentState, AgentError> {
    enroll_with_clock(dir, options, &crate::clock::system()).await
}

/// [`enroll`] on the agent's clock (the enrollment time, and the TLS stack's and the issued
/// certificate's validity checks).
pub async fn enroll_with_clock(
    dir: &StateDir,
    options: EnrollOptions,
    clock: &SharedClock,
) -> Result<AgentState, AgentError> {
    if dir.is_enrolled() {
        let existing = dir
            .load()
            .ok()
            .map(|s| s.device_id)
            .unwrap_or_else(|| "unknown".into());
        return Err(AgentError::Usage(format!(
            "{} already holds an enrollment (device {existing}); use another --state-dir, or remove that directory to enroll afresh (a device key it holds in the TPM stays at its handle: `ward-agent status` shows it; tpm2_evictcontrol -C o -c HANDLE frees it)",
            dir.root().display()
        )));
    }
    // Where the key will live must work before the one-time token is spent.
    let created_dir = !dir.root().exists();
    let result = match probe(dir, &options).await {
        Ok(()) => enroll_checked(dir, options, clock).await,
        Err(e) => Err(e),
    };
    if result.is_err() && created_dir {
        // A refused or failed enrollment leaves nothing behind.
        let _ = std::fs::remove_dir_all(dir.root());
    }
    result
}

/// Checks that the chosen store can keep the key, before the token is spent.
async fn probe(dir: &StateDir, options: &EnrollOptions) -> Result<(), AgentError> {
    match (options.secret_store, &options.tpm) {
        (SecretStoreKind::Tpm, None) => Err(AgentError::Usage(
            "--secret-store tpm needs a TPM, and --tpm gave none (auto looks for /dev/tpmrm0 with tpm2-tools installed; none uses none): name one with --tpm TCTI, or choose --secret-store file".into(),
        )),
        (SecretStoreKind::Tpm, Some(tpm)) => {
            tpm.probe().await.map_err(|e| {
                AgentError::Failed(format!(
                    "the TPM does not answer ({e}); nothing was sent. Enroll with --secret-store file to keep the device key without it"
                ))
            })?;
            create_private_dir(dir.root())
                .map_err(|source| dir.io("cannot create", dir.root(), source).into())
        }
        (kind, _) => SecretStore::probe(kind, dir.root())
            .await
            .map_err(Into::into),
    }
}

async fn enroll_checked(
    dir: &StateDir,
    options: EnrollOptions,
    clock: &SharedClock,
) -> Result<AgentState, AgentError> {
    match (options.secret_store, options.tpm.clone()) {
        (SecretStoreKind::Tpm, Some(tpm)) => {
            let held = TpmDeviceKey::create(&tpm, dir.root())
                .await
                .map_err(|e| {
                    AgentError::Failed(format!(
                        "cannot make the device key in the TPM ({e}); nothing was sent. Enroll with --secret-store file to keep it without the TPM"
                    ))
                })?;
            let handle = held.handle();
            let key = DeviceKey::held(std::sync::Arc::new(held))
                .map_err(|e| AgentError::Failed(e.to_string()))?;
            let result = enroll_with_key(dir, options, clock, &key, Some(handle)).await;
            if result.is_err() {
                // A refused enrollment leaves nothing behind, in the TPM either.
                if let Err(e) = TpmDeviceKey::destroy(&tpm, handle, dir.root()).await {
                    tracing::warn!(error = %e, handle = format!("{handle:#010x}"), "cannot evict the device key of the failed enrollment from the TPM");
                }
            }
            result
        }
        _ => {
            let key = PrivateKeyDer::generate().map_err(|e| AgentError::Failed(e.to_string()))?;
            enroll_with_key(dir, options, clock, &DeviceKey::from(key), None).await
        }
    }
}

async fn enroll_with_key(
    dir: &StateDir,
    options: EnrollOptions,
    clock: &SharedClock,
    key: &DeviceKey,
    tpm_key_handle: Option<u32>,
) -> Result<AgentState, AgentError> {
    let hostname = facts::collect().hostname;
    let csr = key
        .make_csr(&hostname)
        .map_err(|e| AgentError::Failed(e.to_string()))?;

    let (tls, pin_report) =
        ward_certs::tls::pinned_client_config_with_time(options.ca_hash, tls_time(clock))
            .map_err(|e| AgentError::Failed(e.to_string()))?;
    let connected = connect(&options.server, tls, ChannelOptions::default()).await;
    let channel = match connected {
        Ok(channel) => channel,
        Err(e) => {
            return Err(pin_mismatch(&pin_report, options.ca_hash)
                .unwrap_or(AgentError::Unreachable(e.to_string())));
        }
    };
    let mut client = EnrollmentServiceClient::new(channel);
    let response = client
        .enroll(EnrollRequest {
            token: options.token.to_string(),
            csr_der: csr,
            facts: Some(facts::collect()),
        })
        .await;
    let response = match response {
        Ok(r) => r.into_inner(),
        Err(status) => {
            if let Some(e) = pin_mismatch(&pin_report, options.ca_hash) {
                return Err(e);
            }
            return Err(match status.code() {
                Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::NotFound
                | Code::PermissionDenied => AgentError::Rejected(format!(
                    "the controller refused the enrollment: {}",
                    status.message()
                )),
                _ => {
                    AgentError::Unreachable(format!("enrollment failed: {}", error_chain(&status)))
                }
            });
        }
    };

    // Trust nothing in the answer that the pin does not vouch for.
    let ca_der = response
        .ca_certificates_der
        .iter()
        .find(|c| options.ca_hash.matches(c))
        .ok_or_else(|| {
            AgentError::Failed("the controller's answer did not include the pinned CA".into())
        })?
        .clone();
    let peer = validate_client_certificate(
        &response.certificate_der,
        &ca_der,
        clock.now(),
        crate::AGENT_CLOCK_TOLERANCE,
    )
    .map_err(|e| {
        AgentError::Failed(format!(
            "the certificate the controller issued is not valid: {e}"
        ))
    })?;
    let device_id = match &peer.identity {
        Identity::Device(id) if id.to_string() == response.device_id => id.to_string(),
        other => {
            return Err(AgentError::Failed(format!(
                "the controller issued a certificate for {other}, not for device {}",
                response.device_id
            )));
        }
    };

    // A certificate for another key (the answer of whoever holds a server key under the pinned
    // CA, or a controller's mistake) would leave a device that cannot prove its identity, or
    // one that speaks with somebody else's: refused before anything is written, and the key
    // made for it goes as an interrupted enrollment's does.
    if !key.matches_certificate(&response.certificate_der) {
        return Err(AgentError::Failed(format!(
            "the certificate the controller returned for device {device_id} is not for the key this agent sent; nothing was stored (the enrollment token is spent: ask for a new one, and tell the controller's operators)"
        )));
    }

    create_private_dir(dir.root()).map_err(|source| dir.io("cannot create", dir.root(), source))?;
    if let Some(key) = key.in_memory() {
        let store = SecretStore::new(options.secret_store, dir.key_file(), &device_id);
        store
            .put(key)
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))?;
    }
    write_public(
        dir,
        &dir.certificate(),
        &certificate_to_pem(&response.certificate_der),
    )?;
    write_public(dir, &dir.ca(), &certificate_to_pem(&ca_der))?;
    let interval = response.config.map_or(60, |c| c.checkin_interval_seconds);
    let state = AgentState {
        version: STATE_VERSION,
        device_id,
        user: response.user,
        server_url: options.server.to_string(),
        ca_hash: options.ca_hash.to_string(),
        secret_store: options.secret_store,
        tpm_key_handle,
        enrolled_at: crate::rfc3339(clock.now()),
        certificate_expires_at: crate::rfc3339(peer.not_after),
        checkin_interval_seconds: interval,
        last_checkin: None,
    };
    dir.save(&state)?;
    info!(device_id = %state.device_id, user = %state.user, "enrolled");
    Ok(state)
}

fn write_public(dir: &StateDir, path: &std::path::Path, text: &str) -> Result<(), AgentError> {
    // A leftover from an interrupted enrollment is replaced: state.json is not there yet.
    let _ = std::fs::remove_file(path);
    create_public_file(path, text.as_bytes())
        .map_err(|source| dir.io("cannot write", path, source).into())
}

fn pin_mismatch(report: &ward_certs::tls::PinReport, expected: CaHash) -> Option<AgentError> {
    report.mismatch().map(|seen| {
        AgentError::Rejected(format!(
            "the controller's CA does not match --ca-hash {expected}: {seen}. Check the value printed by `wardctl token create`; nothing was sent and nothing was stored"
        ))
    })
}
