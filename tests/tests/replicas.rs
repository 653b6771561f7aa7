//! Two controller replicas (two `App`s) over one PostgreSQL database: what one does, the other
//! learns through LISTEN/NOTIFY within moments.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ward_certs::CertificateAuthority;
use ward_controller::app::{App, AppConfig};
use ward_controller::core::{
    Admin, AdminRole, CertificateRecord, DeviceFacts, DeviceId, NewDevice, SystemClock, Timestamp,
    TokenHash, TokenRecord,
};
use ward_controller::store::{SqlStore, Store};
use ward_e2e::postgres::fresh_database_async;

async fn until<F: std::future::Future<Output = bool>>(what: &str, mut probe: impl FnMut() -> F) {
    let start = Instant::now();
    while !probe().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_revocation_on_one_replica_reaches_the_other() {
    let db = fresh_database_async().await;
    let store = SqlStore::connect_postgres(&db.url).await.unwrap();
    let ca =
        Arc::new(CertificateAuthority::create("Ward CA", time::OffsetDateTime::now_utc()).unwrap());
    let replica = |store: SqlStore| {
        Arc::new(App::new(
            Arc::new(store),
            ca.clone(),
            Arc::new(SystemClock),
            AppConfig::with_public_url("https://x:1".into()),
        ))
    };
    let a = replica(store.clone());
    let b = replica(SqlStore::connect_postgres(&db.url).await.unwrap());
    a.start_background().await.unwrap();
    b.start_background().await.unwrap();

    // A device, enrolled directly through the store.
    let id = DeviceId::new_random();
    let token = TokenRecord {
        hash: TokenHash([3; 32]),
        user: "r@h.org".parse().unwrap(),
        created_at: Timestamp::from_unix_ms(0),
        expires_at: Timestamp::from_unix_ms(i64::MAX / 2),
        created_by: "t".into(),
        used_at: None,
        device_id: None,
        withdrawn_at: None,
    };
    store.insert_token(&token).await.unwrap();
    let serial = format!("serial-{id}");
    let device = NewDevice {
        id,
        facts: DeviceFacts::default(),
        public_key_der: vec![],
        certificate: CertificateRecord {
            serial: serial.clone(),
            subject: format!("ward://device/{id}"),
            not_before: Timestamp::from_unix_ms(0),
            not_after: Timestamp::from_unix_ms(i64::MAX / 2),
            issued_at: Timestamp::from_unix_ms(0),
            revoked_at: None,
            der: None,
        },
    };
    store
        .redeem_token(&TokenHash([3; 32]), Timestamp::from_unix_ms(1), &device)
        .await
        .unwrap();

    // B holds the device's stream; A revokes it.
    let wake_on_b = b.hub().subscribe(id);
    let admin = Admin::new(
        "root".parse().unwrap(),
        AdminRole::Admin,
        Timestamp::from_unix_ms(0),
        "t",
    );
    a.revoke_device(&admin, &id.into(), "test").await.unwrap();
    let mail = tokio::time::timeout(Duration::from_secs(5), wake_on_b.next())
        .await
        .expect("B's stream was not woken");
    assert!(
        mail.read_again,
        "a revocation makes the stream read the store again"
    );
    until(
        "B's handshake revocation list to refuse the certificate",
        || {
            let b = b.clone();
            let serial = serial.clone();
            async move { b.revoked_serials().contains(&serial) }
        },
    )
    .await;
    assert!(
        b.check_device_active(id).await.is_err(),
        "B's per-call check refuses it too"
    );

    drop((a, b, store));
}
