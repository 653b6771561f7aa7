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

use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc};
use tonic::Code;
use tracing::{debug, error, info, warn};
use ward_proto::transport::{ServerUrl, error_chain};
use ward_proto::v1::{CheckInRequest, CommandsRequest, ComplianceReport};

use crate::backoff::{Backoff, jittered};
use crate::error::AgentError;
use crate::executor::{Executor, Work};
use crate::facts;
use crate::ledger::Ledger;
use crate::link::{CALL_TIMEOUT, Link};
use crate::policy::AgentPolicy;
use crate::secrets::SecretStore;
use crate::state::{AgentState, StateDir};
use crate::vault::Vault;
use crate::{checks, local_api};

#[derive(Debug, Default)]
pub struct RunOptions {
    /// Servers in failover order; empty means the one the agent enrolled with.
    pub servers: Vec<ServerUrl>,
    /// The messaging app's data directory, managed by the vault.
    pub messaging_dir: Option<PathBuf>,
    /// A program that erases the whole device, run by full wipes.
    pub full_erase_hook: Option<PathBuf>,
    /// Where a new messaging data key goes (`ward-agent run --tpm`).
    pub tpm: crate::tpm::TpmChoice,
    /// The local API's socket; `None`: see [`local_api::socket_path`].
    pub local_socket: Option<PathBuf>,
}

const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How a session ended.
enum Session {
    Stopped,
    /// The certificate was renewed: start again with the new one.
    Renewed,
}

/// Runs until `shutdown` completes (or a full wipe retires the agent).
pub async fn run(
    dir: &StateDir,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    tokio::pin!(shutdown);
    loop {
        match session(dir, &options, shutdown.as_mut()).await? {
            Session::Stopped => return Ok(()),
            Session::Renewed => info!("restarting with the renewed certificate"),
        }
    }
}

async fn session(
    dir: &StateDir,
    options: &RunOptions,
    shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Session, AgentError> {
    let mut state = dir.load()?;
    let key_store = SecretStore::new(state.secret_store, dir.key_file(), &state.device_id);
    let key = key_store.get().await?;
    crate::renew::recover(dir, &key);
    let certificate = dir.read_pem_certificates(&dir.certificate())?;
    let ca = dir.read_pem_certificates(&dir.ca())?;
    let ca_der = ca
        .first()
        .ok_or_else(|| AgentError::Failed("ca.pem holds no certificate".into()))?;
    let leaf = certificate
        .first()
        .ok_or_else(|| AgentError::Failed("device.pem holds no certificate".into()))?;
    let (not_before, not_after) = crate::renew::validity(leaf)
        .ok_or_else(|| AgentError::Failed("device.pem is not a valid certificate".into()))?;
    if OffsetDateTime::now_utc() >= not_after {
        return Err(AgentError::Usage(format!(
            "the device certificate expired at {}: this device must be enrolled again (ward-agent enroll with a new token from `wardctl token create`)",
            crate::rfc3339(not_after)
        )));
    }
    if state.certificate_expires_at != crate::rfc3339(not_after) {
        state.certificate_expires_at = crate::rfc3339(not_after);
        dir.save(&state)?;
    }
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
        options.servers.clone()
    };
    let vault = match &options.messaging_dir {
        Some(path) => Some(Arc::new(
            Vault::open_with(
                path,
                dir.root(),
                state.secret_store,
                &state.device_id,
                &options.tpm,
            )
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))?,
        )),
        None => None,
    };
    info!(
        device_id = %state.device_id,
        servers = ?servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        messaging_dir = ?options.messaging_dir,
        "agent running"
    );

    let local_api_task = match (&vault, &options.messaging_dir) {
        (Some(vault), Some(messaging_dir)) => {
            let (app_uid, app_gid) = local_api::owner_of(messaging_dir)
                .map_err(|e| AgentError::Failed(format!("{}: {e}", messaging_dir.display())))?;
            let gate = Arc::new(local_api::Gate {
                vault: vault.clone(),
                state_dir: dir.root().to_path_buf(),
            });
            let socket = local_api::socket_path(options.local_socket.as_deref(), dir.root());
            info!(socket = %socket.display(), app_uid, key_protection = %vault.protection(), "local API for the messaging app");
            if let Some(why) = local_api::unreachable_for(&socket, app_uid, app_gid) {
                error!("{why}");
            }
            Some(tokio::spawn(async move {
                if let Err(e) = local_api::serve(socket, gate, app_uid).await {
                    error!(error = %e, "the local API stopped");
                }
            }))
        }
        _ => None,
    };
    let link = Arc::new(Link::new(servers, tls));
    let mut renewed = tokio::spawn(crate::renew::renewal_loop(
        dir.clone(),
        state.device_id.clone(),
        key_store.clone(),
        link.clone(),
        ca_der.clone(),
        not_before,
        not_after,
    ));
    let (work_tx, work_rx) = mpsc::channel(64);
    let platform = crate::platform::native();
    let retired = Arc::new(Notify::new());
    let executor = Executor {
        ledger: Ledger::open(dir.root())?,
        state_dir: dir.root().to_path_buf(),
        vault,
        platform: platform.clone(),
        device_id: state.device_id.clone(),
        device_key: key,
        link: link.clone(),
        full_erase_hook: options.full_erase_hook.clone(),
        device_key_store: SecretStore::new(state.secret_store, dir.key_file(), &state.device_id),
        retired: retired.clone(),
    };
    let executor_task = tokio::spawn(executor.serve(work_rx));
    let policy_changed = Arc::new(Notify::new());
    let stream_task = tokio::spawn(command_stream(
        link.clone(),
        work_tx.clone(),
        dir.root().to_path_buf(),
        policy_changed.clone(),
    ));
    let data_paths = {
        let mut paths = vec![PathBuf::from("/")];
        paths.extend(options.messaging_dir.clone());
        paths
    };
    let check_in = check_in_loop(
        dir,
        state,
        link,
        work_tx,
        data_paths,
        policy_changed,
        platform,
    );

    let outcome = tokio::select! {
        () = shutdown => {
            info!("agent stopping");
            Session::Stopped
        }
        () = check_in => Session::Stopped,
        () = retired.notified() => {
            info!("this agent was retired (its key and state are destroyed); stopping");
            Session::Stopped
        }
        _ = &mut renewed => Session::Renewed,
    };
    stream_task.abort();
    executor_task.abort();
    renewed.abort();
    if let Some(task) = local_api_task {
        task.abort();
    }
    Ok(outcome)
}

async fn command_stream(
    link: Arc<Link>,
    work: mpsc::Sender<Work>,
    state_dir: PathBuf,
    policy_changed: Arc<Notify>,
) {
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
                    // Back in touch (e.g. after the controller restarted): report results
                    // that could not be delivered and resume interrupted commands now, not
                    // at the next check-in.
                    if work.send(Work::Flush).await.is_err() {
                        return;
                    }
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(push)) => {
                                if !forward(push.item, &work, &state_dir, &policy_changed).await {
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

/// Hands a pushed command to the executor, or stores a pushed policy. False once the
/// executor is gone.
async fn forward(
    item: Option<ward_proto::v1::agent_push::Item>,
    work: &mpsc::Sender<Work>,
    state_dir: &std::path::Path,
    policy_changed: &Notify,
) -> bool {
    use ward_proto::v1::agent_push::Item;
    match item {
        Some(Item::Command(command)) => work.send(Work::Command(command)).await.is_ok(),
        Some(Item::Policy(policy)) => {
            if store_policy(state_dir, policy) {
                policy_changed.notify_one();
            }
            true
        }
        None => true,
    }
}

/// Saves the policy if it differs from the stored one; true when it changed.
fn store_policy(state_dir: &std::path::Path, policy: ward_proto::v1::Policy) -> bool {
    let policy = AgentPolicy::from(policy);
    if AgentPolicy::load(state_dir).as_ref() == Some(&policy) {
        return false;
    }
    info!(scope = %policy.scope, revision = policy.revision, "policy received");
    if let Err(e) = policy.save(state_dir) {
        warn!(error = %e, "cannot store the policy");
    }
    true
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

async fn check_in_loop(
    dir: &StateDir,
    mut state: AgentState,
    link: Arc<Link>,
    work: mpsc::Sender<Work>,
    data_paths: Vec<PathBuf>,
    policy_changed: Arc<Notify>,
    platform: Arc<dyn crate::platform::Platform>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut last_success = state
        .last_checkin
        .as_deref()
        .and_then(parse_time)
        .or_else(|| parse_time(&state.enrolled_at))
        .unwrap_or_else(OffsetDateTime::now_utc);
    loop {
        let (report, inventory) =
            compliance_report(dir.root(), &data_paths, platform.clone()).await;
        let offline_wipe = crate::offline::pending(dir.root());
        let reported_wipe = offline_wipe.is_some();
        let request = CheckInRequest {
            facts: Some(facts::collect()),
            compliance: Some(report),
            offline_wipe,
            inventory,
        };
        let wait = match check_in(&link, request).await {
            Ok((interval, commands, policy)) => {
                backoff.reset();
                last_success = OffsetDateTime::now_utc();
                record_success(dir, &mut state, interval);
                if reported_wipe {
                    crate::offline::reported(dir.root());
                }
                // A changed policy: report compliance against it right away.
                if policy.is_some_and(|p| store_policy(dir.root(), p)) {
                    policy_changed.notify_one();
                }
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
            Err(failure) => {
                match failure {
                    Failure::Refused(server, message) => error!(
                        server = %link.url(server),
                        "the controller refused this device: {message}. If the device was revoked or its certificate expired, enroll it again"
                    ),
                    Failure::Unreachable(server, message) => {
                        warn!(server = %link.url(server), "check-in failed: {message}");
                        link.failed(server);
                    }
                }
                if work.send(Work::OfflineTick { last_success }).await.is_err() {
                    return;
                }
                backoff.next_delay()
            }
        };
        debug!(wait_ms = wait.as_millis() as u64, "next check-in");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = policy_changed.notified() => {}
        }
    }
}

/// Runs the compliance checks against the stored policy and takes the inventory (file reads
/// and package-manager calls: off the async threads).
async fn compliance_report(
    state_dir: &std::path::Path,
    data_paths: &[PathBuf],
    platform: Arc<dyn crate::platform::Platform>,
) -> (ComplianceReport, Option<ward_proto::v1::Inventory>) {
    let policy = AgentPolicy::load(state_dir).unwrap_or_default();
    let judge = policy.clone();
    let paths = data_paths.to_vec();
    let revision = policy.revision;
    let (checks, inventory) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
        let checks = platform.compliance(&policy, &refs, checks::running_as_root());
        (checks, platform.inventory(&refs))
    })
    .await
    .unwrap_or_default();
    // The local gate withholds the data key while a required check whose action is block
    // (or wipe) fails; report-only failures go to the controller alone.
    let failures = judge.failures(&checks);
    let verdict = local_api::noncompliance_file(state_dir);
    let text = judge.blocking_verdict(&failures);
    if let Err(e) = ward_certs::files::replace_file(&verdict, text.as_bytes(), 0o600) {
        warn!(error = %e, "cannot record the compliance verdict for the local API");
    }
    let report = ComplianceReport {
        policy_revision: revision,
        checks,
    };
    (report, inventory)
}

enum Failure {
    Refused(usize, String),
    Unreachable(usize, String),
}

type CheckInOutcome = (
    Duration,
    Vec<ward_proto::v1::DeviceCommand>,
    Option<ward_proto::v1::Policy>,
);

async fn check_in(link: &Link, request: CheckInRequest) -> Result<CheckInOutcome, Failure> {
    let mut connected = link
        .client()
        .await
        .map_err(|(server, e)| Failure::Unreachable(server, e))?;
    let server = connected.server;
    let call = connected.client.check_in(request);
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Err(_) => Err(Failure::Unreachable(server, "check-in timed out".into())),
        Ok(Ok(response)) => {
            let response = response.into_inner();
            let seconds = response.config.map_or(60, |c| c.checkin_interval_seconds);
            Ok((
                Duration::from_secs(u64::from(seconds)).max(MIN_INTERVAL),
                response.pending_commands,
                response.policy,
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
