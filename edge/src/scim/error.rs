//! SCIM error responses (RFC 7644 §3.12): a status and, for 400s, a `scimType`, as
//! `application/scim+json`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use ward_controller::app::AppError;

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const CONTENT_TYPE: &str = "application/scim+json";

/// A refused request: nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    pub status: StatusCode,
    /// RFC 7644 §3.12's keywords: invalidFilter, invalidSyntax, invalidPath, invalidValue,
    /// noTarget, uniqueness, mutability, tooMany…
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = t.into();
        }
        body
    }
}

impl From<AppError> for ScimError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::InvalidArgument(m) => Self::bad("invalidValue", m),
            AppError::AlreadyExists(m) => Self {
                status: StatusCode::CONFLICT,
                scim_type: Some("uniqueness"),
                detail: m,
            },
            AppError::FailedPrecondition(m) => Self::bad("mutability", m),
            AppError::NotFound(m) => Self::status(StatusCode::NOT_FOUND, m),
            AppError::Unauthenticated(m) => Self::status(StatusCode::UNAUTHORIZED, m),
            AppError::PermissionDenied(m) => Self::status(StatusCode::FORBIDDEN, m),
            AppError::Unavailable(m) => Self::status(StatusCode::SERVICE_UNAVAILABLE, m),
            other => Self::status(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut response = scim_json(self.status, &self.body());
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ward-scim\""),
            );
        }
        response
    }
}

/// A SCIM JSON body with its content type.
pub fn scim_json(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body.to_string(),
    )
        .into_response()
}
