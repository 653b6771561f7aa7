//! Enrollment's record and its audit entry, written together.

use super::test_fixture::{admin, email, facts, fixture, jobs};
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

/// A token, made for `user`, as its secret.
async fn token_for(f: &super::test_fixture::Fixture, user: &str) -> String {
    let created = f
        .app
        .create_token(&admin(), email(user), None)
        .await
        .unwrap();
    created.token.expose().to_owned()
}

/// Three devices enrolling at once are one job of the writer (before, a job each): their
/// tokens are claimed, their devices recorded and their entries audited together.
#[tokio::test]
async fn enrollments_arriving_together_are_one_writer_job() {
    let f = fixture();
    let mut secrets = Vec::new();
    for user in ["ann@hospital.example", "bob@hospital.example", ALICE] {
        secrets.push(token_for(&f, user).await);
    }
    let before = jobs(&f.store);
    // Polled together: each queues its claim before the batch's task runs.
    let enrolled = futures::future::join_all(secrets.iter().map(|secret| {
        f.app
            .enroll(secret.parse().unwrap(), csr(), facts("laptop"), None)
    }))
    .await;
    assert_eq!(jobs(&f.store) - before, 1, "one writer job for the three");
    let users: Vec<String> = enrolled
        .into_iter()
        .map(|e| e.unwrap().user.to_string())
        .collect();
    assert_eq!(
        users,
        ["ann@hospital.example", "bob@hospital.example", ALICE]
    );
    assert_eq!(f.store.list_devices(None).await.unwrap().len(), 3);
    let entries = f
        .store
        .list_audit(&crate::store::AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "device.enroll")
            .count(),
        3
    );
}

/// In one batch, each enrollment gets its own answer: a used token and an unknown one are
/// refused with what was wrong (and audited), the usable ones enroll, and a token claimed
/// twice at once enrolls one device.
#[tokio::test]
async fn each_enrollment_in_a_batch_gets_its_own_answer() {
    let f = fixture();
    let used = token_for(&f, ALICE).await;
    f.app
        .enroll(used.parse().unwrap(), csr(), facts("first"), None)
        .await
        .unwrap();
    let bob = token_for(&f, "bob@hospital.example").await;
    let cat = token_for(&f, "cat@hospital.example").await;
    let unknown = EnrollmentToken::generate().expose().to_owned();
    let answers = futures::future::join_all([&bob, &used, &unknown, &cat, &cat].map(|secret| {
        f.app
            .enroll(secret.parse().unwrap(), csr(), facts("laptop"), None)
    }))
    .await;
    let outcome: Vec<Result<String, String>> = answers
        .into_iter()
        .map(|a| a.map(|e| e.user.to_string()).map_err(|e| e.to_string()))
        .collect();
    assert_eq!(outcome[0].as_deref(), Ok("bob@hospital.example"));
    assert!(
        outcome[1]
            .as_ref()
            .is_err_and(|e| e.contains("already used")),
        "{:?}",
        outcome[1]
    );
    assert!(
        outcome[2].as_ref().is_err_and(|e| e.contains("not known")),
        "{:?}",
        outcome[2]
    );
    assert_eq!(outcome[3].as_deref(), Ok("cat@hospital.example"));
    assert!(
        outcome[4]
            .as_ref()
            .is_err_and(|e| e.contains("already used")),
        "{:?}",
        outcome[4]
    );
    // alice's first device, bob's and one of cat's.
    assert_eq!(f.store.list_devices(None).await.unwrap().len(), 3);
    assert_eq!(
        refusals(&f).await.len(),
        3,
        "the used, the unknown and cat's second claim"
    );
}

/// The audit log's refused enrollments.
async fn refusals(f: &super::test_fixture::Fixture) -> Vec<crate::core::audit::AuditEntry> {
    f.store
        .list_audit(&crate::store::AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "enroll.refused")
        .collect()
}

/// Enrollments whose batch the store could not commit (here its audit append fails, as a
/// commit refused by the database would) are each answered with the store's error after that
/// one job, not run again in halves (a database down for a while made a batch of 500 wait
/// for some twenty failing rounds, and an answer lost after a commit that went through came
/// back as "already used" for devices that had enrolled). Nothing is enrolled; the devices'
/// next attempt enrolls.
#[tokio::test]
async fn enrollments_the_store_failed_to_commit_are_answered_at_once() {
    let f = fixture();
    let mut secrets = Vec::new();
    for user in ["ann@hospital.example", "bob@hospital.example", ALICE] {
        secrets.push(token_for(&f, user).await);
    }
    let before = jobs(&f.store);
    f.store.fail_next("audit");
    let answers = futures::future::join_all(secrets.iter().map(|secret| {
        f.app
            .enroll(secret.parse().unwrap(), csr(), facts("laptop"), None)
    }))
    .await;
    let failed: Vec<bool> = answers.iter().map(Result::is_err).collect();
    assert_eq!(
        failed,
        [true, true, true],
        "each answered with the store's error"
    );
    assert_eq!(
        jobs(&f.store) - before,
        1,
        "one job, not run again in halves"
    );
    assert!(f.store.list_devices(None).await.unwrap().is_empty());
    for secret in &secrets {
        f.app
            .enroll(secret.parse().unwrap(), csr(), facts("laptop"), None)
            .await
            .unwrap();
    }
    assert_eq!(f.store.list_devices(None).await.unwrap().len(), 3);
}

/// A refused token whose reason cannot be read (the read fails after the claim) is still
/// audited as a refused enrollment: a used token presented again may be a leaked one.
#[tokio::test]
async fn a_refusal_whose_token_cannot_be_read_is_still_audited() {
    let f = fixture();
    let used = token_for(&f, ALICE).await;
    f.app
        .enroll(used.parse().unwrap(), csr(), facts("first"), None)
        .await
        .unwrap();
    f.store.fail_next("find_token");
    let refused = f
        .app
        .enroll(used.parse().unwrap(), csr(), facts("second"), None)
        .await;
    assert!(refused.is_err());
    let refusals = refusals(&f).await;
    assert_eq!(refusals.len(), 1, "the refusal is in the audit log");
    let details: serde_json::Value = serde_json::from_str(&refusals[0].details).unwrap();
    assert_eq!(
        details["why"], "refused (the token could not be read: reason unknown)",
        "it says the reason is not known, not a reason it did not read"
    );
    assert_eq!(
        refusals[0].target, "token not read",
        "not \"unknown token\": the token may well be known (here it is alice's)"
    );
    assert_eq!(f.store.list_devices(None).await.unwrap().len(), 1);
}

/// Attacker's review (a thief holding alice's used token, the sign of a leak): ten enrollments
/// with made-up tokens from one address first, then the leaked one. The made-up tokens used up
/// the address's entries for the minute, and the replay was only counted in a summary naming
/// neither alice nor the token. A token that exists now has entries of its own.
#[tokio::test]
async fn a_leaked_token_replayed_after_a_flood_of_made_up_ones_is_still_named() {
    let f = fixture();
    let created = f
        .app
        .create_token(&admin(), email(ALICE), None)
        .await
        .unwrap();
    let secret = created.token.expose().to_owned();
    f.app
        .enroll(secret.parse().unwrap(), csr(), facts("first"), None)
        .await
        .unwrap();
    let thief: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    for _ in 0..30 {
        let made_up = EnrollmentToken::generate();
        assert!(
            f.app
                .enroll(made_up, csr(), facts("made up"), Some(thief))
                .await
                .is_err()
        );
    }
    let replay = f
        .app
        .enroll(secret.parse().unwrap(), csr(), facts("replay"), Some(thief))
        .await;
    assert!(replay.is_err(), "a used token is refused");
    let recorded = refusals(&f).await;
    let prefix = super::audit::token_hash_prefix(&created.record.hash);
    assert!(
        recorded
            .iter()
            .any(|e| e.target == ALICE && e.details.contains(&prefix)),
        "the replay names alice and the token"
    );
    assert!(
        recorded
            .iter()
            .filter(|e| e.target == "unknown token")
            .count()
            < 30,
        "made-up tokens are still held to the address's few entries a minute"
    );
}
