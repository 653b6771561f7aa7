//! Review findings on CA rotation (ignored until fixed): the app over a real data directory.

use std::sync::Arc;

use super::AppError;
use super::test_fixture::{admin, enroll};
use crate::app::{App, AppConfig};
use crate::ca_set::CaSet;
use crate::core::Timestamp;
use crate::core::ca_rotation::{CaState, RotationStep};
use crate::core::clock::ManualClock;
use crate::datadir::DataDir;
use crate::store::{MemoryStore, Store};

/// A data directory holding `ca` as `ca.pem`/`ca.key`.
fn data_dir(ca: &ward_certs::CertificateAuthority) -> (tempfile::TempDir, DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path());
    std::fs::write(dir.ca_cert(), ca.cert_pem()).unwrap();
    ward_certs::files::create_secret_file(&dir.ca_key(), ca.key().to_pem().as_bytes()).unwrap();
    (tmp, dir)
}

fn app_on(store: &Arc<MemoryStore>, dir: &DataDir, clock: &ManualClock) -> App {
    let cas = CaSet::load(dir, &[]).unwrap();
    App::with_cas(
        Arc::clone(store) as Arc<dyn Store>,
        Arc::new(cas),
        Arc::new(clock.clone()),
        AppConfig::with_public_url("https://127.0.0.1:7443".into()),
    )
}

fn setup() -> (
    Arc<MemoryStore>,
    ManualClock,
    Arc<ward_certs::CertificateAuthority>,
) {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_datetime(time::OffsetDateTime::now_utc()));
    let ca = Arc::new(
        ward_certs::CertificateAuthority::create("old", time::OffsetDateTime::now_utc()).unwrap(),
    );
    (store, clock, ca)
}

#[tokio::test]
#[ignore = "review finding: after `ca rotate retire --force`, a certificate of the retired CA keeps working on every call of a connection opened before (the per-call check trusts a remembered peer without asking whether its CA is still trusted)"]
async fn a_retired_cas_certificate_is_refused_at_the_next_call_of_an_open_connection() {
    let (store, clock, ca) = setup();
    let (_tmp, dir) = data_dir(&ca);
    let app = app_on(&store, &dir, &clock);
    // A device enrolled under the old CA; its connection has made calls (it is remembered).
    let (_device, cert) = enroll(&app, "dan@hospital.example").await;
    app.authenticate_device(Some(&cert)).await.unwrap();

    app.rotate_ca(&admin(), RotationStep::Introduce, false)
        .await
        .unwrap();
    app.rotate_ca(&admin(), RotationStep::Activate, true)
        .await
        .unwrap();
    // The operator cuts off what the former CA issued (its key may have been copied).
    app.rotate_ca(&admin(), RotationStep::Retire, true)
        .await
        .unwrap();
    assert_eq!(app.cas().trusted_hashes().len(), 1);
    assert!(!app.cas().trusted_ders().contains(&ca.cert_der().to_vec()));

    // A new connection fails at the handshake; the open one must fail at its next call.
    let next_call = app.authenticate_device(Some(&cert)).await;
    assert!(
        matches!(&next_call, Err(AppError::Unauthenticated(_))),
        "a certificate of the retired CA still authenticates on an open connection: {next_call:?}"
    );
}

#[tokio::test]
#[ignore = "review finding: two admins running `ca rotate introduce` at once on two replicas both succeed: two CAs are recorded as introduced (the step is planned on what was read, the write does not check the records are unchanged)"]
async fn two_introduce_steps_at_once_on_two_replicas_record_one_ca() {
    let (store, clock, ca) = setup();
    let (_a_tmp, a_dir) = data_dir(&ca);
    let (_b_tmp, b_dir) = data_dir(&ca);
    let a = app_on(&store, &a_dir, &clock);
    let b = app_on(&store, &b_dir, &clock);
    let (alice, bob) = (admin(), admin());
    let (from_a, from_b) = tokio::join!(
        a.rotate_ca(&alice, RotationStep::Introduce, false),
        b.rotate_ca(&bob, RotationStep::Introduce, false),
    );
    let introduced: Vec<_> = store
        .ca_records()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.state == CaState::Introduced)
        .collect();
    assert!(
        from_a.is_err() || from_b.is_err(),
        "both introduce steps succeeded; introduced CAs recorded: {introduced:?}"
    );
    assert_eq!(introduced.len(), 1, "{introduced:?}");
}

#[tokio::test]
#[ignore = "review finding: a retired CA's signature verifies on audit checkpoints (and heads) dated after its retirement, so whoever kept the retired key (the reason to rotate) can sign a rewritten log's checkpoints"]
async fn a_checkpoint_signed_by_a_retired_ca_after_its_retirement_does_not_verify() {
    let (store, clock, ca) = setup();
    let (_tmp, dir) = data_dir(&ca);
    let app = app_on(&store, &dir, &clock);
    for (step, force) in [
        (RotationStep::Introduce, false),
        (RotationStep::Activate, true),
        (RotationStep::Retire, true),
    ] {
        app.rotate_ca(&admin(), step, force).await.unwrap();
    }
    assert!(!app.cas().trusted_ders().contains(&ca.cert_der().to_vec()));
    // A day after the retirement, someone holding the retired key signs a checkpoint (of a
    // log rewritten in the database, say) in the retired CA's name.
    clock.advance(std::time::Duration::from_secs(86_400));
    let forged = crate::core::audit::Checkpoint::sign(
        "chain",
        42,
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        app.now(),
        &ca.hash().to_string(),
        |message| ward_certs::sign::sign(ca.key(), message),
    )
    .unwrap();
    assert!(
        !app.checkpoint_signed(&forged),
        "a checkpoint dated after the retirement verifies under the retired CA"
    );
}

#[tokio::test]
#[ignore = "review finding: under --require-approval one admin cuts the whole fleet off with `ca rotate activate --force` / `retire --force` (their offline timers then wipe them), which a full wipe or a large offboarding could not do without a second admin"]
async fn a_forced_retirement_cutting_off_more_devices_than_the_threshold_waits_for_a_second_admin()
{
    let (store, clock, ca) = setup();
    let (_tmp, dir) = data_dir(&ca);
    let cas = CaSet::load(&dir, &[]).unwrap();
    let mut config = AppConfig::with_public_url("https://127.0.0.1:7443".into());
    config.approval_threshold = Some(10);
    let app = App::with_cas(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::new(cas),
        Arc::new(clock.clone()),
        config,
    );
    for n in 0..11 {
        enroll(&app, &format!("user{n}@hospital.example")).await;
    }
    app.rotate_ca(&admin(), RotationStep::Introduce, false)
        .await
        .unwrap();
    app.rotate_ca(&admin(), RotationStep::Activate, true)
        .await
        .unwrap();
    // Eleven device certificates of the former CA are valid: one admin forces the retirement.
    let forced = app.rotate_ca(&admin(), RotationStep::Retire, true).await;
    assert!(
        app.cas().trusted_ders().contains(&ca.cert_der().to_vec()),
        "one admin cut 11 devices off under --require-approval (threshold 10): {:?}",
        forced.map(|r| r.done)
    );
}
