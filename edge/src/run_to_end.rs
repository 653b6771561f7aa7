//! A call, once accepted, runs to its end even when its client hangs up.
//!
//! HTTP/2 drops a call's handler when the client resets the stream (a timeout, a dropped
//! VPN). A handler dropped while its write waits in the store's writer leaves the write to
//! commit without the caller: what follows the commit on this replica — a revoked serial in
//! the list the handshake checks, cached records refreshed, a device's stream woken, the other
//! replicas told — was skipped until the next reload. Every call here runs in its own task
//! instead; the client's hang-up drops only the wait for its answer.
//!
//! Calls on connections whose client presented a verified certificate (devices, admins) and
//! the others (enrollment, SCIM, and anyone at all) have places of their own: anyone may open
//! a connection without a certificate, and calls there cannot take the places of the calls
//! that revoke, wipe and check in. Nor can the calls of any one client certificate (a device,
//! or whoever holds a copy of its key) take the places of everyone else's.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

/// The most calls on connections with a client certificate running in tasks of their own at
/// once. A call runs on after its client hangs up, so without a bound a client that sends and
/// resets streams over and over would leave work piling up. Beyond it a call runs as before,
/// in its connection's task, dropped if its client hangs up: it never waits for a place (a
/// client trickling request bodies on many streams would otherwise hold every place and stall
/// everyone). Ten thousand agents checking in together fit.
pub(crate) const MAX_CALLS_RUNNING: usize = 16_384;

/// Calls on connections without a client certificate get this share of the places (one
/// sixteenth: 1,024 of [`MAX_CALLS_RUNNING`]), a pool of their own. Their calls are enrollment
/// (rate-limited per address), offline-wipe reports, SCIM's (its bearer token is checked
/// before the body is read), and calls the handlers refuse for want of a certificate: beyond
/// it they run in their connection's task, whatever a client holding these places does to the
/// calls of devices and admins. An enrollment writes its device and its audit entry in one
/// job, so one run there and dropped after its commit leaves nothing undone.
const ANONYMOUS_SHARE: usize = 16;

/// The calls of one client certificate get at most this share of the places of calls with a
/// certificate (one sixty-fourth: 256 of [`MAX_CALLS_RUNNING`]), far more than an agent or an
/// admin runs at once: beyond it its calls run in their connections' tasks, so one device
/// (or whoever holds a copy of its key) cannot take the places of every other device's and
/// admin's calls.
const PER_CERTIFICATE_SHARE: usize = 64;

/// Wraps a service so each call runs in its own task ([`RunToEnd`]).
#[derive(Clone, Debug)]
pub(crate) struct RunToEndLayer {
    places: Places,
}

/// The two pools of places.
#[derive(Clone, Debug)]
struct Places {
    /// Calls on connections whose client presented a certificate the handshake verified.
    certified: Arc<Semaphore>,
    /// All others.
    anonymous: Arc<Semaphore>,
    /// The places each client certificate (its DER) holds, and the most it may hold.
    per_certificate: Arc<Mutex<HashMap<Vec<u8>, usize>>>,
    per_certificate_max: usize,
}

/// A place taken: freed when the call's task ends.
struct Place {
    _permit: OwnedSemaphorePermit,
    _certificate: Option<CertificatePlace>,
}

/// One of the places a client certificate holds.
struct CertificatePlace {
    held: Arc<Mutex<HashMap<Vec<u8>, usize>>>,
    leaf: Vec<u8>,
}

impl Drop for CertificatePlace {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.leaf) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.leaf);
            }
        }
    }
}

impl Places {
    /// A place for a call with these extensions, if its pool has one and its client
    /// certificate (if any) holds fewer than its share. Tonic puts the TLS connection's peer
    /// certificates there (a certificate present passed the handshake's verification, the
    /// revocation list's included; a connection whose certificate is revoked later is cut):
    /// a call with one takes a certified place, any other an anonymous one.
    fn take(&self, extensions: &http::Extensions) -> Option<Place> {
        let (certificate, pool) = match leaf(extensions) {
            None => (None, &self.anonymous),
            Some(leaf) => {
                let mut held = self
                    .per_certificate
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let n = held.entry(leaf.clone()).or_insert(0);
                if *n >= self.per_certificate_max {
                    return None;
                }
                *n += 1;
                let place = CertificatePlace {
                    held: Arc::clone(&self.per_certificate),
                    leaf,
                };
                (Some(place), &self.certified)
            }
        };
        // A certificate's place taken above is given back if the pool has none.
        let permit = Arc::clone(pool).try_acquire_owned().ok()?;
        Some(Place {
            _permit: permit,
            _certificate: certificate,
        })
    }
}

/// The DER of the client certificate the connection's handshake verified, if any.
fn leaf(extensions: &http::Extensions) -> Option<Vec<u8>> {
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .and_then(|chain| chain.first().map(|leaf| leaf.as_ref().to_vec()))
}

impl RunToEndLayer {
    /// At most `max` calls with a client certificate running at once (at most a sixty-fourth
    /// of `max`, at least one, with any one certificate), and at most a sixteenth of `max`
    /// (at least one) without.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            places: Places {
                certified: Arc::new(Semaphore::new(max)),
                anonymous: Arc::new(Semaphore::new((max / ANONYMOUS_SHARE).max(1))),
                per_certificate: Arc::default(),
                per_certificate_max: (max / PER_CERTIFICATE_SHARE).max(1),
            },
        }
    }
}

impl Default for RunToEndLayer {
    fn default() -> Self {
        Self::new(MAX_CALLS_RUNNING)
    }
}

impl<S> Layer<S> for RunToEndLayer {
    type Service = RunToEnd<S>;

    fn layer(&self, inner: S) -> RunToEnd<S> {
        RunToEnd {
            inner,
            places: self.places.clone(),
        }
    }
}

/// The service of [`RunToEndLayer`].
#[derive(Clone, Debug)]
pub(crate) struct RunToEnd<S> {
    inner: S,
    places: Places,
}

impl<S, B> Service<http::Request<B>> for RunToEnd<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let place = self.places.take(request.extensions());
        // Nothing of the call runs until the future is polled.
        let call = self.inner.call(request);
        let Some(place) = place else {
            return Box::pin(call);
        };
        let task = tokio::spawn(async move {
            let answer = call.await;
            drop(place);
            answer
        });
        Box::pin(async move {
            match task.await {
                Ok(answer) => answer,
                // The task is never aborted, so it ended by panicking: the panic goes on to
                // the connection as it would have without the task.
                Err(ended) => std::panic::resume_unwind(ended.into_panic()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;
    use tower::{ServiceExt, service_fn};

    use super::*;

    /// A service whose calls wait for `go`, then count themselves in `ended`.
    fn waiting(
        go: Arc<Notify>,
        started: Arc<AtomicUsize>,
        ended: Arc<AtomicUsize>,
    ) -> impl Service<
        http::Request<()>,
        Response = (),
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone {
        service_fn(move |_: http::Request<()>| {
            let (go, started, ended) = (go.clone(), started.clone(), ended.clone());
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                go.notified().await;
                ended.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    }

    /// A call on a connection without a client certificate.
    fn anonymous_call() -> http::Request<()> {
        http::Request::new(())
    }

    /// What tonic puts in a call's extensions of the TLS connection it came on: a real
    /// handshake on loopback, the client presenting a certificate of the server's CA or none.
    async fn connection(with_certificate: bool) -> TlsConnectInfo<TcpConnectInfo> {
        use tonic::transport::server::Connected;
        use ward_certs::{CertificateAuthority, Identity, PrivateKeyDer, VerifiedCsr, tls};
        let now = time::OffsetDateTime::now_utc();
        let week = Duration::from_secs(7 * 24 * 3600);
        let ca = CertificateAuthority::create("run-to-end test", now).unwrap();
        let (server, server_key) = ca.issue_server(&["localhost".into()], now, week).unwrap();
        let key = PrivateKeyDer::generate().unwrap();
        let csr = ward_certs::csr::make_csr(&key, "device").unwrap();
        let device = Identity::Device(uuid::Uuid::new_v4());
        let client = ca
            .issue_client(&VerifiedCsr::from_der(&csr).unwrap(), &device, now, week)
            .unwrap();
        let server_config = tls::server_config(
            ca.cert_der(),
            &[server.der, ca.cert_der().to_vec()],
            &server_key,
            Arc::default(),
        )
        .unwrap();
        let chain = [client.der];
        let identity = with_certificate.then_some((&chain[..], &key));
        let client_config = tls::client_config(ca.cert_der(), identity).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let client = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.unwrap()
        };
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(server_config))
                .accept(tcp)
                .await
                .unwrap()
        };
        let (_client, server) = tokio::join!(client, server);
        server.connect_info()
    }

    /// A call on `connection`, as tonic hands it to the layer.
    fn call_on(connection: &TlsConnectInfo<TcpConnectInfo>) -> http::Request<()> {
        let mut request = http::Request::new(());
        request.extensions_mut().insert(connection.clone());
        request
    }

    /// Calls on connections without a client certificate (anyone may open one: enrollment
    /// needs none) cannot take the places of calls whose connection presented one. Here they
    /// hold every place they can get (a client trickling its request bodies on many streams);
    /// a device's call still runs to its end after its client hangs up.
    #[tokio::test]
    async fn calls_without_a_client_certificate_cannot_take_every_place() {
        let (anonymous, device) = (connection(false).await, connection(true).await);
        assert!(anonymous.peer_certs().is_none() && device.peer_certs().is_some());
        victims_call_runs_to_its_end(&anonymous, &device).await;
    }

    /// One client certificate (a device's, or a copy of it) cannot take every place of the
    /// calls with a certificate: its calls beyond its share run in their connections' tasks,
    /// and another device's call still runs to its end after its client hangs up.
    #[tokio::test]
    async fn one_certificate_cannot_take_every_place() {
        let (hog, device) = (connection(true).await, connection(true).await);
        victims_call_runs_to_its_end(&hog, &device).await;
    }

    /// `hog` makes 32 calls that never end (twice the layer's 16 places); then the victim's
    /// call, whose client hangs up at once, must still run to its end.
    async fn victims_call_runs_to_its_end(
        hog: &TlsConnectInfo<TcpConnectInfo>,
        victim: &TlsConnectInfo<TcpConnectInfo>,
    ) {
        let (go, started, ended) = (
            Arc::new(Notify::new()),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let victim_leaf = victim.peer_certs().unwrap()[0].as_ref().to_vec();
        // The victim's call waits for `go`; the hog's never end.
        let inner = {
            let (go, started, ended) = (go.clone(), started.clone(), ended.clone());
            service_fn(move |request: http::Request<()>| {
                let from_victim = request
                    .extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(TlsConnectInfo::peer_certs)
                    .is_some_and(|chain| chain[0].as_ref() == victim_leaf.as_slice());
                let (go, started, ended) = (go.clone(), started.clone(), ended.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    if from_victim {
                        go.notified().await;
                        ended.fetch_add(1, Ordering::SeqCst);
                    } else {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, std::convert::Infallible>(())
                }
            })
        };
        let mut service = RunToEndLayer::new(16).layer(inner);
        let mut held = Vec::new();
        for n in 1..=32 {
            let mut call = Box::pin(service.ready().await.unwrap().call(call_on(hog)));
            assert!(futures::poll!(&mut call).is_pending());
            until("the hog's call to start", || {
                started.load(Ordering::SeqCst) == n
            })
            .await;
            held.push(call);
        }

        let mut call = Box::pin(service.ready().await.unwrap().call(call_on(victim)));
        assert!(futures::poll!(&mut call).is_pending());
        until("the victim's call to start", || {
            started.load(Ordering::SeqCst) == 33
        })
        .await;
        drop(call);
        go.notify_one();
        until("the victim's call, its client gone, to end", || {
            ended.load(Ordering::SeqCst) == 1
        })
        .await;
        drop(held);
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_call_whose_caller_went_away_runs_to_its_end() {
        let (go, started, ended) = Default::default();
        let mut service = RunToEndLayer::default().layer(waiting(
            Arc::clone(&go),
            Arc::clone(&started),
            Arc::clone(&ended),
        ));
        let mut call = Box::pin(service.ready().await.unwrap().call(anonymous_call()));
        assert!(futures::poll!(&mut call).is_pending());
        until("the call to start", || started.load(Ordering::SeqCst) == 1).await;
        drop(call);
        go.notify_one();
        until("the call to end", || ended.load(Ordering::SeqCst) == 1).await;
    }

    #[tokio::test]
    async fn beyond_the_bound_a_call_runs_in_its_callers_task_and_never_waits() {
        let (go, started, ended) = Default::default();
        let mut service = RunToEndLayer::new(1).layer(waiting(
            Arc::clone(&go),
            Arc::clone(&started),
            Arc::clone(&ended),
        ));
        let mut first = Box::pin(service.ready().await.unwrap().call(anonymous_call()));
        assert!(futures::poll!(&mut first).is_pending());
        until("the first call to start", || {
            started.load(Ordering::SeqCst) == 1
        })
        .await;

        // The place is taken: the next call starts at once, in the caller's task...
        let mut inline = Box::pin(service.ready().await.unwrap().call(anonymous_call()));
        assert!(futures::poll!(&mut inline).is_pending());
        assert_eq!(started.load(Ordering::SeqCst), 2, "it waited for a place");
        // ...and is dropped with its caller.
        drop(inline);
        go.notify_waiters();
        first.await.unwrap();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(ended.load(Ordering::SeqCst), 1, "the dropped call ran on");

        // The place is back once the first call's task has ended.
        let mut again = Box::pin(service.ready().await.unwrap().call(anonymous_call()));
        assert!(futures::poll!(&mut again).is_pending());
        drop(again);
        until("the detached call to start", || {
            started.load(Ordering::SeqCst) == 3
        })
        .await;
        go.notify_one();
        until("the detached call to end", || {
            ended.load(Ordering::SeqCst) == 2
        })
        .await;
    }
}
