//! One webhook delivery over real TLS on 127.0.0.1 (`ward_controller::webhook_sender`): an
//! https receiver is verified against the CA given with `--ca-file` (and refused against the
//! system's roots or another CA), a redirect is answered as it is and never followed, and
//! plain http reaches `localhost`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use ward_controller::webhook_sender::Sender;

/// A CA (PEM) and a rustls server configuration for 127.0.0.1 signed by it.
fn pki() -> (String, rustls::ServerConfig) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(ward_certs::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca.pem(), config)
}

/// An HTTP/1.1 server on 127.0.0.1 (TLS when `tls` is given): `/redirect` answers 302 to
/// `/hook`, everything else 204; each request counted by path.
async fn serve(
    tls: Option<rustls::ServerConfig>,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hooks, redirects) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (h, r) = (Arc::clone(&hooks), Arc::clone(&redirects));
    let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (h, r, acceptor) = (Arc::clone(&h), Arc::clone(&r), acceptor.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (h, r) = (Arc::clone(&h), Arc::clone(&r));
                    async move {
                        let mut answer = hyper::Response::new(Full::new(Bytes::new()));
                        if request.uri().path() == "/redirect" {
                            r.fetch_add(1, Ordering::SeqCst);
                            *answer.status_mut() = hyper::StatusCode::FOUND;
                            answer
                                .headers_mut()
                                .insert("location", "/hook".parse().unwrap());
                        } else {
                            h.fetch_add(1, Ordering::SeqCst);
                            *answer.status_mut() = hyper::StatusCode::NO_CONTENT;
                        }
                        Ok::<_, std::convert::Infallible>(answer)
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    (addr, hooks, redirects)
}

#[tokio::test]
async fn an_https_receiver_is_verified_against_its_ca_and_a_redirect_is_not_followed() {
    let (ca, config) = pki();
    let (other_ca, _) = pki();
    let (addr, hooks, redirects) = serve(Some(config)).await;
    let sender = Sender::default();
    let url = format!("https://127.0.0.1:{}/hook", addr.port());
    let headers = [("Ward-Event-Id", "e1".to_owned())];

    assert_eq!(sender.post(&url, Some(&ca), &headers, "{}").await, Ok(204));
    assert_eq!(hooks.load(Ordering::SeqCst), 1);

    // Not trusted: another CA, or the system's roots (the test CA is in none of them).
    let refused = sender.post(&url, Some(&other_ca), &headers, "{}").await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("TLS")),
        "{refused:?}"
    );
    let refused = sender.post(&url, None, &headers, "{}").await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        hooks.load(Ordering::SeqCst),
        1,
        "nothing reached the receiver"
    );

    // A 302 is the answer: the Location is not followed.
    let redirect = format!("https://127.0.0.1:{}/redirect", addr.port());
    assert_eq!(
        sender.post(&redirect, Some(&ca), &headers, "{}").await,
        Ok(302)
    );
    assert_eq!(redirects.load(Ordering::SeqCst), 1);
    assert_eq!(hooks.load(Ordering::SeqCst), 1, "the redirect was followed");
}

#[tokio::test]
async fn plain_http_reaches_localhost_and_nothing_answers_is_an_error() {
    let (addr, hooks, _) = serve(None).await;
    let sender = Sender::default();
    let url = format!("http://localhost:{}/hook", addr.port());
    // localhost may resolve to ::1 first, where nothing listens: the next address is tried.
    assert_eq!(sender.post(&url, None, &[], "{}").await, Ok(204));
    assert_eq!(hooks.load(Ordering::SeqCst), 1);
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = sender
        .post(&format!("http://127.0.0.1:{port}/"), None, &[], "{}")
        .await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("connect")),
        "{refused:?}"
    );
    // Refused before any connection: plain http to another host.
    let outside = sender.post("http://192.0.2.1/hook", None, &[], "{}").await;
    assert!(
        outside.as_ref().is_err_and(|e| e.contains("loopback")),
        "{outside:?}"
    );
}

/// A receiver that accepts the connection and never answers: the attempt ends at the response
/// time limit with an error, it does not hang the delivery worker.
#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    use std::time::{Duration, Instant};
    use ward_controller::webhook_sender::Timeouts;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let sender = Sender::new(Timeouts {
        connect: Duration::from_secs(2),
        response: Duration::from_millis(500),
    });
    let started = Instant::now();
    let silent = sender
        .post(&format!("http://127.0.0.1:{port}/hook"), None, &[], "{}")
        .await;
    assert!(
        silent
            .as_ref()
            .is_err_and(|e| e.contains("no answer within")),
        "{silent:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
