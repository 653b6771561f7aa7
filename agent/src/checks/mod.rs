//! Compliance checks: what the device can honestly report about itself. A check the platform
//! cannot perform says "unsupported" with the reason, never "pass".

pub mod autolock;
pub mod disk;
pub mod firewall;
pub mod keyfile;
pub mod packages;
pub mod password;
mod programs;
pub mod updates;
pub mod version;

pub(crate) use programs::RunError;

use std::path::{Path, PathBuf};

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

/// Where the Linux checks read the system: `/proc`, `/sys`, `/etc`, `/var` and `/snap` by
/// default; tests point them at fixture trees.
#[derive(Clone, Debug)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
    /// Package databases and logs (`/var/lib/dpkg`, `/var/log/dpkg.log`, ...).
    pub var: PathBuf,
    /// Where snaps are mounted.
    pub snap: PathBuf,
    /// When set, external programs (nft, iptables-save, rpm, apt-get) are looked up only
    /// here; when unset, on `PATH` (then `/usr/sbin`, `/sbin`, which a user's `PATH` may lack).
    pub bin_dir: Option<PathBuf>,
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
            var: var("WARD_AGENT_VAR_ROOT", "/var"),
            snap: var("WARD_AGENT_SNAP_ROOT", "/snap"),
            bin_dir: std::env::var_os("WARD_AGENT_BIN_DIR").map(PathBuf::from),
        }
    }
}

impl Roots {
    /// Every root under `dir` (`dir/proc`, `dir/sys`, ..., programs only in `dir/bin`): a
    /// fixture tree that never reaches the real system.
    pub fn under(dir: &Path) -> Self {
        Self {
            proc: dir.join("proc"),
            sys: dir.join("sys"),
            etc: dir.join("etc"),
            var: dir.join("var"),
            snap: dir.join("snap"),
            bin_dir: Some(dir.join("bin")),
        }
    }
}

/// True when this process runs as root (the owner of `/proc/self` is the effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
