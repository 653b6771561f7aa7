//! SQLite's part: the connection settings that make a commit durable, and its migrations.
//! Everything else is the shared SQL body.

use std::path::Path;

use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Executor};

use crate::StoreError;
use crate::rows::db;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Every connection: write-ahead log, a sync at every commit (`synchronous=FULL`, so an
/// accepted command survives a power cut), foreign keys enforced, and a generous busy timeout
/// for the moments another process (a `wardctl` on the same data directory) holds the lock.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    PRAGMA foreign_keys = ON;
    PRAGMA busy_timeout = 30000;";

pub(super) async fn open(path: &Path) -> Result<AnyPool, StoreError> {
    let url = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .to_url_lossy();
    let options = AnyConnectOptions::from_url(&url).map_err(db)?;
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        // sqlx pings a connection each time the pool hands it out, by default. A SQLite
        // connection is this process's own file handle on a worker thread: nothing outside
        // can break it, and the ping is a trip to that thread and back before every read
        // (measured: the most frequent thread switch of a check-in).
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(PRAGMAS).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(db)?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(pool)
}

/// (journal_mode, synchronous) as SQLite reports them for a connection of `pool`.
pub(super) async fn durability(pool: &AnyPool) -> Result<(String, i64), StoreError> {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    Ok((mode, sync))
}
