//! `wardctl serve --database-url postgres://…`: the whole enrollment-to-wipe path on
//! PostgreSQL, and the guard against a second CA on a database that already has one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ward_e2e::eventually_blocking;
use ward_e2e::postgres::fresh_database;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr, wardctl};

#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn a_controller_on_postgres_enrolls_and_wipes_and_a_replica_shares_its_devices() {
    let db = fresh_database();
    let tmp = tempfile::tempdir().unwrap();
    let primary_dir = tmp.path().join("primary");
    let primary =
        ControllerProcess::start_with(&primary_dir, "127.0.0.1:0", &["--database-url", &db.url]);
    assert!(
        !primary_dir.join("ward.db").exists(),
        "no SQLite file when the store is PostgreSQL"
    );
    let device = AgentFixture::enroll(&primary, tmp.path(), "pg", "pia@hospital.org");
    let _agent = device.run(&[]);
    let out = primary.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "test",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["receipt"]["verified"], true);
    assert!(device.canary_files().is_empty());

    // A replica: the same CA and server credentials (a copy of the data directory), the same
    // database. It sees the same devices and commands, and the audit chain stays one chain.
    let replica_dir = tmp.path().join("replica");
    std::fs::create_dir_all(&replica_dir).unwrap();
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        std::fs::copy(primary_dir.join(file), replica_dir.join(file)).unwrap();
    }
    let replica =
        ControllerProcess::start_with(&replica_dir, "127.0.0.1:0", &["--database-url", &db.url]);
    // The admin's bundle works against either replica.
    let admin = primary_dir.join("admin.pem");
    let on_replica = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([
            "--server",
            replica.url.as_str(),
            "--admin-cert",
            admin.to_str().unwrap(),
        ]);
        wardctl(&all)
    };
    let seen = json(&on_replica(&[
        "device",
        "show",
        &device.device_id,
        "--output",
        "json",
    ]));
    assert_eq!(seen["id"], device.device_id.as_str());
    let lock = json(&on_replica(&[
        "device",
        "lock",
        &device.device_id,
        "--output",
        "json",
    ]));
    eventually_blocking(
        "the lock issued on the replica to reach the agent",
        Duration::from_secs(60),
        || {
            let c = json(&primary.ctl(&[
                "command",
                "show",
                lock["id"].as_str().unwrap(),
                "--output",
                "json",
            ]));
            (c["state"] == "failed" || c["state"] == "succeeded").then_some(())
        },
    );
    assert_eq!(
        json(&primary.ctl(&["audit", "verify", "--output", "json"]))["ok"],
        true
    );
}

#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn a_fresh_data_directory_is_refused_on_a_database_that_has_a_controller() {
    let db = fresh_database();
    let tmp = tempfile::tempdir().unwrap();
    let _first = ControllerProcess::start_with(
        &tmp.path().join("first"),
        "127.0.0.1:0",
        &["--database-url", &db.url],
    );
    let second = tmp.path().join("second");
    let out = wardctl(&[
        "serve",
        "--data-dir",
        second.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        &db.url,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("copy that controller's data directory"),
        "{}",
        stderr(&out)
    );
    assert!(!second.join("ca.key").exists(), "no second CA was made");
    let bad = wardctl(&[
        "serve",
        "--data-dir",
        second.to_str().unwrap(),
        "--database-url",
        "mysql://x",
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Two replicas on one database, agents checking in only every minute: anything that arrives
/// within seconds came through the stream, woken across replicas by LISTEN/NOTIFY.
#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn a_wipe_issued_on_one_replica_reaches_an_agent_on_the_other_and_the_agent_fails_over() {
    let db = fresh_database();
    let tmp = tempfile::tempdir().unwrap();
    let slow = [
        "--database-url",
        db.url.as_str(),
        "--checkin-interval",
        "60s",
    ];
    let a_dir = tmp.path().join("a");
    let a = ControllerProcess::start_with(&a_dir, "127.0.0.1:0", &slow);
    let b_dir = tmp.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        std::fs::copy(a_dir.join(file), b_dir.join(file)).unwrap();
    }
    let mut b = ControllerProcess::start_with(&b_dir, "127.0.0.1:0", &slow);

    let device = AgentFixture::enroll(&a, tmp.path(), "r", "rex@hospital.org");
    // The agent prefers replica B, then A.
    let _agent = device.run_with(&["--server", &b.url, "--server", &a.url], &[]);
    eventually_blocking(
        "the first check-in (through B)",
        Duration::from_secs(60),
        || {
            let d = json(&a.ctl(&["device", "show", &device.device_id, "--output", "json"]));
            (!d["last_seen"].is_null()).then_some(())
        },
    );

    // Issued on A, delivered by B's stream.
    let out = a.ctl(&[
        "device",
        "lock",
        &device.device_id,
        "--wait",
        "--timeout",
        "10s",
        "--output",
        "json",
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "not finished in 10 s: {}",
        stderr(&out)
    );

    // B dies; the agent moves to A and still gets (and completes) a wipe issued meanwhile.
    b.daemon.terminate();
    eventually_blocking("replica B to stop", Duration::from_secs(30), || {
        (!b.daemon.is_running()).then_some(())
    });
    let out = a.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "failover",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json(&out)["receipt"]["verified"], true);
    assert!(device.canary_files().is_empty());
}

#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn an_offboarding_through_one_replica_completes_on_devices_of_both() {
    let db = fresh_database();
    let tmp = tempfile::tempdir().unwrap();
    let slow = [
        "--database-url",
        db.url.as_str(),
        "--checkin-interval",
        "60s",
    ];
    let a_dir = tmp.path().join("a");
    let a = ControllerProcess::start_with(&a_dir, "127.0.0.1:0", &slow);
    let b_dir = tmp.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    for file in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        std::fs::copy(a_dir.join(file), b_dir.join(file)).unwrap();
    }
    let b = ControllerProcess::start_with(&b_dir, "127.0.0.1:0", &slow);
    let on_a = AgentFixture::enroll(&a, tmp.path(), "x", "sol@hospital.org");
    let on_b = AgentFixture::enroll(&a, tmp.path(), "y", "sol@hospital.org");
    let _agents = [
        on_a.run_with(&["--server", &a.url], &[]),
        on_b.run_with(&["--server", &b.url], &[]),
    ];
    for d in [&on_a, &on_b] {
        eventually_blocking(
            "each agent's first check-in",
            Duration::from_secs(60),
            || {
                let shown = json(&a.ctl(&["device", "show", &d.device_id, "--output", "json"]));
                (!shown["last_seen"].is_null()).then_some(())
            },
        );
    }
    let out = a.ctl(&[
        "user",
        "offboard",
        "sol@hospital.org",
        "--reason",
        "left",
        "--wait",
        "--timeout",
        "30s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["complete"], true);
    assert!(
        report["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["receipt_verified"] == true && d["revoked"] == true)
    );
    assert!(on_a.canary_files().is_empty() && on_b.canary_files().is_empty());
    assert_eq!(
        json(&b.ctl_with_bundle(&a_dir, &["audit", "verify", "--output", "json"]))["ok"],
        true
    );
}
