//! The SCIM listener: TLS with the controller's server certificate, read at every handshake
//! from the same live resolver as the gRPC listener's (so a renewed certificate is presented
//! without a restart). Each connection's handshake runs in its own task under a timeout; a
//! slow client holds up no one else.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use super::http::ClientAddr;
use crate::server::listener::HANDSHAKE_TIMEOUT;

/// Established TLS connections, for `axum::serve`.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

/// A server configuration presenting whatever `certificate` holds at each handshake; no
/// client certificates (clients authenticate with bearer tokens), HTTP/1.1, no resumption
/// (nothing to gain, one less state to reason about).
pub fn server_config(
    certificate: Arc<dyn rustls::server::ResolvesServerCert>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(tls);
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, peer)) => {
                        let (acceptor, tx) = (acceptor.clone(), tx.clone());
                        tokio::spawn(async move {
                            let _ = tcp.set_nodelay(true);
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                                .await
                            {
                                Ok(Ok(stream)) => {
                                    let _ = tx.send((stream, peer)).await;
                                }
                                Ok(Err(e)) => {
                                    debug!(%peer, error = %e, "SCIM TLS handshake failed")
                                }
                                Err(_) => debug!(%peer, "SCIM TLS handshake timed out"),
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "accepting a SCIM connection failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(Self { local, accepted })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}
