//! What the app's unit tests share: an app on the in-memory store with a manual clock, more
//! apps over the same store (replicas), an admin, and an enrolled device.

use std::sync::Arc;

use super::{ActiveDevice, App, AppConfig};
use crate::core::clock::ManualClock;
use crate::core::{Admin, AdminRole, DeviceFacts, Timestamp};
use crate::store::{MemoryStore, Store};

pub(super) struct Fixture {
    pub store: Arc<MemoryStore>,
    pub ca: Arc<ward_certs::CertificateAuthority>,
    pub clock: ManualClock,
    pub app: App,
}

pub(super) fn fixture() -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_datetime(time::OffsetDateTime::now_utc()));
    let ca = Arc::new(
        ward_certs::CertificateAuthority::create("test", time::OffsetDateTime::now_utc()).unwrap(),
    );
    let app = replica(&store, &ca, &clock);
    Fixture {
        store,
        ca,
        clock,
        app,
    }
}

/// Another controller over the same store (a replica without `LISTEN/NOTIFY`).
pub(super) fn replica(
    store: &Arc<MemoryStore>,
    ca: &Arc<ward_certs::CertificateAuthority>,
    clock: &ManualClock,
) -> App {
    App::new(
        Arc::clone(store) as Arc<dyn Store>,
        Arc::clone(ca),
        Arc::new(clock.clone()),
        AppConfig::with_public_url("https://127.0.0.1:7443".into()),
    )
}

pub(super) fn admin() -> Admin {
    Admin::new(
        "root".parse().unwrap(),
        AdminRole::Admin,
        Timestamp::from_unix_ms(0),
        "init",
    )
}

/// A user's e-mail address, parsed as the edge would.
pub(super) fn email(text: &str) -> crate::core::UserEmail {
    text.parse().unwrap()
}

pub(super) fn facts(hostname: &str) -> DeviceFacts {
    DeviceFacts {
        hostname: hostname.into(),
        os_name: "Debian".into(),
        os_version: "12".into(),
        kernel_version: "6.1".into(),
        arch: "x86_64".into(),
        agent_version: "0.1.0".into(),
    }
}

/// Enrolls a device; its certificate's DER.
pub(super) async fn enroll(app: &App, user: &str) -> (ActiveDevice, Vec<u8>) {
    let token = app.create_token(&admin(), email(user), None).await.unwrap();
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let csr = ward_certs::csr::make_csr(&key, "laptop").unwrap();
    let enrolled = app
        .enroll(
            token.token,
            ward_certs::VerifiedCsr::from_der(&csr).unwrap(),
            facts("laptop"),
            None,
        )
        .await
        .unwrap();
    let device = app
        .authenticate_device(Some(&enrolled.certificate.der))
        .await
        .unwrap();
    assert_eq!(device.id, enrolled.device_id);
    (device, enrolled.certificate.der)
}
