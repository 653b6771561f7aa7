//! What the agent asks of the operating system, behind a trait so each platform says
//! honestly what it can do. An action a platform cannot perform fails with the reason; a
//! check it cannot make reports "unsupported". Neither is ever reported as done or passed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ward_proto::v1;

use crate::checks::{self, Outcome, Roots};
use crate::policy::AgentPolicy;

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

    /// Runs the compliance checks against `policy`. `data_paths` are the paths whose
    /// filesystems must be encrypted; with `may_write` the platform may write settings the
    /// policy asks it to enforce. Blocking: call it off the async threads.
    fn compliance(
        &self,
        policy: &AgentPolicy,
        data_paths: &[&Path],
        may_write: bool,
    ) -> Vec<v1::ComplianceCheck>;
}

/// Linux: systemd-logind's `loginctl lock-sessions` / `unlock-sessions` for screens; sysfs,
/// mountinfo, PAM and dconf files for compliance, read under configurable roots.
#[derive(Clone, Debug)]
pub struct LinuxPlatform {
    loginctl: PathBuf,
    roots: Roots,
}

impl Default for LinuxPlatform {
    fn default() -> Self {
        // Overridable for hosts with logind elsewhere (and for tests).
        let loginctl = std::env::var_os("WARD_AGENT_LOGINCTL")
            .map_or_else(|| PathBuf::from("loginctl"), PathBuf::from);
        Self {
            loginctl,
            roots: Roots::default(),
        }
    }
}

impl LinuxPlatform {
    pub fn new(loginctl: PathBuf, roots: Roots) -> Self {
        Self { loginctl, roots }
    }

    async fn loginctl(&self, verb: &str) -> Result<(), ActionError> {
        let program = self.loginctl.display();
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
                    "{program} is not installed; screen locking needs systemd-logind"
                )));
            }
            Err(e) => return Err(ActionError::Failed(format!("cannot run {program}: {e}"))),
        };
        let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
            .await
            .map_err(|_| {
                ActionError::Failed(format!("{program} {verb} did not finish within 15 s"))
            })?
            .map_err(|e| ActionError::Failed(format!("{program} {verb} failed: {e}")))?;
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
            "{program} {verb} failed ({}): {}",
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

    fn compliance(
        &self,
        policy: &AgentPolicy,
        data_paths: &[&Path],
        may_write: bool,
    ) -> Vec<v1::ComplianceCheck> {
        vec![
            checks::disk::check(&self.roots, data_paths).into_wire("disk_encryption"),
            checks::password::check(&self.roots, policy, may_write && policy.enforce)
                .into_wire("password_rules"),
            checks::autolock::check(&self.roots, policy.auto_lock_seconds).into_wire("auto_lock"),
        ]
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

    fn compliance(&self, _: &AgentPolicy, _: &[&Path], _: bool) -> Vec<v1::ComplianceCheck> {
        let why = format!(
            "compliance checks are not implemented on {}",
            std::env::consts::OS
        );
        ["disk_encryption", "password_rules", "auto_lock"]
            .iter()
            .map(|name| Outcome::Unsupported(why.clone()).into_wire(name))
            .collect()
    }
}

/// The platform this agent runs on.
pub fn native() -> Arc<dyn Platform> {
    if cfg!(target_os = "linux") {
        Arc::new(LinuxPlatform::default())
    } else {
        Arc::new(UnsupportedPlatform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_loginctl_is_reported_as_unsupported() {
        let p = LinuxPlatform::new("/nonexistent/loginctl".into(), Roots::default());
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
        let p = LinuxPlatform::new(script, Roots::default());
        let err = p.lock_screens("").await.unwrap_err();
        assert!(
            matches!(&err, ActionError::Failed(m) if m.contains("no session")),
            "{err}"
        );
    }

    #[test]
    fn unsupported_platforms_never_pass_a_check() {
        let checks =
            UnsupportedPlatform.compliance(&AgentPolicy::default(), &[Path::new("/")], false);
        assert_eq!(checks.len(), 3);
        assert!(
            checks
                .iter()
                .all(|c| c.status == v1::CheckStatus::Unsupported as i32)
        );
    }
}
