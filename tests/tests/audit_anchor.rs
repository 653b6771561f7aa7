//! The audit trail anchored outside its database, tried as an attacker who holds the database
//! (and every backup of it) but not the controller's key: real `wardctl serve` processes, the
//! real SQLite file or a real PostgreSQL database edited behind the controller's back, and
//! `wardctl audit verify [--checkpoints DIR]` as an auditor runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use ward_e2e::eventually_blocking;
use ward_e2e::postgres::{FreshDatabase, fresh_database};
use ward_e2e::process::{AgentFixture, ControllerProcess, http_get, json, stderr};

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `$body` with `$conn` connected to the controller's store, as someone who holds the
/// database would (the same statements on SQLite and PostgreSQL).
macro_rules! on_db {
    ($backend:expr, $dir:expr, $conn:ident, $body:block) => {{
        #[allow(unused_imports)]
        use sqlx::{Connection, Row};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match $backend {
            Backend::Sqlite => runtime.block_on(async {
                let url = format!("sqlite://{}", $dir.join("ward.db").display());
                let mut $conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                let out = $body;
                $conn.close().await.unwrap();
                out
            }),
            Backend::Postgres(db) => runtime.block_on(async {
                let mut $conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                let out = $body;
                $conn.close().await.unwrap();
                out
            }),
        }
    }};
}

/// Where the controller keeps its store.
enum Backend {
    Sqlite,
    Postgres(FreshDatabase),
}

/// The audit head as stored: what a backup of the database holds.
#[derive(Clone, Debug)]
struct StoredHead {
    seq: i64,
    hash: String,
    signature: Vec<u8>,
}

impl Backend {
    fn postgres() -> Self {
        Backend::Postgres(fresh_database())
    }

    fn start(&self, dir: &Path, extra: &[&str]) -> ControllerProcess {
        let mut args: Vec<&str> = extra.to_vec();
        if let Backend::Postgres(db) = self {
            args.extend(["--database-url", db.url.as_str()]);
        }
        ControllerProcess::start_with(dir, "127.0.0.1:0", &args)
    }

    fn execute(&self, dir: &Path, statements: &[&str]) {
        on_db!(self, dir, conn, {
            for statement in statements {
                sqlx::query(statement).execute(&mut conn).await.unwrap();
            }
        })
    }

    fn head(&self, dir: &Path) -> StoredHead {
        on_db!(self, dir, conn, {
            let row = sqlx::query("SELECT seq, hash, signature FROM audit_head WHERE id = 1")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            StoredHead {
                seq: row.get(0),
                hash: row.get(1),
                signature: row.get(2),
            }
        })
    }

    fn last_seq(&self, dir: &Path) -> i64 {
        on_db!(self, dir, conn, {
            sqlx::query("SELECT coalesce(max(seq), 0) AS last FROM audit_log")
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get::<i64, _>(0)
        })
    }

    /// Cuts every entry after `head.seq` and puts back `head`, a head the controller signed
    /// once (kept from a backup): no key is needed.
    fn truncate_to(&self, dir: &Path, head: &StoredHead) {
        on_db!(self, dir, conn, {
            sqlx::query("DELETE FROM audit_log WHERE seq > $1")
                .bind(head.seq)
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, signature = $3 WHERE id = 1")
                .bind(head.seq)
                .bind(&head.hash)
                .bind(&head.signature)
                .execute(&mut conn)
                .await
                .unwrap();
        })
    }

    /// The attack from the issue: every entry deleted, the head reset to the unsigned genesis.
    fn empty_the_log(&self, dir: &Path) {
        on_db!(self, dir, conn, {
            sqlx::query("DELETE FROM audit_log")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("UPDATE audit_head SET seq = 0, hash = '', signature = $1 WHERE id = 1")
                .bind(Vec::<u8>::new())
                .execute(&mut conn)
                .await
                .unwrap();
        })
    }
}

/// `wardctl audit verify --output json [EXTRA]`: (exit code, JSON).
fn verify(controller: &ControllerProcess, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["audit", "verify", "--output", "json"];
    args.extend(extra);
    let out = controller.ctl(&args);
    (out.status.code().unwrap_or(-1), stdout_json(&out))
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn some_history(controller: &ControllerProcess, n: usize) {
    for i in 0..n {
        controller.token(&format!("user{i}@hospital.org"), "15m");
    }
}

fn checkpoint_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "json"));
    files.sort();
    files
}

fn checkpoints(dir: &Path) -> Vec<Value> {
    checkpoint_files(dir)
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn newest_checkpoint_seq(dir: &Path) -> i64 {
    checkpoints(dir)
        .iter()
        .filter_map(|c| c["seq"].as_i64())
        .max()
        .unwrap_or(0)
}

// ----- an emptied log ----------------------------------------------------------------------

fn an_emptied_log_fails_verification_also_after_a_restart(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("controller");
    let controller = backend.start(&dir, &[]);
    some_history(&controller, 2);
    assert_eq!(verify(&controller, &[]).0, 0);
    controller.stop();

    backend.empty_the_log(&dir);
    // A restart must not anchor a fresh chain over the emptied one.
    let controller = backend.start(&dir, &[]);
    let (code, v) = verify(&controller, &[]);
    assert_eq!(code, 1, "an emptied log passed verification: {v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_seq"], 1, "{v}");
}

#[test]
fn an_emptied_sqlite_log_fails_verification_also_after_a_restart() {
    an_emptied_log_fails_verification_also_after_a_restart(Backend::Sqlite);
}

#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn an_emptied_postgres_log_fails_verification_also_after_a_restart() {
    an_emptied_log_fails_verification_also_after_a_restart(Backend::postgres());
}

// ----- a rewritten head --------------------------------------------------------------------

fn a_rewritten_head_never_stops_a_wipe(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("controller");
    let controller = backend.start(&dir, &["--metrics-listen", "127.0.0.1:0"]);
    let device = AgentFixture::enroll(&controller, tmp.path(), "t", "tom@hospital.org");
    let _agent = device.run(&[]);
    eventually_blocking("the messaging key to be created", DEADLINE, || {
        device
            .state_dir
            .join("messaging.key")
            .exists()
            .then_some(())
    });

    // Move the head back without the key: its signature no longer verifies. Until now the
    // next append collided with entry 3 and every audited action failed from then on.
    backend.execute(
        &dir,
        &["UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit_log WHERE seq = 2)"],
    );
    let last_before = backend.last_seq(&dir);

    let out = controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "lost on the ward",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let command = json(&out);
    assert_eq!(command["state"], "succeeded");
    assert_eq!(command["receipt"]["verified"], true);
    assert!(device.canary_files().is_empty());

    // The break is reported where it was found, and everything after it still verifies.
    let (code, v) = verify(&controller, &[]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["first_bad_seq"], last_before + 1, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("head"), "{v}");
    assert_eq!(v["problems"].as_array().unwrap().len(), 1, "{v}");
    let entries = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let entries = entries.as_array().unwrap();
    let broken = entries
        .iter()
        .find(|e| e["action"] == "audit.break")
        .expect("the break is an entry of the log");
    assert_eq!(broken["seq"], last_before + 1);
    for action in ["command.issue", "command.succeeded"] {
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == action && e["seq"].as_i64() > Some(last_before)),
            "{action} missing after the break"
        );
    }

    // Reported loudly: an error in the log, and the metric.
    let base = controller.metrics_url();
    let (_, metrics) = http_get(&base, "/metrics");
    assert!(metrics.contains("ward_audit_chain_ok 0"), "{metrics}");
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("audit chain")),
        "{log}"
    );
}

#[test]
fn a_rewritten_sqlite_head_never_stops_a_wipe() {
    a_rewritten_head_never_stops_a_wipe(Backend::Sqlite);
}

#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn a_rewritten_postgres_head_never_stops_a_wipe() {
    a_rewritten_head_never_stops_a_wipe(Backend::postgres());
}

// ----- checkpoints -------------------------------------------------------------------------

fn truncation_to_an_older_signed_head_is_found_with_checkpoints(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("controller");
    let anchors = tmp.path().join("checkpoints");
    let anchors_arg = anchors.to_str().unwrap();
    let controller = backend.start(&dir, &["--audit-checkpoints", anchors_arg]);
    some_history(&controller, 2);
    // A backup taken now holds this head, signed by the controller.
    let backup = backend.head(&dir);
    some_history(&controller, 3);
    controller.stop();
    assert!(
        newest_checkpoint_seq(&anchors) > backup.seq,
        "a checkpoint at shutdown covers the later entries: {:?}",
        checkpoints(&anchors)
    );

    // Cut the later entries and put the old signed head back; start the controller without
    // its checkpoint directory. The database alone cannot tell.
    backend.truncate_to(&dir, &backup);
    let controller = backend.start(&dir, &[]);
    let (code, v) = verify(&controller, &[]);
    assert_eq!(code, 0, "{v}");
    let (code, v) = verify(&controller, &["--checkpoints", anchors_arg]);
    assert_eq!(code, 1, "{v}");
    let first_bad = v["first_bad_seq"].as_i64().unwrap();
    assert!(
        first_bad >= 1 && first_bad <= backup.seq + 1,
        "first bad {first_bad}, backup head {}: {v}",
        backup.seq
    );
    assert!(v["problem"].as_str().unwrap().contains("checkpoint"), "{v}");
    controller.stop();

    // With its checkpoint directory the controller notices by itself at start.
    let controller = backend.start(
        &dir,
        &[
            "--audit-checkpoints",
            anchors_arg,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let (code, v) = verify(&controller, &[]);
    assert_eq!(code, 1, "{v}");
    let (_, metrics) = http_get(&controller.metrics_url(), "/metrics");
    assert!(metrics.contains("ward_audit_chain_ok 0"), "{metrics}");
}

#[test]
fn truncation_of_a_sqlite_log_to_an_older_signed_head_is_found_with_checkpoints() {
    truncation_to_an_older_signed_head_is_found_with_checkpoints(Backend::Sqlite);
}

#[test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
fn truncation_of_a_postgres_log_to_an_older_signed_head_is_found_with_checkpoints() {
    truncation_to_an_older_signed_head_is_found_with_checkpoints(Backend::postgres());
}

#[test]
fn a_database_rolled_back_to_an_old_backup_is_found_with_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("controller");
    let anchors = tmp.path().join("checkpoints");
    let anchors_arg = anchors.to_str().unwrap();
    let controller =
        ControllerProcess::start_with(&dir, "127.0.0.1:0", &["--audit-checkpoints", anchors_arg]);
    some_history(&controller, 2);
    controller.stop();
    let backup = tmp.path().join("backup.db");
    std::fs::copy(dir.join("ward.db"), &backup).unwrap();

    let controller =
        ControllerProcess::start_with(&dir, "127.0.0.1:0", &["--audit-checkpoints", anchors_arg]);
    let device = AgentFixture::enroll(&controller, tmp.path(), "r", "rob@hospital.org");
    controller.ctl(&["device", "lock", &device.device_id]);
    controller.stop();

    // The whole database goes back to the backup: devices, commands, audit log and its head.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("ward.db{suffix}")));
    }
    std::fs::copy(&backup, dir.join("ward.db")).unwrap();
    let controller = ControllerProcess::start_with(&dir, "127.0.0.1:0", &[]);
    assert_eq!(verify(&controller, &[]).0, 0);
    let (code, v) = verify(&controller, &["--checkpoints", anchors_arg]);
    assert_eq!(code, 1, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("checkpoint"), "{v}");
}

#[test]
fn a_deleted_entry_is_found_and_checkpoints_of_an_intact_log_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("controller");
    let anchors = tmp.path().join("checkpoints");
    let anchors_arg = anchors.to_str().unwrap();
    let controller = ControllerProcess::start_with(
        &dir,
        "127.0.0.1:0",
        &[
            "--audit-checkpoints",
            anchors_arg,
            "--audit-checkpoint-every",
            "3",
        ],
    );
    some_history(&controller, 7);
    eventually_blocking("checkpoints every 3 entries", DEADLINE, || {
        (checkpoint_files(&anchors).len() >= 2).then_some(())
    });
    let (code, v) = verify(&controller, &["--checkpoints", anchors_arg]);
    assert_eq!(code, 0, "{v}");
    assert!(v["checkpoints"].as_u64().unwrap() >= 2, "{v}");

    Backend::Sqlite.execute(&dir, &["DELETE FROM audit_log WHERE seq = 4"]);
    let (code, v) = verify(&controller, &["--checkpoints", anchors_arg]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["first_bad_seq"], 4, "{v}");
}

#[test]
fn checkpoints_go_to_the_directory_and_the_log_and_bad_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("controller");
    let anchors = tmp.path().join("checkpoints");
    let anchors_arg = anchors.to_str().unwrap();
    let controller =
        ControllerProcess::start_with(&dir, "127.0.0.1:0", &["--audit-checkpoints", anchors_arg]);
    some_history(&controller, 2);
    controller.stop();

    // One file per checkpoint, each a signed JSON object that the log also carried.
    let files = checkpoint_files(&anchors);
    assert!(!files.is_empty());
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let checkpoint: Value = serde_json::from_str(&text).unwrap();
        for field in ["chain", "seq", "hash", "at", "signer", "signature"] {
            assert!(!checkpoint[field].is_null(), "{field} missing: {text}");
        }
        assert!(
            log.contains(text.trim()),
            "checkpoint {text} is not in the log:\n{log}"
        );
    }
    assert!(
        !anchors
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with('.')),
        "no temporary files left"
    );

    let controller = ControllerProcess::start_with(&dir, "127.0.0.1:0", &[]);
    // A checkpoint edited by hand (a later seq, to fake a truncation) is not signed.
    let forged_dir = tmp.path().join("forged");
    std::fs::create_dir(&forged_dir).unwrap();
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    forged["seq"] = Value::from(forged["seq"].as_u64().unwrap() + 1);
    std::fs::write(forged_dir.join("forged.json"), forged.to_string()).unwrap();
    let (code, v) = verify(
        &controller,
        &["--checkpoints", forged_dir.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{v}");
    assert!(v["problem"].as_str().unwrap().contains("signature"), "{v}");

    // Not a checkpoint at all, or nothing to check: bad input, exit 2, nothing verified.
    std::fs::write(forged_dir.join("junk.json"), "{\"hello\":1}").unwrap();
    let out = controller.ctl(&[
        "audit",
        "verify",
        "--checkpoints",
        forged_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("junk.json"), "{}", stderr(&out));
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = controller.ctl(&["audit", "verify", "--checkpoints", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no checkpoint"), "{}", stderr(&out));
}

// ----- a device's trail --------------------------------------------------------------------

#[test]
fn a_devices_trail_includes_its_commands_and_takes_a_host_name_and_a_time_window() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("controller");
    let controller = ControllerProcess::start(&dir);
    let device = AgentFixture::enroll(&controller, tmp.path(), "d", "dora@hospital.org");
    let lock = json(&controller.ctl(&["device", "lock", &device.device_id, "--output", "json"]));
    let shown = json(&controller.ctl(&["device", "show", &device.device_id, "--output", "json"]));
    let hostname = shown["hostname"].as_str().unwrap().to_owned();

    let trail = |args: &[&str]| {
        let mut all = vec!["audit", "list", "--output", "json"];
        all.extend(args);
        json(&controller.ctl(&all)).as_array().cloned().unwrap()
    };
    let by_id = trail(&["--device", &device.device_id]);
    let actions: Vec<&str> = by_id
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"device.enroll"), "{actions:?}");
    assert!(
        by_id
            .iter()
            .any(|e| e["action"] == "command.issue" && e["target"] == lock["id"]),
        "the lock's entries are part of the device's trail: {actions:?}"
    );
    let by_name = trail(&["--device", &hostname]);
    let seqs = |entries: &[Value]| -> Vec<i64> {
        entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
    };
    // The same entries, except the reads those two list calls added.
    let by_name_before: Vec<i64> = seqs(&by_name)
        .into_iter()
        .filter(|s| *s <= *seqs(&by_id).last().unwrap())
        .collect();
    assert_eq!(by_name_before, seqs(&by_id));

    // --until: only what happened before the time; a window with --since.
    let first_at = by_id[0]["at"].as_str().unwrap().to_owned();
    let none_before = trail(&["--device", &device.device_id, "--until", &first_at]);
    assert!(none_before.is_empty(), "{none_before:?}");
    let all = trail(&[
        "--until",
        "2999-01-01T00:00:00Z",
        "--since",
        "2000-01-01T00:00:00Z",
    ]);
    assert!(all.len() >= by_id.len());
    let out = controller.ctl(&["audit", "list", "--until", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = controller.ctl(&["audit", "list", "--device", "no-such-host"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}
