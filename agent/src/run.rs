//! `ward-agent run`.
//!
//! First the offline timer, which needs nothing but the state directory and the messaging
//! directory and runs until the agent stops; then the local API for the messaging app; then
//! sessions with the controller, one after another. A session uses the device certificate
//! and runs three cooperating tasks over one link:
//!
//! - the command stream, kept open, receives commands the moment they are issued;
//! - the check-in loop (interval from the controller, with jitter) reports facts and picks
//!   up any command the stream missed (`checkin.rs`);
//! - the executor runs commands one at a time, exactly once, and reports their results.
//!
//! A session that cannot start (the key or certificate cannot be used) is retried with
//! backoff, never the end of the agent: an expired or revoked certificate, an unknown server
//! or an unreachable controller never stops the offline timer.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tonic::Code;
use tracing::{debug, error, info};
use ward_proto::transport::{ServerUrl, error_chain};
use ward_proto::v1::CommandsRequest;

use crate::backoff::Backoff;
use crate::checkin::{CheckIn, check_in_loop, store_policy};
use crate::clock::{SharedClock, tls_time};
use crate::connection::Recorder;
use crate::device_key::DeviceKeyStore;
use crate::error::AgentError;
use crate::executor::{Executor, Work};
use crate::ledger::Ledger;
use crate::link::Link;
use crate::local_api;
use crate::offline::{OfflineTimer, Wiper};
use crate::state::StateDir;
use crate::vault_slot::{VaultOpener, VaultSlot};

#[derive(Debug)]
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
    /// The agent's clock: the machine's, unless a test sets one.
    pub clock: SharedClock,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            messaging_dir: None,
            full_erase_hook: None,
            tpm: crate::tpm::TpmChoice::default(),
            local_socket: None,
            clock: crate::clock::system(),
        }
    }
}

/// How a session ended.
enum Session {
    /// The certificate was renewed: start again with the new one.
    Renewed,
    /// A CA rotation changed the CAs trusted: start again under them.
    TrustChanged,
    /// A full wipe or a retirement destroyed the agent's key and state.
    Retired,
}

/// Aborts a task when dropped: a session's tasks end with it, however it ends.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What outlives sessions.
struct Agent<'a> {
    dir: &'a StateDir,
    options: &'a RunOptions,
    timer: Arc<OfflineTimer>,
    vault: Arc<VaultSlot>,
    wipe_lock: Arc<tokio::sync::Mutex<()>>,
    standing: Arc<Recorder>,
}

/// Runs until `shutdown` completes (or a full wipe retires the agent).
pub async fn run(
    dir: &StateDir,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let state = dir.load()?;
    let clock = options.clock.clone();
    // The offline timer first: before the certificate is read or the controller is tried.
    let fallback = state
        .last_checkin
        .as_deref()
        .and_then(crate::parse_rfc3339)
        .or_else(|| crate::parse_rfc3339(&state.enrolled_at))
        .unwrap_or_else(|| clock.now());
    let timer = Arc::new(OfflineTimer::load(
        dir.root(),
        &state.device_id,
        clock.clone(),
        fallback,
    ));
    // The vault is opened now if it can be; if not (a TPM or keyring not ready yet after a
    // boot), its users try again and say why: nothing about the vault stops the agent.
    let vault = Arc::new(match &options.messaging_dir {
        Some(path) => VaultSlot::open_later(VaultOpener {
            messaging_dir: path.clone(),
            state_dir: dir.root().to_path_buf(),
            kind: state.secret_store,
            device_id: state.device_id.clone(),
            tpm: options.tpm.clone(),
            clock: clock.clone(),
        }),
        None => VaultSlot::none(),
    });
    let wipe_lock = Arc::new(tokio::sync::Mutex::new(()));
    let timer_task = Task(tokio::spawn(crate::offline::run(
        timer.clone(),
        Wiper {
            vault: vault.clone(),
            wipe_lock: wipe_lock.clone(),
            key_store: DeviceKeyStore::of(&state, dir, &options.tpm),
            device_id: state.device_id.clone(),
            state_dir: dir.root().to_path_buf(),
        },
    )));
    match vault.get().await {
        Ok(Some(v)) => {
            info!(dir = %v.dir().display(), key_protection = %v.protection(), "messaging data vault open");
        }
        Ok(None) => {}
        Err(e) => error!(
            error = %e,
            "the messaging data vault cannot be opened yet: the app gets no key and wipes fail until it can; the offline timer keeps trying"
        ),
    }
    let _local_api = start_local_api(dir, &options, &vault, &timer);
    let agent = Agent {
        dir,
        options: &options,
        timer: timer.clone(),
        vault,
        wipe_lock,
        standing: Arc::new(Recorder::new(dir.root(), &state.device_id, clock)),
    };

    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
    loop {
        let ended = tokio::select! {
            () = &mut shutdown => None,
            ended = session(&agent) => Some(ended),
        };
        match ended {
            None => break,
            Some(Ok(Session::Renewed)) => {
                info!("restarting with the renewed certificate");
                backoff.reset();
            }
            Some(Ok(Session::TrustChanged)) => {
                info!("reconnecting under the CAs now trusted");
                backoff.reset();
            }
            Some(Ok(Session::Retired)) => {
                info!("this agent was retired (its key and state are destroyed); stopping");
                drop(timer_task);
                return Ok(());
            }
            Some(Err(e)) => {
                agent
                    .standing
                    .record(crate::connection::Finding::CannotStart, &e.to_string());
                let wait = backoff.next_delay();
                error!(
                    error = %e,
                    retry_in_s = wait.as_secs(),
                    "cannot start a session with the controller; the offline timer keeps running"
                );
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    info!("agent stopping");
    drop(timer_task);
    timer.stop();
    Ok(())
}

fn start_local_api(
    dir: &StateDir,
    options: &RunOptions,
    vault: &Arc<VaultSlot>,
    timer: &Arc<OfflineTimer>,
) -> Option<Task> {
    let messaging_dir = options.messaging_dir.as_ref()?;
    // A directory moved away since the vault was set up: the agent runs on for its timer.
    let (app_uid, app_gid) = match local_api::owner_of(messaging_dir) {
        Ok(owner) => owner,
        Err(e) => {
            error!(dir = %messaging_dir.display(), error = %e, "the local API is not started: the messaging app gets no key until the directory is back and the agent restarted");
            return None;
        }
    };
    let gate = Arc::new(local_api::Gate {
        vault: vault.clone(),
        timer: timer.clone(),
        state_dir: dir.root().to_path_buf(),
    });
    let socket = local_api::socket_path(options.local_socket.as_deref(), dir.root());
    info!(socket = %socket.display(), app_uid, "local API for the messaging app");
    if let Some(why) = local_api::unreachable_for(&socket, app_uid, app_gid) {
        error!("{why}");
    }
    Some(Task(tokio::spawn(async move {
        if let Err(e) = local_api::serve(socket, gate, app_uid).await {
            error!(error = %e, "the local API stopped");
        }
    })))
}

async fn session(agent: &Agent<'_>) -> Result<Session, AgentError> {
    let (dir, options) = (agent.dir, agent.options);
    let clock = &options.clock;
    let mut state = dir.load()?;
    let key_store = DeviceKeyStore::of(&state, dir, &options.tpm);
    let key = key_store.load().await?;
    crate::renew::recover(dir, &key);
    let certificate = dir.read_pem_certificates(&dir.certificate())?;
    // The CAs trusted for the controller: the one pinned at enrollment, or the trust bundle
    // of a CA rotation.
    let cas = dir.read_pem_certificates(&dir.ca())?;
    if cas.is_empty() {
        return Err(AgentError::Failed("ca.pem holds no certificate".into()));
    }
    let leaf = certificate
        .first()
        .ok_or_else(|| AgentError::Failed("device.pem holds no certificate".into()))?;
    let (not_before, not_after) = crate::renew::validity(leaf)
        .ok_or_else(|| AgentError::Failed("device.pem is not a valid certificate".into()))?;
    if clock.now() >= not_after {
        // The controller judges by its own clock: try anyway, and say what will likely happen.
        error!(
            expired_at = %crate::rfc3339(not_after),
            "the device certificate has expired by this device's clock: the controller will refuse it unless this clock is wrong. Enroll this device again (`ward-agent enroll` with a new token from `wardctl token create`). The offline timer keeps running"
        );
    }
    if state.certificate_expires_at != crate::rfc3339(not_after) {
        state.certificate_expires_at = crate::rfc3339(not_after);
        dir.save(&state)?;
    }
    let tls = ward_certs::tls::client_config_with_time(
        &cas,
        Some((&certificate[..1], &key)),
        tls_time(clock),
    )
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
    info!(
        device_id = %state.device_id,
        servers = ?servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        messaging_dir = ?options.messaging_dir,
        "agent running"
    );

    let link = Arc::new(Link::new(servers, tls));
    let mut renewed = Task(tokio::spawn(crate::renew::renewal_loop(
        dir.clone(),
        state.device_id.clone(),
        (key_store.clone(), key.clone()),
        link.clone(),
        cas.clone(),
        (not_before, not_after),
        clock.clone(),
    )));
    let (work_tx, work_rx) = mpsc::channel(64);
    let platform = crate::platform::native();
    let retired = Arc::new(Notify::new());
    let executor = Executor {
        ledger: Ledger::open(dir.root())?,
        state_dir: dir.root().to_path_buf(),
        vault: agent.vault.clone(),
        platform: platform.clone(),
        device_id: state.device_id.clone(),
        device_key: key,
        link: link.clone(),
        full_erase_hook: options.full_erase_hook.clone(),
        device_key_store: key_store,
        retired: retired.clone(),
        clock: clock.clone(),
        wipe_lock: agent.wipe_lock.clone(),
    };
    let _executor = Task(tokio::spawn(executor.serve(work_rx)));
    let policy_changed = Arc::new(Notify::new());
    let trust_changed = Arc::new(Notify::new());
    let _stream = Task(tokio::spawn(command_stream(
        link.clone(),
        work_tx.clone(),
        dir.root().to_path_buf(),
        policy_changed.clone(),
    )));
    let data_paths = {
        let mut paths = vec![PathBuf::from("/")];
        paths.extend(options.messaging_dir.clone());
        paths
    };
    let check_in = check_in_loop(CheckIn {
        dir,
        state,
        link,
        work: work_tx,
        data_paths,
        policy_changed,
        platform,
        timer: agent.timer.clone(),
        standing: agent.standing.clone(),
        clock: clock.clone(),
        cas,
        trust_changed: trust_changed.clone(),
    });

    tokio::select! {
        () = check_in => Err(AgentError::Failed("the command executor stopped".into())),
        () = retired.notified() => Ok(Session::Retired),
        _ = &mut renewed.0 => Ok(Session::Renewed),
        () = trust_changed.notified() => Ok(Session::TrustChanged),
    }
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
