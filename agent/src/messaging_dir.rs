//! Which directories `ward-agent run --messaging-dir` accepts. A wipe empties the directory by
//! itself (a command, a compliance rule, the offline timer), so one whose emptying would
//! break the device is refused at start, with the reason:
//!
//! - `/`, a system directory (`/etc`, `/usr`, `/var/lib`, `/home`, … and everything under
//!   `/etc`, `/usr`, `/boot`, `/proc`, `/sys`, `/dev`, …), a person's whole home directory
//!   (a login account's; a service account's home may be its data directory);
//! - the agent's state directory or a directory that contains it (the wipe would delete the
//!   agent's own key, certificate and ledger);
//! - a directory on another filesystem than `/` (the one the disk-encryption check starts
//!   from, and the agent's own): a removable, network or separately mounted filesystem can be
//!   swapped or unmounted under the agent. `--allow-other-filesystem` accepts it where that is
//!   intended (e.g. `/home` on its own encrypted volume); the encryption check covers it too.
//!
//! Checked on the canonical path: a symbolic link or `..` cannot hide one of these.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Directories that are never a messaging directory themselves.
const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/run/user",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/local",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/mail",
    "/var/spool",
    "/var/tmp",
];

/// Directories whose whole tree belongs to the system.
const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin",
    "/sys", "/usr",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessagingDirError {
    #[error(
        "--messaging-dir {0} does not exist: create it for the messaging app (owned by its user) and start again"
    )]
    Missing(String),
    #[error("--messaging-dir {0} is a file, not a directory")]
    NotADirectory(String),
    #[error("--messaging-dir {0}: {1}")]
    Unreadable(String, String),
    #[error(
        "--messaging-dir {0} is the root directory: a wipe would erase the whole system; give the messaging app's own data directory"
    )]
    Root(String),
    #[error(
        "--messaging-dir {shown} is {real}, a system directory: a wipe would empty it and break the device; give the messaging app's own data directory"
    )]
    System { shown: String, real: String },
    #[error(
        "--messaging-dir {shown} is {real}, the home directory of user {user}: a wipe would erase everything of theirs; give the messaging app's data directory inside it"
    )]
    Home {
        shown: String,
        real: String,
        user: String,
    },
    #[error(
        "--messaging-dir {0} is the agent's state directory: a wipe would delete the agent's own key, certificate and ledger"
    )]
    StateDir(String),
    #[error(
        "--messaging-dir {shown} contains the agent's state directory {state}: a wipe would delete the agent's own key, certificate and ledger; give a directory beside it"
    )]
    ContainsStateDir { shown: String, state: String },
    #[error(
        "--messaging-dir {shown} is on another filesystem than {reference} (the one the agent and its disk-encryption check start from): a removable, network or separately mounted filesystem can be swapped or unmounted under the agent. If this is intended (e.g. /home on its own encrypted volume), pass --allow-other-filesystem"
    )]
    OtherFilesystem { shown: String, reference: String },
}

/// What the check compares against: the filesystem root and the user database (fixtures in
/// tests).
#[derive(Clone, Debug)]
pub struct Reference {
    /// The directory whose filesystem the messaging directory must share.
    pub root: PathBuf,
    /// The user database, for home directories.
    pub passwd: PathBuf,
}

impl Default for Reference {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/"),
            passwd: PathBuf::from("/etc/passwd"),
        }
    }
}

/// Checks `dir` against `state_dir`; returns its canonical path.
pub fn validate(
    dir: &Path,
    state_dir: &Path,
    allow_other_filesystem: bool,
    reference: &Reference,
) -> Result<PathBuf, MessagingDirError> {
    let shown = dir.display().to_string();
    let real = match std::fs::canonicalize(dir) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MessagingDirError::Missing(shown));
        }
        Err(e) => return Err(MessagingDirError::Unreadable(shown, e.to_string())),
    };
    let meta = std::fs::metadata(&real)
        .map_err(|e| MessagingDirError::Unreadable(shown.clone(), e.to_string()))?;
    if !meta.is_dir() {
        return Err(MessagingDirError::NotADirectory(shown));
    }
    if real == Path::new("/") {
        return Err(MessagingDirError::Root(shown));
    }
    let system = SYSTEM_DIRS.iter().any(|d| real == Path::new(d))
        || SYSTEM_TREES.iter().any(|d| real.starts_with(d));
    if system {
        return Err(MessagingDirError::System {
            shown,
            real: real.display().to_string(),
        });
    }
    if let Some(user) = home_owner(&reference.passwd, &real) {
        return Err(MessagingDirError::Home {
            shown,
            real: real.display().to_string(),
            user,
        });
    }
    // The state directory exists once enrolled; before that its would-be path counts.
    let state = std::fs::canonicalize(state_dir)
        .or_else(|_| std::path::absolute(state_dir))
        .unwrap_or_else(|_| state_dir.to_path_buf());
    if state == real {
        return Err(MessagingDirError::StateDir(shown));
    }
    if state.starts_with(&real) {
        return Err(MessagingDirError::ContainsStateDir {
            shown,
            state: state.display().to_string(),
        });
    }
    if !allow_other_filesystem {
        let reference_dev = std::fs::metadata(&reference.root)
            .map_err(|e| MessagingDirError::Unreadable(shown.clone(), e.to_string()))?
            .dev();
        if meta.dev() != reference_dev {
            return Err(MessagingDirError::OtherFilesystem {
                shown,
                reference: reference.root.display().to_string(),
            });
        }
    }
    Ok(real)
}

/// `--messaging-dir` for `ward-agent run`: [`validate`]d, and passed on as given (made absolute,
/// not resolved: the vault refuses to wipe through a symbolic link). Once the vault was set up
/// (`set_up`), a directory the app's user has since moved away, replaced with a link or a
/// file, or mounted over does not keep the agent from starting: that would switch its offline
/// timer off. The agent starts, and its wipes still destroy the key.
pub fn for_run(
    dir: &Path,
    state_dir: &Path,
    allow_other_filesystem: bool,
    set_up: bool,
) -> Result<PathBuf, MessagingDirError> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let Err(e) = validate(
        dir,
        state_dir,
        allow_other_filesystem,
        &Reference::default(),
    ) else {
        return Ok(absolute);
    };
    let moved = std::fs::canonicalize(&absolute).map_or(true, |real| real != absolute);
    let changed = matches!(
        e,
        MessagingDirError::NotADirectory(_)
            | MessagingDirError::Unreadable(..)
            | MessagingDirError::OtherFilesystem { .. }
    );
    if !(set_up && (moved || changed)) {
        return Err(e);
    }
    tracing::error!(error = %e, "the messaging directory changed since its key was made; the agent starts anyway, so that its offline timer and wipes still destroy the key");
    Ok(absolute)
}

/// The person (a login account: uid 1000 to 65533) whose home directory `dir` is, per the
/// user database at `passwd`. A service account's home may well be its data directory.
fn home_owner(passwd: &Path, dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(passwd).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let (user, uid, home) = (fields.first()?, fields.get(2)?, fields.get(5)?);
        if !(1000..65534).contains(&uid.parse::<u32>().ok()?) {
            return None;
        }
        let home = Path::new(home);
        // Accounts whose "home" is / or a system directory are caught above.
        (home.is_absolute() && std::fs::canonicalize(home).ok()? == dir).then(|| user.to_string())
    })
}

#[cfg(test)]
#[path = "messaging_dir_tests.rs"]
mod tests;
