//! Compliance checks: what the device can honestly report about itself. A check the platform
//! cannot perform says "unsupported" with the reason, never "pass".

pub mod autolock;
pub mod disk;
pub mod keyfile;
pub mod password;

use std::path::PathBuf;

use ward_proto::v1;

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

/// True when this process runs as root (the owner of `/proc/self` is the effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
