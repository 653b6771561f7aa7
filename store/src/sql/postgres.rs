//! PostgreSQL's part: connection settings and the durability check, its migrations, and the
//! `LISTEN/NOTIFY` channel replicas talk on. Everything else is the shared SQL body.

use std::time::Duration;

use sqlx::AnyPool;
use sqlx::Executor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use crate::rows::db;
use crate::{Announcement, Announcements, StoreError};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The `LISTEN/NOTIFY` channel replicas talk on.
const CHANNEL: &str = "ward_events";

/// PostgreSQL's durability settings (`SHOW …`), each "on" when a commit survives a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgDurability {
    pub fsync: String,
    pub synchronous_commit: String,
    pub full_page_writes: String,
}

/// The pool's connections besides the writer's lanes: reads, the export's lease, migrations.
/// Each lane keeps a connection of its own for as long as it writes, so the pool holds this
/// many more than there are lanes (16 in all with the default four).
pub(super) const READ_CONNECTIONS: u32 = 12;

/// Connects and migrates, with a pool of [`READ_CONNECTIONS`] and one connection for each of
/// `lanes` writer lanes. Every session commits synchronously (`synchronous_commit=on`,
/// whatever the server's or role's default), and a server running with `fsync=off` is
/// refused: on either, a wipe the controller accepted could vanish in a power cut.
pub(super) async fn connect(url: &str, lanes: usize) -> Result<(AnyPool, PgPool), StoreError> {
    let lanes = u32::try_from(lanes)
        .map_err(|_| StoreError::Database(format!("{lanes} writer lanes are too many")))?;
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| StoreError::Database(format!("database URL: {e}")))?;
    let any: AnyConnectOptions = url
        .parse()
        .map_err(|e| StoreError::Database(format!("database URL: {e}")))?;
    let pool = AnyPoolOptions::new()
        .max_connections(READ_CONNECTIONS + lanes)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("SET synchronous_commit = on").await?;
                Ok(())
            })
        })
        .connect_with(any)
        .await
        .map_err(db)?;
    // Notifications need PostgreSQL's own connection type (and `pg_notify` returns `void`,
    // which the `Any` driver cannot describe): one connection listens, one announces.
    let listen = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy_with(options);
    let durability = durability(&pool).await?;
    if durability.fsync != "on" {
        return Err(StoreError::Database(
            "the PostgreSQL server runs with fsync=off, so committed commands can be lost in a crash; set fsync=on in postgresql.conf".into(),
        ));
    }
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok((pool, listen))
}

pub(super) async fn durability(pool: &AnyPool) -> Result<PgDurability, StoreError> {
    let show = |name: &'static str| async move {
        sqlx::query_scalar::<_, String>(name)
            .fetch_one(pool)
            .await
            .map_err(db)
    };
    Ok(PgDurability {
        fsync: show("SHOW fsync").await?,
        synchronous_commit: show("SHOW synchronous_commit").await?,
        full_page_writes: show("SHOW full_page_writes").await?,
    })
}

/// NOTIFY payloads are limited to 8000 bytes: events go in batches joined by `;`.
const EVENTS_PER_NOTIFY: usize = 150;

/// The first element of every payload: which store sent it (`from:<origin>`). Replicas of
/// versions before it skip an element they cannot read, so the rest still reaches them.
const FROM: &str = "from";

pub(super) async fn announce_all(
    pool: &PgPool,
    origin: &str,
    events: &[Announcement],
) -> Result<(), StoreError> {
    for chunk in events.chunks(EVENTS_PER_NOTIFY) {
        let payload = std::iter::once(format!("{FROM}:{origin}"))
            .chain(chunk.iter().map(|e| e.to_payload()))
            .collect::<Vec<_>>()
            .join(";");
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(pool)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// The events of one notification, or none when `origin` (this store) sent it: it has acted
/// on them already, and acting again (a reload of the revocation list per notification, the
/// cutting of connections whose answers are still on their way) costs and gains nothing.
fn events_from_others(payload: &str, origin: &str) -> Vec<Announcement> {
    let mut parts = payload.split(';').peekable();
    if let Some(first) = parts.peek()
        && let Some((FROM, sender)) = first.split_once(':')
    {
        if sender == origin {
            return Vec::new();
        }
        parts.next();
    }
    parts.filter_map(Announcement::from_payload).collect()
}

pub(super) async fn listen(pool: &PgPool, origin: &str) -> Result<Announcements, StoreError> {
    let origin = origin.to_owned();
    let mut listener = PgListener::connect_with(pool).await.map_err(db)?;
    listener.listen(CHANNEL).await.map_err(db)?;
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(note) => {
                    // Several events joined by `;` (see `announce_all`).
                    for event in events_from_others(note.payload(), &origin) {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    // PgListener reconnects on the next recv; notifications sent meanwhile
                    // are lost, which the periodic refresh covers.
                    tracing::warn!(error = %e, "lost the PostgreSQL notification connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_skips_its_own_notifications_and_reads_everyone_elses() {
        let id = uuid::Uuid::nil();
        let device = Announcement::Revoked(ward_core::DeviceId(id));
        let payload = format!("{FROM}:abc;{};policy", device.to_payload());
        assert!(events_from_others(&payload, "abc").is_empty());
        assert_eq!(
            events_from_others(&payload, "xyz"),
            [device, Announcement::PolicyChanged]
        );
        // From a replica of a version that did not name itself.
        assert_eq!(
            events_from_others("policy;revocations", "abc"),
            [
                Announcement::PolicyChanged,
                Announcement::RevocationsChanged
            ]
        );
    }
}
