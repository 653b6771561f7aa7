//! The SCIM endpoints under `/scim/v2`: every request is rate-limited per client address,
//! bounded in size, and authenticated by a provisioning client's bearer token before it is
//! read; the changes go to `App` (which offboards on deprovisioning).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;
use uuid::Uuid;

use super::error::{ScimError, scim_json};
use super::{filter, patch, resource};
use crate::run_to_end::RunToEndLayer;
use ward_controller::app::App;
use ward_controller::app::directory::DirectoryInput;
use ward_core::directory::{DirectoryUser, ScimClient, ScimSecret};

/// The largest request body taken (a user resource is a few KiB; Entra sends one at a time).
pub const MAX_BODY: usize = 64 * 1024;

/// Requests one client address may make by default: a burst, then this many per minute.
pub const BURST: u32 = 200;
pub const PER_MINUTE: u32 = 1200;

/// Requests one client address may make (`serve --scim-burst`, `--scim-per-minute`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub burst: u32,
    pub per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            burst: BURST,
            per_minute: PER_MINUTE,
        }
    }
}

/// The path prefix: the "tenant URL" an identity provider is given is
/// `https://HOST:PORT/scim/v2`.
pub const PREFIX: &str = "/scim/v2";

type Limiter = governor::DefaultKeyedRateLimiter<IpAddr>;

#[derive(Debug)]
pub struct ScimState {
    app: Arc<App>,
    limiter: Limiter,
    per_minute: u32,
}

/// The client's address, as the listener accepted it.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::SocketAddr);

pub fn router(app: Arc<App>, limits: Limits) -> Router {
    let quota = governor::Quota::per_minute(
        std::num::NonZeroU32::new(limits.per_minute).unwrap_or(std::num::NonZeroU32::MIN),
    )
    .allow_burst(std::num::NonZeroU32::new(limits.burst).unwrap_or(std::num::NonZeroU32::MIN));
    let state = Arc::new(ScimState {
        app,
        limiter: governor::RateLimiter::keyed(quota),
        per_minute: limits.per_minute,
    });
    let scim = Router::new()
        .route(
            "/ServiceProviderConfig",
            get(service_provider_config).fallback(not_allowed),
        )
        .route("/ResourceTypes", get(resource_types).fallback(not_allowed))
        .route(
            "/ResourceTypes/{id}",
            get(resource_type).fallback(not_allowed),
        )
        .route("/Schemas", get(schemas).fallback(not_allowed))
        .route("/Schemas/{id}", get(schema).fallback(not_allowed))
        .route(
            "/Users",
            get(list_users).post(create_user).fallback(not_allowed),
        )
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user)
                .fallback(not_allowed),
        )
        .route("/Groups", any(not_implemented))
        .route("/Groups/{*rest}", any(not_implemented))
        .route("/Bulk", any(not_implemented))
        .route("/Me", any(not_implemented))
        .route("/.search", any(not_implemented))
        .route("/Users/.search", any(not_implemented))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state.clone());
    Router::new()
        .nest(PREFIX, scim)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state, limit))
        // SCIM's connections present no client certificate: its calls share the places of
        // calls without one (a pool of this listener's own).
        .layer(RunToEndLayer::default())
}

/// The per-address rate limit, before anything else (authentication included).
async fn limit(State(state): State<Arc<ScimState>>, request: Request, next: Next) -> Response {
    if let Some(ClientAddr(addr)) = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map(|c| c.0)
    {
        if state.limiter.check_key(&addr.ip()).is_err() {
            tracing::warn!(client = %addr.ip(), "SCIM rate limit reached");
            let mut response = ScimError::status(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "more than {} requests a minute from this address: wait and try again",
                    state.per_minute
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            return response;
        }
        if state.limiter.len() > 100_000 {
            state.limiter.retain_recent();
        }
    }
    next.run(request).await
}

/// Every SCIM request names its client with a bearer token; the client goes into the
/// request's extensions.
async fn authenticate(
    State(state): State<Arc<ScimState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let origin = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.0.ip());
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .and_then(ScimSecret::presented);
    match state.app.authenticate_scim(bearer.as_ref(), origin).await {
        Ok(client) => {
            request.extensions_mut().insert(client);
            next.run(request).await
        }
        Err(e) => ScimError::from(e).into_response(),
    }
}

fn client(request_client: Option<axum::Extension<ScimClient>>) -> Result<ScimClient, ScimError> {
    request_client.map(|c| c.0).ok_or_else(|| {
        ScimError::status(
            StatusCode::UNAUTHORIZED,
            "the request was not authenticated",
        )
    })
}

/// `https://HOST/scim/v2`, from the request's Host header when it is a plain host name.
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 260
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("https://{host}{PREFIX}")
}

fn ok(body: &Value) -> Response {
    scim_json(StatusCode::OK, body)
}

fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ScimError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScimError::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX_BODY} bytes"),
            )
        } else {
            ScimError::bad(
                "invalidSyntax",
                format!("the request body could not be read: {e}"),
            )
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ScimError::bad(
            "invalidSyntax",
            format!("the request body is not JSON: {e}"),
        )
    })
}

fn user_id(id: &str) -> Result<Uuid, ScimError> {
    id.parse().map_err(|_| {
        ScimError::status(
            StatusCode::NOT_FOUND,
            format!(
                "there is no user with id {:?}",
                id.chars().take(64).collect::<String>()
            ),
        )
    })
}

async fn not_found() -> ScimError {
    ScimError::status(
        StatusCode::NOT_FOUND,
        format!(
            "no such SCIM endpoint: Ward serves {PREFIX}/Users, /ServiceProviderConfig, /ResourceTypes and /Schemas"
        ),
    )
}

async fn not_allowed() -> ScimError {
    ScimError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        "this method is not supported on this endpoint",
    )
}

async fn not_implemented() -> ScimError {
    ScimError::status(
        StatusCode::NOT_IMPLEMENTED,
        "Ward implements SCIM Users only: Groups, Bulk, /Me and POST .search are not supported (configure the identity provider to provision users only)",
    )
}

async fn service_provider_config(headers: HeaderMap) -> Response {
    ok(&resource::service_provider_config(&base(&headers)))
}

async fn resource_types(headers: HeaderMap) -> Response {
    let all = resource::resource_types(&base(&headers));
    ok(&resource::list(all.len(), 1, all))
}

async fn resource_type(headers: HeaderMap, Path(id): Path<String>) -> Response {
    match resource::resource_types(&base(&headers))
        .into_iter()
        .find(|r| r["id"] == id.as_str())
    {
        Some(found) => ok(&found),
        None => ScimError::status(StatusCode::NOT_FOUND, format!("no resource type {id:?}"))
            .into_response(),
    }
}

async fn schemas(headers: HeaderMap) -> Response {
    let all = resource::schemas(&base(&headers));
    ok(&resource::list(all.len(), 1, all))
}

async fn schema(headers: HeaderMap, Path(id): Path<String>) -> Response {
    match resource::schemas(&base(&headers))
        .into_iter()
        .find(|r| r["id"] == id.as_str())
    {
        Some(found) => ok(&found),
        None => {
            ScimError::status(StatusCode::NOT_FOUND, format!("no schema {id:?}")).into_response()
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    filter: Option<String>,
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<String>,
    count: Option<String>,
}

fn number(text: Option<&str>, name: &str) -> Result<Option<i64>, ScimError> {
    text.map(|t| {
        t.trim().parse::<i64>().map_err(|_| {
            ScimError::bad(
                "invalidValue",
                format!("{name} must be an integer, not {t:?}"),
            )
        })
    })
    .transpose()
}

async fn list_users(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
    scim_client: Option<axum::Extension<ScimClient>>,
) -> Result<Response, ScimError> {
    client(scim_client)?;
    let Query(query) =
        query.map_err(|e| ScimError::bad("invalidSyntax", format!("bad query: {e}")))?;
    let filter = query.filter.as_deref().map(filter::parse).transpose()?;
    // RFC 7644 §3.4.2.4: a startIndex below 1 is 1, a negative count is 0.
    let start = number(query.start_index.as_deref(), "startIndex")?
        .unwrap_or(1)
        .max(1);
    let count = number(query.count.as_deref(), "count")?.map_or(resource::MAX_RESULTS, |c| {
        usize::try_from(c.max(0))
            .unwrap_or(0)
            .min(resource::MAX_RESULTS)
    });
    let users = state.app.directory_users().await?;
    let matching: Vec<_> = users
        .iter()
        .filter(|u| {
            filter.as_ref().is_none_or(|f| {
                f.matches(&u.user_name, u.external_id.as_deref(), &u.id.to_string())
            })
        })
        .collect();
    let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
    let base = base(&headers);
    let page: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(count)
        .map(|u| {
            resource::project(
                resource::user_resource(u, &base),
                query.attributes.as_deref(),
                query.excluded_attributes.as_deref(),
            )
        })
        .collect();
    Ok(ok(&resource::list(
        matching.len(),
        usize::try_from(start).unwrap_or(1),
        page,
    )))
}

#[derive(Debug, serde::Deserialize)]
struct GetQuery {
    attributes: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

async fn get_user(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<GetQuery>, axum::extract::rejection::QueryRejection>,
    scim_client: Option<axum::Extension<ScimClient>>,
) -> Result<Response, ScimError> {
    client(scim_client)?;
    let Query(query) =
        query.map_err(|e| ScimError::bad("invalidSyntax", format!("bad query: {e}")))?;
    let user = state.app.directory_user(user_id(&id)?).await?;
    Ok(ok(&resource::project(
        resource::user_resource(&user, &base(&headers)),
        query.attributes.as_deref(),
        query.excluded_attributes.as_deref(),
    )))
}

async fn create_user(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    scim_client: Option<axum::Extension<ScimClient>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let client = client(scim_client)?;
    let input = resource::input_from(&json_body(body)?)?.resolve(None)?;
    let done = state.app.provision_user(&client, input).await?;
    let base = base(&headers);
    let mut response = scim_json(
        StatusCode::CREATED,
        &resource::user_resource(&done.user, &base),
    );
    if let Ok(location) = header::HeaderValue::from_str(&format!("{base}/Users/{}", done.user.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Changes the stored user with `change` inside the store's job (so a concurrent change is
/// not lost); a refusal there comes back as the SCIM error it was.
async fn update(
    state: &ScimState,
    client: &ScimClient,
    id: Uuid,
    change: impl Fn(&DirectoryUser) -> Result<DirectoryInput, ScimError> + Send + Sync + 'static,
) -> Result<DirectoryUser, ScimError> {
    let failed: Arc<std::sync::Mutex<Option<ScimError>>> = Arc::default();
    let job_failed = failed.clone();
    let result = state
        .app
        .update_directory_user(client, id, move |before| {
            change(before).map_err(|e| {
                let detail = e.detail.clone();
                *job_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                ward_controller::app::AppError::InvalidArgument(detail)
            })
        })
        .await;
    match result {
        Ok(done) => Ok(done.user),
        Err(e) => Err(failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| ScimError::from(e))),
    }
}

async fn replace_user(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    scim_client: Option<axum::Extension<ScimClient>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let client = client(scim_client)?;
    let id = user_id(&id)?;
    let input = resource::input_from(&json_body(body)?)?;
    let user = update(&state, &client, id, move |before| {
        input.clone().resolve(Some(before))
    })
    .await?;
    Ok(ok(&resource::user_resource(&user, &base(&headers))))
}

async fn patch_user(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    scim_client: Option<axum::Extension<ScimClient>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let client = client(scim_client)?;
    let id = user_id(&id)?;
    let operations = patch::parse(&json_body(body)?)?;
    let base = base(&headers);
    let job_base = base.clone();
    let user = update(&state, &client, id, move |before| {
        let current = resource::user_resource(before, &job_base);
        let patched = patch::apply(&current, &operations)?;
        resource::input_from(&patched)?.resolve(Some(before))
    })
    .await?;
    Ok(ok(&resource::user_resource(&user, &base)))
}

async fn delete_user(
    State(state): State<Arc<ScimState>>,
    Path(id): Path<String>,
    scim_client: Option<axum::Extension<ScimClient>>,
) -> Result<Response, ScimError> {
    let client = client(scim_client)?;
    state
        .app
        .delete_directory_user(&client, user_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
