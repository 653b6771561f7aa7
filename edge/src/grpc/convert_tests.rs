//! The policy conversions at the wire, through the application and back: what an admin's request
//! becomes on a device.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ward_controller::app::{App, AppConfig, AppError};
use ward_controller::store::{MemoryStore, Store};
use ward_core::clock::ManualClock;
use ward_core::{Admin, AdminRole, Check, EnforcementAction, Timestamp, UserEmail};
use ward_proto::v1;

use super::convert::{policy_changes_from_wire, policy_to_wire};

/// An app on `store` with a manual clock.
fn app(store: Arc<MemoryStore>) -> App {
    let now = time::OffsetDateTime::now_utc();
    App::new(
        store as Arc<dyn Store>,
        Arc::new(ward_certs::CertificateAuthority::create("test", now).unwrap()),
        Arc::new(ManualClock::new(Timestamp::from_datetime(now))),
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

fn email(text: &str) -> UserEmail {
    text.parse().unwrap()
}

const ALICE: &str = "alice@hospital.example";

/// The uptime rule from an admin's request to what a device is sent: through the wire
/// conversion, validation, the store and back (unset means no limit; out of range refused).
#[tokio::test]
async fn the_uptime_limit_round_trips_from_the_request_to_the_devices_policy() {
    let app = app(Arc::new(MemoryStore::new()));
    let before = app.get_policy(None).await.unwrap();
    assert_eq!(policy_to_wire(&before).max_uptime_days, 0, "no limit");
    let request = v1::SetPolicyRequest {
        max_uptime_days: Some(30),
        check_actions: vec![v1::CheckAction {
            check: "uptime".into(),
            action: v1::EnforcementAction::Report as i32,
        }],
        ..Default::default()
    };
    let changes = policy_changes_from_wire(&request).unwrap();
    app.set_policy(&admin(), None, &changes).await.unwrap();
    let alice = app.agent_policy(&email(ALICE)).await.unwrap();
    assert_eq!(alice.policy.required_checks(), vec![Check::Uptime]);
    assert_eq!(
        alice.policy.action_for(Check::Uptime),
        EnforcementAction::Report
    );
    let wire = policy_to_wire(&alice);
    assert_eq!(wire.max_uptime_days, 30);
    assert!(wire.check_actions.contains(&v1::CheckAction {
        check: "uptime".into(),
        action: v1::EnforcementAction::Report as i32,
    }));

    let too_long = v1::SetPolicyRequest {
        max_uptime_days: Some(366),
        ..Default::default()
    };
    let err = app
        .set_policy(
            &admin(),
            None,
            &policy_changes_from_wire(&too_long).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppError::InvalidArgument(m) if m.contains("--max-uptime 366d")),
        "{err:?}"
    );
    let unknown = v1::SetPolicyRequest {
        check_actions: vec![v1::CheckAction {
            check: "bluetooth".into(),
            action: v1::EnforcementAction::Block as i32,
        }],
        ..Default::default()
    };
    let refused = policy_changes_from_wire(&unknown).unwrap_err();
    assert!(
        refused
            .message()
            .contains("--action bluetooth is not allowed"),
        "{refused:?}"
    );

    // Unset again (0): no limit, and the check is no longer required.
    let off = v1::SetPolicyRequest {
        max_uptime_days: Some(0),
        ..Default::default()
    };
    app.set_policy(&admin(), None, &policy_changes_from_wire(&off).unwrap())
        .await
        .unwrap();
    let alice = app.agent_policy(&email(ALICE)).await.unwrap();
    assert!(alice.policy.required_checks().is_empty());
}
