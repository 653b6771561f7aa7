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

use axum::response::Response;

use super::Console;
use super::ui;

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
