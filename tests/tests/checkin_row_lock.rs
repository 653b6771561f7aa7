//! Check-ins written in one batch on PostgreSQL while another replica holds one device's row
//! locked (its own check-in of that device, mid-commit): the batch must not be refused as a
//! whole. The held device is answered busy (`UNAVAILABLE`, the agent retries), the others are
//! written and answered, and the held device checks in once the other replica commits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sqlx::{Connection, Executor};
use ward_certs::{CertificateAuthority, PrivateKeyDer, VerifiedCsr, csr::make_csr};
use ward_controller::app::{ActiveDevice, App, AppConfig, AppError, CheckInReport};
use ward_controller::core::{Admin, AdminRole, DeviceFacts, SystemClock, Timestamp};
use ward_controller::store::SqlStore;
use ward_e2e::postgres::fresh_database_async;

fn admin() -> Admin {
    Admin::new(
        "root".parse().unwrap(),
        AdminRole::Admin,
        Timestamp::from_unix_ms(0),
        "t",
    )
}

async fn enroll(app: &App, user: &str) -> ActiveDevice {
    let token = app
        .create_token(&admin(), user.parse().unwrap(), None)
        .await
        .unwrap();
    let key = PrivateKeyDer::generate().unwrap();
    let csr = VerifiedCsr::from_der(&make_csr(&key, "laptop").unwrap()).unwrap();
    let enrolled = app
        .enroll(token.token, csr, DeviceFacts::default(), None)
        .await
        .unwrap();
    ActiveDevice {
        id: enrolled.device_id,
        user: enrolled.user,
        certificate_serial: enrolled.certificate.serial,
    }
}

/// A current-thread runtime: the three check-ins below are queued before the batch's task
/// runs, so they are one batch.
#[tokio::test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_device_row_held_by_another_replica_refuses_only_that_device_of_a_batch() {
    let db = fresh_database_async().await;
    let store = SqlStore::connect_postgres(&db.url).await.unwrap();
    let ca =
        Arc::new(CertificateAuthority::create("Ward CA", time::OffsetDateTime::now_utc()).unwrap());
    let app = App::new(
        Arc::new(store),
        ca,
        Arc::new(SystemClock),
        AppConfig::with_public_url("https://x:1".into()),
    );
    let devices = [
        enroll(&app, "ann@hospital.org").await,
        enroll(&app, "bob@hospital.org").await,
        enroll(&app, "cat@hospital.org").await,
    ];
    // Each checks in once, so its policy is in the cache and the next check-ins queue at once.
    for device in &devices {
        app.agent_check_in(device, CheckInReport::default())
            .await
            .unwrap();
    }

    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT id FROM devices WHERE id = $1 FOR UPDATE")
        .bind(devices[0].id.to_string())
        .execute(&mut other)
        .await
        .unwrap();
    let answers = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        futures::future::join_all(
            devices
                .iter()
                .map(|d| app.agent_check_in(d, CheckInReport::default())),
        ),
    )
    .await
    .expect("the batch neither finished nor gave up on the held row");
    assert!(
        matches!(&answers[0], Err(AppError::Unavailable(_))),
        "the held device is answered busy: {:?}",
        answers[0]
    );
    for (device, answer) in devices.iter().zip(&answers).skip(1) {
        assert!(answer.is_ok(), "{}: {answer:?}", device.user);
    }
    other.execute("COMMIT").await.unwrap();
    app.agent_check_in(&devices[0], CheckInReport::default())
        .await
        .unwrap();
}
