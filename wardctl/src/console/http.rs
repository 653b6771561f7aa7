//! The console's HTTP layer: routes, the guard every request passes (host, session, idle
//! logoff), CSRF checks on state-changing requests, and the security headers of every
//! response.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::auth::{Login, Refusal};
use super::{Console, pages, ui};
use crate::cli::error::CliError;

pub(super) const COOKIE: &str = "ward_console";

/// The Content-Security-Policy of every response: nothing but this origin's own script and
/// style, no inline script, no framing, forms only to this origin.
pub(super) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(super) type Shared = Arc<Console>;

pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    console: Shared,
) -> Result<(), CliError> {
    let app = router(console.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| CliError::failed(format!("the console stopped: {e}")))
}

fn router(console: Shared) -> Router {
    Router::new()
        .route("/", get(pages::fleet::page))
        .route("/devices", get(pages::devices::list))
        .route("/devices/{id}", get(pages::device::page))
        .route("/devices/{id}/action", post(pages::actions::act))
        .route("/commands", get(pages::commands::list))
        .route("/commands/{id}", get(pages::commands::detail))
        .route("/commands/{id}/events", get(pages::commands::events))
        .route("/commands/{id}/cancel", post(pages::commands::cancel))
        .route("/commands/{id}/approve", post(pages::commands::approve))
        .route(
            "/offboard",
            get(pages::offboard::page).post(pages::offboard::start),
        )
        .route("/offboard/progress", get(pages::offboard::progress))
        .route("/offboard/events", get(pages::offboard::events))
        .route("/offboard/report.json", get(pages::offboard::report_json))
        .route("/policy", get(pages::policy::page).post(pages::policy::set))
        .route("/policy/reset", post(pages::policy::reset))
        .route("/audit", get(pages::audit::list))
        .route("/audit/verify", get(pages::audit::verify))
        .route(
            "/enroll",
            get(pages::enroll::page).post(pages::enroll::create),
        )
        .route("/enroll/revoke", post(pages::enroll::revoke))
        .route("/login", get(login))
        .route("/logout", post(logout))
        .route("/logged-out", get(logged_out))
        .route("/static/console.css", get(stylesheet))
        .route("/static/console.js", get(script))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(console.clone(), guard))
        .with_state(console)
}

/// Every request: a `Host` that is ours (against DNS rebinding), no cross-site state change,
/// and, outside the login pages and assets, a live session. Every response: the security
/// headers.
async fn guard(State(console): State<Shared>, request: Request, next: Next) -> Response {
    let mut response = match admit(&console, &request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal,
    };
    secure_headers(response.headers_mut());
    response
}

/// Lets the request through, or answers it with a refusal.
fn admit(console: &Console, request: &Request) -> Result<(), Response> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !console.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(ui::refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "Wrong host",
            "This console answers only at the address it printed.",
        ));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v != "same-origin" && v != "none");
        let foreign_origin = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| o != console.base);
        if cross_site || foreign_origin {
            let shown = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .chars()
                    .take(100)
                    .collect::<String>()
            };
            return Err(ui::refusal(
                StatusCode::FORBIDDEN,
                "Refused",
                &format!(
                    "A request from another site may not change anything here (Origin: {}, Sec-Fetch-Site: {}).",
                    shown("origin"),
                    shown("sec-fetch-site")
                ),
            ));
        }
    }
    let path = request.uri().path();
    if path.starts_with("/static/") || path == "/login" || path == "/logged-out" {
        return Ok(());
    }
    let cookie = session_cookie(headers);
    // A live-progress stream is not the admin's doing: it does not keep the session alive.
    let touch = !path.ends_with("/events");
    let checked = console
        .gate()
        .check(cookie.as_deref(), Instant::now(), touch);
    match checked {
        Ok(()) => Ok(()),
        Err(Refusal::IdleTimeout) => {
            eprintln!("Logged off after inactivity. To continue, open the new login link:");
            console.announce_login();
            Err(ui::logged_out(console, true))
        }
        Err(Refusal::NoSession) => Err(ui::logged_out(console, false)),
    }
}

pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn secure_headers(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-frame-options", "DENY");
    set(headers, "x-content-type-options", "nosniff");
    // Not no-referrer: under it browsers send `Origin: null` on form posts, and the origin
    // check above needs the real one. Other sites still get no referrer.
    set(headers, "referrer-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(
        headers,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=()",
    );
    // Pages show device, user and audit data: never kept by the browser or a proxy. The
    // embedded assets may be cached.
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    token: String,
}

async fn login(State(console): State<Shared>, Query(q): Query<LoginQuery>) -> Response {
    let mut gate = console.gate();
    match gate.log_in(&q.token, Instant::now()) {
        Login::Started => {
            let cookie = gate.cookie().unwrap_or_default();
            let value = format!("{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/");
            drop(gate);
            let mut response = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Login::Refused => {
            drop(gate);
            ui::refusal(
                StatusCode::FORBIDDEN,
                "This login link is not valid",
                "A login link works once, and only the newest one printed by `wardctl console` works. Use the newest link in the console's terminal, or start `wardctl console` again.",
            )
        }
    }
}

async fn logout(State(console): State<Shared>, form: CsrfForm<Empty>) -> Response {
    let _ = form;
    console.gate().end();
    eprintln!("Logged out. To continue, open the new login link:");
    console.announce_login();
    let mut response = Redirect::to("/logged-out").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("ward_console=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}

async fn logged_out(State(console): State<Shared>) -> Response {
    ui::logged_out(&console, false)
}

async fn stylesheet() -> Response {
    static CSS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let css = CSS.get_or_init(super::palette::stylesheet).clone();
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        css,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        include_str!("assets/console.js"),
    )
        .into_response()
}

async fn not_found(State(console): State<Shared>) -> Response {
    ui::error_page(
        &console,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page.",
    )
}

/// A form with no fields but the CSRF token.
#[derive(Deserialize)]
pub(super) struct Empty {}

/// A state-changing form: its `csrf` field must be the session's CSRF token, else the request
/// is refused (403) before the handler runs.
pub(super) struct CsrfForm<T>(pub T);

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<Shared> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, console: &Shared) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, console)
            .await
            .map_err(IntoResponse::into_response)?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        if !console.gate().csrf_ok(&field.csrf) {
            return Err(ui::refusal(
                StatusCode::FORBIDDEN,
                "Refused: the form's CSRF token is missing or wrong",
                "Nothing was changed. Reload the page and try again.",
            ));
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(CsrfForm)
            .map_err(|e| {
                ui::refusal(
                    StatusCode::BAD_REQUEST,
                    "The form could not be read",
                    &format!("Nothing was changed: {e}"),
                )
            })
    }
}
