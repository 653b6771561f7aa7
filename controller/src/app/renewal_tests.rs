//! Renewal refused for a device being offboarded, decided in the renewal's own job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::AppError;
use super::commands::{Issuer, new_command};
use super::test_fixture::{enroll_current, fixture};
use crate::core::{CommandKind, IdempotencyKey, WipeScope};
use crate::store::{Priority, Store, StoreError};

const ALICE: &str = "alice@hospital.example";

/// Waits until `done`, for at most five seconds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// An offboarding committed after the renewal's reads (its early refusal found nothing under
/// way) but before the renewal's write still refuses the renewal: the job that records the
/// renewed certificate checks again, in its own transaction. The offboarding's wipe is
/// committed by a write the test holds until the renewal's job waits behind it.
#[tokio::test]
async fn an_offboarding_committed_between_the_renewals_read_and_its_write_refuses_it() {
    let f = fixture();
    let device = enroll_current(&f.app, ALICE, "alice-1").await;
    let id = device.device.id;
    // The offboarding's wipe, made as the offboarding makes it.
    let wipe = new_command(
        &Issuer::controller(),
        id,
        CommandKind::Wipe {
            scope: WipeScope::Messaging,
        },
        "left",
        &IdempotencyKey::System("offboard-alice-1".into()),
        false,
        true,
        f.app.now(),
    )
    .unwrap();
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let csr =
        ward_certs::VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "laptop").unwrap())
            .unwrap();
    let store: Arc<dyn Store> = f.store.clone();
    let (started, go) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));

    let offboarding = {
        let (started, go, store) = (started.clone(), go.clone(), store.clone());
        async move {
            store
                .write(Priority::High, move |tx| {
                    let (started, go, wipe) = (started.clone(), go.clone(), wipe.clone());
                    Box::pin(async move {
                        started.store(true, Ordering::SeqCst);
                        go.notified().await;
                        tx.insert_command(&wipe).await?;
                        Ok::<_, StoreError>(())
                    })
                })
                .await
        }
    };
    let renewal = async {
        until("the offboarding's write to start", || {
            started.load(Ordering::SeqCst)
        })
        .await;
        f.app
            .renew(id, &device.device.certificate_serial, &csr)
            .await
    };
    let release = async {
        until("the offboarding's write to start", || {
            started.load(Ordering::SeqCst)
        })
        .await;
        // The renewal has read (nothing under way) and its job waits behind the offboarding.
        until("the renewal's job to wait for the writer", || {
            f.store.writer().stats().queued_high.load(Ordering::SeqCst) >= 1
        })
        .await;
        go.notify_one();
    };
    let (offboarded, renewed, ()) = tokio::join!(offboarding, renewal, release);
    offboarded.unwrap();
    match renewed {
        Err(AppError::PermissionDenied(_)) => {}
        Ok(issued) => panic!(
            "a renewal went through an offboarding committed before its write: certificate {} issued",
            issued.serial
        ),
        Err(e) => panic!("refused for another reason: {e:?}"),
    }
    let keys = f.store.device_keys(id).await.unwrap();
    assert!(
        keys.iter()
            .all(|k| k.serial == device.device.certificate_serial),
        "a renewed certificate was recorded: {keys:?}"
    );
}
