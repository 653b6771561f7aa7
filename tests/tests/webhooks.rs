//! Signed webhooks (`wardctl webhook …`) against a real HTTP receiver on 127.0.0.1 that checks
//! every delivery's signature the way README tells receivers to (HMAC-SHA256 over
//! "<t>.<body>", a tolerance window on t, dedupe on the event id), written here independently
//! of Ward's own code. Events come from real actions (offboardings of enrolled, running
//! agents); while the receiver is down and across a `kill -9` of the controller none is lost.
//! Also: a tampered delivery fails the check, and bad `webhook add` input exits 2 and stores
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

const DEADLINE: Duration = Duration::from_secs(90);

/// The receiver's tolerance window on the signed timestamp.
const TOLERANCE_SECONDS: i64 = 300;

/// What a receiver does with a delivery before trusting it.
fn check_signature(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), String> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(hex::decode(v).map_err(|e| e.to_string())?),
            _ => {}
        }
    }
    let t = t.ok_or("no timestamp")?;
    if (now - t).abs() > TOLERANCE_SECONDS {
        return Err(format!("timestamp {t} is outside the window around {now}"));
    }
    for signature in signatures {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err("no signature matches".into())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// One delivery the receiver took (its signature checked).
#[derive(Clone, Debug)]
struct Got {
    header_event_id: String,
    signature: String,
    raw: Vec<u8>,
    body: Value,
}

#[derive(Default)]
struct Seen {
    secret: Option<String>,
    verified: Vec<Got>,
    refused: Vec<String>,
}

/// A webhook receiver: axum on a fixed loopback address, which can be taken down and brought
/// back on the same port.
struct Receiver {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut receiver = Self {
            rt,
            addr,
            seen: Arc::default(),
            server: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let app = router(Arc::clone(&self.seen));
        self.server = Some(self.rt.spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }

    fn down(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = self.rt.block_on(server);
        }
        let addr = self.addr;
        eventually_blocking(
            "the receiver's port to refuse connections",
            DEADLINE,
            || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                    .is_err()
                    .then_some(())
            },
        );
    }

    fn up(&mut self) {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(self.addr))
            .unwrap();
        self.serve(listener);
    }

    fn verified(&self) -> Vec<Got> {
        self.seen.lock().unwrap().verified.clone()
    }

    fn refused(&self) -> Vec<String> {
        self.seen.lock().unwrap().refused.clone()
    }

    /// POSTs raw bytes with headers, as an attacker replaying or editing a delivery would; the
    /// receiver's status code.
    fn post(&self, signature: &str, event_id: &str, body: &[u8]) -> u16 {
        let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
        let head = format!(
            "POST /hook HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nWard-Signature: {signature}\r\nWard-Event-Id: {event_id}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap()
    }
}

/// The receiver's one route.
fn router(seen: Arc<Mutex<Seen>>) -> axum::Router {
    axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = Arc::clone(&seen);
            async move { take(&seen, &headers, &body) }
        }),
    )
}

/// The receiver's handler: check, then keep.
fn take(seen: &Mutex<Seen>, headers: &HeaderMap, body: &[u8]) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut seen = seen.lock().unwrap();
    let Some(secret) = seen.secret.clone() else {
        return StatusCode::SERVICE_UNAVAILABLE;
    };
    let signature = header("ward-signature");
    if let Err(e) = check_signature(&secret, &signature, body, unix_now()) {
        seen.refused.push(e);
        return StatusCode::BAD_REQUEST;
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        seen.refused.push("not JSON".into());
        return StatusCode::BAD_REQUEST;
    };
    seen.verified.push(Got {
        header_event_id: header("ward-event-id"),
        signature,
        raw: body.to_vec(),
        body: parsed,
    });
    StatusCode::NO_CONTENT
}

fn ctl_json(controller: &ControllerProcess, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = controller.ctl(&all);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    json(&out)
}

fn offboard(controller: &ControllerProcess, user: &str) {
    let out = controller.ctl(&[
        "user",
        "offboard",
        user,
        "--reason",
        "left the hospital",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// The verified deliveries by event id (duplicates folded: at least once).
fn by_event(got: &[Got]) -> BTreeMap<String, Got> {
    got.iter()
        .map(|g| (g.body["event_id"].as_str().unwrap().to_owned(), g.clone()))
        .collect()
}

/// A counter's value in the controller's `/metrics`.
fn metric(metrics_url: &str, name: &str) -> u64 {
    let (_, body) = ward_e2e::process::http_get(metrics_url, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

fn deliveries(controller: &ControllerProcess) -> Vec<Value> {
    ctl_json(controller, &["webhook", "deliveries"])
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn every_event_arrives_signed_while_the_receiver_or_the_controller_was_down_none_lost() {
    every_event_arrives(&[]);
}

#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn every_event_arrives_on_postgres_too() {
    let db = ward_e2e::postgres::fresh_database();
    every_event_arrives(&["--database-url", db.url.as_str()]);
}

fn every_event_arrives(store: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start();
    let data = tmp.path().join("controller");
    let mut flags = vec![
        "--webhook-retry-max",
        "2s",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    flags.extend(store.iter().copied());
    let controller = ControllerProcess::start_with(&data, "127.0.0.1:0", &flags);
    let added = ctl_json(
        &controller,
        &[
            "webhook",
            "add",
            &receiver.url(),
            "--events",
            "command.finished,user.offboarded,device.noncompliant",
        ],
    );
    let secret = added["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{added}");
    let hook_id = added["webhook_id"].as_str().unwrap().to_owned();
    // Shown once: never again, nor in the audit log.
    let listed = ctl_json(&controller, &["webhook", "list"]);
    assert_eq!(listed[0]["webhook_id"], hook_id.as_str());
    assert!(!listed.to_string().contains(&secret));
    let audit = ctl_json(&controller, &["audit", "list"]);
    assert!(!audit.to_string().contains(&secret));
    assert!(audit.to_string().contains("webhook.add"));
    receiver.seen.lock().unwrap().secret = Some(secret.clone());

    // A real offboarding: the offboarding and its wipe's end arrive, signed.
    let first = AgentFixture::enroll(&controller, tmp.path(), "a", "ann@hospital.org");
    let _first_agent = first.run(&[]);
    offboard(&controller, "ann@hospital.org");
    let got = eventually_blocking(
        "ann's offboarding and wipe at the receiver",
        DEADLINE,
        || {
            let got = by_event(&receiver.verified());
            let offboarded = got.values().any(|g| {
                g.body["event_type"] == "user.offboarded"
                    && g.body["data"]["user"] == "ann@hospital.org"
            });
            let wiped = got.values().any(|g| {
                g.body["event_type"] == "command.finished"
                    && g.body["data"]["device_id"] == first.device_id.as_str()
                    && g.body["data"]["command_state"] == "succeeded"
            });
            (offboarded && wiped).then_some(got)
        },
    );
    for g in got.values() {
        assert_eq!(g.header_event_id, g.body["event_id"].as_str().unwrap());
        assert!(g.body["audit"]["seq"].as_u64().unwrap() > 0);
    }

    // The receiver's check refuses an edited body, another secret, and a replay outside the
    // window, and the receiver itself refuses an edited delivery sent to it.
    let sample = got
        .values()
        .find(|g| g.body["event_type"] == "user.offboarded")
        .unwrap()
        .clone();
    let now = unix_now();
    assert_eq!(
        check_signature(&secret, &sample.signature, &sample.raw, now),
        Ok(())
    );
    let mut tampered = sample.raw.clone();
    let at = tampered.iter().position(|b| *b == b'@').unwrap();
    tampered[at + 1] ^= 0x01;
    assert!(check_signature(&secret, &sample.signature, &tampered, now).is_err());
    assert!(check_signature("whsec_other", &sample.signature, &sample.raw, now).is_err());
    assert!(check_signature(&secret, &sample.signature, &sample.raw, now + 3600).is_err());
    assert_eq!(
        receiver.post(&sample.signature, &sample.header_event_id, &tampered),
        400
    );
    assert_eq!(receiver.refused().len(), 1, "{:?}", receiver.refused());

    // The receiver goes down; a second offboarding's events wait in the outbox, retried.
    receiver.down();
    let second = AgentFixture::enroll(&controller, tmp.path(), "b", "bo@hospital.org");
    let second_agent = second.run(&[]);
    offboard(&controller, "bo@hospital.org");
    let waiting = eventually_blocking("failed attempts for bo's events", DEADLINE, || {
        let pending: Vec<Value> = deliveries(&controller)
            .into_iter()
            .filter(|d| d["delivery_state"] == "pending" && d["attempts"].as_u64() >= Some(2))
            .collect();
        (pending.len() >= 2).then_some(pending)
    });
    let first_try = &waiting[0]["attempt_log"][0];
    assert!(first_try["status_code"].is_null(), "{first_try}");
    assert!(
        first_try["error"].as_str().unwrap().contains("connect"),
        "{first_try}"
    );
    let failed = metric(
        &controller.metrics_url(),
        "ward_webhook_failed_attempts_total",
    );
    assert!(failed >= 4, "{failed} failed attempts counted");
    let waiting_ids: BTreeSet<String> = waiting
        .iter()
        .map(|d| d["event_id"].as_str().unwrap().to_owned())
        .collect();

    // kill -9 of the controller, a restart, and the receiver back: every event arrives.
    drop(second_agent);
    drop(controller);
    let controller = ControllerProcess::start_with(&data, "127.0.0.1:0", &flags);
    receiver.up();
    let all = eventually_blocking("every delivery delivered", DEADLINE, || {
        let all = deliveries(&controller);
        all.iter()
            .all(|d| d["delivery_state"] == "delivered")
            .then_some(all)
    });
    let got = by_event(&receiver.verified());
    let logged: BTreeSet<String> = all
        .iter()
        .map(|d| d["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(logged.is_superset(&waiting_ids));
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        logged,
        "every event in Ward's log reached the receiver, verified"
    );
    assert!(got.values().any(|g| {
        g.body["event_type"] == "user.offboarded" && g.body["data"]["user"] == "bo@hospital.org"
    }));
    assert!(got.values().any(|g| {
        g.body["event_type"] == "command.finished"
            && g.body["data"]["device_id"] == second.device_id.as_str()
    }));
    for d in all
        .iter()
        .filter(|d| waiting_ids.contains(d["event_id"].as_str().unwrap()))
    {
        let log = d["attempt_log"].as_array().unwrap();
        assert!(log.len() >= 3, "{d}");
        assert_eq!(log.last().unwrap()["status_code"], 204, "{d}");
        assert!(d["delivered_at"].is_string(), "{d}");
    }
    assert_eq!(receiver.refused().len(), 1, "{:?}", receiver.refused());
    let delivered = metric(&controller.metrics_url(), "ward_webhook_delivered_total");
    assert!(
        delivered >= waiting_ids.len() as u64,
        "{delivered} deliveries counted"
    );

    // Removing the receiver stops its deliveries and empties its log.
    ctl_json(&controller, &["webhook", "remove", &hook_id]);
    assert!(
        ctl_json(&controller, &["webhook", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(deliveries(&controller).is_empty());
}

#[test]
fn bad_webhook_input_exits_2_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let not_pem = tmp.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let events = "command.finished";
    let refused: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["http://hooks.hospital.org/ward", "--events", events],
            "loopback",
        ),
        (
            vec!["http://10.1.2.3:8080/ward", "--events", events],
            "loopback",
        ),
        (
            vec!["ftp://hooks.hospital.org/", "--events", events],
            "https://",
        ),
        (
            vec!["hooks.hospital.org/ward", "--events", events],
            "https://",
        ),
        (
            vec!["https://u:p@hooks.hospital.org/", "--events", events],
            "password",
        ),
        (
            vec![
                "https://hooks.hospital.org/",
                "--events",
                "device.compliant",
            ],
            "unknown event",
        ),
        (
            vec!["https://hooks.hospital.org/", "--events", ","],
            "no event",
        ),
        (vec!["https://hooks.hospital.org/"], "--events"),
        (
            vec![
                "https://hooks.hospital.org/",
                "--events",
                events,
                "--ca-file",
                "/nonexistent",
            ],
            "cannot read",
        ),
        (
            vec![
                "https://hooks.hospital.org/",
                "--events",
                events,
                "--ca-file",
                not_pem,
            ],
            "no PEM certificate",
        ),
        (
            vec![
                "http://127.0.0.1:9/",
                "--events",
                events,
                "--ca-file",
                not_pem,
            ],
            "plain http",
        ),
    ];
    for (args, says) in refused {
        let mut all = vec!["webhook", "add"];
        all.extend(args.iter().copied());
        let out = controller.ctl(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert!(
        ctl_json(&controller, &["webhook", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let audit = ctl_json(&controller, &["audit", "list"]).to_string();
    assert!(!audit.contains("webhook.add"), "{audit}");

    // Unknown ids: exit 3.
    for args in [
        vec!["webhook", "remove", "0123456789abcdef"],
        vec!["webhook", "deliveries", "0123456789abcdef"],
    ] {
        let out = controller.ctl(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
    }

    // Managing webhooks needs the admin role: a helpdesk identity is refused (exit 4).
    let desk = tmp.path().join("desk.pem");
    ctl_json(
        &controller,
        &[
            "admin",
            "issue",
            "--no-passphrase",
            "desk",
            "--role",
            "helpdesk",
            "--out",
            desk.to_str().unwrap(),
        ],
    );
    for args in [
        vec![
            "webhook",
            "add",
            "https://hooks.hospital.org/",
            "--events",
            events,
        ],
        vec!["webhook", "list"],
    ] {
        let mut all = args.clone();
        all.extend([
            "--server",
            &controller.url,
            "--admin-cert",
            desk.to_str().unwrap(),
        ]);
        let out = ward_e2e::process::wardctl(&all);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {}", stderr(&out));
    }
    assert!(
        ctl_json(&controller, &["webhook", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
}

/// A required check that starts failing at a check-in raises `device.noncompliant`, signed,
/// naming the device and the check (an in-process controller on SQLite with real TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_starting_to_fail_raises_a_signed_noncompliant_event() {
    use ward_controller::app::DeliveryConfig;
    use ward_controller::webhook_sender::Sender;
    use ward_proto::v1::*;

    let seen: Arc<Mutex<Seen>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = router(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let controller = ward_e2e::inprocess::TestController::start().await;
    controller
        .app
        .start_webhook_delivery(DeliveryConfig::new(Sender::default()));
    let mut admin = controller.admin().await;
    let added = admin
        .add_webhook(AddWebhookRequest {
            url,
            events: vec!["device.noncompliant".into()],
            ca_pem: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    seen.lock().unwrap().secret = Some(added.secret);
    let policy = admin
        .set_policy(SetPolicyRequest {
            require_firewall: Some(true),
            ..SetPolicyRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let device = controller.enroll("eve@hospital.org").await;
    let mut agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    let check_in = |passes: bool| CheckInRequest {
        compliance: Some(ComplianceReport {
            policy_revision: policy.revision,
            checks: vec![ComplianceCheck {
                name: "firewall".into(),
                status: if passes {
                    CheckStatus::Pass
                } else {
                    CheckStatus::Fail
                } as i32,
                detail: "firewall".into(),
            }],
        }),
        ..CheckInRequest::default()
    };
    agent.check_in(check_in(true)).await.unwrap();
    agent.check_in(check_in(false)).await.unwrap();
    let got = ward_e2e::eventually("the noncompliant event", DEADLINE, || {
        let got = seen.lock().unwrap().verified.clone();
        async move { (!got.is_empty()).then_some(got) }
    })
    .await;
    assert_eq!(got[0].body["event_type"], "device.noncompliant");
    assert_eq!(got[0].body["data"]["device_id"], device.device_id.as_str());
    assert_eq!(got[0].body["data"]["check"], "firewall");
    // Still failing: no new event; the receiver refused nothing.
    agent.check_in(check_in(false)).await.unwrap();
    let deliveries = admin
        .list_webhook_deliveries(ListWebhookDeliveriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert!(seen.lock().unwrap().refused.is_empty());
}

/// Two replicas on one PostgreSQL database: the outbox is written by both, delivered by the
/// one holding the `webhooks` lease, each event once; when that replica is killed (-9) the
/// other takes the lease and delivers what follows.
#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn with_two_replicas_one_delivers_each_event_and_the_other_takes_over() {
    let db = ward_e2e::postgres::fresh_database();
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let flags = [
        "--database-url",
        db.url.as_str(),
        "--webhook-retry-max",
        "2s",
    ];
    let a_dir = tmp.path().join("a");
    let a = ControllerProcess::start_with(&a_dir, "127.0.0.1:0", &flags);
    let b_dir = tmp.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        std::fs::copy(a_dir.join(file), b_dir.join(file)).unwrap();
    }
    let b = ControllerProcess::start_with(&b_dir, "127.0.0.1:0", &flags);
    let added = ctl_json(
        &a,
        &[
            "webhook",
            "add",
            &receiver.url(),
            "--events",
            "user.offboarded",
        ],
    );
    receiver.seen.lock().unwrap().secret = Some(added["secret"].as_str().unwrap().to_owned());
    let admin = a_dir.join("admin.pem");
    // An offboarding of a user who only has an enrollment token, on either replica.
    let offboard_on = |replica: &ControllerProcess, user: &str| {
        let run = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend([
                "--server",
                replica.url.as_str(),
                "--admin-cert",
                admin.to_str().unwrap(),
            ]);
            let out = ward_e2e::process::wardctl(&all);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        };
        run(&["token", "create", "--user", user, "--output", "json"]);
        run(&[
            "user", "offboard", user, "--reason", "left", "--output", "json",
        ]);
    };
    let users: Vec<String> = (0..10).map(|n| format!("leaver{n}@hospital.org")).collect();
    for (n, user) in users.iter().enumerate() {
        offboard_on(if n % 2 == 0 { &a } else { &b }, user);
    }
    let count = |got: &[Got], user: &str| {
        got.iter()
            .filter(|g| g.body["data"]["user"] == user)
            .count()
    };
    eventually_blocking("every offboarding at the receiver", DEADLINE, || {
        let got = receiver.verified();
        users.iter().all(|u| count(&got, u) >= 1).then_some(())
    });
    let got = receiver.verified();
    for user in &users {
        assert_eq!(count(&got, user), 1, "{user}: delivered more than once");
    }
    let delivering: Vec<bool> = [&a, &b]
        .iter()
        .map(|r| r.daemon.log().contains("delivering webhooks"))
        .collect();
    assert_eq!(
        delivering.iter().filter(|d| **d).count(),
        1,
        "{delivering:?}"
    );

    // The deliverer is killed; the other replica takes over.
    let (survivor, killed) = if delivering[0] { (b, a) } else { (a, b) };
    drop(killed);
    let later: Vec<String> = (0..3).map(|n| format!("later{n}@hospital.org")).collect();
    for user in &later {
        offboard_on(&survivor, user);
    }
    eventually_blocking("the later offboardings at the receiver", DEADLINE, || {
        let got = receiver.verified();
        later.iter().all(|u| count(&got, u) >= 1).then_some(())
    });
    assert!(survivor.daemon.log().contains("delivering webhooks"));
    assert!(receiver.refused().is_empty(), "{:?}", receiver.refused());
}

/// An event commits with its change or not at all: a store job that records a finished
/// command's audit entry and then fails leaves no event in the outbox; the same job that
/// succeeds leaves one per subscribed receiver (an in-process controller on SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_exists_only_when_its_change_committed() {
    use ward_controller::core::Clock;
    use ward_controller::core::audit::AuditEvent;
    use ward_controller::store::{Priority, Store, StoreError};
    use ward_proto::v1::AddWebhookRequest;

    let controller = ward_e2e::inprocess::TestController::start().await;
    let mut admin = controller.admin().await;
    for events in [
        "command.finished",
        "command.finished,user.offboarded",
        "user.offboarded",
    ] {
        admin
            .add_webhook(AddWebhookRequest {
                url: "http://127.0.0.1:9/hook".into(),
                events: vec![events.into()],
                ca_pem: String::new(),
            })
            .await
            .unwrap();
    }
    let store: &dyn Store = &controller.store;
    let now = controller.clock.now();
    let finished = |command: &str| AuditEvent {
        actor: "controller".into(),
        action: "command.succeeded".into(),
        target: command.into(),
        details: serde_json::json!({ "device": "d-1" }),
    };
    let (refused, kept) = (finished("c-refused"), finished("c-kept"));
    let failed: Result<(), StoreError> = store
        .write(Priority::High, move |tx| {
            tx.audit(refused.clone(), now);
            Box::pin(async { Err(StoreError::Database("the job's change failed".into())) })
        })
        .await;
    assert!(failed.is_err());
    store
        .write(Priority::High, move |tx| {
            tx.audit(kept.clone(), now);
            Box::pin(async { Ok::<_, StoreError>(()) })
        })
        .await
        .unwrap();
    let outbox = store.webhook_deliveries(None, 100).await.unwrap();
    assert_eq!(outbox.len(), 2, "{outbox:?}");
    for (delivery, _) in &outbox {
        let body: Value = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(body["data"]["command_id"], "c-kept");
    }
    assert_eq!(
        outbox[0].0.event_id, outbox[1].0.event_id,
        "one event, two receivers"
    );
}
