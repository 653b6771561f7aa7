//! Who is calling, as the app decides it: a revoked device stays refused, with the reason its
//! agent acts on, once its refusal is answered from memory instead of the store.

use super::AppError;
use super::test_fixture::{admin, enroll_current, fixture, replica};
use crate::core::DeviceRef;
use crate::store::Store;

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

/// Attack probe (a copy of a device's key kept by someone else): after a renewal, the
/// replaced certificate is refused at every call, once read and then from memory, and its
/// use is flagged once; the device's new certificate, and the device itself, are never
/// refused because of it, on this replica or another.
#[tokio::test]
async fn a_replaced_certificate_is_refused_from_memory_without_refusing_its_device() {
    let f = fixture();
    let app = &f.app;
    let ann = enroll_current(app, "ann@hospital.example", "ann-laptop").await;
    let old_serial = ann.device.certificate_serial.clone();
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let csr =
        ward_certs::VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "laptop").unwrap())
            .unwrap();
    let renewed = app.renew(ann.device.id, &old_serial, &csr).await.unwrap();
    // The first call with the new certificate makes it the device's one.
    let (device, serial) = app
        .authenticate_device_certificate(Some(&renewed.der))
        .await
        .unwrap();
    assert_eq!(device.id, ann.device.id);
    assert_eq!(serial, renewed.serial);
    let other = replica(&f.store, &f.ca, &f.clock);
    for _ in 0..3 {
        for app in [app, &other] {
            assert!(
                refusal(app, &ann.certificate).await.is_some(),
                "copy let in"
            );
            assert!(
                refusal(app, &renewed.der).await.is_none(),
                "the device refused after its replaced certificate was used"
            );
            assert!(app.active_device(ann.device.id).await.is_ok());
        }
    }
    let record = app.device(ann.device.id).await.unwrap();
    assert!(
        record
            .renewal_conflict
            .is_some_and(|c| c.covers(&old_serial)),
        "the copy's use was not flagged"
    );
    // Six refused calls over two replicas, one alert: the copy's use is audited once.
    let alerts = f
        .store
        .list_audit(&crate::store::AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == super::renewal::RENEWAL_CONFLICT)
        .count();
    assert_eq!(alerts, 1, "the copy's use was audited {alerts} times");
}
