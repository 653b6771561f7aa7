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

    /// What the device is (hardware, packages, filesystems, firewall), or `None` where the
    /// platform cannot tell. Blocking, like [`Platform::compliance`].
    fn inventory(&self, data_paths: &[&Path]) -> Option<v1::Inventory>;
}

/// How long the OS-updates verdict is reused: asking the package manager for pending updates
/// costs about a second of CPU, too much for every check-in.
const UPDATES_TTL: Duration = Duration::from_secs(600);

/// How long one reading of the firewall rules and package databases serves: long enough for
/// the compliance checks and the inventory of one check-in to share it, short enough that the
/// next check-in reads afresh.
const SURVEY_TTL: Duration = Duration::from_secs(10);

/// The firewall and package readings a check-in's checks and inventory both use.
#[derive(Debug)]
struct Survey {
    firewall: checks::firewall::Assessment,
    packages: checks::packages::Installed,
}

/// Linux: systemd-logind's `loginctl lock-sessions` / `unlock-sessions` for screens; sysfs,
/// mountinfo, PAM and dconf files for compliance, read under configurable roots.
#[derive(Debug)]
pub struct LinuxPlatform {
    loginctl: PathBuf,
    roots: Roots,
    /// The last OS-updates verdict: when, for which maximum age, and what it was.
    updates: std::sync::Mutex<Option<(std::time::Instant, u32, Outcome)>>,
    /// The last firewall and package reading, and when it was taken.
    survey: std::sync::Mutex<Option<(std::time::Instant, Arc<Survey>)>>,
}

impl Default for LinuxPlatform {
    fn default() -> Self {
        // Overridable for hosts with logind elsewhere (and for tests).
        let loginctl = std::env::var_os("WARD_AGENT_LOGINCTL")
            .map_or_else(|| PathBuf::from("loginctl"), PathBuf::from);
        Self::new(loginctl, Roots::default())
    }
}

impl LinuxPlatform {
    pub fn new(loginctl: PathBuf, roots: Roots) -> Self {
        Self {
            loginctl,
            roots,
            updates: std::sync::Mutex::new(None),
            survey: std::sync::Mutex::new(None),
        }
    }

    /// The firewall and package reading, taken afresh unless one from the last
    /// [`SURVEY_TTL`] exists.
    fn survey(&self) -> Arc<Survey> {
        let mut cached = self
            .survey
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, survey)) = cached.as_ref()
            && at.elapsed() < SURVEY_TTL
        {
            return survey.clone();
        }
        let survey = Arc::new(Survey {
            firewall: checks::firewall::assess(&self.roots),
            packages: checks::packages::installed(&self.roots),
        });
        *cached = Some((std::time::Instant::now(), survey.clone()));
        survey
    }

    /// The OS-updates check, reused for [`UPDATES_TTL`] while the policy's rule is unchanged.
    fn updates(&self, max_age_days: u32) -> Outcome {
        if max_age_days == 0 {
            return checks::updates::check(&self.roots, 0, std::time::SystemTime::now());
        }
        let mut cached = self
            .updates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, age, outcome)) = cached.as_ref()
            && *age == max_age_days
            && at.elapsed() < UPDATES_TTL
        {
            return outcome.clone();
        }
        let outcome =
            checks::updates::check(&self.roots, max_age_days, std::time::SystemTime::now());
        *cached = Some((std::time::Instant::now(), max_age_days, outcome.clone()));
        outcome
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
        let survey = self.survey();
        vec![
            checks::disk::check(&self.roots, data_paths).into_wire("disk_encryption"),
            checks::password::check(&self.roots, policy, may_write && policy.enforce)
                .into_wire("password_rules"),
            checks::autolock::check(&self.roots, policy.auto_lock_seconds).into_wire("auto_lock"),
            // Reported as found even where the policy does not require it.
            survey.firewall.outcome.clone().into_wire("firewall"),
            checks::packages::check_installed(&survey.packages, &policy.forbidden_packages)
                .into_wire("forbidden_packages"),
            self.updates(policy.os_updates_max_age_days)
                .into_wire("os_updates"),
            checks::version::check(env!("CARGO_PKG_VERSION"), &policy.min_agent_version)
                .into_wire("agent_version"),
        ]
    }

    fn inventory(&self, data_paths: &[&Path]) -> Option<v1::Inventory> {
        let survey = self.survey();
        let found = crate::inventory::collect(
            &self.roots,
            data_paths,
            &checks::packages::counts_of(&survey.packages),
            &survey.firewall.state,
        );
        Some(v1::Inventory {
            hardware_vendor: found.hardware_vendor,
            hardware_model: found.hardware_model,
            cpu_model: found.cpu_model,
            cpu_count: found.cpu_count,
            memory_bytes: found.memory_bytes,
            packages: found
                .packages
                .into_iter()
                .map(|(manager, count)| v1::PackageCount { manager, count })
                .collect(),
            filesystems: found
                .filesystems
                .into_iter()
                .map(|f| v1::Filesystem {
                    mount_point: f.mount_point,
                    fs_type: f.fs_type,
                    source: f.source,
                    encryption: f.encryption,
                })
                .collect(),
            firewall: found.firewall,
        })
    }
}

/// Every check the agent reports, in report order.
pub const CHECKS: [&str; 7] = [
    "disk_encryption",
    "password_rules",
    "auto_lock",
    "firewall",
    "forbidden_packages",
    "os_updates",
    "agent_version",
];

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

    fn compliance(&self, policy: &AgentPolicy, _: &[&Path], _: bool) -> Vec<v1::ComplianceCheck> {
        let why = format!(
            "compliance checks are not implemented on {}",
            std::env::consts::OS
        );
        CHECKS
            .iter()
            .map(|name| {
                match *name {
                    // The agent knows its own version on every platform.
                    "agent_version" => {
                        checks::version::check(env!("CARGO_PKG_VERSION"), &policy.min_agent_version)
                    }
                    _ => Outcome::Unsupported(why.clone()),
                }
                .into_wire(name)
            })
            .collect()
    }

    fn inventory(&self, _: &[&Path]) -> Option<v1::Inventory> {
        None
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
        assert_eq!(checks.len(), CHECKS.len());
        assert!(
            checks
                .iter()
                .filter(|c| c.name != "agent_version")
                .all(|c| c.status == v1::CheckStatus::Unsupported as i32)
        );
    }
}
