//! Client transport shared by the agent and `wardctl`: a tonic channel over TCP + rustls with
//! a TLS configuration the caller chose (CA pin, or CA plus client certificate).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

/// Default controller port.
pub const DEFAULT_PORT: u16 = 7443;

/// A controller address, `https://host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    host: String,
    port: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "server URL {0:?} is not valid: expected https://HOST[:PORT], e.g. https://ward.hospital.org:7443"
)]
pub struct ServerUrlError(String);

impl FromStr for ServerUrl {
    type Err = ServerUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ServerUrlError(s.to_owned());
        let uri: Uri = s.parse().map_err(|_| err())?;
        if uri.scheme_str() != Some("https") {
            return Err(err());
        }
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(err());
        }
        let authority = uri.authority().ok_or_else(err)?;
        if authority.as_str().contains('@') {
            return Err(err());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() || ServerName::try_from(host.clone()).is_err() {
            return Err(err());
        }
        Ok(Self {
            host,
            port: authority.port_u16().unwrap_or(DEFAULT_PORT),
        })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

impl ServerUrl {
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach the controller at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// Timeouts for a channel.
#[derive(Clone, Copy, Debug)]
pub struct ChannelOptions {
    pub connect_timeout: Duration,
    /// Per-call deadline for unary calls; `None` for channels that carry long streams.
    pub request_timeout: Option<Duration>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Connects to `url` over TLS with `tls` (whose ALPN must offer h2) and returns a tonic channel.
pub async fn connect(
    url: &ServerUrl,
    tls: rustls::ClientConfig,
    options: ChannelOptions,
) -> Result<Channel, ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let server_name =
        ServerName::try_from(url.host.clone()).map_err(|e| unreachable(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let (host, port) = (url.host.clone(), url.port);
    let connect_timeout = options.connect_timeout;
    let service = tower::service_fn(move |_: Uri| {
        let (connector, server_name, host) = (connector.clone(), server_name.clone(), host.clone());
        async move {
            let attempt = async {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            };
            tokio::time::timeout(connect_timeout, attempt)
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")
                })?
        }
    });
    // The connector does TCP and TLS itself; the endpoint URI only names the authority.
    let authority = if url.host.contains(':') {
        format!("http://[{}]:{}", url.host, url.port)
    } else {
        format!("http://{}:{}", url.host, url.port)
    };
    let mut endpoint = Endpoint::from_shared(authority)
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    if let Some(timeout) = options.request_timeout {
        endpoint = endpoint.timeout(timeout);
    }
    endpoint
        .connect_with_connector(service)
        .await
        .map_err(|e| unreachable(error_chain(&e)))
}

/// An error and all its sources on one line, for messages a person reads.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_urls() {
        let url: ServerUrl = "https://ward.example.org".parse().unwrap();
        assert_eq!(url.to_string(), "https://ward.example.org:7443");
        let url: ServerUrl = "https://127.0.0.1:9000/".parse().unwrap();
        assert_eq!((url.host(), url.port()), ("127.0.0.1", 9000));
        let url: ServerUrl = "https://[::1]:9000".parse().unwrap();
        assert_eq!(url.host(), "::1");
        assert_eq!(url.to_string(), "https://[::1]:9000");
        for bad in [
            "http://x",
            "x:1",
            "https://",
            "https://a/b",
            "https://u@h",
            "ftp://h",
        ] {
            assert!(bad.parse::<ServerUrl>().is_err(), "{bad} accepted");
        }
    }
}
