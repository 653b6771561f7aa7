//! Installed packages per package manager, and the check that none the policy forbids is
//! installed. Read: dpkg's status file (every package whose files are on disk, also one an
//! interrupted install or upgrade left unpacked or half-configured), `rpm -qa`, system-wide
//! flatpak apps (`/var/lib/flatpak/app`) and snaps (`/snap/<name>`,
//! `/var/lib/snapd/snaps/*.snap`). Per-user flatpak installs (`~/.local/share/flatpak`) are
//! not read, and a pass says so.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Outcome, Roots, RunError};

/// The packages of one manager whose database could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manager {
    /// "dpkg", "rpm", "flatpak" or "snap".
    pub name: String,
    /// Sorted, without duplicates.
    pub packages: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// The managers whose database was read, in the order above.
    pub managers: Vec<Manager>,
    /// Databases that exist but could not be read, with the reason.
    pub problems: Vec<String>,
    /// Where the databases were looked for, for a detail when none was found.
    pub looked_for: String,
}

/// What one manager's reader found: `None` when the manager has no database here; else its
/// package names, or why its database could not be read.
type Read = Option<Result<Vec<String>, String>>;
type Reader = fn(&Roots) -> Read;

const RPM_TIMEOUT: Duration = Duration::from_secs(60);
const RPM_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// Every package manager's installed packages. A manager with no database on this system is
/// left out; one whose database exists but cannot be read is a problem. [`check_installed`]
/// and [`counts_of`] both use the result, so one reading can serve both.
pub fn installed(roots: &Roots) -> Installed {
    let mut found = Installed {
        looked_for: format!(
            "{}, rpm, {} and snaps in {}",
            roots.var.join("lib/dpkg/status").display(),
            roots.var.join("lib/flatpak/app").display(),
            roots.snap.display()
        ),
        ..Installed::default()
    };
    let readers: [(&str, Reader); 4] = [
        ("dpkg", dpkg),
        ("rpm", rpm),
        ("flatpak", flatpak),
        ("snap", snap),
    ];
    for (name, read) in readers {
        match read(roots) {
            None => {}
            Some(Ok(names)) => {
                let packages: BTreeSet<String> = names.into_iter().collect();
                found.managers.push(Manager {
                    name: name.to_owned(),
                    packages: packages.into_iter().collect(),
                });
            }
            Some(Err(problem)) => found.problems.push(format!("{name}: {problem}")),
        }
    }
    found
}

/// How many packages each readable manager has installed (the agent itself reads the
/// databases once for the check and the inventory: [`counts_of`]).
#[cfg(test)]
pub fn counts(roots: &Roots) -> Vec<(String, u32)> {
    counts_of(&installed(roots))
}

/// [`counts`] from packages already read.
pub fn counts_of(installed: &Installed) -> Vec<(String, u32)> {
    installed
        .managers
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                u32::try_from(m.packages.len()).unwrap_or(u32::MAX),
            )
        })
        .collect()
}

/// Fails when a package named in `denylist` (exact name, ASCII case-insensitive) is
/// installed by any manager.
#[cfg(test)]
pub fn check(roots: &Roots, denylist: &[String]) -> Outcome {
    if forbidden(denylist).is_empty() {
        // Nothing to look for: the databases are not read.
        return Outcome::Pass("the policy forbids no packages".into());
    }
    check_installed(&installed(roots), denylist)
}

fn forbidden(denylist: &[String]) -> BTreeSet<String> {
    denylist
        .iter()
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect()
}

/// [`check`] against packages already read.
pub fn check_installed(installed: &Installed, denylist: &[String]) -> Outcome {
    let denied = forbidden(denylist);
    if denied.is_empty() {
        return Outcome::Pass("the policy forbids no packages".into());
    }
    let found = installed;
    if found.managers.is_empty() {
        let mut why = format!(
            "no package database could be read (looked for {})",
            found.looked_for
        );
        if !found.problems.is_empty() {
            why = format!("{why}: {}", found.problems.join("; "));
        }
        return Outcome::Unsupported(why);
    }
    let hits: Vec<String> = found
        .managers
        .iter()
        .flat_map(|m| {
            m.packages
                .iter()
                .filter(|p| denied.contains(&p.to_ascii_lowercase()))
                .map(move |p| format!("{p} ({})", m.name))
        })
        .collect();
    let mut read = found
        .managers
        .iter()
        .map(|m| format!("{} {}", m.name, m.packages.len()))
        .collect::<Vec<_>>()
        .join(", ");
    read = format!("system-wide: {read}; per-user flatpak installs are not read");
    let unread = if found.problems.is_empty() {
        String::new()
    } else {
        format!("; not read: {}", found.problems.join("; "))
    };
    if !hits.is_empty() {
        Outcome::Fail(format!(
            "forbidden packages installed: {}{unread}",
            hits.join(", ")
        ))
    } else if !found.problems.is_empty() {
        // A database we could not read may hold a forbidden package: no pass.
        Outcome::Unsupported(format!(
            "none of {} forbidden packages found in what could be read ({read}){unread}",
            denied.len()
        ))
    } else {
        Outcome::Pass(format!(
            "none of {} forbidden packages installed ({read})",
            denied.len()
        ))
    }
}

/// Packages in dpkg's status file whose files are on disk: installed (including ones on
/// hold or selected for removal), and ones left part-way (unpacked, half-configured,
/// half-installed, waiting for triggers). Not ones with only config files left, or none.
fn dpkg(roots: &Roots) -> Read {
    let path = roots.var.join("lib/dpkg/status");
    if !path.exists() {
        return None;
    }
    Some(
        std::fs::read_to_string(&path)
            .map(|text| parse_dpkg_status(&text))
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
    )
}

/// dpkg package states (the third word of `Status:`) whose files are on disk.
const ON_DISK: &[&str] = &[
    "installed",
    "unpacked",
    "half-configured",
    "half-installed",
    "triggers-awaited",
    "triggers-pending",
];

pub(crate) fn parse_dpkg_status(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |key: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        let on_disk = field("Status")
            .and_then(|s| s.split_whitespace().nth(2))
            .is_some_and(|state| ON_DISK.contains(&state));
        if let (true, Some(name)) = (on_disk, field("Package")) {
            names.push(name.to_owned());
        }
    }
    names
}

/// `rpm -qa`, when there is an rpm database.
fn rpm(roots: &Roots) -> Read {
    let db = roots.var.join("lib/rpm");
    if !db.exists() {
        return None;
    }
    let ran = match roots.run(
        "rpm",
        &["-qa", "--qf", "%{NAME}\\n"],
        RPM_TIMEOUT,
        RPM_OUTPUT_LIMIT,
    ) {
        Ok(ran) => ran,
        Err(RunError::Missing(why)) => {
            return Some(Err(format!("{} exists but {why}", db.display())));
        }
        Err(RunError::Failed(why)) => return Some(Err(why)),
    };
    if !ran.status.success() {
        return Some(Err(format!("rpm -qa failed: {}", ran.failure())));
    }
    if ran.truncated {
        return Some(Err("rpm -qa printed more than 8 MiB".into()));
    }
    Some(Ok(ran
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()))
}

/// System-wide flatpak apps: one directory per application id.
fn flatpak(roots: &Roots) -> Read {
    let dir = roots.var.join("lib/flatpak/app");
    if !dir.exists() {
        return None;
    }
    Some(
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .map_err(|e| format!("cannot read {}: {e}", dir.display())),
    )
}

/// Snaps: the mount directories `/snap/<name>` and the files `name_revision.snap` snapd
/// keeps in `/var/lib/snapd/snaps`.
fn snap(roots: &Roots) -> Read {
    let files = roots.var.join("lib/snapd/snaps");
    if !roots.snap.exists() && !files.exists() {
        return None;
    }
    let mut names = Vec::new();
    let mut read_any = false;
    let mut problems = Vec::new();
    if roots.snap.exists() {
        match std::fs::read_dir(&roots.snap) {
            Ok(entries) => {
                read_any = true;
                names.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != "bin" && n != "README"),
                );
            }
            Err(e) => problems.push(format!("cannot read {}: {e}", roots.snap.display())),
        }
    }
    if files.exists() {
        match std::fs::read_dir(&files) {
            Ok(entries) => {
                read_any = true;
                names.extend(entries.flatten().filter_map(|e| {
                    let file = e.file_name().to_string_lossy().into_owned();
                    let (name, _revision) = file.strip_suffix(".snap")?.rsplit_once('_')?;
                    Some(name.to_owned())
                }));
            }
            Err(e) => problems.push(format!("cannot read {}: {e}", files.display())),
        }
    }
    Some(if read_any {
        Ok(names)
    } else {
        Err(problems.join("; "))
    })
}

#[cfg(test)]
#[path = "packages_tests.rs"]
mod tests;
