//! Compliance checks: what the device can honestly report about itself. A check the platform
//! cannot perform says "unsupported" with the reason, never "pass".

pub mod autolock;
pub mod disk;
pub mod firewall;
#[cfg(test)]
mod fixture;
pub mod keyfile;
pub mod packages;
mod pam;
pub mod password;
mod programs;
pub mod updates;
pub mod uptime;
pub mod version;

pub(crate) use programs::RunError;

use std::path::{Path, PathBuf};

use ward_proto::v1;
use ward_vocab::Check;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Unsupported(String),
    Error(String),
}

/// The longest detail the controller accepts (`MAX_CHECK_TEXT`): a check-in with a longer
/// one, or with control characters in it, is refused and counts as a missed check-in.
pub const MAX_DETAIL: usize = 1000;

impl Outcome {
    /// The check as reported, its detail made acceptable to the controller: control
    /// characters (newlines too) become spaces, and a detail over [`MAX_DETAIL`] bytes is cut
    /// on a character boundary and ends in "…", within the limit.
    pub fn into_wire(self, check: Check) -> v1::ComplianceCheck {
        let (status, detail) = match self {
            Outcome::Pass(d) => (v1::CheckStatus::Pass, d),
            Outcome::Fail(d) => (v1::CheckStatus::Fail, d),
            Outcome::Unsupported(d) => (v1::CheckStatus::Unsupported, d),
            Outcome::Error(d) => (v1::CheckStatus::Error, d),
        };
        v1::ComplianceCheck {
            name: check.as_str().to_owned(),
            status: status as i32,
            detail: clean_detail(&detail),
        }
    }
}

fn clean_detail(detail: &str) -> String {
    ward_vocab::text::clean(detail, MAX_DETAIL)
}

/// Where the Linux checks read the system: `/proc`, `/sys`, `/etc`, `/usr`, `/var` and
/// `/snap` by default; tests point them at fixture trees.
#[derive(Clone, Debug)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub etc: PathBuf,
    /// Distribution defaults that `/etc` overrides (`/usr/lib/pam.d`,
    /// `/usr/lib/security/pwquality.conf`, `/usr/share/dconf/profile`).
    pub usr: PathBuf,
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
            usr: var("WARD_AGENT_USR_ROOT", "/usr"),
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
            usr: dir.join("usr"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_details_are_clean_and_bounded() {
        // 5000 bytes: control characters inside, a 2-byte character straddling the cut.
        let long = format!("a\nb\tc\x1bde{}{}", "é".repeat(1500), "x".repeat(1992));
        assert_eq!(long.len(), 5000);
        let wire = Outcome::Fail(long).into_wire(Check::Firewall);
        assert_eq!(wire.name, "firewall");
        assert_eq!(wire.status, v1::CheckStatus::Fail as i32);
        let d = &wire.detail;
        assert!(d.len() <= MAX_DETAIL, "{}", d.len());
        assert!(d.starts_with("a b c deé"), "{d}");
        assert!(d.ends_with('…'));
        assert!(!d.chars().any(char::is_control));
        // 8 ASCII bytes, then the 2-byte characters that fit whole before the 3-byte "…".
        assert_eq!(d.len(), 8 + 2 * 494 + 3);

        let short = Outcome::Pass("fine\r\n".into()).into_wire(Check::AgentVersion);
        assert_eq!(short.detail, "fine  ");
        let exact = "y".repeat(MAX_DETAIL);
        assert_eq!(
            Outcome::Unsupported(exact.clone())
                .into_wire(Check::AgentVersion)
                .detail,
            exact
        );
        let over = Outcome::Error("z".repeat(MAX_DETAIL + 1))
            .into_wire(Check::AgentVersion)
            .detail;
        assert_eq!(over, format!("{}…", "z".repeat(MAX_DETAIL - 3)));
    }
}
