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

use std::net::SocketAddr;
use std::sync::Arc;

use ward_controller::app::App;

/// Serves SCIM on `listen` over TLS presenting `certificate` (the controller's live server
/// certificate); returns the bound address.
pub async fn serve(
    app: Arc<App>,
    listen: SocketAddr,
    certificate: Arc<dyn rustls::server::ResolvesServerCert>,
    limits: http::Limits,
) -> std::io::Result<SocketAddr> {
    let tls = listener::server_config(certificate)
        .map_err(|e| std::io::Error::other(format!("SCIM TLS configuration: {e}")))?;
    let tcp = tokio::net::TcpListener::bind(listen).await?;
    let listener = listener::TlsListener::new(tcp, Arc::new(tls))?;
    let local = axum::serve::Listener::local_addr(&listener)?;
    let router = http::router(app, limits);
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<http::ClientAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!(error = %e, "the SCIM listener stopped");
        }
    });
    Ok(local)
}
