//! Compliance checks: what the device can honestly report about itself. A check the platform
//! cannot perform says "unsupported" with the reason, never "pass".

pub mod autolock;
pub mod disk;
pub mod keyfile;
pub mod password;

use std::path::{Path, PathBuf};

use ward_proto::v1;

use crate::policy::AgentPolicy;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Unsupported(String),
    Error(String),
}

impl Outcome {
    pub fn into_wire(self, name: &str) -> v1::ComplianceCheck {
        let (status, detail) = match self {
            Outcome::Pass(d) => (v1::CheckStatus::Pass, d),
            Outcome::Fail(d) => (v1::CheckStatus::Fail, d),
            Outcome::Unsupported(d) => (v1::CheckStatus::Unsupported, d),
            Outcome::Error(d) => (v1::CheckStatus::Error, d),
        };
        v1::ComplianceCheck {
            name: name.to_owned(),
            status: status as i32,
            detail,
        }
    }
}

/// Where the Linux checks read the system: `/proc`, `/sys` and `/etc` by default; tests
/// point them at fixture trees.
#[derive(Clone, Debug)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var_os(name).map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Self {
            proc: var("WARD_AGENT_PROC_ROOT", "/proc"),
            sys: var("WARD_AGENT_SYS_ROOT", "/sys"),
            etc: var("WARD_AGENT_ETC_ROOT", "/etc"),
        }
    }
}

/// Runs every check against `policy`. `data_paths` are the paths whose filesystems must be
/// encrypted (the root and the messaging directory).
pub fn run_all(
    roots: &Roots,
    policy: &AgentPolicy,
    data_paths: &[&Path],
    may_write: bool,
) -> Vec<v1::ComplianceCheck> {
    if !cfg!(target_os = "linux") {
        let why = format!(
            "compliance checks are not implemented on {}",
            std::env::consts::OS
        );
        return ["disk_encryption", "password_rules", "auto_lock"]
            .iter()
            .map(|name| Outcome::Unsupported(why.clone()).into_wire(name))
            .collect();
    }
    vec![
        disk::check(roots, data_paths).into_wire("disk_encryption"),
        password::check(roots, policy, may_write && policy.enforce).into_wire("password_rules"),
        autolock::check(roots, policy.auto_lock_seconds).into_wire("auto_lock"),
    ]
}

/// True when this process runs as root (the owner of `/proc/self` is the effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
