//! The stores' durability settings, as the databases themselves report them: a command the
//! controller accepted must survive a crash or a power cut.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::Connection;
use ward_controller::core::SystemClock;
use ward_controller::datadir::DataDir;
use ward_controller::store::{Durability, SqlStore};
use ward_e2e::postgres::fresh_database_async;

#[tokio::test]
async fn the_sqlite_store_serve_opens_is_wal_with_synchronous_full() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("data"));
    data.init(&[], &"admin".parse().unwrap(), &SystemClock)
        .await
        .unwrap();
    let store = data.open_store().await.unwrap();
    let durability = store.durability().await.unwrap();
    assert_eq!(
        durability,
        Durability::Sqlite {
            journal_mode: "wal".into(),
            synchronous: 2
        },
        "WAL, and PRAGMA synchronous FULL (2)"
    );
}

#[tokio::test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn postgres_sessions_commit_synchronously_whatever_the_database_default() {
    let db = fresh_database_async().await;
    // A database whose default acknowledges commits before they reach the disk.
    let mut plain = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "DO $$ BEGIN
           EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database());
         END $$",
    )
    .execute(&mut plain)
    .await
    .unwrap();
    plain.close().await.unwrap();
    let mut plain = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let default: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    assert_eq!(default, "off", "the test database's own default");

    let store = SqlStore::connect_postgres(&db.url).await.unwrap();
    let Durability::Postgres(durability) = store.durability().await.unwrap() else {
        panic!("a PostgreSQL store reports PostgreSQL's settings")
    };
    assert_eq!(durability.synchronous_commit, "on", "{durability:?}");
    assert_eq!(durability.fsync, "on", "{durability:?}");
    assert_eq!(durability.full_page_writes, "on", "{durability:?}");
    store.close().await;
}
