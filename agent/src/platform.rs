//! What the agent asks of the operating system, behind a trait so each platform says
//! honestly what it can do. An action a platform cannot perform fails with the reason; a
//! check it cannot make reports "unsupported". Neither is ever reported as done or passed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ward_proto::v1;
use ward_vocab::Check;

use crate::checks::{self, Outcome, Roots};
use crate::policy::AgentPolicy;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActionError {
    #[error("not supported on this device: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Failed(String),
    /// The action ran, but its effect was not seen: never reported as done.
    #[error("not verified: {0}")]
    NotVerified(String),
}

#[async_trait::async_trait]
pub trait Platform: Send + Sync + std::fmt::Debug {
    /// Locks every graphical session and sees them locked; `NotVerified` when the lock was
    /// asked for but no session was seen locked. `message` is shown where the platform can.
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

/// How long a lock may take to show in logind's `LockedHint` (the desktop's screen locker
/// sets it once its lock screen is up).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Linux: systemd-logind's `loginctl lock-sessions` / `unlock-sessions` for screens, a lock
/// confirmed by each graphical session's `LockedHint`; sysfs, mountinfo, PAM and dconf files
/// for compliance, read under configurable roots.
#[derive(Debug)]
pub struct LinuxPlatform {
    loginctl: PathBuf,
    /// How long to wait for sessions to report themselves locked.
    lock_wait: Duration,
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
            lock_wait: LOCK_WAIT,
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

    /// Runs `loginctl ARGS`; its standard output.
    async fn loginctl(&self, args: &[&str]) -> Result<String, ActionError> {
        let program = self.loginctl.display();
        let verb = args.join(" ");
        let child = tokio::process::Command::new(&self.loginctl)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
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
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let detail = ward_vocab::text::clean(stderr.trim(), 500);
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

    /// The graphical user sessions logind knows, with whether each reports itself locked.
    async fn graphical_sessions(&self) -> Result<Vec<Session>, ActionError> {
        let listed = self.loginctl(&["list-sessions", "--no-legend"]).await?;
        let mut sessions = Vec::new();
        for id in listed.lines().filter_map(|l| l.split_whitespace().next()) {
            let shown = self
                .loginctl(&[
                    "show-session",
                    id,
                    "-p",
                    "Type",
                    "-p",
                    "Class",
                    "-p",
                    "Name",
                    "-p",
                    "LockedHint",
                ])
                .await?;
            let property = |key: &str| {
                shown
                    .lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            };
            let kind = property("Type");
            // Greeters and lock-screen sessions are not a user's desktop; tty and ssh
            // sessions have no screen to lock.
            if property("Class") == "user" && matches!(kind.as_str(), "x11" | "wayland" | "mir") {
                sessions.push(Session {
                    id: id.to_owned(),
                    user: property("Name"),
                    kind,
                    locked: property("LockedHint") == "yes",
                });
            }
        }
        Ok(sessions)
    }
}

/// A graphical session as logind describes it.
struct Session {
    id: String,
    user: String,
    kind: String,
    locked: bool,
}

#[async_trait::async_trait]
impl Platform for LinuxPlatform {
    async fn lock_screens(&self, _message: &str) -> Result<(), ActionError> {
        // logind has no lock-screen text; the message stays in the command record.
        self.loginctl(&["lock-sessions"]).await?;
        // lock-sessions only asks each session's screen locker; LockedHint says it did.
        let deadline = tokio::time::Instant::now() + self.lock_wait;
        loop {
            let sessions = self.graphical_sessions().await.map_err(|e| {
                ActionError::NotVerified(format!(
                    "loginctl lock-sessions ran, but the sessions could not be read: {e}"
                ))
            })?;
            if sessions.is_empty() {
                return Err(ActionError::NotVerified(
                    "loginctl lock-sessions ran, but no graphical session is open, so none was seen locked".into(),
                ));
            }
            let unlocked: Vec<String> = sessions
                .iter()
                .filter(|s| !s.locked)
                .map(|s| format!("{} ({}, {})", s.id, s.user, s.kind))
                .collect();
            if unlocked.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ActionError::NotVerified(format!(
                    "loginctl lock-sessions ran, but session {} did not report LockedHint=yes within {} s (its desktop may have no screen locker)",
                    unlocked.join(", "),
                    self.lock_wait.as_secs_f32()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn unlock_screens(&self) -> Result<(), ActionError> {
        self.loginctl(&["unlock-sessions"]).await.map(|_| ())
    }

    fn compliance(
        &self,
        policy: &AgentPolicy,
        data_paths: &[&Path],
        may_write: bool,
    ) -> Vec<v1::ComplianceCheck> {
        let survey = self.survey();
        vec![
            checks::disk::check(&self.roots, data_paths).into_wire(Check::DiskEncryption),
            checks::password::check(&self.roots, policy, may_write && policy.enforce)
                .into_wire(Check::PasswordRules),
            checks::autolock::check(&self.roots, policy.auto_lock_seconds)
                .into_wire(Check::AutoLock),
            // Reported as found even where the policy does not require it.
            survey.firewall.outcome.clone().into_wire(Check::Firewall),
            checks::packages::check_installed(&survey.packages, &policy.forbidden_packages)
                .into_wire(Check::ForbiddenPackages),
            self.updates(policy.os_updates_max_age_days)
                .into_wire(Check::OsUpdates),
            checks::version::check(env!("CARGO_PKG_VERSION"), &policy.min_agent_version)
                .into_wire(Check::AgentVersion),
            checks::uptime::check(&self.roots, policy.max_uptime_days).into_wire(Check::Uptime),
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
        Some(v1::Inventory::from(found))
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

    fn compliance(&self, policy: &AgentPolicy, _: &[&Path], _: bool) -> Vec<v1::ComplianceCheck> {
        let why = format!(
            "compliance checks are not implemented on {}",
            std::env::consts::OS
        );
        Check::ALL
            .into_iter()
            .map(|check| {
                match check {
                    // The agent knows its own version on every platform.
                    Check::AgentVersion => {
                        checks::version::check(env!("CARGO_PKG_VERSION"), &policy.min_agent_version)
                    }
                    _ => Outcome::Unsupported(why.clone()),
                }
                .into_wire(check)
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

    /// A fake `loginctl` with two sessions: 2, alice's X11 desktop, and 3, bob's ssh login.
    /// `lock-sessions` records that it ran; alice's session reports LockedHint=`after_lock`
    /// once it has, "no" before.
    fn fake_loginctl(dir: &Path, after_lock: &str, sessions: &str) -> LinuxPlatform {
        let script = dir.join("loginctl");
        let ran = dir.join("locked");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
case "$1" in
lock-sessions) touch '{ran}' ;;
list-sessions) printf '{sessions}' ;;
show-session)
  hint=no; [ -e '{ran}' ] && hint={after_lock}
  case "$2" in
  2) printf 'Type=x11\nClass=user\nName=alice\nLockedHint=%s\n' "$hint" ;;
  3) printf 'Type=tty\nClass=user\nName=bob\nLockedHint=no\n' ;;
  *) echo "Failed to get session: No session '$2' known" >&2; exit 1 ;;
  esac ;;
*) exit 1 ;;
esac
"#,
                ran = ran.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut p = LinuxPlatform::new(script, Roots::default());
        p.lock_wait = Duration::from_millis(500);
        p
    }

    const BOTH: &str = "      2 1000 alice seat0 tty2\n      3 1001 bob   -     pts/0\n";

    #[tokio::test]
    async fn a_lock_succeeds_only_when_the_session_reports_itself_locked() {
        let dir = tempfile::tempdir().unwrap();
        // The wait ends as soon as the session says it is locked; the deadline is only there
        // for a machine too busy to run the fake loginctl quickly.
        let mut platform = fake_loginctl(dir.path(), "yes", BOTH);
        platform.lock_wait = Duration::from_secs(30);
        assert_eq!(platform.lock_screens("").await, Ok(()));
    }

    #[tokio::test]
    async fn a_lock_no_session_confirms_is_not_verified() {
        let dir = tempfile::tempdir().unwrap();
        let err = fake_loginctl(dir.path(), "no", BOTH)
            .lock_screens("")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ActionError::NotVerified(m)
                if m.contains("session 2 (alice, x11) did not report LockedHint=yes")),
            "{err}"
        );
        // bob's ssh session has no screen: it is not waited for, and not counted as locked.
        let dir = tempfile::tempdir().unwrap();
        let err = fake_loginctl(dir.path(), "yes", "      3 1001 bob - pts/0\n")
            .lock_screens("")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ActionError::NotVerified(m) if m.contains("no graphical session is open")),
            "{err}"
        );
        // A session list logind cannot describe: not verified either.
        let dir = tempfile::tempdir().unwrap();
        let err = fake_loginctl(dir.path(), "yes", "      9 1000 eve seat0 tty3\n")
            .lock_screens("")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ActionError::NotVerified(m) if m.contains("No session '9' known")),
            "{err}"
        );
    }

    #[test]
    fn unsupported_platforms_never_pass_a_check() {
        let checks =
            UnsupportedPlatform.compliance(&AgentPolicy::default(), &[Path::new("/")], false);
        assert_eq!(checks.len(), Check::ALL.len());
        assert!(
            checks
                .iter()
                .filter(|c| c.name != "agent_version")
                .all(|c| c.status == v1::CheckStatus::Unsupported as i32)
        );
    }
}
