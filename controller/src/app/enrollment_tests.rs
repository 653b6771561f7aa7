//! Enrollment's record and its audit entry, written together.

use super::test_fixture::{admin, email, facts, fixture};
use crate::core::{EnrollmentToken, TokenStatus};
use crate::store::Store;

const ALICE: &str = "alice@hospital.example";

fn csr() -> ward_certs::VerifiedCsr {
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    ward_certs::VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "laptop").unwrap()).unwrap()
}

/// The enrollment's audit entry is written in the job that redeems the token: a call whose
/// client hangs up once the redemption has committed (run in its connection's task when the
/// places of calls without a certificate are taken) cannot leave a device enrolled without
/// its entry. Here the entry's write fails: nothing is enrolled, the token stays usable, and
/// the agent's retry enrolls.
#[tokio::test]
async fn an_enrollment_whose_audit_entry_is_not_written_enrolls_nothing() {
    let f = fixture();
    let created = f
        .app
        .create_token(&admin(), email(ALICE), None)
        .await
        .unwrap();
    let secret = created.token.expose().to_owned();
    let token = || secret.parse::<EnrollmentToken>().unwrap();

    f.store.fail_next("audit");
    let refused = f.app.enroll(token(), csr(), facts("laptop"), None).await;
    assert!(refused.is_err(), "enrolled without its audit entry");
    assert!(
        f.store.list_devices(None).await.unwrap().is_empty(),
        "a device was enrolled without its audit entry"
    );
    let record = f
        .store
        .find_token(&created.record.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status(f.app.now()), TokenStatus::Usable);

    let enrolled = f
        .app
        .enroll(token(), csr(), facts("laptop"), None)
        .await
        .unwrap();
    let entries = f
        .store
        .list_audit(&crate::store::AuditFilter::default())
        .await
        .unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.action == "device.enroll" && e.target == enrolled.device_id.to_string()),
        "the enrollment is not in the audit log"
    );
}
