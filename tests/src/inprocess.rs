//! A controller running inside the test process: real TLS on 127.0.0.1:0, a real SQLite file,
//! and a clock the test moves by hand.

use std::net::SocketAddr;
use std::sync::Arc;

use tonic::transport::Channel;
use ward_certs::{CertificateAuthority, PrivateKeyDer, csr::make_csr};
use ward_controller::app::{App, AppConfig};
use ward_controller::core::clock::ManualClock;
use ward_controller::core::{Clock, SystemClock};
use ward_controller::datadir::DataDir;
use ward_controller::store::{SqlStore, Store};
use ward_edge::grpc::{self, RunningServer};
use ward_files::bundle::{AdminBundle, BundleFile};
use ward_proto::transport::{ChannelOptions, ConnectError, ServerUrl, connect};
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::enrollment_service_client::EnrollmentServiceClient;
use ward_proto::v1::{CreateEnrollmentTokenRequest, EnrollRequest, EnrollResponse};

#[derive(Debug)]
pub struct TestController {
    _dir: tempfile::TempDir,
    pub data: DataDir,
    pub clock: ManualClock,
    pub addr: SocketAddr,
    pub url: ServerUrl,
    pub ca: Arc<CertificateAuthority>,
    pub store: SqlStore,
    pub app: Arc<App>,
    /// The SCIM listener (`serve --scim-listen`), started by [`TestController::start_renewing`]
    /// with the live server certificate.
    pub scim: Option<SocketAddr>,
    server: Option<RunningServer>,
}

/// A device enrolled through the real protocol.
#[derive(Debug)]
pub struct EnrolledDevice {
    pub device_id: String,
    pub certificate_der: Vec<u8>,
    pub key: PrivateKeyDer,
}

impl TestController {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the configuration adjusted by `adjust` (e.g. requiring approval).
    pub async fn start_with(adjust: impl FnOnce(&mut AppConfig)) -> Self {
        Self::start_full(adjust, None).await
    }

    /// Starts as `wardctl serve` does: the listener's certificate is managed by the app,
    /// renewed ones last `lifetime`, and its age is checked every `check_every`.
    pub async fn start_renewing(
        lifetime: std::time::Duration,
        check_every: std::time::Duration,
    ) -> Self {
        Self::start_full(|_| {}, Some((lifetime, check_every))).await
    }

    async fn start_full(
        adjust: impl FnOnce(&mut AppConfig),
        renewing: Option<(std::time::Duration, std::time::Duration)>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path().join("data"));
        data.init(&[], &"admin".parse().unwrap(), &SystemClock)
            .await
            .unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let ca = data.load_ca().unwrap();
        let (chain, key) = data.load_server_credentials().unwrap();
        let store = data.open_store().await.unwrap();
        let listener = grpc::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url: ServerUrl = format!("https://127.0.0.1:{}", addr.port())
            .parse()
            .unwrap();
        let mut config = AppConfig::with_public_url(url.to_string());
        adjust(&mut config);
        let app = Arc::new(App::new(
            Arc::new(store.clone()),
            ca.clone(),
            Arc::new(clock.clone()),
            config,
        ));
        app.load_revocations().await.unwrap();
        let mut scim = None;
        let tls = match renewing {
            None => {
                ward_certs::tls::server_config(ca.cert_der(), &chain, &key, app.revoked_serials())
                    .unwrap()
            }
            Some((lifetime, check_every)) => {
                app.open_audit().await.unwrap();
                let (tls, live) = ward_certs::live::server_config(
                    ca.cert_der(),
                    &chain,
                    &key,
                    app.revoked_serials(),
                )
                .unwrap();
                scim = Some(
                    ward_edge::scim::serve(
                        app.clone(),
                        "127.0.0.1:0".parse().unwrap(),
                        live.clone(),
                        ward_edge::scim::http::Limits::default(),
                        // Served for the test's lifetime.
                        std::future::pending(),
                    )
                    .await
                    .unwrap()
                    .0,
                );
                let cert = Arc::new(ward_controller::server_cert::ServerCertificate::new(
                    app.cas().clone(),
                    live,
                    lifetime,
                    Some(data.clone()),
                ));
                app.manage_server_certificate(cert, None, false, check_every)
                    .await
                    .unwrap();
                tls
            }
        };
        let running = grpc::start(app.clone(), tls, listener).unwrap();
        Self {
            _dir: dir,
            data,
            clock,
            addr,
            url,
            ca,
            store,
            app,
            scim,
            server: Some(running),
        }
    }

    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
    }

    pub async fn channel(&self, tls: rustls::ClientConfig) -> Result<Channel, ConnectError> {
        connect(&self.url, tls, ChannelOptions::default()).await
    }

    pub async fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.admin_channel().await)
    }

    /// A channel speaking as the first admin (the bundle `init` wrote).
    pub async fn admin_channel(&self) -> Channel {
        let bundle = AdminBundle::read(&self.data.admin_bundle()).unwrap();
        self.channel(bundle.client_config().unwrap()).await.unwrap()
    }

    /// Registers a new admin with `role` (through the real `IssueAdmin` call) and returns a
    /// client that speaks as them.
    pub async fn admin_with_role(
        &self,
        name: &str,
        role: ward_proto::v1::AdminRole,
    ) -> AdminServiceClient<Channel> {
        let key = PrivateKeyDer::generate().unwrap();
        let csr = make_csr(&key, name).unwrap();
        let issued = self
            .admin()
            .await
            .issue_admin(ward_proto::v1::IssueAdminRequest {
                name: name.into(),
                role: role as i32,
                csr_der: csr,
                lifetime_seconds: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            !issued.awaiting_approval,
            "issuing {name} awaits a second admin's approval"
        );
        self.admin_as(&issued.certificate_der, &key).await
    }

    /// A client speaking as the admin whose certificate and key these are.
    pub async fn admin_as(
        &self,
        certificate_der: &[u8],
        key: &PrivateKeyDer,
    ) -> AdminServiceClient<Channel> {
        let tls = ward_certs::tls::client_config(
            self.ca.cert_der(),
            Some((&[certificate_der.to_vec()], key)),
        )
        .unwrap();
        AdminServiceClient::new(self.channel(tls).await.unwrap())
    }

    /// The break-glass bundle `init` wrote, unlocked with the passphrase it wrote beside it.
    pub fn break_glass_bundle(&self) -> AdminBundle {
        let files = ward_controller::break_glass::BreakGlassFiles::in_dir(self.data.root());
        let passphrase = std::fs::read_to_string(&files.passphrase).unwrap();
        let BundleFile::Encrypted(locked) = BundleFile::read(&files.bundle).unwrap() else {
            panic!("the break-glass key is not encrypted");
        };
        locked
            .unlock(passphrase.trim_end().as_bytes(), &files.bundle)
            .unwrap()
    }

    /// A client speaking as the break-glass identity.
    pub async fn break_glass(&self) -> AdminServiceClient<Channel> {
        let bundle = self.break_glass_bundle();
        AdminServiceClient::new(self.channel(bundle.client_config().unwrap()).await.unwrap())
    }

    /// An enrollment client that pins the CA by hash, as the agent does.
    pub async fn enrollment(&self) -> EnrollmentServiceClient<Channel> {
        let (tls, _) = ward_certs::tls::pinned_client_config(self.ca.hash()).unwrap();
        EnrollmentServiceClient::new(self.channel(tls).await.unwrap())
    }

    /// Mutual TLS with the given client certificate, trusting our CA.
    pub async fn agent_with(
        &self,
        cert_der: &[u8],
        key: &PrivateKeyDer,
    ) -> Result<AgentServiceClient<Channel>, ConnectError> {
        let tls =
            ward_certs::tls::client_config(self.ca.cert_der(), Some((&[cert_der.to_vec()], key)))
                .unwrap();
        Ok(AgentServiceClient::new(self.channel(tls).await?))
    }

    pub async fn create_token(&self, user: &str, ttl_seconds: u64) -> String {
        self.admin()
            .await
            .create_enrollment_token(CreateEnrollmentTokenRequest {
                user: user.into(),
                ttl_seconds,
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    pub async fn try_enroll(
        &self,
        token: &str,
    ) -> Result<(EnrollResponse, PrivateKeyDer), tonic::Status> {
        let key = PrivateKeyDer::generate().unwrap();
        let csr = make_csr(&key, "test-device").unwrap();
        let response = self
            .enrollment()
            .await
            .enroll(EnrollRequest {
                token: token.into(),
                csr_der: csr,
                facts: None,
            })
            .await?
            .into_inner();
        Ok((response, key))
    }

    pub async fn enroll(&self, user: &str) -> EnrolledDevice {
        let token = self.create_token(user, 0).await;
        let (response, key) = self.try_enroll(&token).await.unwrap();
        EnrolledDevice {
            device_id: response.device_id,
            certificate_der: response.certificate_der,
            key,
        }
    }

    /// A device enrolled for `user` that has checked in as `hostname` with agent `version`,
    /// and the agent client speaking for it.
    pub async fn enroll_checked_in(
        &self,
        user: &str,
        hostname: &str,
        version: &str,
    ) -> (String, AgentServiceClient<Channel>) {
        let enrolled = self.enroll(user).await;
        let mut agent = self
            .agent_with(&enrolled.certificate_der, &enrolled.key)
            .await
            .unwrap();
        agent
            .check_in(ward_proto::v1::CheckInRequest {
                facts: Some(ward_proto::v1::DeviceFacts {
                    hostname: hostname.into(),
                    agent_version: version.into(),
                    ..ward_proto::v1::DeviceFacts::default()
                }),
                ..ward_proto::v1::CheckInRequest::default()
            })
            .await
            .unwrap();
        (enrolled.device_id, agent)
    }

    pub async fn device_count(&self) -> usize {
        self.store.list_devices(None).await.unwrap().len()
    }
}
