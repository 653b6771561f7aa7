//! One webhook delivery over the network: an HTTP/1.1 POST on a connection of its own (hyper's
//! client connection over TCP or tokio-rustls with Ward's one crypto provider). https is
//! verified against the system's roots or the receiver's own CA; plain http goes only to an
//! address of this machine (checked on the resolved addresses, not only the name). Connecting
//! and answering each have a time limit. Redirects are never followed: a 3xx is a failed
//! attempt like any other answer that is not 2xx.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::core::webhook::{ReceiverUrl, Scheme};

/// Time limits of one attempt.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Resolving, TCP and the TLS handshake.
    pub connect: Duration,
    /// From the request sent to the response's status line and headers.
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(10),
        }
    }
}

/// Sends deliveries; holds the system's roots once loaded.
#[derive(Debug, Default)]
pub struct Sender {
    timeouts: Timeouts,
    system: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl Sender {
    pub fn new(timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            system: OnceLock::new(),
        }
    }

    /// POSTs `body` with `headers` to `url`; the receiver's HTTP status, or why there was none.
    pub async fn post(
        &self,
        url: &str,
        ca_pem: Option<&str>,
        headers: &[(&str, String)],
        body: &str,
    ) -> Result<u16, String> {
        let url = ReceiverUrl::parse(url).map_err(|e| e.to_string())?;
        let tcp = tokio::time::timeout(self.timeouts.connect, connect(&url))
            .await
            .map_err(|_| format!("connecting took longer than {:?}", self.timeouts.connect))??;
        let request = request(&url, headers, body)?;
        match url.scheme {
            Scheme::Http => self.exchange(tcp, request).await,
            Scheme::Https => {
                let config = match ca_pem {
                    Some(pem) => Arc::new(crate::syslog_transport::tls_config(pem.as_bytes())?),
                    None => self.system_roots()?,
                };
                let name = ServerName::try_from(url.host.clone())
                    .map_err(|e| format!("{} is not a valid TLS server name: {e}", url.host))?;
                let tls = tokio::time::timeout(
                    self.timeouts.connect,
                    tokio_rustls::TlsConnector::from(config).connect(name, tcp),
                )
                .await
                .map_err(|_| "the TLS handshake timed out".to_owned())?
                .map_err(|e| format!("TLS: {e}"))?;
                self.exchange(tls, request).await
            }
        }
    }

    fn system_roots(&self) -> Result<Arc<ClientConfig>, String> {
        self.system
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(
                        "no system CA certificates found: give the webhook a --ca-file".to_owned(),
                    );
                }
                ClientConfig::builder_with_provider(ward_certs::tls::provider())
                    .with_safe_default_protocol_versions()
                    .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                    .map_err(|e| format!("TLS configuration failed: {e}"))
            })
            .clone()
    }

    async fn exchange<S>(
        &self,
        stream: S,
        request: http::Request<Full<Bytes>>,
    ) -> Result<u16, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let answered = tokio::time::timeout(self.timeouts.response, async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("HTTP: {e}"))?;
            let driver = tokio::spawn(connection);
            let result = sender.send_request(request).await;
            driver.abort();
            result.map_err(|e| format!("HTTP: {e}"))
        })
        .await
        .map_err(|_| format!("no answer within {:?}", self.timeouts.response))??;
        Ok(answered.status().as_u16())
    }
}

/// A TCP connection to the first address of `url` that answers; plain http only to loopback
/// addresses, whatever the name resolves to.
async fn connect(url: &ReceiverUrl) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .collect();
    if url.scheme == Scheme::Http && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "{} resolves to an address outside this machine: plain http:// goes only to loopback",
            url.host
        ));
    }
    let mut last = format!("{} resolves to no address", url.host);
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

fn request(
    url: &ReceiverUrl,
    headers: &[(&str, String)],
    body: &str,
) -> Result<http::Request<Full<Bytes>>, String> {
    let mut builder = http::Request::post(url.path.as_str())
        .header(http::header::HOST, url.authority())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("Ward-Webhooks/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| format!("cannot build the request: {e}"))
}
