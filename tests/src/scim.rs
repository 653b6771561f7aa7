//! A SCIM client for the tests: real HTTP/1.1 (hyper) over real TLS (rustls), trusting only
//! the controller's CA, as an identity provider would call `serve --scim-listen`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// What a SCIM request got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub raw: String,
}

#[derive(Debug, Clone)]
pub struct Scim {
    /// `https://127.0.0.1:PORT/scim/v2`
    pub base: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Scim {
    /// A client of the controller whose data directory is `data_dir` (its `scim-url` and
    /// `ca.pem`).
    pub fn of(data_dir: &Path) -> Self {
        let base = crate::eventually_blocking(
            "the controller to write scim-url",
            std::time::Duration::from_secs(60),
            || {
                std::fs::read_to_string(data_dir.join("scim-url"))
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
            },
        );
        let ca = std::fs::read(data_dir.join("ca.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in pem::parse_many(&ca).unwrap() {
            roots
                .add(rustls::pki_types::CertificateDer::from(
                    cert.contents().to_vec(),
                ))
                .unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        Self {
            base,
            tls: Arc::new(tls),
        }
    }

    /// `METHOD base+path` with `token` as the bearer (none when empty) and `body` (raw bytes).
    pub fn raw(&self, method: &str, path: &str, token: &str, body: Option<Vec<u8>>) -> Answer {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(self.send(method, path, token, body))
    }

    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> Answer {
        self.raw(
            method,
            path,
            token,
            body.map(|b| b.to_string().into_bytes()),
        )
    }

    async fn send(&self, method: &str, path: &str, token: &str, body: Option<Vec<u8>>) -> Answer {
        let url: http::Uri = format!("{}{path}", self.base).parse().unwrap();
        let host = url.host().unwrap().to_owned();
        let port = url.port_u16().unwrap();
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.clone()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(method)
            .uri(url.path_and_query().unwrap().as_str())
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(http::header::CONTENT_TYPE, "application/scim+json");
        if !token.is_empty() {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let raw = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            content_type,
            body,
            raw,
        }
    }
}
