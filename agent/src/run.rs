//! `ward-agent run`: check in periodically (interval from the controller, with jitter), and
//! back off while the controller is unreachable, moving along the list of servers.

use std::future::Future;
use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use tracing::{debug, error, info, warn};
use ward_proto::transport::{ChannelOptions, ServerUrl, connect, error_chain};
use ward_proto::v1::CheckInRequest;
use ward_proto::v1::agent_service_client::AgentServiceClient;

use crate::backoff::{Backoff, jittered};
use crate::error::AgentError;
use crate::facts;
use crate::secrets::SecretStore;
use crate::state::{AgentState, StateDir};

#[derive(Debug, Default)]
pub struct RunOptions {
    /// Servers in failover order; empty means the one the agent enrolled with.
    pub servers: Vec<ServerUrl>,
}

const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until `shutdown` completes.
pub async fn run(
    dir: &StateDir,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut state = dir.load()?;
    let certificate = dir.read_pem_certificates(&dir.certificate())?;
    let ca = dir.read_pem_certificates(&dir.ca())?;
    let key = SecretStore::new(state.secret_store, dir.key_file(), &state.device_id)
        .get()
        .await?;
    let ca_der = ca
        .first()
        .ok_or_else(|| AgentError::Failed("ca.pem holds no certificate".into()))?;
    let tls = ward_certs::tls::client_config(ca_der, Some((&certificate[..1], &key)))
        .map_err(|e| AgentError::Failed(e.to_string()))?;
    let servers = if options.servers.is_empty() {
        vec![
            state
                .server_url
                .parse::<ServerUrl>()
                .map_err(|e| AgentError::Failed(format!("state.json: {e}")))?,
        ]
    } else {
        options.servers
    };
    info!(device_id = %state.device_id, servers = ?servers.iter().map(ToString::to_string).collect::<Vec<_>>(), "agent running");

    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut current = 0usize;
    let mut client: Option<AgentServiceClient<Channel>> = None;
    tokio::pin!(shutdown);
    loop {
        let server = &servers[current];
        let wait = match check_in(&mut client, server, &tls).await {
            Ok(interval) => {
                backoff.reset();
                record_success(dir, &mut state, interval);
                jittered(interval)
            }
            Err(failure) => {
                client = None;
                match failure {
                    Failure::Refused(message) => error!(
                        server = %server,
                        "the controller refused this device: {message}. If the device was revoked or its certificate expired, enroll it again"
                    ),
                    Failure::Unreachable(message) => {
                        warn!(server = %server, "check-in failed: {message}")
                    }
                }
                current = (current + 1) % servers.len();
                backoff.next_delay()
            }
        };
        debug!(wait_ms = wait.as_millis() as u64, "next check-in");
        tokio::select! {
            () = &mut shutdown => {
                info!("agent stopping");
                return Ok(());
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

enum Failure {
    Refused(String),
    Unreachable(String),
}

async fn check_in(
    client: &mut Option<AgentServiceClient<Channel>>,
    server: &ServerUrl,
    tls: &rustls::ClientConfig,
) -> Result<Duration, Failure> {
    if client.is_none() {
        let channel = connect(server, tls.clone(), ChannelOptions::default())
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        *client = Some(AgentServiceClient::new(channel));
    }
    let Some(c) = client.as_mut() else {
        return Err(Failure::Unreachable("no connection".into()));
    };
    match c
        .check_in(CheckInRequest {
            facts: Some(facts::collect()),
        })
        .await
    {
        Ok(response) => {
            let seconds = response
                .into_inner()
                .config
                .map_or(60, |c| c.checkin_interval_seconds);
            Ok(Duration::from_secs(u64::from(seconds)).max(MIN_INTERVAL))
        }
        Err(status) => match status.code() {
            Code::Unauthenticated | Code::PermissionDenied | Code::NotFound => {
                Err(Failure::Refused(status.message().to_owned()))
            }
            _ => Err(Failure::Unreachable(error_chain(&status))),
        },
    }
}

fn record_success(dir: &StateDir, state: &mut AgentState, interval: Duration) {
    state.last_checkin = Some(crate::now_rfc3339());
    state.checkin_interval_seconds = u32::try_from(interval.as_secs()).unwrap_or(u32::MAX);
    if let Err(e) = dir.save(state) {
        // Not fatal: the controller has the check-in; only `status` shows an older time.
        warn!(error = %e, "cannot record the check-in time");
    }
    debug!("checked in");
}
