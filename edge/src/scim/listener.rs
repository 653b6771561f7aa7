//! The SCIM listener: TLS with the controller's server certificate, read at every handshake
//! from the same live resolver as the gRPC listener's (so a renewed certificate is presented
//! without a restart). Each connection's handshake runs in its own task under a timeout; a
//! slow client holds up no one else. At most [`MAX_CONNECTIONS`] are open at once (the next
//! waits in the kernel's backlog), at most [`MAX_PER_ADDRESS`] from one address (the next is
//! closed), and one that sends nothing for [`IDLE_TIMEOUT`] is closed: a client cannot hold
//! the listener with silent connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use super::http::ClientAddr;
use crate::grpc::listener::HANDSHAKE_TIMEOUT;

/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 256;

/// Connections open at once from one address: one client (with a token or without) cannot
/// take every slot and keep the identity provider out. A connection past it is closed at once.
pub const MAX_PER_ADDRESS: usize = 16;

/// Open connections by client address.
#[derive(Debug, Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One of an address's connections; gives its place back when dropped.
#[derive(Debug)]
struct AddressSlot {
    counts: Arc<PerAddress>,
    ip: std::net::IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressSlot> {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= MAX_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Established TLS connections, for `axum::serve`.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(Connection, SocketAddr)>,
}

/// An established connection: holds one of the listener's slots until it is dropped, and
/// fails its reads once the client has been silent for [`IDLE_TIMEOUT`].
#[derive(Debug)]
pub struct Connection {
    stream: TlsStream<TcpStream>,
    _slot: OwnedSemaphorePermit,
    _address: AddressSlot,
    idle: Pin<Box<Sleep>>,
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
                }
                Poll::Ready(result)
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the SCIM client sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
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
    /// The listener, and the task accepting on `listener`: it ends, closing the port, once the
    /// returned listener is dropped.
    pub fn new(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let local = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(tls);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let per_address = Arc::new(PerAddress::default());
        let accepting = tokio::spawn(async move {
            loop {
                // A free slot first: when all are taken, new clients wait in the backlog.
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => slot,
                    () = tx.closed() => break,
                };
                let Ok(slot) = slot else {
                    break;
                };
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // Nobody takes connections any more: close the port now, not at the
                    // next client.
                    () = tx.closed() => break,
                };
                match accepted {
                    Ok((tcp, peer)) => {
                        let Some(address) = per_address.take(peer.ip()) else {
                            debug!(%peer, "SCIM connection refused: this address holds {MAX_PER_ADDRESS} already");
                            drop(tcp);
                            continue;
                        };
                        let (acceptor, tx) = (acceptor.clone(), tx.clone());
                        tokio::spawn(async move {
                            let _ = tcp.set_nodelay(true);
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                                .await
                            {
                                Ok(Ok(stream)) => {
                                    let connection = Connection {
                                        stream,
                                        _slot: slot,
                                        _address: address,
                                        idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
                                    };
                                    let _ = tx.send((connection, peer)).await;
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
        Ok((Self { local, accepted }, accepting))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Connection;
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
