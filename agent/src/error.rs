//! Agent errors and exit codes: 0 ok, 1 failed, 2 bad usage or rejected input.

use std::process::ExitCode;

use crate::secrets::SecretError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The command line or the state directory does not allow this.
    #[error("{0}")]
    Usage(String),
    /// The controller (or the CA pin) refused what we sent.
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl AgentError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            AgentError::Usage(_) | AgentError::Rejected(_) => ExitCode::from(2),
            AgentError::State(StateError::NotEnrolled { .. }) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}
