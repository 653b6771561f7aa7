//! The open TLS connections by the serial of the client certificate they presented, so that
//! revoking a certificate also cuts the connections already made with it: a revoked admin's
//! open session ends at once instead of living until it idles out (every call on it would be
//! refused anyway; the cut makes the session itself end).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Open connections with a client certificate, by serial (lower-case hex).
#[derive(Debug, Default)]
pub struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<String, HashMap<u64, CancellationToken>>>,
}

impl Connections {
    /// Registers a connection that presented the certificate `serial`; it is forgotten when
    /// the returned stream is dropped.
    pub fn track<S>(self: &Arc<Self>, serial: &str, stream: S) -> CuttableStream<S> {
        let serial = serial.to_ascii_lowercase();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.lock()
            .entry(serial.clone())
            .or_default()
            .insert(id, token.clone());
        CuttableStream {
            inner: stream,
            cut: Some(Box::pin(token.cancelled_owned())),
            entry: Some(Entry {
                registry: Arc::clone(self),
                serial,
                id,
            }),
        }
    }

    /// A connection without a client certificate (enrollment): never cut.
    pub fn untracked<S>(stream: S) -> CuttableStream<S> {
        CuttableStream {
            inner: stream,
            cut: None,
            entry: None,
        }
    }

    /// Ends every open connection that presented `serial`; returns how many.
    pub fn cut(&self, serial: &str) -> usize {
        let cut = self
            .lock()
            .remove(&serial.to_ascii_lowercase())
            .unwrap_or_default();
        for token in cut.values() {
            token.cancel();
        }
        cut.len()
    }

    /// Ends every open connection whose certificate `revoked` holds.
    pub fn cut_revoked(&self, revoked: &ward_certs::tls::RevokedSerials) -> usize {
        self.cut_revoked_except(revoked, &std::collections::HashSet::new())
    }

    /// Ends every open connection whose certificate `revoked` holds, except those of `kept`
    /// (lower-case serials).
    pub fn cut_revoked_except(
        &self,
        revoked: &ward_certs::tls::RevokedSerials,
        kept: &std::collections::HashSet<String>,
    ) -> usize {
        let serials: Vec<String> = self
            .lock()
            .keys()
            .filter(|s| revoked.contains(s) && !kept.contains(*s))
            .cloned()
            .collect();
        serials.iter().map(|s| self.cut(s)).sum()
    }

    /// How many connections with certificate `serial` are open.
    pub fn open_with(&self, serial: &str) -> usize {
        self.lock()
            .get(&serial.to_ascii_lowercase())
            .map_or(0, HashMap::len)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, CancellationToken>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Entry {
    registry: Arc<Connections>,
    serial: String,
    id: u64,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut open = self.registry.lock();
        if let Some(ids) = open.get_mut(&self.serial) {
            ids.remove(&self.id);
            if ids.is_empty() {
                open.remove(&self.serial);
            }
        }
    }
}

/// A connection that fails every read and write once it is cut, which makes the HTTP/2
/// server drop it.
pub struct CuttableStream<S> {
    inner: S,
    cut: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    entry: Option<Entry>,
}

impl<S> std::fmt::Debug for CuttableStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CuttableStream")
            .field("serial", &self.entry.as_ref().map(|e| e.serial.as_str()))
            .finish_non_exhaustive()
    }
}

impl<S> CuttableStream<S> {
    /// The connection it wraps (for what the server asks of its peer).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether the connection was cut; registers the task to be woken when it is.
    fn is_cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.cut
            .as_mut()
            .is_some_and(|cut| cut.as_mut().poll(cx).is_ready())
    }
}

fn revoked() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the client certificate of this connection was revoked",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for CuttableStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CuttableStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(revoked()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_cut_connection_fails_its_reads_and_is_forgotten_when_dropped() {
        let registry = Arc::new(Connections::default());
        let (a, mut b) = tokio::io::duplex(64);
        let mut tracked = registry.track("ABCD", a);
        let (c, _d) = tokio::io::duplex(64);
        let other = registry.track("ef01", c);
        assert_eq!(registry.open_with("abcd"), 1);

        b.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        tracked.read_exact(&mut buf).await.unwrap();

        // A read already waiting ends when the cut comes.
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let result = tracked.read(&mut buf).await;
            (tracked, result)
        });
        assert_eq!(registry.cut("abcd"), 1);
        let (mut tracked, result) = reading.await.unwrap();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert!(tracked.write_all(b"x").await.is_err());
        assert_eq!(registry.open_with("abcd"), 0);
        assert_eq!(registry.open_with("ef01"), 1);
        drop(other);
        assert_eq!(registry.open_with("ef01"), 0);
        assert_eq!(registry.cut("ef01"), 0);
    }
}
