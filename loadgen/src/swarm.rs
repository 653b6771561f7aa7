//! Simulated agents that hold their `AgentService.Commands` stream, each over its own mutual
//! TLS connection with its own certificate, as `ward-agent run` does: reconnecting with the
//! agent's own jittered exponential backoff, acknowledging each pushed command at once.
//!
//! Like the agent (`agent/src/link.rs`, `run.rs`), an agent keeps its connection when its
//! stream ends or is refused for who it is (a revoked device asks again on the same
//! connection, at the backoff's pace) and makes a new one only when the stream could not be
//! opened for another reason. Reconnecting after every ended stream made each revoked
//! device of a mass offboarding a TLS handshake a second, which the real agent does not do.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Channel;
use ward_agent::backoff::Backoff;
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::agent_push::Item;
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::{AcknowledgeRequest, CommandsRequest};

use crate::LoadError;
use crate::fleet::{Device, Fleet};

/// Deadline for an agent's unary calls: the agent's own.
pub use ward_agent::link::CALL_TIMEOUT;

/// When something happened to one agent.
#[derive(Clone, Debug)]
pub struct Event {
    pub agent: usize,
    pub command_id: String,
    pub at: Instant,
    pub ok: bool,
}

struct Slot {
    device: Arc<Device>,
    client: Mutex<Option<AgentServiceClient<Channel>>>,
}

struct Shared {
    url: ServerUrl,
    ca_der: Vec<u8>,
    slots: Vec<Slot>,
    acknowledge: bool,
    streaming: AtomicUsize,
    attempts: AtomicU64,
    failed_attempts: AtomicU64,
    opened: Mutex<Vec<Option<Instant>>>,
    deliveries: Mutex<Vec<Event>>,
    acks: Mutex<Vec<Event>>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn note_error(&self, error: String) {
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(error);
    }
}

pub struct Swarm {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("url", &self.shared.url)
            .field("devices", &self.shared.slots.len())
            .finish_non_exhaustive()
    }
}

impl Swarm {
    /// Starts one task per device; at most `ramp` connect for the first time at once.
    pub fn start(fleet: &Fleet, acknowledge: bool, ramp: usize) -> Self {
        let shared = Arc::new(Shared {
            url: fleet.url.clone(),
            ca_der: fleet.ca_der.clone(),
            slots: fleet
                .devices
                .iter()
                .map(|d| Slot {
                    device: d.clone(),
                    client: Mutex::new(None),
                })
                .collect(),
            acknowledge,
            streaming: AtomicUsize::new(0),
            attempts: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            opened: Mutex::new(vec![None; fleet.devices.len()]),
            deliveries: Mutex::new(Vec::new()),
            acks: Mutex::new(Vec::new()),
            first_error: Mutex::new(None),
        });
        let (stop, stop_rx) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(ramp.max(1)));
        let mut tasks = JoinSet::new();
        for i in 0..fleet.devices.len() {
            tasks.spawn(agent(shared.clone(), i, stop_rx.clone(), gate.clone()));
        }
        Self {
            shared,
            stop,
            tasks,
        }
    }

    pub fn len(&self) -> usize {
        self.shared.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.slots.is_empty()
    }

    pub fn streaming(&self) -> usize {
        self.shared.streaming.load(Ordering::Relaxed)
    }

    /// Connection attempts so far (each connect-and-open of the stream counts once).
    pub fn attempts(&self) -> u64 {
        self.shared.attempts.load(Ordering::Relaxed)
    }

    pub fn failed_attempts(&self) -> u64 {
        self.shared.failed_attempts.load(Ordering::Relaxed)
    }

    pub fn first_error(&self) -> Option<String> {
        self.shared
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many agents opened their stream (got the first push) at or after `since`, and when
    /// the last of them did.
    pub fn opened_since(&self, since: Instant) -> (usize, Option<Instant>) {
        let opened = self
            .shared
            .opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let times: Vec<Instant> = opened
            .iter()
            .flatten()
            .filter(|t| **t >= since)
            .copied()
            .collect();
        (times.len(), times.iter().max().copied())
    }

    /// Waits until every agent opened its stream at or after `since`.
    pub async fn wait_opened(
        &self,
        since: Instant,
        deadline: Duration,
    ) -> Result<Instant, LoadError> {
        let start = Instant::now();
        loop {
            let (count, last) = self.opened_since(since);
            if count == self.len() {
                return Ok(last.unwrap_or(since));
            }
            if start.elapsed() > deadline {
                return Err(LoadError::Failed(format!(
                    "only {count} of {} agents had their command stream open after {deadline:?}; first error: {}",
                    self.len(),
                    self.first_error().unwrap_or_else(|| "none".into())
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn deliveries(&self) -> Vec<Event> {
        first_per_agent(
            &self
                .shared
                .deliveries
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    pub fn acks(&self) -> Vec<Event> {
        first_per_agent(
            &self
                .shared
                .acks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Waits until `n` agents acknowledged a command (successfully or not).
    pub async fn wait_acks(&self, n: usize, deadline: Duration) -> Result<(), LoadError> {
        let start = Instant::now();
        loop {
            let acks = self.acks().len();
            if acks >= n {
                return Ok(());
            }
            if start.elapsed() > deadline {
                return Err(LoadError::Failed(format!(
                    "only {acks} of {n} agents acknowledged a command within {deadline:?} ({} deliveries); first error: {}",
                    self.deliveries().len(),
                    self.first_error().unwrap_or_else(|| "none".into())
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Agent `i`'s device and current client, to make further calls as that agent.
    pub fn client(&self, i: usize) -> Option<(Arc<Device>, AgentServiceClient<Channel>)> {
        let slot = self.shared.slots.get(i)?;
        let client = slot
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        Some((slot.device.clone(), client))
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        crate::progress!("{} agents stopped", self.shared.slots.len());
    }
}

/// The first event of each agent, in time order (commands may be delivered more than once).
fn first_per_agent(events: &[Event]) -> Vec<Event> {
    let mut seen = HashSet::new();
    let mut out: Vec<Event> = events
        .iter()
        .filter(|e| seen.insert(e.agent))
        .cloned()
        .collect();
    out.sort_by_key(|e| e.at);
    out
}

async fn agent(
    shared: Arc<Shared>,
    i: usize,
    mut stop: watch::Receiver<bool>,
    gate: Arc<Semaphore>,
) {
    let slot = &shared.slots[i];
    let tls = match ward_certs::tls::client_config(
        &shared.ca_der,
        Some((&slot.device.chain, &slot.device.key)),
    ) {
        Ok(tls) => tls,
        Err(e) => {
            shared.note_error(format!("client TLS configuration: {e}"));
            return;
        }
    };
    // The agent's own pacing: 1 s doubling to 60 s, each wait scaled by [0.5, 1].
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut permit = Some(gate.acquire_owned().await);
    let mut channel = None;
    loop {
        if *stop.borrow() {
            return;
        }
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        let mut stopping = stop.clone();
        let session = session(
            &shared,
            i,
            (&tls, &mut channel),
            &mut backoff,
            &mut permit,
            &mut stop,
        );
        let ended = tokio::select! {
            ended = session => ended,
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        match ended {
            Ok(Ended::Stopped) => return,
            Ok(Ended::Broken) => {}
            Err(e) => {
                shared.failed_attempts.fetch_add(1, Ordering::Relaxed);
                shared.note_error(e);
            }
        }
        // The first connection's slot goes to the next agent once this one has tried.
        permit = None;
        *slot.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.changed() => return,
        }
    }
}

enum Ended {
    Stopped,
    Broken,
}

async fn session(
    shared: &Arc<Shared>,
    i: usize,
    (tls, kept): (&rustls::ClientConfig, &mut Option<Channel>),
    backoff: &mut Backoff,
    permit: &mut Option<Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>>,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, String> {
    let channel = match kept {
        Some(channel) => channel.clone(),
        None => {
            let options = ChannelOptions {
                connect_timeout: Duration::from_secs(30),
                request_timeout: None,
            };
            let channel = connect(&shared.url, tls.clone(), options)
                .await
                .map_err(|e| e.to_string())?;
            *kept = Some(channel.clone());
            channel
        }
    };
    let mut client = AgentServiceClient::new(channel);
    let mut stream = match client.commands(CommandsRequest {}).await {
        Ok(stream) => stream.into_inner(),
        Err(s) => {
            // Refused for who it is: asked again on the same connection, as the agent does.
            if !matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied) {
                *kept = None;
            }
            return Err(format!(
                "opening the command stream: {:?}: {}",
                s.code(),
                s.message()
            ));
        }
    };
    // The stream is up once its first push (the policy) arrives.
    let first = stream
        .message()
        .await
        .map_err(|s| format!("command stream: {:?}: {}", s.code(), s.message()))?;
    if first.is_none() {
        return Err("the command stream closed before its first push".into());
    }
    backoff.reset();
    *permit = None;
    *shared.slots[i]
        .client
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
    shared.opened.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(Instant::now());
    shared.streaming.fetch_add(1, Ordering::Relaxed);
    let ended = loop {
        let message = tokio::select! {
            m = stream.message() => m,
            _ = stop.changed() => break Ended::Stopped,
        };
        match message {
            Ok(Some(push)) => {
                if let Some(Item::Command(command)) = push.item {
                    let at = Instant::now();
                    shared
                        .deliveries
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Event {
                            agent: i,
                            command_id: command.id.clone(),
                            at,
                            ok: true,
                        });
                    if shared.acknowledge {
                        tokio::spawn(acknowledge(shared.clone(), i, client.clone(), command.id));
                    }
                }
            }
            Ok(None) | Err(_) => break Ended::Broken,
        }
    };
    shared.streaming.fetch_sub(1, Ordering::Relaxed);
    Ok(ended)
}

async fn acknowledge(
    shared: Arc<Shared>,
    i: usize,
    mut client: AgentServiceClient<Channel>,
    command_id: String,
) {
    let call = client.acknowledge(AcknowledgeRequest {
        command_id: command_id.clone(),
    });
    let ok = match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => {
            let proceed = response.into_inner().proceed;
            if !proceed {
                shared.note_error(format!(
                    "command {command_id}: the controller said not to proceed"
                ));
            }
            proceed
        }
        Ok(Err(status)) => {
            shared.note_error(format!(
                "acknowledge: {:?}: {}",
                status.code(),
                status.message()
            ));
            false
        }
        Err(_) => {
            shared.note_error("acknowledge timed out".into());
            false
        }
    };
    shared
        .acks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Event {
            agent: i,
            command_id,
            at: Instant::now(),
            ok,
        });
}
