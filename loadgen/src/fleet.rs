//! Simulated devices' identities: for Ward, tokens from the admin API and enrollment through
//! the real `EnrollmentService` (a key pair and CSR per device, the CA pinned by hash); for
//! the baseline, certificates issued directly by its CA.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tonic::transport::Channel;
use ward_certs::{CaHash, Identity, PrivateKeyDer};
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use ward_proto::v1::{CreateEnrollmentTokenRequest, DeviceFacts, EnrollRequest};

use crate::LoadError;
use crate::stats::Latencies;
use crate::target::{Kind, Server, issue_identity};

/// The user every simulated device belongs to (the fan-out offboards this user).
pub const USER: &str = "loadgen@hospital.example";

/// Token lifetime: long enough for the slowest enrollment of a large fleet.
const TOKEN_TTL_SECONDS: u64 = 24 * 3600;

/// An enrolled simulated device.
#[derive(Debug)]
pub struct Device {
    pub id: String,
    pub chain: Vec<Vec<u8>>,
    pub key: PrivateKeyDer,
}

/// The devices and where they connect.
#[derive(Debug)]
pub struct Fleet {
    pub url: ServerUrl,
    pub ca_der: Vec<u8>,
    pub devices: Vec<Arc<Device>>,
}

/// A device's key pair and CSR, made before the enrollment is timed (a device makes them
/// locally before it connects).
#[derive(Debug)]
pub struct Pending {
    key: PrivateKeyDer,
    csr: Vec<u8>,
}

pub fn facts(i: usize) -> DeviceFacts {
    DeviceFacts {
        hostname: format!("loadgen-{i:05}"),
        os_name: "Linux".into(),
        os_version: "Debian 13".into(),
        kernel_version: "6.12.0".into(),
        arch: "x86_64".into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// `n` enrolled devices on `server`, made as fast as the server allows (not timed).
pub async fn provision(server: &Server, n: usize) -> Result<Fleet, LoadError> {
    let devices = match (server.kind, &server.baseline_ca) {
        (Kind::Baseline, Some(ca)) => {
            let ca = ca.clone();
            tokio::task::spawn_blocking(move || {
                (0..n)
                    .map(|_| {
                        let id = uuid::Uuid::new_v4();
                        issue_identity(&ca, &Identity::Device(id)).map(|ident| Device {
                            id: id.to_string(),
                            chain: ident.chain,
                            key: ident.key,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| LoadError::Setup(format!("issuing baseline certificates: {e}")))??
        }
        _ => {
            let (tokens, took) = create_tokens(server, n).await?;
            crate::progress!("{n} enrollment tokens created in {took:?}");
            let pending = pregenerate(n).await?;
            let outcome = enroll_all(
                &server.url,
                &server.ca_der,
                tokens,
                pending,
                64,
                Connections::Shared(8),
            )
            .await;
            if let Some(error) = outcome.first_error {
                return Err(LoadError::Setup(format!(
                    "{} of {n} enrollments failed while preparing the fleet; first: {error}",
                    outcome.errors
                )));
            }
            outcome.devices
        }
    };
    Ok(Fleet {
        url: server.url.clone(),
        ca_der: server.ca_der.clone(),
        devices: devices.into_iter().map(Arc::new).collect(),
    })
}

/// `n` one-time tokens for [`USER`] through the admin API; returns them and how long it took.
pub async fn create_tokens(
    server: &Server,
    n: usize,
) -> Result<(Vec<String>, Duration), LoadError> {
    let admin = server.admin().await?;
    let start = Instant::now();
    let results: Vec<Result<String, tonic::Status>> = futures::stream::iter(0..n)
        .map(|_| {
            let mut admin = admin.clone();
            async move {
                admin
                    .create_enrollment_token(CreateEnrollmentTokenRequest {
                        user: USER.into(),
                        ttl_seconds: TOKEN_TTL_SECONDS,
                    })
                    .await
                    .map(|r| r.into_inner().token)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let tokens = results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|s| LoadError::Setup(format!("creating enrollment tokens: {}", s.message())))?;
    Ok((tokens, elapsed))
}

/// Key pairs and CSRs for `n` devices.
pub async fn pregenerate(n: usize) -> Result<Vec<Pending>, LoadError> {
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|i| {
                let key = PrivateKeyDer::generate()?;
                let csr = ward_certs::csr::make_csr(&key, &format!("loadgen-{i:05}"))?;
                Ok(Pending { key, csr })
            })
            .collect::<Result<Vec<_>, ward_certs::CertError>>()
    })
    .await
    .map_err(|e| LoadError::Setup(format!("generating keys: {e}")))?
    .map_err(|e| LoadError::Setup(format!("generating keys: {e}")))
}

/// How enrollments reach the server.
#[derive(Clone, Copy, Debug)]
pub enum Connections {
    /// Each enrollment on its own new TLS connection, as a device does.
    Fresh,
    /// Over this many shared connections (to prepare a fleet quickly).
    Shared(usize),
}

#[derive(Debug)]
pub struct EnrollOutcome {
    pub devices: Vec<Device>,
    /// Per enrollment, from the start of its connection to the answer.
    pub latencies: Latencies,
    pub elapsed: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Enrolls one device per token, at most `concurrency` at once.
pub async fn enroll_all(
    url: &ServerUrl,
    ca_der: &[u8],
    tokens: Vec<String>,
    pending: Vec<Pending>,
    concurrency: usize,
    connections: Connections,
) -> EnrollOutcome {
    let pin = CaHash::of_certificate(ca_der);
    let shared: Vec<Channel> = match connections {
        Connections::Fresh => Vec::new(),
        Connections::Shared(k) => {
            let mut channels = Vec::new();
            for _ in 0..k.max(1) {
                if let Ok(channel) = enrollment_channel(url, &pin).await {
                    channels.push(channel);
                }
            }
            channels
        }
    };
    let start = Instant::now();
    let results: Vec<(Result<Device, String>, Duration)> =
        futures::stream::iter(tokens.into_iter().zip(pending).enumerate())
            .map(|(i, (token, pending))| {
                let shared = shared.get(i % shared.len().max(1)).cloned();
                let (url, pin) = (url.clone(), pin);
                async move {
                    let began = Instant::now();
                    let result = enroll_one(&url, &pin, shared, token, pending, i).await;
                    (result, began.elapsed())
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let elapsed = start.elapsed();
    let mut outcome = EnrollOutcome {
        devices: Vec::new(),
        latencies: Latencies::new(),
        elapsed,
        errors: 0,
        first_error: None,
    };
    for (result, latency) in results {
        match result {
            Ok(device) => {
                outcome.latencies.record(latency);
                outcome.devices.push(device);
            }
            Err(e) => {
                outcome.errors += 1;
                outcome.first_error.get_or_insert(e);
            }
        }
    }
    outcome
}

async fn enrollment_channel(url: &ServerUrl, pin: &CaHash) -> Result<Channel, String> {
    let (tls, _) = ward_certs::tls::pinned_client_config(*pin).map_err(|e| e.to_string())?;
    let options = ChannelOptions {
        connect_timeout: Duration::from_secs(30),
        request_timeout: Some(Duration::from_secs(120)),
    };
    connect(url, tls, options).await.map_err(|e| e.to_string())
}

async fn enroll_one(
    url: &ServerUrl,
    pin: &CaHash,
    shared: Option<Channel>,
    token: String,
    pending: Pending,
    i: usize,
) -> Result<Device, String> {
    let channel = match shared {
        Some(channel) => channel,
        None => enrollment_channel(url, pin).await?,
    };
    let response = EnrollmentServiceClient::new(channel)
        .enroll(EnrollRequest {
            token,
            csr_der: pending.csr,
            facts: Some(facts(i)),
        })
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(Device {
        id: response.device_id,
        chain: vec![response.certificate_der],
        key: pending.key,
    })
}
