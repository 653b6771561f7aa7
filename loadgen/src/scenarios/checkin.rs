//! `checkin`: N agents, each over its own mutual TLS connection, checking in (facts and a
//! compliance report, as `ward-agent run` sends them) at an open-loop aggregate rate R for a
//! duration. Each check-in is scheduled at its intended start time and its latency measured
//! from that time, so a slow server cannot hide its backlog (no coordinated omission). With
//! no rate (`--rate max`), each agent checks in back to back instead: the throughput limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tonic::transport::Channel;
use ward_proto::transport::{ChannelOptions, connect};
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::{CheckInRequest, CheckStatus, ComplianceCheck, ComplianceReport};

use super::{Outcome, settle};
use crate::fleet::{Fleet, facts, provision};
use crate::procstat::{self, CpuMark};
use crate::stats::Latencies;
use crate::swarm::CALL_TIMEOUT;
use crate::target::Server;
use crate::{LoadError, progress};

/// The command name of PostgreSQL's processes, whose CPU a check-in also costs when the
/// database runs on this machine.
const POSTGRES_PROCESS: &str = "postgres";

#[derive(Clone, Debug)]
pub struct CheckinArgs {
    pub agents: usize,
    /// Check-ins per second, all agents together; `None`: as fast as the server answers.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub ramp: usize,
}

/// Check-ins in flight at most; beyond it, a scheduled check-in is counted as not sent.
const MAX_IN_FLIGHT: usize = 50_000;

#[derive(Default)]
struct Tally {
    latencies: Latencies,
    /// Refused at once with UNAVAILABLE (the controller shedding load), not errors.
    shed: u64,
    errors: u64,
    timeouts: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

type Shared = Arc<Mutex<Tally>>;

/// The check-ins an open-loop run sends: `rate` a second for `duration`.
#[allow(clippy::cast_possible_truncation)] // a float `as` cast saturates; runs are far below usize::MAX
fn planned(rate: f64, duration: Duration) -> usize {
    (rate * duration.as_secs_f64()).round() as usize
}

fn request(i: usize, revision: u64) -> CheckInRequest {
    let check = |name: &str| ComplianceCheck {
        name: name.into(),
        status: CheckStatus::Pass as i32,
        detail: String::new(),
    };
    CheckInRequest {
        facts: Some(facts(i)),
        compliance: Some(ComplianceReport {
            policy_revision: revision,
            checks: vec![
                check("disk_encryption"),
                check("password_rules"),
                check("auto_lock"),
            ],
        }),
        offline_wipe: None,
        // As the figures in BENCHMARKS.md were measured: an unchanged inventory costs the
        // controller a comparison, not a write.
        inventory: None,
        // Not reported: an agent's trusted CAs are written only when they change (a CA
        // rotation), so a steady fleet's check-in costs no write for them.
        trusted_ca_hashes: Vec::new(),
    }
}

async fn clients(
    fleet: &Fleet,
    ramp: usize,
) -> Result<Vec<AgentServiceClient<Channel>>, LoadError> {
    let results: Vec<Result<AgentServiceClient<Channel>, String>> =
        futures::stream::iter(fleet.devices.iter())
            .map(|device| async move {
                let tls = ward_certs::tls::client_config(
                    &fleet.ca_der,
                    Some((&device.chain, &device.key)),
                )
                .map_err(|e| e.to_string())?;
                let options = ChannelOptions {
                    connect_timeout: Duration::from_secs(30),
                    request_timeout: None,
                };
                let channel = connect(&fleet.url, tls, options)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(AgentServiceClient::new(channel))
            })
            .buffered(ramp.max(1))
            .collect()
            .await;
    results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::Failed(format!("connecting the agents: {e}")))
}

async fn check_in(
    mut client: AgentServiceClient<Channel>,
    request: CheckInRequest,
    from: Instant,
    tally: Shared,
) {
    let result = tokio::time::timeout(CALL_TIMEOUT, client.check_in(request)).await;
    let done = Instant::now();
    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
    tally.last_done = Some(tally.last_done.map_or(done, |t| t.max(done)));
    match result {
        Ok(Ok(_)) => tally.latencies.record(done.saturating_duration_since(from)),
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => tally.shed += 1,
        Ok(Err(status)) => {
            tally.errors += 1;
            tally
                .first_error
                .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
        }
        Err(_) => {
            // A check-in that never came back counts at least its full wait: leaving it out
            // would flatter the percentiles.
            tally.latencies.record(done.saturating_duration_since(from));
            tally.timeouts += 1;
            tally.errors += 1;
            tally
                .first_error
                .get_or_insert_with(|| "check-in timed out".into());
        }
    }
}

pub async fn measure(
    server: &mut Server,
    args: &CheckinArgs,
    quick: bool,
) -> Result<Outcome, LoadError> {
    let n = args.agents.max(1);
    let fleet = provision(server, n).await?;
    progress!("checkin: {n} devices enrolled; connecting");
    let clients = clients(&fleet, args.ramp).await?;
    // Warm-up: one check-in per agent, which also learns the policy revision to report.
    let revision = {
        let mut first = clients[0].clone();
        first
            .check_in(request(0, 0))
            .await
            .map_err(|s| {
                LoadError::Failed(format!("first check-in: {:?}: {}", s.code(), s.message()))
            })?
            .into_inner()
            .policy
            .map_or(0, |p| p.revision)
    };
    let warm = Arc::new(Mutex::new(Tally::default()));
    futures::stream::iter(clients.iter().enumerate())
        .for_each_concurrent(64, |(i, c)| {
            check_in(
                c.clone(),
                request(i, revision),
                Instant::now(),
                warm.clone(),
            )
        })
        .await;
    if let Some(e) = warm
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .first_error
        .clone()
    {
        return Err(LoadError::Failed(format!("warm-up check-ins failed: {e}")));
    }
    settle(quick).await;

    progress!(
        "checkin: {n} agents connected and warmed up; checking in for {:?}",
        args.duration
    );
    let pid = server.pid()?;
    let ticks = procstat::clock_ticks();
    let tally: Shared = Arc::default();
    let database = server.store_name() == "postgres";
    let cpu_start = CpuMark::now(pid, ticks)?;
    let db_start = database
        .then(|| CpuMark::named(POSTGRES_PROCESS, ticks))
        .transpose()?;
    let client_start = CpuMark::now(std::process::id(), ticks)?;
    let start = Instant::now();
    let mut not_sent = 0u64;
    let offered = match args.rate {
        Some(rate) => {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let total = planned(rate, args.duration);
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..total {
                let intended = start + Duration::from_secs_f64(i as f64 / rate);
                if intended > Instant::now() {
                    tokio::time::sleep_until(intended.into()).await;
                }
                if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                    not_sent += 1;
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (client, tally, in_flight) =
                    (clients[i % n].clone(), tally.clone(), in_flight.clone());
                let req = request(i % n, revision);
                tasks.spawn(async move {
                    check_in(client, req, intended, tally).await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
                // Reap finished tasks so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            Some(rate)
        }
        None => {
            let deadline = start + args.duration;
            futures::stream::iter(clients.iter().enumerate())
                .for_each_concurrent(None, |(i, c)| {
                    let tally = tally.clone();
                    async move {
                        while Instant::now() < deadline {
                            check_in(
                                c.clone(),
                                request(i, revision),
                                Instant::now(),
                                tally.clone(),
                            )
                            .await;
                        }
                    }
                })
                .await;
            None
        }
    };
    let cpu_end = CpuMark::now(pid, ticks)?;
    let db_end = database
        .then(|| CpuMark::named(POSTGRES_PROCESS, ticks))
        .transpose()?;
    let client_end = CpuMark::now(std::process::id(), ticks)?;
    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(PoisonError::into_inner));
    let end = tally.last_done.unwrap_or(start);
    let ok = tally.latencies.count() - tally.timeouts;
    let achieved = ok as f64 / end.saturating_duration_since(start).as_secs_f64().max(1e-9);

    let mut out = Outcome::default();
    let m = &mut out.measured;
    m.push(
        "achieved_rate",
        "check-ins per second (achieved)",
        "/s",
        achieved,
    );
    m.push(
        "p50_ms",
        "latency p50",
        "ms",
        tally.latencies.quantile_ms(0.5),
    );
    m.push(
        "p90_ms",
        "latency p90",
        "ms",
        tally.latencies.quantile_ms(0.9),
    );
    m.push(
        "p99_ms",
        "latency p99",
        "ms",
        tally.latencies.quantile_ms(0.99),
    );
    m.push("max_ms", "latency max", "ms", tally.latencies.max_ms());
    m.push(
        "shed_percent",
        "check-ins shed (UNAVAILABLE)",
        "%",
        100.0 * tally.shed as f64 / (ok + tally.shed).max(1) as f64,
    );
    m.push(
        "server_cpu_percent",
        "server CPU",
        "% of a core",
        cpu_start.percent_until(&cpu_end),
    );
    let per_checkin =
        |from: &CpuMark, to: &CpuMark| 1000.0 * from.cpu_seconds_until(to) / (ok.max(1) as f64);
    let server_ms = per_checkin(&cpu_start, &cpu_end);
    m.push(
        "cpu_ms_per_checkin",
        "server CPU per check-in",
        "ms",
        server_ms,
    );
    // Where the CPU of a check-in goes on this machine, which the controller shares with the
    // database server and the load generator: what these sum to bounds the rate any build
    // could reach here, whatever it does with its time.
    let mut machine_ms = server_ms;
    if let (Some(from), Some(to)) = (&db_start, &db_end) {
        let db_ms = per_checkin(from, to);
        machine_ms += db_ms;
        m.push(
            "db_cpu_ms_per_checkin",
            "PostgreSQL CPU per check-in (its processes on this machine)",
            "ms",
            db_ms,
        );
    }
    let client_ms = per_checkin(&client_start, &client_end);
    machine_ms += client_ms;
    m.push(
        "client_cpu_ms_per_checkin",
        "load generator CPU per check-in",
        "ms",
        client_ms,
    );
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    m.push(
        "cpu_bound_rate",
        "check-ins/s this machine's cores allow at that CPU per check-in",
        "/s",
        cores as f64 * 1000.0 / machine_ms.max(1e-9),
    );
    m.detail("cores", cores);
    m.detail(
        "offered_rate",
        offered.map_or(serde_json::Value::from("max"), serde_json::Value::from),
    );
    m.detail("duration_s", args.duration.as_secs_f64());
    m.detail("completed", ok);
    m.detail("errors", tally.errors);
    m.detail("shed_unavailable", tally.shed);
    m.detail("timed_out", tally.timeouts);
    m.detail("not_sent_backlog_full", not_sent);
    if let Some(e) = tally.first_error {
        m.detail("first_error", e);
    }
    let expected = match args.rate {
        Some(rate) => planned(rate, args.duration),
        None => usize::try_from(ok).unwrap_or(usize::MAX),
    };
    // A shed check-in was answered (UNAVAILABLE, at once): the agent retries it later.
    out.counts = vec![(
        "check-ins answered",
        usize::try_from(ok + tally.shed).unwrap_or(usize::MAX),
        expected,
    )];
    Ok(out)
}
