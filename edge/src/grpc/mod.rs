//! The gRPC edge: one TLS port, three services. Each service maps wire types to domain
//! values at the boundary and [`AppError`](ward_controller::app::AppError)s to gRPC statuses.

mod admin;
#[cfg(test)]
mod admin_tests;
mod agent;
mod bulk_wipe;
pub(crate) mod convert;
pub(crate) mod convert_posture;
#[cfg(test)]
mod convert_tests;
pub use convert::{command_state_to_wire, role_to_wire};
mod enrollment;
pub(crate) mod listener;
pub(crate) mod request;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use ward_proto::v1::admin_service_server::AdminServiceServer;
use ward_proto::v1::agent_service_server::AgentServiceServer;
use ward_proto::v1::enrollment_service_server::EnrollmentServiceServer;

use ward_controller::app::App;

use crate::run_to_end::RunToEndLayer;

pub use listener::HANDSHAKE_TIMEOUT;

/// The largest message any service accepts. Ward's messages are a few KiB; this leaves room for
/// compliance reports while refusing memory-exhaustion attempts.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// HTTP/2 streams one connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 64;

/// A running controller endpoint.
pub struct RunningServer {
    local_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets in-flight calls finish, and waits.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait().await
    }

    /// Waits until the server stops by itself (it normally does not).
    pub async fn wait(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(result) => {
                result.map_err(|e| ServeError::Transport(ward_proto::transport::error_chain(&e)))
            }
            Err(e) => Err(ServeError::Transport(e.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(String),
}

/// Binds the controller's listening socket.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })
}

/// Serves the enrollment, agent and admin services on `tcp`.
pub fn start(
    app: Arc<App>,
    tls: rustls::ServerConfig,
    tcp: tokio::net::TcpListener,
) -> Result<RunningServer, ServeError> {
    let local_addr = tcp.local_addr().map_err(|source| ServeError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let (stop_accepting_tx, stop_accepting_rx) = tokio::sync::watch::channel(false);
    let incoming = listener::incoming(tcp, Arc::new(tls), stop_accepting_rx, app.connections());

    let enrollment = EnrollmentServiceServer::new(enrollment::EnrollmentApi::new(app.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let agent = AgentServiceServer::new(agent::AgentApi::new(app.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let keepalive = (
        app.config().keepalive_interval,
        app.config().keepalive_timeout,
    );
    let admin = AdminServiceServer::new(admin::AdminApi::new(app))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);

    let server = Server::builder()
        .layer(RunToEndLayer::default())
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
        .http2_keepalive_interval(Some(keepalive.0))
        .http2_keepalive_timeout(Some(keepalive.1))
        .tcp_nodelay(true)
        .add_service(enrollment)
        .add_service(agent)
        .add_service(admin);
    let task = tokio::spawn(async move {
        server
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = shutdown_rx.await;
                let _ = stop_accepting_tx.send(true);
            })
            .await
    });
    Ok(RunningServer {
        local_addr,
        shutdown: Some(shutdown_tx),
        task,
    })
}
