//! The page frame, the refusal and error pages, and small pieces every page uses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use tonic::Code;
use ward_proto::v1::{CommandState, ComplianceState, DeviceState};

use super::Console;
use ward_core::Timestamp;

/// The sections of the navigation bar: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/", "Fleet"),
    ("/devices", "Devices"),
    ("/commands", "Commands"),
    ("/offboard", "Offboard"),
    ("/policy", "Policy"),
    ("/audit", "Audit"),
    ("/enroll", "Enrollment"),
];

/// A full page for a logged-in admin. `section` is the navigation entry to mark current.
pub(super) fn page(console: &Console, section: &str, title: &str, body: Markup) -> Response {
    let (csrf, idle_ms) = {
        let gate = console.gate();
        (
            gate.csrf().unwrap_or_default().to_owned(),
            gate.idle_limit().as_millis(),
        )
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Ward console" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body data-idle-ms=(idle_ms) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Ward" }
                    nav aria-label="Sections" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if *path == section {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { (console.me.name) " (" (console.me.role) ")" }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    markup.into_response()
}

/// A page without the navigation (no session, or a refused request).
pub(super) fn refusal(status: StatusCode, title: &str, text: &str) -> Response {
    bare(status, title, html! { p { (text) } })
}

fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) " — Ward console" }
                link rel="stylesheet" href="/static/console.css";
            }
            body {
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (status, markup).into_response()
}

/// The answer to a request without a live session.
pub(super) fn logged_out(console: &Console, idle: bool) -> Response {
    let limit = ward_core::duration::format(console.gate().idle_limit());
    let why = if idle {
        format!("You were logged off after {limit} without activity.")
    } else {
        "You are not logged in (or were logged off).".to_owned()
    };
    bare(
        StatusCode::UNAUTHORIZED,
        "Logged off",
        html! {
            p.logged-off { (why) }
            p { "To continue, open the new one-time login link that " code { "wardctl console" } " printed in its terminal." }
        },
    )
}

/// An error page with the navigation.
pub(super) fn error_page(
    console: &Console,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    let mut response = page(
        console,
        "",
        title,
        html! { p.error role="alert" { (text) } },
    );
    *response.status_mut() = status;
    response
}

/// What the controller answered, as a page: its refusal reasons are written for admins.
pub(super) fn status_page(console: &Console, status: &tonic::Status) -> Response {
    let (code, title) = match status.code() {
        Code::PermissionDenied | Code::Unauthenticated => {
            (StatusCode::FORBIDDEN, "The controller refused this")
        }
        Code::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "The controller did not accept this",
        ),
        _ => (StatusCode::BAD_GATEWAY, "The controller did not answer"),
    };
    error_page(console, code, title, status.message())
}

/// The hidden CSRF field every state-changing form carries.
pub(super) fn csrf_field(console: &Console) -> Markup {
    let csrf = console.gate().csrf().unwrap_or_default().to_owned();
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A time as "3 min ago", with the exact UTC time as its title; "never" for 0.
pub(super) fn ago(ms: i64) -> Markup {
    if ms == 0 {
        return html! { span.muted { "never" } };
    }
    let exact = Timestamp::from_unix_ms(ms).rfc3339();
    html! { time datetime=(exact) title=(exact) { (relative(ms)) } }
}

pub(super) fn now_ms() -> i64 {
    Timestamp::from_datetime(time::OffsetDateTime::now_utc()).unix_ms()
}

pub(super) fn relative(ms: i64) -> String {
    let diff = now_ms() - ms;
    let (n, future) = if diff >= 0 {
        (diff, false)
    } else {
        (-diff, true)
    };
    let secs = n / 1000;
    let text = match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

pub(super) fn device_state(state: i32) -> Markup {
    match DeviceState::try_from(state) {
        Ok(DeviceState::Active) => html! { span.badge.ok { "active" } },
        Ok(DeviceState::Revoked) => html! { span.badge.bad { "revoked" } },
        Ok(DeviceState::Retired) => html! { span.badge.plain { "retired" } },
        _ => html! { span.badge.plain { "unknown" } },
    }
}

pub(super) fn device_state_name(state: i32) -> &'static str {
    match DeviceState::try_from(state) {
        Ok(DeviceState::Active) => "active",
        Ok(DeviceState::Revoked) => "revoked",
        Ok(DeviceState::Retired) => "retired",
        _ => "unknown",
    }
}

pub(super) fn compliance_name(state: i32) -> &'static str {
    match ComplianceState::try_from(state) {
        Ok(ComplianceState::Compliant) => "compliant",
        Ok(ComplianceState::Noncompliant) => "noncompliant",
        _ => "unknown",
    }
}

pub(super) fn compliance(state: i32) -> Markup {
    match ComplianceState::try_from(state) {
        Ok(ComplianceState::Compliant) => html! { span.badge.ok { "compliant" } },
        Ok(ComplianceState::Noncompliant) => html! { span.badge.bad { "not compliant" } },
        _ => html! { span.badge.plain { "not reported" } },
    }
}

pub(super) fn command_state_name(state: i32) -> &'static str {
    match CommandState::try_from(state) {
        Ok(CommandState::Queued) => "queued",
        Ok(CommandState::Delivered) => "delivered",
        Ok(CommandState::Acknowledged) => "acknowledged",
        Ok(CommandState::Succeeded) => "succeeded",
        Ok(CommandState::Failed) => "failed",
        Ok(CommandState::Cancelled) => "cancelled",
        Ok(CommandState::Expired) => "expired",
        Ok(CommandState::Superseded) => "superseded",
        Ok(CommandState::AwaitingApproval) => "awaiting_approval",
        _ => "unknown",
    }
}

pub(super) fn command_state(state: i32) -> Markup {
    let name = command_state_name(state);
    let class = match name {
        "succeeded" => "ok",
        "failed" | "expired" => "bad",
        "cancelled" | "superseded" | "unknown" => "plain",
        _ => "warn",
    };
    html! { span class={"badge " (class)} data-state=(name) { (name.replace('_', " ")) } }
}

pub(super) fn is_terminal(state: i32) -> bool {
    matches!(
        CommandState::try_from(state),
        Ok(CommandState::Succeeded
            | CommandState::Failed
            | CommandState::Cancelled
            | CommandState::Expired
            | CommandState::Superseded)
    )
}

/// Inline SVG produced by this program (plots, QR codes).
pub(super) fn svg(text: String) -> Markup {
    PreEscaped(text)
}
