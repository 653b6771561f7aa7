//! Connections to a syslog collector for `serve --audit-syslog`: TLS (RFC 5425) verifying the
//! collector's certificate against the operator's CA (`--audit-syslog-ca`), plain TCP
//! (RFC 6587) and UDP (RFC 5426) to loopback. The messages and their framing are the domain's
//! ([`crate::core::audit::syslog`]); this only moves bytes.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use crate::core::audit::syslog::frame;
use crate::core::audit::syslog_target::{SyslogTarget, Transport};

/// How long a connection (TCP and the TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS client configuration that trusts exactly the CA certificates in `pem` (one or
/// more, PEM), with Ward's one crypto provider.
pub fn tls_config(pem: &[u8]) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("not a PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    ClientConfig::builder_with_provider(ward_certs::tls::provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| format!("TLS configuration failed: {e}"))
}

/// [`tls_config`] over the file at `path`.
pub fn tls_config_from_file(path: &Path) -> Result<ClientConfig, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    tls_config(&pem).map_err(|e| format!("{} {e}", path.display()))
}

/// One open connection to the collector.
#[async_trait]
pub trait Link: Send {
    /// Writes the messages, framed for the transport, and flushes.
    async fn send(&mut self, messages: &[String]) -> io::Result<()>;

    /// Changes to `Some(reason)` once the collector closed the connection or it failed.
    fn closed(&self) -> watch::Receiver<Option<String>>;
}

/// Opens links to one collector.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn connect(&self) -> io::Result<Box<dyn Link>>;

    /// The collector, for logs.
    fn describe(&self) -> String;
}

/// The collector at a [`SyslogTarget`].
#[derive(Clone)]
pub struct Collector {
    target: SyslogTarget,
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("target", &self.target.to_string())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// `tls` is required for a `tls://` target and ignored otherwise.
    pub fn new(target: SyslogTarget, tls: Option<ClientConfig>) -> Result<Self, String> {
        if target.transport == Transport::Tls && tls.is_none() {
            return Err("a tls:// collector needs the CA that signed its certificate".into());
        }
        Ok(Self {
            target,
            tls: tls.map(Arc::new),
        })
    }
}

#[async_trait]
impl Connector for Collector {
    async fn connect(&self) -> io::Result<Box<dyn Link>> {
        let authority = self.target.authority();
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "connecting timed out");
        match (self.target.transport, &self.tls) {
            (Transport::Udp, _) => {
                let local = if self.target.host.contains(':') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let socket = UdpSocket::bind(local).await?;
                socket.connect(&authority).await?;
                Ok(Box::new(Datagrams::new(socket)))
            }
            (Transport::Tcp, _) => {
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
                    .await
                    .map_err(|_| timed_out())??;
                tcp.set_nodelay(true)?;
                Ok(Box::new(Stream::new(tcp)))
            }
            (Transport::Tls, Some(config)) => {
                let name = ServerName::try_from(self.target.host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, async {
                    let tcp = TcpStream::connect(&authority).await?;
                    tcp.set_nodelay(true)?;
                    connector.connect(name, tcp).await
                })
                .await
                .map_err(|_| timed_out())??;
                Ok(Box::new(Stream::new(tls)))
            }
            (Transport::Tls, None) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a tls:// collector needs a CA",
            )),
        }
    }

    fn describe(&self) -> String {
        self.target.to_string()
    }
}

/// A byte stream (TCP or TLS) with octet-counting framing. A task reads the other direction
/// only to notice the collector closing it.
struct Stream<S> {
    writer: WriteHalf<S>,
    closed: watch::Receiver<Option<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Stream<S> {
    fn new(stream: S) -> Self {
        let (mut read, writer) = tokio::io::split(stream);
        let (tx, closed) = watch::channel(None);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let reason = loop {
                match read.read(&mut buf).await {
                    Ok(0) => break "the collector closed the connection".to_owned(),
                    // A collector has nothing to say on this connection; ignore what it sends.
                    Ok(_) => {}
                    Err(e) => break format!("the connection failed: {e}"),
                }
            };
            let _ = tx.send(Some(reason));
        });
        Self {
            writer,
            closed,
            reader,
        }
    }
}

impl<S> Drop for Stream<S> {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[async_trait]
impl<S: AsyncRead + AsyncWrite + Send + 'static> Link for Stream<S> {
    async fn send(&mut self, messages: &[String]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for message in messages {
            bytes.extend_from_slice(&frame(message));
        }
        self.writer.write_all(&bytes).await?;
        self.writer.flush().await
    }

    fn closed(&self) -> watch::Receiver<Option<String>> {
        self.closed.clone()
    }
}

/// The largest datagram sent: a longer message is cut (at a character boundary), since a
/// datagram the network cannot carry would fail the stream at that entry for ever.
pub const MAX_DATAGRAM: usize = 65_000;

fn datagram(message: &str) -> &[u8] {
    let mut end = message.len().min(MAX_DATAGRAM);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message.as_bytes()[..end]
}

/// UDP: one message per datagram. Nothing confirms a datagram arrived.
struct Datagrams {
    socket: UdpSocket,
    closed: watch::Receiver<Option<String>>,
    _never: watch::Sender<Option<String>>,
}

impl Datagrams {
    fn new(socket: UdpSocket) -> Self {
        let (never, closed) = watch::channel(None);
        Self {
            socket,
            closed,
            _never: never,
        }
    }
}

#[async_trait]
impl Link for Datagrams {
    async fn send(&mut self, messages: &[String]) -> io::Result<()> {
        for message in messages {
            self.socket.send(datagram(message)).await?;
        }
        Ok(())
    }

    fn closed(&self) -> watch::Receiver<Option<String>> {
        self.closed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_is_cut_at_a_character_boundary() {
        assert_eq!(datagram("short"), b"short");
        let long = format!("{}é", "a".repeat(MAX_DATAGRAM - 1));
        let cut = datagram(&long);
        assert_eq!(cut.len(), MAX_DATAGRAM - 1);
        assert!(std::str::from_utf8(cut).is_ok());
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let e = tls_config(b"not a certificate").unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
