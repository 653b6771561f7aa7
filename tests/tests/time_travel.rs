//! Four hundred days of a controller, two agents and an admin, under libfaketime: every
//! process reads the same clock file, moved forward 25 days at a time. Nobody intervenes but
//! the admin renewing their own certificate as the guide says, and rotating the CA in its
//! three steps (introduce on day 100, activate on day 125, retire on day 250). No device
//! loses its data, the agents come back by themselves (renewing their certificates when due,
//! under the new CA after the activation), the controller's server certificate renews itself
//! (the one `init` made expires on day 364), and `wardctl audit verify` passes at every step,
//! across the audit heads signed by the former CA and by the new one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use ward_e2e::clock::{AgentClock, env_refs};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{
    AgentFixture, CANARY_FILES, ControllerProcess, bin, json, plant_canaries, stderr,
};

const DAY: i64 = 24 * 3600;
const STEP_DAYS: i64 = 25;

/// `wardctl ARGS` on the shared clock, as the admin whose bundle is `bundle`.
fn ctl(env: &[(&str, &str)], url: &str, bundle: &Path, args: &[&str]) -> Output {
    Command::new(bin("wardctl"))
        .args(args)
        .args(["--server", url, "--admin-cert", bundle.to_str().unwrap()])
        .env_remove("WARD_SERVER")
        .env_remove("WARD_ADMIN_CERT")
        .env_remove("WARD_DATA_DIR")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The CA rotation's step for `day`, if it has one, run through `ctl` (wardctl as the admin)
/// and waited for: on day 100 a new CA is introduced and every agent comes to trust it, on
/// day 125 it is activated (the server certificate is issued under it), on day 250 the
/// former CA is retired and every agent drops it.
fn rotate_ca(day: i64, ctl: &dyn Fn(&[&str]) -> Output, agents: &[AgentFixture]) {
    let status = || json(&ctl(&["ca", "rotate", "status", "--output", "json"]));
    let trusted = |agent: &AgentFixture| -> usize {
        let pem = std::fs::read_to_string(agent.state_dir.join("ca.pem")).unwrap();
        ward_certs::certificates_from_pem(&pem).unwrap().len()
    };
    let step = match day {
        100 => "introduce",
        125 => "activate",
        250 => "retire",
        _ => return,
    };
    let out = ctl(&["ca", "rotate", step]);
    assert!(
        out.status.success(),
        "day {day}: ca rotate {step}: {}",
        stderr(&out)
    );
    match step {
        "introduce" => {
            eventually_blocking(
                "day 100: every agent to trust the new CA",
                Duration::from_secs(90),
                || (status()["devices_trusting_all"] == 2).then_some(()),
            );
            assert!(agents.iter().all(|a| trusted(a) == 2));
        }
        "activate" => {
            let now = status();
            assert_eq!(now["cas"][0]["ca_state"], "active", "{now}");
            assert_eq!(now["cas"][1]["ca_state"], "trusted", "{now}");
        }
        _ => {
            eventually_blocking(
                "day 250: every agent to drop the former CA",
                Duration::from_secs(90),
                || agents.iter().all(|a| trusted(a) == 1).then_some(()),
            );
            let now = status();
            assert_eq!(now["devices_trusting_all"], 2, "{now}");
            assert!(
                now["cas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["ca_state"] == "retired"),
                "{now}"
            );
        }
    }
}

fn time_of(value: &serde_json::Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value.as_str()?, &Rfc3339).ok()
}

fn server_leaf(data: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(data.join("server.pem")).unwrap();
    ward_certs::certificates_from_pem(&pem).unwrap().remove(0)
}

#[test]
#[cfg_attr(
    not(ward_faketime),
    ignore = "needs faketime: apt-get install faketime"
)]
fn four_hundred_days_later_every_device_is_connected_and_nothing_was_lost() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let clock = AgentClock::faketime(root.path());
    let env_owned = clock.env();
    let env = env_refs(&env_owned);
    let flags = [
        "--device-cert-lifetime",
        "90d",
        "--server-cert-check-interval",
        "1s",
    ];
    let mut controller = ControllerProcess::start_with_env(&data, "127.0.0.1:0", &flags, &env);
    let listen = controller.listen_addr();
    let url = controller.url.clone();
    let first_server_cert = server_leaf(&data);

    let agents: Vec<AgentFixture> = ["north", "south"]
        .iter()
        .map(|name| {
            let agent = AgentFixture::enroll(
                &controller,
                root.path(),
                name,
                &format!("{name}@hospital.org"),
            );
            plant_canaries(&agent.messaging_dir);
            agent
        })
        .collect();
    let canaries = |agents: &[AgentFixture]| -> Vec<u64> {
        agents
            .iter()
            .map(|a| a.canary_files().len() as u64)
            .collect()
    };
    assert_eq!(canaries(&agents), vec![CANARY_FILES; 2]);
    let mut running: Vec<_> = agents.iter().map(|a| a.run(&env)).collect();
    let mut bundle: PathBuf = data.join("admin.pem");
    let mut serials: Vec<Vec<String>> = Vec::new();

    // Every device has checked in after `since` (the shared clock) with a certificate that
    // outlives the next step.
    let wait_for_fleet = |bundle: &Path, since: OffsetDateTime, what: &str| -> Vec<String> {
        eventually_blocking(what, Duration::from_secs(90), || {
            let out = ctl(&env, &url, bundle, &["device", "list", "--output", "json"]);
            if !out.status.success() {
                return None;
            }
            let devices = json(&out).as_array().cloned().unwrap();
            let ready = devices.len() == 2
                && devices.iter().all(|d| {
                    d["state"] == "active"
                        && time_of(&d["last_seen"]).is_some_and(|t| t >= since)
                        && time_of(&d["certificate_expires_at"]).is_some_and(|t| {
                            t > since + time::Duration::seconds((STEP_DAYS + 1) * DAY)
                        })
                });
            ready.then(|| {
                devices
                    .iter()
                    .map(|d| d["certificate_serial"].as_str().unwrap().to_owned())
                    .collect()
            })
        })
    };

    for day in (STEP_DAYS..=400).step_by(usize::try_from(STEP_DAYS).unwrap()) {
        for agent in running.drain(..) {
            agent.stop();
        }
        clock.set(day * DAY);
        let now = OffsetDateTime::now_utc() + time::Duration::seconds(day * DAY)
            - time::Duration::seconds(2);
        running = agents.iter().map(|a| a.run(&env)).collect();

        // The admin renews their own certificate (30 days) at every step; the old one is
        // revoked by the renewal.
        let renewed = root.path().join(format!("admin-day{day}.pem"));
        let out = ctl(
            &env,
            &url,
            &bundle,
            &[
                "admin",
                "renew",
                "admin",
                "--out",
                renewed.to_str().unwrap(),
                "--no-passphrase",
            ],
        );
        assert!(
            out.status.success(),
            "day {day}: admin renew: {}",
            stderr(&out)
        );
        bundle = renewed;

        serials.push(wait_for_fleet(
            &bundle,
            now,
            &format!("day {day}: both agents back with a certificate for the next step"),
        ));

        if day % 100 == 0 {
            // A controller restart: the agents reconnect by themselves.
            controller.stop();
            controller = ControllerProcess::start_with_env(&data, &listen, &flags, &env);
            let restarted = OffsetDateTime::now_utc() + time::Duration::seconds(day * DAY);
            wait_for_fleet(
                &bundle,
                restarted,
                &format!("day {day}: both agents back after the controller restart"),
            );
        }

        rotate_ca(day, &|args| ctl(&env, &url, &bundle, args), &agents);
        if day == 125 {
            // The break-glass identity is issued again under the new CA (the guide's step;
            // its old certificate, valid two years, would keep the former CA from retiring).
            let out = ctl(
                &env,
                &url,
                &bundle,
                &[
                    "admin",
                    "renew",
                    "break-glass",
                    "--out",
                    root.path().join("break-glass.pem").to_str().unwrap(),
                    "--no-passphrase",
                ],
            );
            assert!(out.status.success(), "break-glass renew: {}", stderr(&out));
            let activated = OffsetDateTime::now_utc() + time::Duration::seconds(day * DAY);
            wait_for_fleet(
                &bundle,
                activated,
                "day 125: both agents back under the new CA's server certificate",
            );
        }

        let verify = ctl(&env, &url, &bundle, &["audit", "verify"]);
        assert!(
            verify.status.success(),
            "day {day}: audit verify: {}",
            stderr(&verify)
        );
        assert_eq!(
            canaries(&agents),
            vec![CANARY_FILES; 2],
            "day {day}: a device lost its messaging data"
        );
    }

    // The device certificates renewed on the way (90 days each: at least four times).
    for device in 0..2 {
        let mut distinct: Vec<&String> = serials.iter().map(|s| &s[device]).collect();
        distinct.dedup();
        assert!(distinct.len() >= 4, "device {device}: {serials:?}");
    }
    // The server certificate renewed itself: the one `init` made expired on day 364, and the
    // one in use was issued after day 240.
    let leaf = server_leaf(&data);
    assert_ne!(leaf, first_server_cert);
    let validity = ward_certs::live::Validity::of(&leaf).unwrap();
    assert!(
        validity.not_before > OffsetDateTime::now_utc() + time::Duration::seconds(240 * DAY),
        "{validity:?}"
    );
    let status = json(&ctl(
        &env,
        &url,
        &bundle,
        &["ca", "status", "--output", "json"],
    ));
    assert!(
        status["server"]["seconds_left"].as_i64().unwrap() > 0,
        "{status}"
    );
    let audit = json(&ctl(
        &env,
        &url,
        &bundle,
        &["audit", "list", "--output", "json", "--actor", "controller"],
    ));
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "server_certificate.issue"
                && e.to_string().contains("renewal")),
        "no audited renewal"
    );
    for agent in running {
        agent.stop();
    }
    controller.stop();
}

/// Two replicas on one PostgreSQL database, 250 days on: each renews its own server
/// certificate under the shared CA while running, both present a valid one, and the audit
/// trail both wrote to verifies.
#[test]
#[cfg_attr(
    not(ward_faketime),
    ignore = "needs faketime: apt-get install faketime"
)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn every_replica_renews_its_own_server_certificate_under_the_shared_ca() {
    let db = ward_e2e::postgres::fresh_database();
    let root = tempfile::tempdir().unwrap();
    let clock = AgentClock::faketime(root.path());
    let env_owned = clock.env();
    let env = env_refs(&env_owned);
    let flags = [
        "--database-url",
        db.url.as_str(),
        "--server-cert-check-interval",
        "1s",
    ];
    let first_dir = root.path().join("a");
    let first = ControllerProcess::start_with_env(&first_dir, "127.0.0.1:0", &flags, &env);
    let second_dir = root.path().join("b");
    std::fs::create_dir(&second_dir).unwrap();
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        std::fs::copy(first_dir.join(file), second_dir.join(file)).unwrap();
    }
    let second = ControllerProcess::start_with_env(&second_dir, "127.0.0.1:0", &flags, &env);
    let original = server_leaf(&first_dir);
    // An admin certificate that lasts the trip (issued, not renewed: see the report on
    // `admin renew` over PostgreSQL in RELIABILITY.md 3.3b).
    let bundle = root.path().join("admin-long.pem");
    let out = ctl(
        &env,
        &first.url,
        &first_dir.join("admin.pem"),
        &[
            "admin",
            "issue",
            "auditor",
            "--role",
            "admin",
            "--out",
            bundle.to_str().unwrap(),
            "--no-passphrase",
            "--lifetime",
            "400d",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    clock.set(250 * DAY);
    for (replica, dir) in [(&first, &first_dir), (&second, &second_dir)] {
        eventually_blocking(
            "the replica to renew its server certificate",
            Duration::from_secs(30),
            || (server_leaf(dir) != original).then_some(()),
        );
        let status = json(&ctl(
            &env,
            &replica.url,
            &bundle,
            &["ca", "status", "--output", "json"],
        ));
        assert!(
            status["server"]["seconds_left"].as_i64().unwrap() > 300 * DAY,
            "{status}"
        );
    }
    assert_ne!(
        server_leaf(&first_dir),
        server_leaf(&second_dir),
        "one each"
    );
    assert_eq!(
        std::fs::read(first_dir.join("ca.pem")).unwrap(),
        std::fs::read(second_dir.join("ca.pem")).unwrap()
    );
    let audit = json(&ctl(
        &env,
        &first.url,
        &bundle,
        &["audit", "list", "--output", "json", "--actor", "controller"],
    ));
    let renewals = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "server_certificate.issue")
        .count();
    assert_eq!(renewals, 2, "{audit}");
    let verify = ctl(&env, &second.url, &bundle, &["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    first.stop();
    second.stop();
}
