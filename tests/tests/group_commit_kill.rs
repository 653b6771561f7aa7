//! The controller killed with SIGKILL while its writer commits batches of concurrent check-ins
//! and command issues (issue 15). Every call that was answered must be in the store afterwards,
//! and no call that was not answered may be half there: a check-in's facts and inventory come
//! from the same call, and a command exists with its audit entry or not at all.
//!
//! Each check-in carries a sequence number in two places (the facts' OS version and the
//! inventory's hardware model), so the database shows which call each part came from. The kill
//! lands at a random moment (`WARD_KILL_SEED` replays a run); at that load the writer commits a
//! batch every few milliseconds, so the kill falls among batches in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tonic::transport::Channel;
use ward_certs::PrivateKeyDer;
use ward_certs::csr::make_csr;
use ward_e2e::fleet::admin_client;
use ward_e2e::process::ControllerProcess;
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::{
    CheckInRequest, CreateEnrollmentTokenRequest, DeviceFacts, EnrollRequest, Inventory,
    IssueCommandRequest, LockAction, VerifyAuditRequest,
};

const DEVICES: usize = 40;
const ROUNDS: u64 = 3;
const ADMIN_CALLERS: usize = 4;
const DEADLINE: Duration = Duration::from_secs(120);

struct Device {
    id: String,
    agent: AgentServiceClient<Channel>,
}

/// What the callers saw: per device the last check-in answered OK and the last one sent; per
/// idempotency key the command id of each answered issue call.
#[derive(Default)]
struct Seen {
    checked_in: HashMap<String, u64>,
    sent: HashMap<String, u64>,
    issued: HashMap<String, String>,
}

async fn enroll(admin: &AdminServiceClient<Channel>, data: &Path, url: &str) -> Vec<Device> {
    let ca = std::fs::read_to_string(data.join("ca.pem")).unwrap();
    let ca_der = ward_certs::certificates_from_pem(&ca).unwrap().remove(0);
    let url: ServerUrl = url.parse().unwrap();
    stream::iter(0..DEVICES)
        .map(|_| {
            let mut admin = admin.clone();
            let (url, ca_der) = (url.clone(), ca_der.clone());
            async move {
                let token = admin
                    .create_enrollment_token(CreateEnrollmentTokenRequest {
                        user: "kill@hospital.org".into(),
                        ttl_seconds: 0,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let (pinned, _) =
                    ward_certs::tls::pinned_client_config(token.ca_hash.parse().unwrap()).unwrap();
                let channel = connect(&url, pinned, ChannelOptions::default())
                    .await
                    .unwrap();
                let key = PrivateKeyDer::generate().unwrap();
                let enrolled = EnrollmentServiceClient::new(channel)
                    .enroll(EnrollRequest {
                        token: token.token,
                        csr_der: make_csr(&key, "kill-test").unwrap(),
                        facts: None,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let tls = ward_certs::tls::client_config(
                    &ca_der,
                    Some((&[enrolled.certificate_der], &key)),
                )
                .unwrap();
                let channel = connect(&url, tls, ChannelOptions::default()).await.unwrap();
                Device {
                    id: enrolled.device_id,
                    agent: AgentServiceClient::new(channel),
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

fn check_in_request(seq: u64) -> CheckInRequest {
    CheckInRequest {
        facts: Some(DeviceFacts {
            hostname: "kill-test".into(),
            os_name: "Debian GNU/Linux".into(),
            os_version: format!("seq-{seq}"),
            kernel_version: "6.1.0".into(),
            arch: "x86_64".into(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
        }),
        inventory: Some(Inventory {
            hardware_model: format!("seq-{seq}"),
            cpu_count: 4,
            ..Inventory::default()
        }),
        ..CheckInRequest::default()
    }
}

/// Starts the load: every device checks in back to back, and admin callers issue locks under
/// fresh keys. Runs until the tasks are aborted.
fn start_load(
    devices: &[Device],
    admin: &AdminServiceClient<Channel>,
    round: u64,
    seen: &Arc<Mutex<Seen>>,
    first_seq: u64,
) -> JoinSet<()> {
    let mut load = JoinSet::new();
    for device in devices {
        let (id, mut agent, seen) = (device.id.clone(), device.agent.clone(), seen.clone());
        load.spawn(async move {
            for seq in first_seq.. {
                seen.lock().unwrap().sent.insert(id.clone(), seq);
                if agent.check_in(check_in_request(seq)).await.is_ok() {
                    seen.lock().unwrap().checked_in.insert(id.clone(), seq);
                }
            }
        });
    }
    for caller in 0..ADMIN_CALLERS {
        let (mut admin, seen) = (admin.clone(), seen.clone());
        let targets: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
        load.spawn(async move {
            for n in 0.. {
                let key = format!("kill-{round}-{caller}-{n}");
                let request = IssueCommandRequest {
                    device_id: targets[n % targets.len()].clone(),
                    action: Some(Action::Lock(LockAction::default())),
                    reason: format!("group commit kill round {round}"),
                    idempotency_key: key.clone(),
                    ttl_seconds: 0,
                };
                if let Ok(command) = admin.issue_command(request).await {
                    seen.lock()
                        .unwrap()
                        .issued
                        .insert(key, command.into_inner().id);
                }
            }
        });
    }
    load
}

/// The database as the kill left it, read from a copy (the restarted controller recovers the
/// original): per device the sequence numbers of its stored facts and inventory; per admin key
/// its command id; the command ids that have their `command.issue` audit entry.
struct AtKill {
    facts: HashMap<String, (Option<u64>, Option<u64>)>,
    commands: HashMap<String, String>,
    audited: std::collections::HashSet<String>,
}

fn seq_of(text: &str) -> Option<u64> {
    text.strip_prefix("seq-").and_then(|n| n.parse().ok())
}

async fn read_at_kill(data: &Path, scratch: &Path) -> AtKill {
    std::fs::create_dir_all(scratch).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = data.join(format!("ward.db{suffix}"));
        if from.exists() {
            std::fs::copy(&from, scratch.join(format!("ward.db{suffix}"))).unwrap();
        }
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(scratch.join("ward.db"));
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT id, os_version, inventory FROM devices")
            .fetch_all(&pool)
            .await
            .unwrap();
    let facts = rows
        .into_iter()
        .map(|(id, os_version, inventory)| {
            let model = inventory.and_then(|json| {
                let value: serde_json::Value = serde_json::from_str(&json).unwrap();
                value["hardware_model"].as_str().and_then(seq_of)
            });
            (id, (seq_of(&os_version), model))
        })
        .collect();
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT idempotency_key, id FROM commands WHERE reason LIKE 'group commit kill round %'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let commands = keys
        .into_iter()
        .filter_map(|(key, id)| {
            // Stored under the admin's namespace: `admin:NAME:KEY`.
            let key = key.rsplit(':').next()?.to_owned();
            Some((key, id))
        })
        .collect();
    let audited: Vec<(String,)> =
        sqlx::query_as("SELECT target FROM audit_log WHERE action = 'command.issue'")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    std::fs::remove_dir_all(scratch).unwrap();
    AtKill {
        facts,
        commands,
        audited: audited.into_iter().map(|(t,)| t).collect(),
    }
}

fn port(url: &str) -> &str {
    url.rsplit(':').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_killed_mid_group_commit_keeps_every_answered_call_and_no_half_call() {
    let seed = std::env::var("WARD_KILL_SEED")
        .ok()
        .map(|s| s.parse().expect("WARD_KILL_SEED must be a number"))
        .unwrap_or_else(rand::random);
    eprintln!("WARD_KILL_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("controller");
    let flags = ["--enroll-burst", "1000", "--enroll-per-minute", "100000"];
    let mut controller = ControllerProcess::start_with(&data, "127.0.0.1:0", &flags);
    let listen = format!("127.0.0.1:{}", port(&controller.url));
    let admin = admin_client(&data, &controller.url).await;
    let devices = enroll(&admin, &data, &controller.url).await;

    let mut first_seq = 1;
    for round in 1..=ROUNDS {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut load = start_load(&devices, &admin, round, &seen, first_seq);
        // Wait until the load is flowing (some of each kind answered), then kill at a random
        // moment after that.
        let started = Instant::now();
        loop {
            {
                let seen = seen.lock().unwrap();
                if seen.checked_in.len() == DEVICES && seen.issued.len() >= ADMIN_CALLERS {
                    break;
                }
            }
            assert!(started.elapsed() < DEADLINE, "the load never got going");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..=1500))).await;
        drop(controller);
        // What the callers saw when the process died: nothing answered after this point can
        // have come from the dead process.
        let seen_at_kill = {
            let seen = seen.lock().unwrap();
            (
                seen.checked_in.clone(),
                seen.sent.clone(),
                seen.issued.clone(),
            )
        };
        load.abort_all();
        while load.join_next().await.is_some() {}
        let (checked_in, sent, issued) = seen_at_kill;
        let at_kill = read_at_kill(&data, &tmp.path().join("at-kill")).await;

        for device in &devices {
            let (facts, inventory) = at_kill.facts[&device.id];
            let answered = checked_in.get(&device.id).copied();
            let last_sent = sent[&device.id];
            assert_eq!(
                facts, inventory,
                "round {round}, device {}: facts and inventory come from different check-ins \
                 (a check-in half stored)",
                device.id
            );
            let stored = facts.expect("every device checked in");
            assert!(
                answered.is_none_or(|a| stored >= a),
                "round {round}, device {}: check-in {answered:?} was answered but the store \
                 holds {stored}",
                device.id
            );
            assert!(
                stored <= last_sent,
                "round {round}, device {}: stored {stored}, never sent",
                device.id
            );
        }
        for (key, id) in &issued {
            assert_eq!(
                at_kill.commands.get(key),
                Some(id),
                "round {round}: the answered issue call {key} is not in the store"
            );
        }
        for id in at_kill.commands.values() {
            assert!(
                at_kill.audited.contains(id),
                "round {round}: command {id} is stored without its audit entry"
            );
        }
        eprintln!(
            "round {round}: {} check-ins and {} issue calls answered before the kill; {} \
             commands stored",
            checked_in.len(),
            issued.len(),
            at_kill.commands.len()
        );
        first_seq = sent.values().max().unwrap() + 1;
        controller = ControllerProcess::start_with(&data, &listen, &flags);
    }
    let mut admin = admin;
    // The admin channel reconnects to the restarted controller by itself.
    let started = Instant::now();
    let audit = loop {
        match admin.verify_audit(VerifyAuditRequest::default()).await {
            Ok(answer) => break answer.into_inner(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                assert!(
                    started.elapsed() < DEADLINE,
                    "the controller never came back: {status}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("audit verify: {status}"),
        }
    };
    assert!(audit.ok, "audit chain after the kills: {audit:?}");
    controller.stop();
}
