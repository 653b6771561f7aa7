//! The migration that gives idempotency keys a namespace keeps every stored command and maps
//! each key to where it belongs: the keys the controller made for itself (offboarding, lost
//! mode, retirement, disable/enable, compliance wipes) to the system's namespace, where a rerun
//! of that flow finds its command, and every other key (a squatter's lock under a system key
//! shape included) to the namespace of the admin who chose it. On SQLite always, and on
//! PostgreSQL when `WARD_TEST_POSTGRES_URL` names a server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use ward_controller::store::{SqlStore, Store};
use ward_e2e::postgres::fresh_database_async;

const D1: &str = "11111111-1111-4111-8111-111111111111";
const D2: &str = "22222222-2222-4222-8222-222222222222";
const D3: &str = "33333333-3333-4333-8333-333333333333";

/// A command as an older controller stored it, and the key it must have afterwards.
struct Row {
    id: String,
    device: &'static str,
    kind: &'static str,
    scope: Option<&'static str>,
    revoke_after: bool,
    created_by: &'static str,
    before: String,
    after: String,
}

fn rows() -> Vec<Row> {
    let mut n = 0;
    let mut row = |device,
                   kind,
                   scope,
                   revoke_after,
                   created_by: &'static str,
                   before: String,
                   system: bool| {
        n += 1;
        let after = if system {
            format!("system:{before}")
        } else {
            format!("admin:{created_by}:{before}")
        };
        Row {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            device,
            kind,
            scope,
            revoke_after,
            created_by,
            before,
            after,
        }
    };
    vec![
        // What the system made.
        row(
            D1,
            "wipe",
            Some("messaging"),
            true,
            "admin",
            format!("offboard:u@h.org:{D1}"),
            true,
        ),
        row(
            D1,
            "lock",
            None,
            false,
            "admin",
            format!("lost:{D1}:lock"),
            true,
        ),
        row(
            D1,
            "wipe",
            Some("messaging"),
            true,
            "admin",
            format!("lost:{D1}:wipe"),
            true,
        ),
        row(
            D1,
            "wipe",
            Some("messaging"),
            false,
            "controller",
            format!("compliance:{D1}:firewall:1700000000000"),
            true,
        ),
        row(
            D3,
            "retire",
            None,
            false,
            "admin",
            format!("retire:{D3}"),
            true,
        ),
        row(
            D3,
            "retire",
            None,
            false,
            "admin",
            format!("retire:{D3}:after:00000000-0000-4000-8000-000000000005"),
            true,
        ),
        row(
            D1,
            "disable",
            None,
            false,
            "desk",
            format!("disable:{D1}:after:none"),
            true,
        ),
        row(
            D1,
            "enable",
            None,
            false,
            "desk",
            format!("enable:{D1}:00000000-0000-4000-8000-000000000007"),
            true,
        ),
        // What admins chose, system-shaped or not.
        row(
            D2,
            "lock",
            None,
            false,
            "desk",
            format!("offboard:u@h.org:{D2}"),
            false,
        ),
        row(
            D2,
            "lock",
            None,
            false,
            "desk",
            format!("retire:{D2}"),
            false,
        ),
        row(
            D2,
            "wipe",
            Some("messaging"),
            false,
            "hr",
            format!("lost:{D2}:wipe"),
            false,
        ),
        row(
            D2,
            "lock",
            None,
            false,
            "desk",
            format!("compliance:{D2}:firewall:1"),
            false,
        ),
        row(
            D2,
            "lock",
            None,
            false,
            "admin",
            "ticket-4711".into(),
            false,
        ),
        row(
            D2,
            "lock",
            None,
            false,
            "desk",
            "ticket-4711-b".into(),
            false,
        ),
        row(
            D1,
            "lock",
            None,
            false,
            "admin",
            "system:offboard:u@h.org:x".into(),
            false,
        ),
    ]
}

/// A copy of the migrations older than the one under test.
fn older_migrations(backend: &str, below: u32) -> tempfile::TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../store/migrations")
        .join(backend);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let version: u32 = name.split('_').next().unwrap().parse().unwrap();
        if version < below {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    dir
}

const DEVICE: &str = "INSERT INTO devices (id, user_email, state, hostname, os_name, os_version,
     kernel_version, arch, agent_version, enrolled_at, certificate_serial, certificate_expires_at)
     VALUES ($1, $2, 'active', 'h', '', '', '', '', '0.2.0', 1, $1, 2)";
const COMMAND: &str = "INSERT INTO commands (id, device_id, kind, scope, state, reason,
     idempotency_key, created_by, created_at, revoke_after)
     VALUES ($1, $2, $3, $4, 'queued', 'r', $5, $6, 1, $7)";

macro_rules! fill {
    ($pool:expr) => {{
        for (id, user) in [(D1, "u@h.org"), (D2, "u@h.org"), (D3, "v@h.org")] {
            sqlx::query(DEVICE)
                .bind(id)
                .bind(user)
                .execute($pool)
                .await
                .unwrap();
        }
        for r in rows() {
            sqlx::query(COMMAND)
                .bind(r.id)
                .bind(r.device)
                .bind(r.kind)
                .bind(r.scope)
                .bind(r.before)
                .bind(r.created_by)
                .bind(r.revoke_after)
                .execute($pool)
                .await
                .unwrap();
        }
    }};
}

async fn check(store: &dyn Store, backend: &str) {
    let all = store.list_commands(None, None).await.unwrap();
    assert_eq!(all.len(), rows().len(), "{backend}: a command was lost");
    for r in rows() {
        let found = store
            .command_by_key(&r.after)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{backend}: {:?} did not become {:?}", r.before, r.after));
        assert_eq!(found.id.to_string(), r.id, "{backend}: {}", r.after);
    }
}

#[tokio::test]
async fn stored_keys_move_to_the_system_or_their_admins_namespace() {
    // SQLite: migrations before 0010, the old rows, then the store's own migrations.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.db");
    let older = older_migrations("sqlite", 10);
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(older.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        fill!(&pool);
        pool.close().await;
    }
    let store = SqlStore::open_sqlite(&path).await.unwrap();
    check(&store, "sqlite").await;
}

#[tokio::test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn stored_keys_move_to_the_system_or_their_admins_namespace_on_postgres() {
    // PostgreSQL: the same before 0010.
    {
        let db = fresh_database_async().await;
        let older = older_migrations("postgres", 10);
        {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::migrate::Migrator::new(older.path())
                .await
                .unwrap()
                .run(&pool)
                .await
                .unwrap();
            fill!(&pool);
            pool.close().await;
        }
        let store = SqlStore::connect_postgres(&db.url).await.unwrap();
        check(&store, "postgres").await;
        store.close().await;
    }
}
