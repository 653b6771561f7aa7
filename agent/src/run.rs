//! `ward-agent run`: three cooperating tasks over one link to the controller.
//!
//! - the command stream, kept open, receives commands the moment they are issued;
//! - the check-in loop (interval from the controller, with jitter) reports facts and picks
//!   up any command the stream missed;
//! - the executor runs commands one at a time, exactly once, and reports their results.
//!
//! While the controller is unreachable both loops back off with jitter and move along the
//! list of servers.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Code;
use tracing::{debug, error, info, warn};
use ward_proto::transport::{ServerUrl, error_chain};
use ward_proto::v1::{CheckInRequest, CommandsRequest};

use crate::backoff::{Backoff, jittered};
use crate::error::AgentError;
use crate::executor::{Executor, Work};
use crate::facts;
use crate::ledger::Ledger;
use crate::link::{CALL_TIMEOUT, Link};
use crate::secrets::SecretStore;
use crate::state::{AgentState, StateDir};
use crate::vault::Vault;

#[derive(Debug, Default)]
pub struct RunOptions {
    /// Servers in failover order; empty means the one the agent enrolled with.
    pub servers: Vec<ServerUrl>,
    /// The messaging app's data directory, managed by the vault.
    pub messaging_dir: Option<PathBuf>,
}

const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until `shutdown` completes.
pub async fn run(
    dir: &StateDir,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let state = dir.load()?;
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
    let vault = match &options.messaging_dir {
        Some(path) => Some(
            Vault::open(path, dir.root(), state.secret_store, &state.device_id)
                .await
                .map_err(|e| AgentError::Failed(e.to_string()))?,
        ),
        None => None,
    };
    info!(
        device_id = %state.device_id,
        servers = ?servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        messaging_dir = ?options.messaging_dir,
        "agent running"
    );

    let link = Arc::new(Link::new(servers, tls));
    let (work_tx, work_rx) = mpsc::channel(64);
    let executor = Executor {
        ledger: Ledger::open(dir.root())?,
        vault,
        platform: crate::platform::native(),
        device_id: state.device_id.clone(),
        device_key: key,
        link: link.clone(),
    };
    let executor_task = tokio::spawn(executor.serve(work_rx));
    let stream_task = tokio::spawn(command_stream(link.clone(), work_tx.clone()));
    let check_in = check_in_loop(dir, state, link, work_tx);

    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => info!("agent stopping"),
        () = check_in => {}
    }
    stream_task.abort();
    executor_task.abort();
    Ok(())
}

async fn command_stream(link: Arc<Link>, work: mpsc::Sender<Work>) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        match link.client().await {
            Err((server, e)) => {
                debug!(error = %e, "command stream: controller unreachable");
                link.failed(server);
            }
            Ok(mut connected) => match connected.client.commands(CommandsRequest {}).await {
                Ok(response) => {
                    debug!(server = %link.url(connected.server), "command stream open");
                    backoff.reset();
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(command)) => {
                                if work.send(Work::Command(command)).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(status) => {
                                debug!(error = %status.message(), "command stream ended");
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    debug!(error = %error_chain(&status), "command stream refused");
                    if !matches!(
                        status.code(),
                        Code::Unauthenticated | Code::PermissionDenied
                    ) {
                        link.failed(connected.server);
                    }
                }
            },
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn check_in_loop(
    dir: &StateDir,
    mut state: AgentState,
    link: Arc<Link>,
    work: mpsc::Sender<Work>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let wait = match check_in(&link).await {
            Ok((interval, commands)) => {
                backoff.reset();
                record_success(dir, &mut state, interval);
                for command in commands {
                    if work.send(Work::Command(command)).await.is_err() {
                        return;
                    }
                }
                if work.send(Work::Flush).await.is_err() {
                    return;
                }
                jittered(interval)
            }
            Err(Failure::Refused(server, message)) => {
                error!(
                    server = %link.url(server),
                    "the controller refused this device: {message}. If the device was revoked or its certificate expired, enroll it again"
                );
                backoff.next_delay()
            }
            Err(Failure::Unreachable(server, message)) => {
                warn!(server = %link.url(server), "check-in failed: {message}");
                link.failed(server);
                backoff.next_delay()
            }
        };
        debug!(wait_ms = wait.as_millis() as u64, "next check-in");
        tokio::time::sleep(wait).await;
    }
}

enum Failure {
    Refused(usize, String),
    Unreachable(usize, String),
}

async fn check_in(link: &Link) -> Result<(Duration, Vec<ward_proto::v1::DeviceCommand>), Failure> {
    let mut connected = link
        .client()
        .await
        .map_err(|(server, e)| Failure::Unreachable(server, e))?;
    let server = connected.server;
    let call = connected.client.check_in(CheckInRequest {
        facts: Some(facts::collect()),
    });
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => Err(Failure::Unreachable(server, "check-in timed out".into())),
        Ok(Ok(response)) => {
            let response = response.into_inner();
            let seconds = response.config.map_or(60, |c| c.checkin_interval_seconds);
            Ok((
                Duration::from_secs(u64::from(seconds)).max(MIN_INTERVAL),
                response.pending_commands,
            ))
        }
        Ok(Err(status)) => match status.code() {
            Code::Unauthenticated | Code::PermissionDenied | Code::NotFound => {
                Err(Failure::Refused(server, status.message().to_owned()))
            }
            _ => Err(Failure::Unreachable(server, error_chain(&status))),
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
