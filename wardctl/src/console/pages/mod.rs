//! The console's pages. Each one is a handful of `AdminService` calls rendered as HTML; a
//! refusal or error from the controller is shown as the controller worded it.

pub(super) mod actions;
pub(super) mod audit;
pub(super) mod commands;
pub(super) mod device;
pub(super) mod devices;
pub(super) mod enroll;
pub(super) mod fleet;
pub(super) mod offboard;
pub(super) mod policy;

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tonic::transport::Channel;
use ward_proto::v1::admin_service_client::AdminServiceClient;

use super::Console;
use super::http::{Shared, session_cookie};
use super::ui;

/// How often a live page asks the controller again.
const POLL: Duration = Duration::from_secs(1);

/// A handler's outcome: a page, or the page that explains why not.
pub(super) type Page = Result<Response, Response>;

/// The message of a controller call, or the error page for its refusal.
pub(super) fn answer<T>(
    console: &Console,
    result: Result<tonic::Response<T>, tonic::Status>,
) -> Result<T, Response> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| ui::status_page(console, &status))
}

/// A live page's progress, as server-sent events: every [`POLL`], `poll` asks the controller
/// and renders the fragment, and says whether it is the final one. A fragment is sent when it
/// changed, the final one as `done`; `ended` once the session behind `headers` ends.
pub(super) fn live<F, Fut>(
    console: Shared,
    headers: HeaderMap,
    mut poll: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnMut(AdminServiceClient<Channel>) -> Fut + Send + 'static,
    Fut: Future<Output = (String, bool)> + Send,
{
    let cookie = session_cookie(&headers).unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(4);
    tokio::spawn(async move {
        let mut last = None;
        loop {
            if !console.gate().alive(&cookie, Instant::now()) {
                let _ = tx
                    .send(Ok(Event::default().event("ended").data("logged off")))
                    .await;
                return;
            }
            let (html, done) = poll(console.client()).await;
            if last.as_ref() != Some(&html) || done {
                let event = Event::default().data(html.clone());
                let event = if done { event.event("done") } else { event };
                if tx.send(Ok(event)).await.is_err() || done {
                    return;
                }
                last = Some(html);
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

/// A random idempotency key for a form: submitting the same form twice (a double click, a
/// reload) makes one command, not two.
pub(super) fn form_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Percent-encodes a query value.
pub(super) fn q(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
