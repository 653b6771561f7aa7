//! `wardctl` errors and the exit codes scripts rely on.

use std::process::ExitCode;

use tonic::Code;

/// Exit codes, part of the CLI contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Usage = 2,
    NotFound = 3,
    Denied = 4,
    TimedOut = 5,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        let exit = match status.code() {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::OutOfRange => Exit::Usage,
            Code::NotFound => Exit::NotFound,
            Code::PermissionDenied | Code::Unauthenticated => Exit::Denied,
            _ => Exit::Failed,
        };
        let message = match status.code() {
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded => {
                let chain = ward_proto::transport::error_chain(&status);
                format!("the controller did not answer: {chain}")
            }
            _ => status.message().to_owned(),
        };
        Self { exit, message }
    }
}

impl From<ward_runtime::data_dir::DataDirError> for CliError {
    fn from(e: ward_runtime::data_dir::DataDirError) -> Self {
        use ward_runtime::data_dir::DataDirError as E;
        let exit = match e {
            E::AlreadyInitialized(_)
            | E::Incomplete { .. }
            | E::ReservedName(_)
            | E::ReservedAdminName(_) => Exit::Usage,
            _ => Exit::Failed,
        };
        Self::new(exit, e.to_string())
    }
}
