//! A device renews its certificate on one replica while another replica commits its user's
//! offboarding, on one PostgreSQL database (READ COMMITTED). The renewal must not slip in
//! between: either it sees the offboarding's wipe and is refused, or the wipe comes after it
//! (and revokes the new certificate with the others when it finishes). Here the other
//! replica's transaction is held open in the middle of its commit while the renewal runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};
use ward_certs::{PrivateKeyDer, VerifiedCsr, csr::make_csr};
use ward_controller::app::{App, AppError};
use ward_controller::core::{CommandId, DeviceId};
use ward_e2e::app_on_postgres::{self, admin};
use ward_e2e::postgres::fresh_database_async;

/// An app on a fresh PostgreSQL database with one enrolled device: the app, the device, the
/// serial of its certificate, the database (kept alive by the caller).
async fn enrolled() -> (
    Arc<App>,
    DeviceId,
    String,
    ward_e2e::postgres::FreshDatabase,
) {
    let db = fresh_database_async().await;
    let app = app_on_postgres::app(&db.url).await;
    let enrolled = app_on_postgres::enroll(&app, "lee@hospital.org").await;
    (app, enrolled.device_id, enrolled.certificate.serial, db)
}

/// Renews `device` while another replica's transaction has run `statement` (bound to the
/// device's id) and not committed. Once the renewal waits on the device's row, or has
/// finished, the other transaction commits if `commit`; the renewal's outcome.
async fn renew_during(
    app: &Arc<App>,
    db: &ward_e2e::postgres::FreshDatabase,
    device: DeviceId,
    serial: &str,
    statement: &'static str,
    commit: bool,
) -> Result<String, AppError> {
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    sqlx::query(statement)
        .bind(device.to_string())
        .bind(CommandId::new_random().to_string())
        .execute(&mut other)
        .await
        .unwrap();

    let new_key = PrivateKeyDer::generate().unwrap();
    let new_csr = VerifiedCsr::from_der(&make_csr(&new_key, "laptop").unwrap()).unwrap();
    let renewal = tokio::spawn({
        let (app, presented) = (Arc::clone(app), serial.to_owned());
        async move { app.renew(device, &presented, &new_csr).await }
    });
    let mut watch = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let started = Instant::now();
    let outcome = loop {
        if renewal.is_finished() {
            break renewal.await.unwrap();
        }
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watch)
        .await
        .unwrap();
        if waiting > 0 && commit {
            other.execute("COMMIT").await.unwrap();
            break renewal.await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the renewal neither finished nor waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    if !commit {
        other.execute("ROLLBACK").await.unwrap();
    }
    outcome.map(|issued| issued.serial)
}

async fn certificates_of(db: &ward_e2e::postgres::FreshDatabase, device: DeviceId) -> i64 {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar("SELECT count(*) FROM certificates WHERE subject = $1")
        .bind(format!("ward://device/{device}"))
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// A renewal while another replica's transaction that ran `statement` commits: refused with
/// `why`, and no certificate recorded.
async fn refused_after(statement: &'static str, why: &str) {
    let (app, device, serial, db) = enrolled().await;
    let outcome = renew_during(&app, &db, device, &serial, statement, true).await;
    assert!(
        matches!(&outcome, Err(AppError::PermissionDenied(m)) if m.contains(why)),
        "the device got a new certificate: {outcome:?}"
    );
    assert_eq!(
        certificates_of(&db, device).await,
        1,
        "a renewed certificate was recorded"
    );
}

/// The other replica's offboarding, its wipe inserted and not yet committed.
const OFFBOARDING: &str = "INSERT INTO commands (id, device_id, kind, scope, state, reason,
         idempotency_key, created_by, created_at, revoke_after)
     VALUES ($2, $1, 'wipe', 'messaging', 'queued', 'left the hospital', 'offboard-lee',
         'admin:root', 1, TRUE)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_renewal_does_not_slip_in_while_another_replica_commits_an_offboarding() {
    refused_after(OFFBOARDING, "being offboarded").await;
}

/// The other replica revokes the device (its wipe ended) while the renewal waits for the row:
/// the renewal, which then finds no wipe under way, still gives a revoked device nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_renewal_that_waited_for_a_revocation_gives_the_revoked_device_nothing() {
    let revocation = "UPDATE devices SET state = 'revoked' WHERE id = $1 AND $2 <> ''";
    refused_after(revocation, "revoked").await;
}

/// The other replica never commits (stuck in the middle of its commit): the renewal is
/// answered busy within its bounded wait, and the writer goes on serving other calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_renewal_behind_a_stuck_replica_is_answered_busy_and_the_writer_goes_on() {
    let (app, device, serial, db) = enrolled().await;
    let outcome = renew_during(&app, &db, device, &serial, OFFBOARDING, false).await;
    assert!(
        matches!(&outcome, Err(AppError::Unavailable(_))),
        "{outcome:?}"
    );
    app.create_token(&admin(), "kim@hospital.org".parse().unwrap(), None)
        .await
        .unwrap();
    assert_eq!(certificates_of(&db, device).await, 1);
}
