//! Offboarding on the in-memory store: all or nothing.

use super::AppError;
use super::test_fixture::{admin, enroll, fixture};
use crate::store::{AuditFilter, Store};

const ALICE: &str = "alice@hospital.example";

#[tokio::test]
async fn an_offboarding_refused_part_way_changes_nothing() {
    let fixture = fixture();
    let (store, app) = (&fixture.store, &fixture.app);
    // Alice has an enrolled device and an unused token.
    enroll(app, ALICE).await;
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
