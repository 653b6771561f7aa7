//! One schema in two dialects. The SQLite and PostgreSQL migrations are kept apart because
//! their DDL differs (INTEGER/BOOLEAN, BLOB/BYTEA, sequences), but from version 8 on they are
//! written as pairs with the same version and name, and the schema they produce must be the
//! same: every table has the same columns, of corresponding types, on both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::Connection;
use ward_controller::store::SqlStore;
use ward_e2e::postgres::fresh_database_async;

/// The first version written as a pair for both databases.
const FIRST_PAIRED: u32 = 8;

fn migrations(dialect: &str) -> BTreeMap<u32, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../store/migrations")
        .join(dialect);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| {
            let (version, _) = name.split_once('_')?;
            Some((version.parse().ok()?, name))
        })
        .collect()
}

#[test]
fn migrations_from_version_8_come_in_pairs_with_the_same_name() {
    let sqlite = migrations("sqlite");
    let postgres = migrations("postgres");
    let paired = |m: &BTreeMap<u32, String>| {
        m.range(FIRST_PAIRED..)
            .map(|(_, name)| name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        paired(&sqlite),
        paired(&postgres),
        "a migration from version {FIRST_PAIRED} on must exist for both databases, with the same file name"
    );
}

/// The type family a column's declared type belongs to, so SQLite's and PostgreSQL's names
/// for the same thing compare equal.
fn family(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "boolean" => "integer",
        "text" => "text",
        "blob" | "bytea" => "bytes",
        other => panic!("column type {other:?} is neither of Ward's (integer, text, bytes)"),
    }
}

type Columns = BTreeMap<(String, String), &'static str>;

#[tokio::test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL (.ci/run does)"
)]
async fn sqlite_and_postgres_migrations_produce_the_same_tables_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.db");
    SqlStore::open_sqlite(&path).await.unwrap().close().await;
    let mut sqlite = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT m.name, p.name, p.type FROM sqlite_master m, pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut sqlite)
    .await
    .unwrap();
    let on_sqlite: Columns = rows
        .into_iter()
        .map(|(table, column, ty)| ((table, column), family(&ty)))
        .collect();

    let db = fresh_database_async().await;
    SqlStore::connect_postgres(&db.url)
        .await
        .unwrap()
        .close()
        .await;
    let mut pg = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut pg)
    .await
    .unwrap();
    let on_postgres: Columns = rows
        .into_iter()
        .map(|(table, column, ty)| ((table, column), family(&ty)))
        .collect();
    pg.close().await.unwrap();

    let only = |a: &Columns, b: &Columns| {
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|((t, c), ty)| format!("{t}.{c} ({ty})"))
            .collect::<Vec<_>>()
    };
    assert!(
        on_sqlite == on_postgres,
        "the schemas differ:\n only or differently typed on SQLite: {:?}\n only or differently typed on PostgreSQL: {:?}",
        only(&on_sqlite, &on_postgres),
        only(&on_postgres, &on_sqlite)
    );
}
