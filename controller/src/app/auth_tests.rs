//! Who is calling, as the app decides it: a revoked device stays refused, with the reason its
//! agent acts on, once its refusal is answered from memory instead of the store.

use super::AppError;
use super::test_fixture::{admin, enroll_current, fixture, replica};
use crate::core::DeviceRef;

/// The refusal of a call with `certificate`, or `None` if it was let through.
async fn refusal(app: &super::App, certificate: &[u8]) -> Option<String> {
    match app.authenticate_device(Some(certificate)).await {
        Ok(_) => None,
        Err(AppError::Unauthenticated(why)) => Some(why),
        Err(other) => panic!("refused with the wrong kind of error: {other:?}"),
    }
}

#[tokio::test]
async fn a_revoked_device_is_refused_at_every_call_with_the_reason_its_agent_acts_on() {
    let f = fixture();
    let app = &f.app;
    let ann = enroll_current(app, "ann@hospital.example", "ann-laptop").await;
    let bob = enroll_current(app, "bob@hospital.example", "bob-laptop").await;
    app.revoke_device(&admin(), &DeviceRef::from(ann.device.id), "lost")
        .await
        .unwrap();

    // Its stream learns it first (the device's record), then its calls (the certificate):
    // the first of each reads the store, the rest are answered from what it read.
    for _ in 0..3 {
        let stream = app.active_device(ann.device.id).await.unwrap_err();
        assert!(stream.to_string().contains("has been revoked"), "{stream}");
        let call = refusal(app, &ann.certificate).await.expect("refused");
        assert!(call.contains("revoked"), "{call}");
    }
    // A replica that reads the device afresh.
    let other = replica(&f.store, &f.ca, &f.clock);
    assert!(refusal(&other, &ann.certificate).await.is_some());
    // Nobody else is refused.
    assert!(refusal(app, &bob.certificate).await.is_none());
    assert!(app.active_device(bob.device.id).await.is_ok());
}

#[tokio::test]
async fn a_retired_device_is_refused_as_retired_not_as_revoked() {
    let f = fixture();
    let app = &f.app;
    let eve = enroll_current(app, "eve@hospital.example", "eve-laptop").await;
    // Its stream has it in memory as active before the retirement.
    assert!(app.active_device(eve.device.id).await.is_ok());
    let (_, retire) = app
        .retire_device(&admin(), &DeviceRef::from(eve.device.id), "end of life")
        .await
        .unwrap();
    // The job revokes the device, then retires it: what this replica keeps is the latter.
    assert_eq!(
        eve.run(app, &retire, true).await,
        crate::core::CommandState::Succeeded
    );
    for _ in 0..2 {
        let stream = app.active_device(eve.device.id).await.unwrap_err();
        assert!(stream.to_string().contains("has been retired"), "{stream}");
    }
}
