//! The policy operations on the in-memory store: overrides are deltas over the default.

use std::sync::Arc;

use super::test_fixture::{admin, email};
use super::{App, AppError};
use crate::core::{
    Check, EnforcementAction, Policy, PolicyBody, PolicyChanges, PolicyScope, Timestamp,
};
use crate::store::{MemoryStore, Store};

/// An app on `store` (the shared fixture's CA and manual clock).
fn app(store: Arc<MemoryStore>) -> App {
    let fixture = super::test_fixture::fixture();
    super::test_fixture::replica(&store, &fixture.ca, &fixture.clock)
}

const ALICE: &str = "alice@hospital.example";

#[tokio::test]
async fn a_user_override_follows_every_default_change_except_the_fields_it_sets() {
    let app = app(Arc::new(MemoryStore::new()));
    let set = |changes: PolicyChanges, user: Option<&'static str>| {
        let app = &app;
        async move {
            app.set_policy(&admin(), user.map(email).as_ref(), &changes)
                .await
        }
    };
    set(
        PolicyChanges {
            password_min_length: Some(8),
            ..PolicyChanges::default()
        },
        None,
    )
    .await
    .unwrap();
    let alice = set(
        PolicyChanges {
            auto_lock_seconds: Some(120),
            ..PolicyChanges::default()
        },
        Some(ALICE),
    )
    .await
    .unwrap();
    assert_eq!(alice.policy.password_min_length, 8);
    assert_eq!(alice.overridden, vec!["auto_lock_seconds"]);

    // Tightening the default reaches Alice too (a frozen copy would have skipped her).
    let default = set(
        PolicyChanges {
            require_firewall: Some(true),
            password_min_length: Some(12),
            ..PolicyChanges::default()
        },
        None,
    )
    .await
    .unwrap();
    let alice = app.get_policy(Some(&email(ALICE))).await.unwrap();
    assert!(alice.policy.require_firewall);
    assert_eq!(alice.policy.password_min_length, 12);
    assert_eq!(alice.policy.auto_lock_seconds, 120, "her own field stays");
    assert!(
        alice.revision >= default.revision,
        "her devices see a new revision when the default changes"
    );

    // Her own later change of a default field pins it.
    set(
        PolicyChanges {
            password_min_length: Some(16),
            ..PolicyChanges::default()
        },
        Some(ALICE),
    )
    .await
    .unwrap();
    set(
        PolicyChanges {
            password_min_length: Some(10),
            ..PolicyChanges::default()
        },
        None,
    )
    .await
    .unwrap();
    let alice = app.get_policy(Some(&email(ALICE))).await.unwrap();
    assert_eq!(alice.policy.password_min_length, 16);
    assert_eq!(
        alice.overridden,
        vec!["password_min_length", "auto_lock_seconds"]
    );
}

#[tokio::test]
async fn a_default_that_a_users_override_cannot_combine_with_is_refused() {
    let app = app(Arc::new(MemoryStore::new()));
    app.set_policy(
        &admin(),
        None,
        &PolicyChanges {
            wipe_grace_seconds: Some(24 * 3600),
            ..PolicyChanges::default()
        },
    )
    .await
    .unwrap();
    let mut wipe_firewall = PolicyChanges::default();
    wipe_firewall
        .check_actions
        .insert(Check::Firewall, EnforcementAction::Wipe);
    app.set_policy(&admin(), Some(&email(ALICE)), &wipe_firewall)
        .await
        .unwrap();
    // Without a grace period Alice's wipe action would be invalid.
    let refused = app
        .set_policy(
            &admin(),
            None,
            &PolicyChanges {
                wipe_grace_seconds: Some(0),
                ..PolicyChanges::default()
            },
        )
        .await;
    assert!(
        matches!(&refused, Err(AppError::FailedPrecondition(m)) if m.contains(ALICE)),
        "{refused:?}"
    );
    assert_eq!(
        app.get_policy(None)
            .await
            .unwrap()
            .policy
            .wipe_grace_seconds,
        24 * 3600,
        "nothing changed"
    );
}

#[tokio::test]
async fn an_override_an_older_version_stored_as_a_full_copy_keeps_only_what_differed() {
    let store = Arc::new(MemoryStore::new());
    let app = app(store.clone());
    let default = Policy {
        password_min_length: 8,
        ..Policy::default()
    };
    store
        .put_policy(
            &PolicyScope::Default,
            &PolicyBody::Full(default.clone()),
            "root",
            Timestamp::from_unix_ms(1),
        )
        .await
        .unwrap();
    let frozen = Policy {
        auto_lock_seconds: 120,
        ..default
    };
    let scope = PolicyScope::User(ALICE.parse().unwrap());
    store
        .put_policy(
            &scope,
            &PolicyBody::Full(frozen),
            "root",
            Timestamp::from_unix_ms(2),
        )
        .await
        .unwrap();
    assert_eq!(app.upgrade_policy_overrides().await.unwrap(), 1);
    let rule = store.get_policy(&scope).await.unwrap().unwrap();
    assert_eq!(
        rule.body,
        PolicyBody::Override {
            fields: PolicyChanges {
                auto_lock_seconds: Some(120),
                ..PolicyChanges::default()
            }
        }
    );
    assert_eq!(app.upgrade_policy_overrides().await.unwrap(), 0, "once");
}
