//! Offboarding on the in-memory store: all or nothing.

use std::sync::Arc;

use super::{App, AppConfig, AppError};
use crate::core::{Admin, AdminRole, DeviceFacts, SystemClock, Timestamp};
use crate::store::{AuditFilter, MemoryStore, Store};

fn app(store: Arc<MemoryStore>) -> App {
    let ca =
        ward_certs::CertificateAuthority::create("test", time::OffsetDateTime::now_utc()).unwrap();
    App::new(
        store,
        Arc::new(ca),
        Arc::new(SystemClock),
        AppConfig::with_public_url("https://127.0.0.1:7443".into()),
    )
}

fn admin() -> Admin {
    Admin::new(
        "root".parse().unwrap(),
        AdminRole::Admin,
        Timestamp::from_unix_ms(0),
        "init",
    )
}

const ALICE: &str = "alice@hospital.example";

#[tokio::test]
async fn an_offboarding_refused_part_way_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let app = app(store.clone());
    // Alice has an enrolled device and an unused token.
    let enrolled = app.create_token(&admin(), ALICE, None).await.unwrap();
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let csr = ward_certs::csr::make_csr(&key, "laptop").unwrap();
    let facts = DeviceFacts {
        hostname: "laptop".into(),
        ..DeviceFacts::default()
    };
    app.enroll(enrolled.token.expose(), &csr, facts, None)
        .await
        .unwrap();
    app.create_token(&admin(), ALICE, None).await.unwrap();
    let entries = store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .len();

    // A reason the wipe command refuses (a control character): refused as a whole.
    let refused = app.offboard_user(&admin(), ALICE, "left\u{7}today").await;
    assert!(
        matches!(refused, Err(AppError::InvalidArgument(_))),
        "{refused:?}"
    );
    assert_eq!(
        app.list_tokens(Some(ALICE)).await.unwrap().len(),
        1,
        "the unused token was withdrawn by a refused offboarding"
    );
    let after = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        after.len(),
        entries,
        "a refused offboarding left entries: {:?}",
        &after[entries..]
    );
}
