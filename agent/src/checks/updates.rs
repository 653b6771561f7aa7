//! Whether the system keeps its packages updated: days since the last package update
//! within the policy's limit, and (Debian/Ubuntu) no security update pending.
//!
//! Debian/Ubuntu: the newest `install`/`upgrade` line of `/var/log/dpkg.log` (or
//! `dpkg.log.1` just after log rotation; else the dpkg status file's modification time);
//! dpkg logs local time, read here as UTC, so an age may be off by under a day. Pending
//! security updates: `apt-get -s dist-upgrade` (a simulation, against the local package
//! lists; unlike `upgrade` it includes updates that need new packages, such as a kernel's),
//! whose origin names a security archive. Package lists older than the policy's limit
//! cannot vouch that nothing is pending: the detail says how old they are, and the check
//! then does not pass. RPM systems: the newest package install time from `rpm`; pending
//! dnf/yum security advisories are not read.

use std::path::Path;
use std::time::{Duration, SystemTime};

use time::PrimitiveDateTime;
use time::macros::format_description;

use super::{Outcome, Roots, RunError};

const APT_TIMEOUT: Duration = Duration::from_secs(60);
const RPM_TIMEOUT: Duration = Duration::from_secs(60);
const OUTPUT_LIMIT: usize = 8 * 1024 * 1024;
/// How many pending updates a detail names.
const NAMED: usize = 5;

pub fn check(roots: &Roots, max_age_days: u32, now: SystemTime) -> Outcome {
    if max_age_days == 0 {
        return Outcome::Pass("the policy sets no update rule".into());
    }
    let status = roots.var.join("lib/dpkg/status");
    let rpm_db = roots.var.join("lib/rpm");
    if status.exists() {
        debian(roots, &status, max_age_days, now)
    } else if rpm_db.exists() {
        rpm(roots, max_age_days, now)
    } else {
        Outcome::Unsupported(format!(
            "neither a dpkg database ({}) nor an rpm database ({}) was found",
            status.display(),
            rpm_db.display()
        ))
    }
}

fn debian(roots: &Roots, status: &Path, max_age_days: u32, now: SystemTime) -> Outcome {
    let last = last_dpkg_update(roots).or_else(|| std::fs::metadata(status).ok()?.modified().ok());
    let Some(last) = last else {
        return Outcome::Error(format!("cannot read {}", status.display()));
    };
    let age = days_between(last, now);
    let age_text = format!(
        "last package update {}, policy allows {max_age_days}",
        ago(age)
    );
    let mut fails = Vec::new();
    let (unknown, lists) = match pending_security(roots, max_age_days, now) {
        Ok(found) => {
            if !found.names.is_empty() {
                fails.push(pending_text(&found.names));
            }
            let lists = format!("package lists from {}", ago(found.lists_age));
            match found.unknown {
                Some(why) => (Some(why), None),
                None => (None, Some(lists)),
            }
        }
        Err(why) => (Some(why), None),
    };
    if age > u64::from(max_age_days) || !fails.is_empty() {
        let more = if fails.is_empty() {
            "pending security updates not known"
        } else {
            "more may be pending"
        };
        fails.extend(lists);
        fails.push(age_text);
        if let Some(why) = unknown {
            fails.push(format!("{more}: {why}"));
        }
        Outcome::Fail(fails.join("; "))
    } else if let Some(why) = unknown {
        Outcome::Unsupported(format!(
            "pending security updates cannot be known: {why}; {age_text}"
        ))
    } else {
        let lists = lists.map(|l| format!("; {l}")).unwrap_or_default();
        Outcome::Pass(format!("no security updates pending{lists}; {age_text}"))
    }
}

fn pending_text(pending: &[String]) -> String {
    let mut names = pending
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if pending.len() > NAMED {
        names.push_str(", …");
    }
    let plural = if pending.len() == 1 { "" } else { "s" };
    format!(
        "{} security update{plural} pending ({names})",
        pending.len()
    )
}

/// The newest install/upgrade in dpkg's log (the current one, else the last rotated one).
fn last_dpkg_update(roots: &Roots) -> Option<SystemTime> {
    ["log/dpkg.log", "log/dpkg.log.1"].iter().find_map(|log| {
        let text = std::fs::read_to_string(roots.var.join(log)).ok()?;
        newest_dpkg_change(&text)
    })
}

fn newest_dpkg_change(log: &str) -> Option<SystemTime> {
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    log.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (date, time, action) = (words.next()?, words.next()?, words.next()?);
            if !matches!(action, "install" | "upgrade") {
                return None;
            }
            let at = PrimitiveDateTime::parse(&format!("{date} {time}"), format).ok()?;
            Some(SystemTime::from(at.assume_utc()))
        })
        .max()
}

/// What `apt-get -s dist-upgrade` says about pending security updates.
struct Pending {
    /// The security updates it would install.
    names: Vec<String>,
    /// Whole days since the newest package list was written.
    lists_age: u64,
    /// Why no pending update listed does not mean none is pending (stale package lists).
    unknown: Option<String>,
}

/// Security updates `apt-get -s dist-upgrade` would install, from the local package lists.
fn pending_security(roots: &Roots, max_age_days: u32, now: SystemTime) -> Result<Pending, String> {
    let lists = roots.var.join("lib/apt/lists");
    let newest_list = std::fs::read_dir(&lists)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("_Packages"))
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    let Some(newest_list) = newest_list else {
        return Err(format!(
            "there are no package lists in {} (apt-get update has not run)",
            lists.display()
        ));
    };
    let ran = roots
        .run(
            "apt-get",
            &["-s", "-o", "Debug::NoLocking=1", "dist-upgrade"],
            APT_TIMEOUT,
            OUTPUT_LIMIT,
        )
        .map_err(|e| e.to_string())?;
    if !ran.status.success() {
        return Err(format!("apt-get -s dist-upgrade failed: {}", ran.failure()));
    }
    if ran.truncated {
        return Err("apt-get -s dist-upgrade printed more than 8 MiB".into());
    }
    let lists_age = days_between(newest_list, now);
    // Updates listed in old lists are pending all the same; but old lists cannot know of
    // the updates published since.
    let unknown = (lists_age > u64::from(max_age_days)).then(|| {
        format!(
            "the package lists are {lists_age} day{} old: run apt-get update",
            if lists_age == 1 { "" } else { "s" }
        )
    });
    Ok(Pending {
        names: parse_security_installs(&ran.stdout),
        lists_age,
        unknown,
    })
}

/// Package names of `Inst` lines whose origin names a security archive, e.g.
/// `Inst libssl3 [3.0.11-1] (3.0.13-1 Debian-Security:12/stable-security [amd64])`.
fn parse_security_installs(output: &str) -> Vec<String> {
    let mut names: Vec<String> = output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            // "libssl3:i386": a foreign architecture of the same package.
            let name = rest.split_whitespace().next()?.split(':').next()?;
            let origin = &rest[rest.find('(')?..];
            origin
                .to_ascii_lowercase()
                .contains("security")
                .then(|| name.to_owned())
        })
        .collect();
    // Keep apt's order, once per name (several architectures of one package).
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn rpm(roots: &Roots, max_age_days: u32, now: SystemTime) -> Outcome {
    let ran = match roots.run(
        "rpm",
        &["-qa", "--qf", "%{INSTALLTIME}\\n"],
        RPM_TIMEOUT,
        OUTPUT_LIMIT,
    ) {
        Ok(ran) => ran,
        Err(RunError::Missing(why)) => {
            return Outcome::Unsupported(format!("there is an rpm database but {why}"));
        }
        Err(RunError::Failed(why)) => return Outcome::Error(why),
    };
    if !ran.status.success() {
        return Outcome::Error(format!("rpm -qa failed: {}", ran.failure()));
    }
    let newest = ran
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max();
    let Some(newest) = newest else {
        return Outcome::Unsupported("rpm lists no installed packages".into());
    };
    let age = days_between(SystemTime::UNIX_EPOCH + Duration::from_secs(newest), now);
    let age_text = format!(
        "last package update {}, policy allows {max_age_days}",
        ago(age)
    );
    if age > u64::from(max_age_days) {
        Outcome::Fail(format!(
            "{age_text} (pending dnf/yum security updates are not checked)"
        ))
    } else {
        Outcome::Unsupported(format!(
            "pending security updates are not checked on rpm systems (dnf/yum advisories are not read); {age_text}"
        ))
    }
}

/// Whole days from `then` to `now`; 0 when `then` is in the future.
fn days_between(then: SystemTime, now: SystemTime) -> u64 {
    now.duration_since(then).map_or(0, |d| d.as_secs() / 86_400)
}

fn ago(days: u64) -> String {
    match days {
        0 => "less than a day ago".into(),
        1 => "1 day ago".into(),
        n => format!("{n} days ago"),
    }
}

#[cfg(test)]
#[path = "updates_tests.rs"]
mod tests;
