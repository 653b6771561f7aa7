//! A device renews its certificate on one replica while another replica commits its user's
//! offboarding, on one PostgreSQL database (READ COMMITTED). The renewal must not slip in
//! between: either it sees the offboarding's wipe and is refused, or the wipe comes after it
//! (and revokes the new certificate with the others when it finishes). Here the offboarding
//! is held open in the middle of its commit, its wipe inserted, while the renewal runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor};
use ward_certs::{CertificateAuthority, PrivateKeyDer, VerifiedCsr, csr::make_csr};
use ward_controller::app::{App, AppConfig, AppError};
use ward_controller::core::{Admin, AdminRole, CommandId, DeviceFacts, SystemClock, Timestamp};
use ward_controller::store::SqlStore;
use ward_e2e::postgres::fresh_database_async;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_renewal_does_not_slip_in_while_another_replica_commits_an_offboarding() {
    let db = fresh_database_async().await;
    let store = SqlStore::connect_postgres(&db.url).await.unwrap();
    let ca =
        Arc::new(CertificateAuthority::create("Ward CA", time::OffsetDateTime::now_utc()).unwrap());
    let app = Arc::new(App::new(
        Arc::new(store.clone()),
        ca,
        Arc::new(SystemClock),
        AppConfig::with_public_url("https://x:1".into()),
    ));
    let admin = Admin::new(
        "root".parse().unwrap(),
        AdminRole::Admin,
        Timestamp::from_unix_ms(0),
        "t",
    );
    let token = app
        .create_token(&admin, "lee@hospital.org".parse().unwrap(), None)
        .await
        .unwrap();
    let key = PrivateKeyDer::generate().unwrap();
    let csr = VerifiedCsr::from_der(&make_csr(&key, "laptop").unwrap()).unwrap();
    let enrolled = app
        .enroll(
            token.token,
            csr,
            DeviceFacts {
                hostname: "laptop".into(),
                ..DeviceFacts::default()
            },
            None,
        )
        .await
        .unwrap();
    let device = enrolled.device_id;

    // The other replica's offboarding, in the middle of its commit: its wipe is written, the
    // transaction not yet committed.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    sqlx::query(
        "INSERT INTO commands (id, device_id, kind, scope, state, reason, idempotency_key,
             created_by, created_at, revoke_after)
         VALUES ($1, $2, 'wipe', 'messaging', 'queued', 'left the hospital', 'offboard-lee',
             'admin:root', $3, TRUE)",
    )
    .bind(CommandId::new_random().to_string())
    .bind(device.to_string())
    .bind(Timestamp::from_unix_ms(1).unix_ms())
    .execute(&mut other)
    .await
    .unwrap();

    let new_key = PrivateKeyDer::generate().unwrap();
    let new_csr = VerifiedCsr::from_der(&make_csr(&new_key, "laptop").unwrap()).unwrap();
    let renewal = tokio::spawn({
        let (app, presented) = (Arc::clone(&app), enrolled.certificate.serial.clone());
        async move { app.renew(device, &presented, &new_csr).await }
    });

    // Either the renewal finishes while the offboarding is still open (it did not wait for
    // it), or it waits on the device's row: then the offboarding commits.
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
        if waiting > 0 {
            other.execute("COMMIT").await.unwrap();
            break renewal.await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the renewal neither finished nor waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    assert!(
        matches!(&outcome, Err(AppError::PermissionDenied(m)) if m.contains("being offboarded")),
        "a device being offboarded got a new certificate: {:?}",
        outcome.as_ref().map(|issued| &issued.serial)
    );
    let subject = format!("ward://device/{device}");
    let certificates: i64 =
        sqlx::query_scalar("SELECT count(*) FROM certificates WHERE subject = $1")
            .bind(&subject)
            .fetch_one(&mut watch)
            .await
            .unwrap();
    assert_eq!(certificates, 1, "a renewed certificate was recorded");
    let _ = other.close().await;
    drop((app, store));
}
