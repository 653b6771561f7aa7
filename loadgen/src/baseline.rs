//! The bare-stack baseline: the same `ward.v1` services and message shapes, over the same
//! tonic and rustls mutual TLS stack (`ward_certs::tls::server_config`, the controller's server limits),
//! with no store and no logic. It is what Ward's figures are divided by: the cost of the
//! transport alone on this machine.
//!
//! - `Enroll` signs nothing: it answers a fixed certificate.
//! - `CheckIn` answers a fixed response; `Acknowledge` and `ReportResult` say OK.
//! - `Commands` pushes a fixed policy when it opens, then what the admin calls route to the
//!   device (by the URI SAN of its certificate, the one thing a push server must know).
//! - `OffboardUser` pushes one wipe to every open stream; `IssueCommand` to its device.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::Stream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use ward_edge::grpc::{MAX_CONCURRENT_STREAMS, MAX_MESSAGE_BYTES};
use ward_proto::v1::admin_service_server::{AdminService, AdminServiceServer};
use ward_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use ward_proto::v1::enrollment_service_server::{EnrollmentService, EnrollmentServiceServer};
use ward_proto::v1::*;

use crate::LoadError;

type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<Result<AgentPush, Status>>>>>;

#[derive(Clone)]
struct Baseline {
    routes: Routes,
    ca_der: Vec<u8>,
    fixed_cert: Vec<u8>,
    url: String,
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

fn fixed_policy() -> Policy {
    Policy {
        password_min_length: 12,
        auto_lock_seconds: 300,
        require_disk_encryption: true,
        revision: 1,
        scope: "default".into(),
        ..Policy::default()
    }
}

fn config() -> AgentConfig {
    AgentConfig {
        checkin_interval_seconds: 60,
    }
}

fn wipe(id: String) -> AgentPush {
    AgentPush {
        item: Some(agent_push::Item::Command(DeviceCommand {
            id,
            action: Some(device_command::Action::Wipe(WipeAction {
                scope: WipeScope::Messaging as i32,
            })),
            created_at_unix_ms: now_ms(),
        })),
    }
}

/// The device id in a peer certificate's `ward://device/<id>` URI SAN.
fn device_of<T>(request: &Request<T>) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let certs = request.peer_certs()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(certs.first()?).ok()?;
    match ward_certs::validate::identity_of(&cert).ok()? {
        ward_certs::Identity::Device(id) => Some(id.to_string()),
        _ => None,
    }
}

#[tonic::async_trait]
impl EnrollmentService for Baseline {
    async fn enroll(&self, _: Request<EnrollRequest>) -> Result<Response<EnrollResponse>, Status> {
        Ok(Response::new(EnrollResponse {
            device_id: uuid::Uuid::nil().to_string(),
            user: crate::fleet::USER.into(),
            certificate_der: self.fixed_cert.clone(),
            ca_certificates_der: vec![self.ca_der.clone()],
            config: Some(config()),
        }))
    }

    async fn report_offline_wipe(
        &self,
        _: Request<ward_proto::v1::ReportOfflineWipeRequest>,
    ) -> Result<Response<ward_proto::v1::ReportOfflineWipeResponse>, Status> {
        Err(Status::unimplemented(
            "the baseline server measures the stack only; it records no receipts",
        ))
    }
}

type PushStream = Pin<Box<dyn Stream<Item = Result<AgentPush, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Baseline {
    async fn check_in(
        &self,
        _: Request<CheckInRequest>,
    ) -> Result<Response<CheckInResponse>, Status> {
        Ok(Response::new(CheckInResponse {
            config: Some(config()),
            server_time_unix_ms: now_ms(),
            pending_commands: Vec::new(),
            policy: Some(fixed_policy()),
            trust_bundle_der: Vec::new(),
        }))
    }

    type CommandsStream = PushStream;

    async fn commands(
        &self,
        request: Request<CommandsRequest>,
    ) -> Result<Response<PushStream>, Status> {
        let device =
            device_of(&request).ok_or_else(|| Status::unauthenticated("no device certificate"))?;
        let (tx, rx) = mpsc::channel(32);
        let _ = tx
            .send(Ok(AgentPush {
                item: Some(agent_push::Item::Policy(fixed_policy())),
            }))
            .await;
        self.routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(device, tx);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn acknowledge(
        &self,
        _: Request<AcknowledgeRequest>,
    ) -> Result<Response<AcknowledgeResponse>, Status> {
        Ok(Response::new(AcknowledgeResponse {
            proceed: true,
            state: CommandState::Acknowledged as i32,
        }))
    }

    async fn report_result(
        &self,
        _: Request<ReportResultRequest>,
    ) -> Result<Response<ReportResultResponse>, Status> {
        Ok(Response::new(ReportResultResponse {
            state: CommandState::Succeeded as i32,
        }))
    }

    async fn renew(&self, _: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        Ok(Response::new(RenewResponse {
            certificate_der: self.fixed_cert.clone(),
            ca_certificates_der: vec![self.ca_der.clone()],
        }))
    }
}

/// Admin calls the baseline does not serve: each answers UNIMPLEMENTED at once. tonic's
/// service traits are `#[async_trait]` traits, so each method is written with the signature
/// that attribute gives an `async fn` (two lifetimes, a boxed future), which is what the trait
/// declares.
macro_rules! not_in_baseline {
    ($($name:ident($request:ty) -> $response:ty;)*) => {$(
        fn $name<'life0, 'async_trait>(
            &'life0 self,
            _: Request<$request>,
        ) -> Pin<Box<dyn Future<Output = Result<Response<$response>, Status>> + Send + 'async_trait>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(std::future::ready(Err(Status::unimplemented(
                "not part of the baseline",
            ))))
        }
    )*};
}

#[tonic::async_trait]
impl AdminService for Baseline {
    async fn create_enrollment_token(
        &self,
        request: Request<CreateEnrollmentTokenRequest>,
    ) -> Result<Response<CreateEnrollmentTokenResponse>, Status> {
        Ok(Response::new(CreateEnrollmentTokenResponse {
            token: format!("ward_{}", uuid::Uuid::new_v4().simple()),
            user: request.into_inner().user,
            expires_at_unix_ms: now_ms() + 900_000,
            ca_hash: ward_certs::CaHash::of_certificate(&self.ca_der).to_string(),
            server_url: self.url.clone(),
        }))
    }

    async fn issue_command(
        &self,
        request: Request<IssueCommandRequest>,
    ) -> Result<Response<Command>, Status> {
        let req = request.into_inner();
        let id = uuid::Uuid::new_v4().to_string();
        let tx = self
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&req.device_id)
            .cloned();
        if let Some(tx) = tx {
            let _ = tx.send(Ok(wipe(id.clone()))).await;
        }
        Ok(Response::new(Command {
            id,
            device_id: req.device_id,
            kind: "wipe".into(),
            scope: "messaging".into(),
            state: CommandState::Queued as i32,
            created_at_unix_ms: now_ms(),
            ..Command::default()
        }))
    }

    async fn offboard_user(
        &self,
        request: Request<OffboardUserRequest>,
    ) -> Result<Response<OffboardReport>, Status> {
        let user = request.into_inner().user;
        let targets: Vec<(String, mpsc::Sender<Result<AgentPush, Status>>)> = self
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(d, tx)| (d.clone(), tx.clone()))
            .collect();
        let mut devices = Vec::with_capacity(targets.len());
        for (device_id, tx) in targets {
            let command_id = uuid::Uuid::new_v4().to_string();
            let _ = tx.send(Ok(wipe(command_id.clone()))).await;
            devices.push(OffboardDevice {
                device_id,
                command_id,
                state: CommandState::Queued as i32,
                created_at_unix_ms: now_ms(),
                ..OffboardDevice::default()
            });
        }
        Ok(Response::new(OffboardReport {
            user,
            complete: false,
            devices,
            tokens_invalidated: 0,
        }))
    }

    not_in_baseline! {
        list_devices(ListDevicesRequest) -> ListDevicesResponse;
        get_device(GetDeviceRequest) -> Device;
        issue_admin(IssueAdminRequest) -> IssueAdminResponse;
        list_admins(ListAdminsRequest) -> ListAdminsResponse;
        revoke_admin(RevokeAdminRequest) -> ward_proto::v1::Admin;
        renew_admin(RenewAdminRequest) -> IssueAdminResponse;
        approve_admin(ApproveAdminRequest) -> ward_proto::v1::AdminRequest;
        list_commands(ListCommandsRequest) -> ListCommandsResponse;
        get_command(GetCommandRequest) -> Command;
        attest_wipe(GetCommandRequest) -> WipeAttestation;
        cancel_command(CancelCommandRequest) -> Command;
        approve_command(ApproveCommandRequest) -> Command;
        get_policy(GetPolicyRequest) -> Policy;
        set_policy(SetPolicyRequest) -> Policy;
        reset_policy(GetPolicyRequest) -> Policy;
        list_enrollment_tokens(ListEnrollmentTokensRequest) -> ListEnrollmentTokensResponse;
        revoke_enrollment_tokens(RevokeEnrollmentTokensRequest) -> RevokeEnrollmentTokensResponse;
        who_am_i(WhoAmIRequest) -> WhoAmIResponse;
        rotate_ca(RotateCaRequest) -> RotateCaResponse;
        add_webhook(AddWebhookRequest) -> AddWebhookResponse;
        list_webhooks(ListWebhooksRequest) -> ListWebhooksResponse;
        remove_webhook(RemoveWebhookRequest) -> Webhook;
        list_webhook_deliveries(ListWebhookDeliveriesRequest) -> ListWebhookDeliveriesResponse;
        create_scim_token(CreateScimTokenRequest) -> CreateScimTokenResponse;
        list_scim_tokens(ListScimTokensRequest) -> ListScimTokensResponse;
        revoke_scim_token(RevokeScimTokenRequest) -> ScimTokenInfo;
        list_users(ListUsersRequest) -> ListUsersResponse;
        revoke_device(RevokeDeviceRequest) -> Device;
        bulk_wipe(BulkWipeRequest) -> BulkWipeReport;
        get_bulk_wipe(GetBulkWipeRequest) -> BulkWipeReport;
        approve_bulk_wipe(GetBulkWipeRequest) -> BulkWipeReport;
        get_offboard_report(GetOffboardReportRequest) -> OffboardReport;
        mark_lost(MarkLostRequest) -> MarkLostResponse;
        disable_device(DisableDeviceRequest) -> DeviceCommandResponse;
        enable_device(EnableDeviceRequest) -> DeviceCommandResponse;
        return_device(ReturnDeviceRequest) -> DeviceCommandResponse;
        retire_device(RetireDeviceRequest) -> DeviceCommandResponse;
        list_audit(ListAuditRequest) -> ListAuditResponse;
        verify_audit(VerifyAuditRequest) -> VerifyAuditResponse;
    }
}

fn read_pem(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path)
        .map_err(|e| LoadError::Setup(format!("cannot read {}: {e}", path.display())))
}

/// Runs the baseline server from the PKI in `dir` (made by the load generator) until killed.
/// Writes its URL to `DIR/server-url` once it listens, as `wardctl serve` does.
pub async fn serve(dir: &Path, listen: SocketAddr) -> Result<(), LoadError> {
    let bad = |what: &str, e: String| LoadError::Setup(format!("{what} in {}: {e}", dir.display()));
    let ca_der = ward_certs::certificates_from_pem(&read_pem(&dir.join("ca.pem"))?)
        .map_err(|e| bad("ca.pem", e.to_string()))?
        .remove(0);
    let chain = ward_certs::certificates_from_pem(&read_pem(&dir.join("server.pem"))?)
        .map_err(|e| bad("server.pem", e.to_string()))?;
    let key = ward_certs::PrivateKeyDer::from_pem(&zeroize::Zeroizing::new(read_pem(
        &dir.join("server.key"),
    )?))
    .map_err(|e| bad("server.key", e.to_string()))?;
    let revoked = Arc::new(ward_certs::tls::RevokedSerials::default());
    let tls = ward_certs::tls::server_config(&ca_der, &chain, &key, revoked)
        .map_err(|e| LoadError::Setup(e.to_string()))?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| LoadError::Setup(format!("cannot listen on {listen}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| LoadError::Setup(e.to_string()))?;
    let url = format!("https://127.0.0.1:{}", local.port());
    let baseline = Baseline {
        routes: Arc::default(),
        fixed_cert: chain.first().cloned().unwrap_or_default(),
        ca_der,
        url: url.clone(),
    };
    let incoming = incoming(listener, Arc::new(tls));
    let server = Server::builder()
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true)
        .add_service(
            EnrollmentServiceServer::new(baseline.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            AgentServiceServer::new(baseline.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            AdminServiceServer::new(baseline).max_decoding_message_size(MAX_MESSAGE_BYTES),
        );
    ward_files::replace_file(
        &dir.join("server-url"),
        format!("{url}\n").as_bytes(),
        0o644,
    )
    .map_err(|e| LoadError::Setup(format!("cannot write server-url: {e}")))?;
    eprintln!("baseline server listening on {local}");
    server
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| LoadError::Failed(format!("the baseline server failed: {e}")))
}

/// TLS accept loop like the controller's: each handshake in its own task under a timeout.
fn incoming(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> ReceiverStream<std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = mpsc::channel(256);
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let (acceptor, tx) = (acceptor.clone(), tx.clone());
                    tokio::spawn(async move {
                        let _ = tcp.set_nodelay(true);
                        if let Ok(Ok(stream)) = tokio::time::timeout(
                            ward_edge::grpc::HANDSHAKE_TIMEOUT,
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            let _ = tx.send(Ok(stream)).await;
                        }
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    ReceiverStream::new(rx)
}
