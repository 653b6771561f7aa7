//! What `App` answers when it refuses or fails: [`AppError`].

use crate::store::StoreError;

/// Errors with the category the edge maps to a status code. Messages are for the caller and
/// never contain a secret.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Too busy to take this call now; the caller may retry after the hint.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(what) => {
                AppError::AlreadyExists(format!("{what} already exists"))
            }
            StoreError::Overloaded => AppError::Unavailable(
                "the controller is busy committing other devices' changes; retry in a few seconds"
                    .into(),
            ),
            other => AppError::Internal(other.to_string()),
        }
    }
}
