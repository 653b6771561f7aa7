//! What the agent asks of the operating system, behind a trait so each platform says
//! honestly what it can do. An action a platform cannot perform fails with the reason; it is
//! never reported as done.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    #[error("not supported on this device: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Failed(String),
}

#[async_trait::async_trait]
pub trait Platform: Send + Sync {
    /// Locks every graphical session. `message` is shown where the platform can.
    async fn lock_screens(&self, message: &str) -> Result<(), ActionError>;
    async fn unlock_screens(&self) -> Result<(), ActionError>;
}

/// Linux: systemd-logind's `loginctl lock-sessions` / `unlock-sessions`.
#[derive(Clone, Debug)]
pub struct LinuxPlatform {
    loginctl: PathBuf,
}

impl Default for LinuxPlatform {
    fn default() -> Self {
        // The path can be overridden for hosts with logind elsewhere (and for tests).
        let loginctl = std::env::var_os("WARD_AGENT_LOGINCTL")
            .map_or_else(|| PathBuf::from("loginctl"), PathBuf::from);
        Self { loginctl }
    }
}

impl LinuxPlatform {
    pub fn with_loginctl(loginctl: PathBuf) -> Self {
        Self { loginctl }
    }

    async fn loginctl(&self, verb: &str) -> Result<(), ActionError> {
        let child = tokio::process::Command::new(&self.loginctl)
            .arg(verb)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ActionError::Unsupported(format!(
                    "{} is not installed; screen locking needs systemd-logind",
                    self.loginctl.display()
                )));
            }
            Err(e) => {
                return Err(ActionError::Failed(format!(
                    "cannot run {}: {e}",
                    self.loginctl.display()
                )));
            }
        };
        let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
            .await
            .map_err(|_| {
                ActionError::Failed(format!(
                    "{} {verb} did not finish within 15 s",
                    self.loginctl.display()
                ))
            })?
            .map_err(|e| {
                ActionError::Failed(format!("{} {verb} failed: {e}", self.loginctl.display()))
            })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail: String = stderr
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(500)
            .collect();
        Err(ActionError::Failed(format!(
            "{} {verb} failed ({}): {}",
            self.loginctl.display(),
            output.status,
            if detail.is_empty() {
                "no message"
            } else {
                detail.as_str()
            }
        )))
    }
}

#[async_trait::async_trait]
impl Platform for LinuxPlatform {
    async fn lock_screens(&self, _message: &str) -> Result<(), ActionError> {
        // logind has no lock-screen text; the message stays in the command record.
        self.loginctl("lock-sessions").await
    }

    async fn unlock_screens(&self) -> Result<(), ActionError> {
        self.loginctl("unlock-sessions").await
    }
}

/// Platforms Ward has no honest implementation for yet.
#[derive(Clone, Debug, Default)]
pub struct UnsupportedPlatform;

#[async_trait::async_trait]
impl Platform for UnsupportedPlatform {
    async fn lock_screens(&self, _message: &str) -> Result<(), ActionError> {
        Err(ActionError::Unsupported(format!(
            "screen locking is not implemented on {}",
            std::env::consts::OS
        )))
    }

    async fn unlock_screens(&self) -> Result<(), ActionError> {
        Err(ActionError::Unsupported(format!(
            "screen unlocking is not implemented on {}",
            std::env::consts::OS
        )))
    }
}

/// The platform this agent runs on.
pub fn native() -> Box<dyn Platform> {
    if cfg!(target_os = "linux") {
        Box::new(LinuxPlatform::default())
    } else {
        Box::new(UnsupportedPlatform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_loginctl_is_reported_as_unsupported() {
        let p = LinuxPlatform::with_loginctl("/nonexistent/loginctl".into());
        assert!(matches!(
            p.lock_screens("").await,
            Err(ActionError::Unsupported(_))
        ));
    }

    #[tokio::test]
    async fn a_failing_loginctl_gives_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("loginctl");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'Failed to lock sessions: no session' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let p = LinuxPlatform::with_loginctl(script);
        let err = p.lock_screens("").await.unwrap_err();
        assert!(
            matches!(&err, ActionError::Failed(m) if m.contains("no session")),
            "{err}"
        );
    }
}
