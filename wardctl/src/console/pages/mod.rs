//! The console's pages. Each one is a handful of `AdminService` calls rendered as HTML; a
//! refusal or error from the controller is shown as the controller worded it.

pub mod actions;
pub mod audit;
pub mod commands;
pub mod device;
pub mod devices;
pub mod enroll;
pub mod fleet;
pub mod offboard;
pub mod policy;

use axum::response::Response;

use super::Console;
use super::ui;

/// A handler's outcome: a page, or the page that explains why not.
pub type Page = Result<Response, Response>;

/// The message of a controller call, or the error page for its refusal.
pub fn answer<T>(
    console: &Console,
    result: Result<tonic::Response<T>, tonic::Status>,
) -> Result<T, Response> {
    result
        .map(tonic::Response::into_inner)
        .map_err(|status| ui::status_page(console, &status))
}

/// A random idempotency key for a form: submitting the same form twice (a double click, a
/// reload) makes one command, not two.
pub fn form_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Percent-encodes a query value.
pub fn q(value: &str) -> String {
    serde_urlencoded::to_string([("", value)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}
