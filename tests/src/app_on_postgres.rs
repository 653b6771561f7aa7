//! An app over a PostgreSQL database in the test's own process, for the races a test builds
//! with a second connection of its own (another replica's transaction held open).

use std::sync::Arc;

use ward_certs::{CertificateAuthority, PrivateKeyDer, VerifiedCsr, csr::make_csr};
use ward_controller::app::{App, AppConfig, Enrolled};
use ward_controller::core::{Admin, AdminRole, DeviceFacts, SystemClock, Timestamp};
use ward_controller::store::SqlStore;

/// The admin the app's calls are made as.
pub fn admin() -> Admin {
    Admin::new(
        "root".parse().expect("an admin name"),
        AdminRole::Admin,
        Timestamp::from_unix_ms(0),
        "t",
    )
}

/// An app over the database at `url`, with a CA of its own.
pub async fn app(url: &str) -> Arc<App> {
    let store = SqlStore::connect_postgres(url)
        .await
        .expect("the test database");
    let ca =
        CertificateAuthority::create("Ward CA", time::OffsetDateTime::now_utc()).expect("a CA");
    Arc::new(App::new(
        Arc::new(store),
        Arc::new(ca),
        Arc::new(SystemClock),
        AppConfig::with_public_url("https://x:1".into()),
    ))
}

/// A device of `user`'s enrolled with a token of its own, as a laptop.
pub async fn enroll(app: &App, user: &str) -> Enrolled {
    let token = app
        .create_token(&admin(), user.parse().expect("an email"), None)
        .await
        .expect("a token");
    let key = PrivateKeyDer::generate().expect("a key");
    let csr = VerifiedCsr::from_der(&make_csr(&key, "laptop").expect("a CSR")).expect("a CSR");
    let facts = DeviceFacts {
        hostname: "laptop".into(),
        ..DeviceFacts::default()
    };
    app.enroll(token.token, csr, facts, None)
        .await
        .expect("the enrollment")
}
