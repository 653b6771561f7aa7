//! SCIM 2.0 service provider (RFC 7643, RFC 7644) for identity providers (Entra ID, Okta):
//! `wardctl serve --scim-listen ADDR`. The protocol (filters, PATCH operations, resource
//! JSON, error bodies) lives here; what a change means (deprovisioning = offboarding) lives
//! in `ward_controller::app::directory`.

pub mod error;
pub mod filter;
pub mod http;
pub mod listener;
pub mod patch;
#[cfg(test)]
mod patch_tests;
pub mod resource;
#[cfg(test)]
mod resource_tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use ward_controller::app::App;

/// Serves SCIM on `listen` over TLS presenting `certificate` (the controller's live server
/// certificate) until `shutdown` completes; returns the bound address and the server's task,
/// which ends once the port is closed and the requests in flight are answered.
pub async fn serve(
    app: Arc<App>,
    listen: SocketAddr,
    certificate: Arc<dyn rustls::server::ResolvesServerCert>,
    limits: http::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let tls = listener::server_config(certificate)
        .map_err(|e| std::io::Error::other(format!("SCIM TLS configuration: {e}")))?;
    let tcp = tokio::net::TcpListener::bind(listen).await?;
    let (listener, accepting) = listener::TlsListener::new(tcp, Arc::new(tls))?;
    let local = axum::serve::Listener::local_addr(&listener)?;
    let router = http::router(app, limits);
    let task = tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<http::ClientAddr>();
        let serving = axum::serve(listener, service).with_graceful_shutdown(shutdown);
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "the SCIM listener stopped");
        }
        // The listener is dropped: its accepting task closes the port.
        let _ = accepting.await;
    });
    Ok((local, task))
}
