//! Fault tests: the controller killed with SIGKILL at random moments of a wipe fan-out to
//! 1,000 devices, round after round. Nothing accepted may be lost, nothing may run twice, and
//! every command must end in a terminal state once the controller is back.
//!
//! The agents run in this process (real enrollment, real mutual TLS, the real agent loop); the
//! controller is a real `wardctl serve` process on a real SQLite file. Sizes and the seed of
//! the kill points come from `WARD_FAULT_DEVICES` (1000), `WARD_FAULT_ROUNDS` (3),
//! `WARD_FAULT_MAX_KILL_MS` (4000) and `WARD_FAULT_SEED` (random, printed, so a failing run
//! can be replayed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic::transport::Channel;
use ward_agent::ledger::{Ledger, Status};
use ward_agent::vault::WipeJournal;
use ward_e2e::fleet::{RunningFleet, admin_client, enroll_fleet};
use ward_e2e::process::{AgentFixture, CANARY_FILES, ControllerProcess, plant_canaries};
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::{
    CommandState, IssueCommandRequest, ListCommandsRequest, ListDevicesRequest, VerifyAuditRequest,
    WipeAction, WipeScope,
};

/// Agents check in rarely, so commands reach them through their streams (and, after a
/// restart, through the stream they reopen), not through polling.
const FLAGS: &[&str] = &[
    "--checkin-interval",
    "10m",
    "--enroll-burst",
    "5000",
    "--enroll-per-minute",
    "100000",
];
/// The longest kill delay (`WARD_FAULT_MAX_KILL_MS` overrides it): kills land while wipes
/// are still being issued, delivered, acknowledged and reported.
const MAX_KILL_DELAY_MS: u64 = 4000;
const DEADLINE: Duration = Duration::from_secs(240);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
        .unwrap_or(default)
}

fn port(url: &str) -> &str {
    url.rsplit(':').next().unwrap()
}

/// An interrupted call may or may not have reached the store: the client retries it with the
/// same idempotency key, as a script would.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
    )
}

/// Issues a messaging wipe to every device, 32 calls at a time, retrying interrupted calls.
/// Returns (device id, command id) pairs.
async fn fan_out(
    admin: AdminServiceClient<Channel>,
    devices: Vec<String>,
    round: u64,
    answered: Arc<AtomicUsize>,
) -> Vec<(String, String)> {
    stream::iter(devices)
        .map(|device_id| {
            let mut admin = admin.clone();
            let answered = answered.clone();
            async move {
                let started = Instant::now();
                loop {
                    let request = IssueCommandRequest {
                        device_id: device_id.clone(),
                        action: Some(Action::Wipe(WipeAction {
                            scope: WipeScope::Messaging as i32,
                        })),
                        reason: format!("fault round {round}"),
                        idempotency_key: format!("fault-{round}-{device_id}"),
                        ttl_seconds: 0,
                    };
                    match admin.issue_command(request).await {
                        Ok(command) => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            return (device_id, command.into_inner().id);
                        }
                        Err(status) if retryable(status.code()) => {
                            assert!(
                                started.elapsed() < DEADLINE,
                                "issuing a wipe to {device_id} kept failing: {status}"
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(status) => panic!("wipe to {device_id} refused: {status}"),
                    }
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// Command states in the store as the kill left it, read from a copy of the database files
/// (so the restarted controller, not this test, is the one that recovers the original).
async fn states_at_kill(data: &Path, scratch: &Path, round: u64) -> Vec<(String, i64)> {
    std::fs::create_dir_all(scratch).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = data.join(format!("ward.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, scratch.join(format!("ward.db{suffix}"))).unwrap();
        }
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(scratch.join("ward.db"));
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) FROM commands WHERE reason = ? GROUP BY state ORDER BY state",
    )
    .bind(format!("fault round {round}"))
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    std::fs::remove_dir_all(scratch).unwrap();
    rows
}

/// The newest `n` commands, newest first.
async fn newest(admin: &mut AdminServiceClient<Channel>, n: usize) -> Vec<ward_proto::v1::Command> {
    admin
        .list_commands(ListCommandsRequest {
            limit: u32::try_from(n).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .commands
}

/// Waits until every command in `ids` is terminal, polling twice a second (each list is an
/// audited read); returns the commands by id.
async fn wait_terminal(
    admin: &mut AdminServiceClient<Channel>,
    ids: &HashSet<String>,
) -> HashMap<String, ward_proto::v1::Command> {
    let started = Instant::now();
    loop {
        let commands: HashMap<_, _> = newest(admin, ids.len())
            .await
            .into_iter()
            .filter(|c| ids.contains(&c.id))
            .map(|c| (c.id.clone(), c))
            .collect();
        let open = commands
            .values()
            .filter(|c| {
                !matches!(
                    c.state(),
                    CommandState::Succeeded
                        | CommandState::Failed
                        | CommandState::Cancelled
                        | CommandState::Expired
                )
            })
            .count();
        if commands.len() == ids.len() && open == 0 {
            return commands;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{open} of {} wipes still not terminal after {DEADLINE:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The agent's own record of `command_id`, once it has told the controller the result.
async fn reported_entry(agent: &AgentFixture, command_id: &str) -> Status {
    let ledger = Ledger::open(&agent.state_dir).unwrap();
    let started = Instant::now();
    loop {
        let entry = ledger
            .get(command_id)
            .unwrap()
            .unwrap_or_else(|| panic!("{} has no ledger entry for {command_id}", agent.device_id));
        if entry.reported {
            return entry.status;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the agent never recorded its report"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn journal(agent: &AgentFixture) -> WipeJournal {
    serde_json::from_slice(&std::fs::read(agent.state_dir.join("wipe-journal.json")).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_killed_during_a_thousand_wipe_fan_out_loses_nothing_and_runs_nothing_twice() {
    let devices = usize::try_from(env_or("WARD_FAULT_DEVICES", 1000)).unwrap();
    let rounds = env_or("WARD_FAULT_ROUNDS", 3);
    let seed = env_or("WARD_FAULT_SEED", rand::random());
    let max_kill_ms = env_or("WARD_FAULT_MAX_KILL_MS", MAX_KILL_DELAY_MS);
    eprintln!("fault run: {devices} devices, {rounds} rounds, WARD_FAULT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("controller");
    let mut controller = ControllerProcess::start_with(&data, "127.0.0.1:0", FLAGS);
    let listen = format!("127.0.0.1:{}", port(&controller.url));
    let mut admin = admin_client(&data, &controller.url).await;
    let started = Instant::now();
    let agents = enroll_fleet(&admin, tmp.path(), "fanout@hospital.org", devices, 16).await;
    eprintln!("enrolled {devices} devices in {:?}", started.elapsed());
    let fleet = RunningFleet::start(&agents);
    let device_ids: Vec<String> = agents.iter().map(|a| a.device_id.clone()).collect();
    let by_device: HashMap<&str, &AgentFixture> =
        agents.iter().map(|a| (a.device_id.as_str(), a)).collect();
    // Every agent has checked in (and so holds its stream) before the first fan-out.
    let started = Instant::now();
    loop {
        let seen = admin
            .list_devices(ListDevicesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .devices
            .iter()
            .filter(|d| d.last_seen_unix_ms > 0)
            .count();
        if seen == devices {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {seen} agents checked in"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    for round in 1..=rounds {
        if round > 1 {
            for agent in &agents {
                plant_canaries(&agent.messaging_dir);
            }
        }
        let kill_after = Duration::from_millis(rng.random_range(0..=max_kill_ms));
        let answered = Arc::new(AtomicUsize::new(0));
        let fan_out = tokio::spawn(fan_out(
            admin.clone(),
            device_ids.clone(),
            round,
            answered.clone(),
        ));
        // The fault: SIGKILL at a random moment of the fan-out (not a wait for a result).
        tokio::time::sleep(kill_after).await;
        drop(controller);
        let answered_at_kill = answered.load(Ordering::Relaxed);
        let at_kill = states_at_kill(&data, &tmp.path().join("at-kill"), round).await;
        controller = ControllerProcess::start_with(&data, &listen, FLAGS);
        let restarted = Instant::now();

        let issued = fan_out.await.unwrap();
        let ids: HashSet<String> = issued.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(
            ids.len(),
            devices,
            "one wipe per device, whatever was retried"
        );
        let commands = wait_terminal(&mut admin, &ids).await;
        let all_terminal = restarted.elapsed();

        // Retried calls created no extra commands: the newest are exactly this round's, and
        // the one before them belongs to the previous round.
        let latest = newest(&mut admin, devices + 1).await;
        assert!(latest[..devices].iter().all(|c| ids.contains(&c.id)));
        assert!(
            latest
                .get(devices)
                .is_none_or(|c| c.reason != format!("fault round {round}")),
            "an extra command for round {round}"
        );
        for (device_id, id) in &issued {
            let command = &commands[id];
            assert_eq!(command.state(), CommandState::Succeeded, "{command:?}");
            assert!(
                command.receipt.as_ref().is_some_and(|r| r.verified),
                "a succeeded wipe carries a verified receipt: {command:?}"
            );
            let agent = by_device[device_id.as_str()];
            assert!(
                agent.canary_files().is_empty(),
                "{device_id}: canary data survived"
            );
            assert_eq!(
                agent.ledger_entries() as u64,
                round,
                "{device_id}: one ledger entry per wipe"
            );
            assert!(
                matches!(
                    reported_entry(agent, id).await,
                    Status::Finished {
                        succeeded: true,
                        ..
                    }
                ),
                "{device_id}: the agent records the wipe as done"
            );
            // Executed once: the run that removed this round's files is the one recorded for
            // this command (a second run would have found nothing to remove).
            let journal = journal(agent);
            assert_eq!(journal.cause, *id);
            assert_eq!(
                journal.files_removed, CANARY_FILES,
                "{device_id}: {journal:?}"
            );
            assert!(journal.verified_empty);
        }
        eprintln!(
            "round {round}: SIGKILL {kill_after:?} into the fan-out ({answered_at_kill}/{devices} issue calls answered; \
             stored by then: {at_kill:?}); all {devices} succeeded {all_terminal:?} after the restart"
        );
    }
    assert_eq!(fleet.stopped(), 0, "no agent gave up");
    let audit = admin
        .verify_audit(VerifyAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(audit.ok, "audit chain after the kills: {audit:?}");
}
