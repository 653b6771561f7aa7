//! What the app's unit tests share: an app on the in-memory store with a manual clock, more
//! apps over the same store (replicas), admins, enrolled devices, and a device that runs its
//! commands (acknowledges, reports, signs its wipe receipts).

use std::sync::Arc;

use super::{ActiveDevice, App, AppConfig, DeviceResult};
use crate::core::clock::ManualClock;
use crate::core::{
    Admin, AdminRole, CertificateRecord, Command, CommandKind, CommandState, DeviceFacts,
    Timestamp, WipeScope,
};
use crate::store::{AuditFilter, MemoryStore, Store};

pub(super) struct Fixture {
    pub store: Arc<MemoryStore>,
    pub ca: Arc<ward_certs::CertificateAuthority>,
    pub clock: ManualClock,
    pub app: App,
}

pub(super) fn fixture() -> Fixture {
    fixture_with(|_| {})
}

/// [`fixture`] with settings of its own (`serve --require-approval`, …).
pub(super) fn fixture_with(configure: impl FnOnce(&mut AppConfig)) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(Timestamp::from_datetime(time::OffsetDateTime::now_utc()));
    let ca = Arc::new(
        ward_certs::CertificateAuthority::create("test", time::OffsetDateTime::now_utc()).unwrap(),
    );
    let mut config = AppConfig::with_public_url("https://127.0.0.1:7443".into());
    configure(&mut config);
    let app = App::new(
        Arc::clone(&store) as Arc<dyn Store>,
        Arc::clone(&ca),
        Arc::new(clock.clone()),
        config,
    );
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

/// An admin's idempotency key for a command, parsed as the edge would.
pub(super) fn command_key(text: &str) -> crate::core::refs::CommandKey {
    text.parse().unwrap()
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
    let enrolled = enroll_as(app, user, facts("laptop")).await;
    (enrolled.device, enrolled.certificate)
}

/// An enrolled device as its agent holds it.
pub(super) struct TestDevice {
    pub device: ActiveDevice,
    /// Signs its wipe receipts.
    pub key: ward_certs::PrivateKeyDer,
    pub certificate: Vec<u8>,
}

/// Enrolls a device reporting `facts`.
pub(super) async fn enroll_as(app: &App, user: &str, facts: DeviceFacts) -> TestDevice {
    let token = app.create_token(&admin(), email(user), None).await.unwrap();
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    let csr = ward_certs::csr::make_csr(&key, "laptop").unwrap();
    let enrolled = app
        .enroll(
            token.token,
            ward_certs::VerifiedCsr::from_der(&csr).unwrap(),
            facts,
            None,
        )
        .await
        .unwrap();
    let device = app
        .authenticate_device(Some(&enrolled.certificate.der))
        .await
        .unwrap();
    assert_eq!(device.id, enrolled.device_id);
    TestDevice {
        device,
        key,
        certificate: enrolled.certificate.der,
    }
}

/// Enrolls a device named `hostname` whose agent runs lifecycle commands (disable, retire).
pub(super) async fn enroll_current(app: &App, user: &str, hostname: &str) -> TestDevice {
    let facts = DeviceFacts {
        agent_version: "0.2.0".into(),
        ..facts(hostname)
    };
    enroll_as(app, user, facts).await
}

/// A registered `admin`-role identity made by `created_by` (an approval looks the requester
/// up to see who is related to whom).
pub(super) async fn registered(store: &MemoryStore, name: &str, created_by: &str) -> Admin {
    registered_as(store, name, AdminRole::Admin, created_by).await
}

pub(super) async fn registered_as(
    store: &MemoryStore,
    name: &str,
    role: AdminRole,
    created_by: &str,
) -> Admin {
    let admin = Admin::new(
        name.parse().unwrap(),
        role,
        Timestamp::from_unix_ms(0),
        created_by,
    );
    let at = Timestamp::from_unix_ms(0);
    let record = CertificateRecord {
        serial: format!("serial-{name}"),
        subject: format!("ward://admin/{name}"),
        not_before: at,
        not_after: at,
        issued_at: at,
        revoked_at: None,
        der: None,
    };
    store.insert_admin(&admin, &record).await.unwrap();
    admin
}

impl TestDevice {
    /// The receipt its agent signs once it wiped for `command` (a wipe or a retirement).
    pub(super) fn receipt(&self, command: &Command) -> ward_certs::receipt::SignedReceipt {
        let scope = match command.kind {
            CommandKind::Wipe { scope } => scope,
            _ => WipeScope::Messaging,
        };
        ward_certs::receipt::WipeReceiptBody {
            command_id: command.id.to_string(),
            device_id: self.device.id.to_string(),
            completed_at: "2026-12-06T10:00:00Z".into(),
            scope,
            key_destroyed: true,
            files_removed: 2,
            bytes_removed: 100,
            verified_empty: true,
            full_erase: (scope == WipeScope::Full)
                .then(|| "hook ran: /usr/local/sbin/ward-erase exited 0".to_owned()),
            key_protection: None,
            sanitization: None,
        }
        .sign(&self.key)
        .unwrap()
    }

    /// Acknowledges `command` (it must be told to proceed) and reports its outcome, with a
    /// signed receipt when a wipe succeeded; the state the controller recorded.
    pub(super) async fn run(&self, app: &App, command: &Command, succeeded: bool) -> CommandState {
        let ack = app.acknowledge(self.device.id, command.id).await.unwrap();
        assert!(ack.proceed, "{command:?} may not run: {ack:?}");
        self.report(app, command, succeeded).await
    }

    /// Reports `command`'s outcome (as [`TestDevice::run`], without acknowledging first).
    pub(super) async fn report(
        &self,
        app: &App,
        command: &Command,
        succeeded: bool,
    ) -> CommandState {
        let result = DeviceResult {
            succeeded,
            failure_reason: if succeeded {
                String::new()
            } else {
                "the secret store is locked".into()
            },
            receipt: succeeded.then(|| self.receipt(command)),
        };
        app.report_result(self.device.id, command.id, result)
            .await
            .unwrap()
    }
}

/// The audit log's actions from entry `from` on.
pub(super) async fn actions_from(store: &MemoryStore, from: usize) -> Vec<String> {
    store.list_audit(&AuditFilter::default()).await.unwrap()[from..]
        .iter()
        .map(|e| e.action.clone())
        .collect()
}

/// Jobs the store's writer ran to the end, committed or failed.
pub(super) fn jobs(store: &MemoryStore) -> u64 {
    use std::sync::atomic::Ordering;
    let stats = store.writer().stats();
    stats.jobs_committed.load(Ordering::Relaxed) + stats.jobs_failed.load(Ordering::Relaxed)
}

/// How many entries the audit log holds.
pub(super) async fn audit_len(store: &MemoryStore) -> usize {
    store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .len()
}
