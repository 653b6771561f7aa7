//! Check-ins written in one batch on PostgreSQL while another replica holds one device's row
//! locked (its own check-in of that device, mid-commit): the batch must not be refused as a
//! whole, nor cost a job for each of its devices. The held device is answered busy
//! (`UNAVAILABLE`, the agent retries), the others are written and answered in a few batches,
//! and the held device checks in once the other replica commits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{Connection, Executor};
use ward_controller::app::{ActiveDevice, App, AppError, CheckInReport};
use ward_e2e::app_on_postgres;
use ward_e2e::postgres::fresh_database_async;

/// The devices checking in together, the first of them held.
const DEVICES: usize = 32;

async fn enroll(app: &App, user: &str) -> ActiveDevice {
    let enrolled = app_on_postgres::enroll(app, user).await;
    ActiveDevice {
        id: enrolled.device_id,
        user: enrolled.user,
        certificate_serial: enrolled.certificate.serial,
    }
}

/// A current-thread runtime: the check-ins below are queued before the batch's task
/// runs, so they are one batch.
#[tokio::test]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_device_row_held_by_another_replica_refuses_only_that_device_of_a_batch() {
    let db = fresh_database_async().await;
    let app = app_on_postgres::app(&db.url).await;
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        devices.push(enroll(&app, &format!("user{i}@hospital.org")).await);
    }
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
    let committed = || {
        app.writer_stats()
            .jobs_committed
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = committed();
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
    // The batch ran again in halves until the held device was alone: a few batches, not one
    // job for each of its neighbours (a device holding its own row on another replica must
    // not make every batch it joins cost a job per device).
    let jobs = committed() - before;
    assert!(
        jobs <= 2 * DEVICES.ilog2() as u64 + 2,
        "{jobs} jobs committed for {DEVICES} check-ins"
    );
    other.execute("COMMIT").await.unwrap();
    app.agent_check_in(&devices[0], CheckInReport::default())
        .await
        .unwrap();
}
