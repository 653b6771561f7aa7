//! Screen auto-lock as dconf applies it to a GNOME session: `idle-delay` within the policy and
//! `lock-enabled=true`, both locked so users cannot change them.
//!
//! What counts is what dconf reads, not the keyfiles admins write: the system databases are
//! the compiled files `/etc/dconf/db/NAME` that `dconf update` builds from `NAME.d/`, and only
//! those the user profile (`/etc/dconf/profile/user`, else the distribution's under
//! `/usr/share`) lists. For each key dconf takes, like `dconf_engine_read`, the last database
//! after the first that locks it, then the first value from that one on; without a lock, the
//! user's own database comes first and the user can set anything. Per-user
//! profiles (`DCONF_PROFILE`, `/run/dconf/user/UID`) are not read. Other desktops are
//! "unsupported".

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Outcome, Roots};

const IDLE_DELAY: &str = "/org/gnome/desktop/session/idle-delay";
const LOCK_ENABLED: &str = "/org/gnome/desktop/screensaver/lock-enabled";

/// One line of a dconf profile.
enum Source {
    /// `user-db:` or `service-db:`: the user writes it.
    User(String),
    /// `system-db:NAME` or `file-db:PATH`: a compiled database, and its keyfile directory
    /// for `system-db`.
    Compiled { name: String, path: PathBuf },
}

/// A compiled database as read: its file's bytes, or why there are none.
struct Db {
    name: String,
    file: Option<gvdb::read::File<'static>>,
}

/// A key's value as dconf resolves it for the user.
enum Effective<T> {
    /// Locked, with the value found from the locking database on (`None`: no database
    /// there sets it, so the schema default applies, which is not read).
    Locked { value: Option<T>, by: String },
    /// Not locked: the user's database comes first.
    UserChangeable,
    /// Not locked, but no database the user writes is in the profile.
    Fixed { value: Option<T> },
}

pub fn check(roots: &Roots, max_seconds: u32) -> Outcome {
    if max_seconds == 0 {
        return Outcome::Pass("the policy sets no auto-lock rule".into());
    }
    let dconf = roots.etc.join("dconf");
    if !dconf.is_dir() {
        return Outcome::Unsupported(format!(
            "no system-wide desktop settings ({} is missing): auto-lock can only be verified for GNOME",
            dconf.display()
        ));
    }
    let (profile_path, sources) = match profile(roots) {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    let mut dbs = Vec::new();
    let mut notes = Vec::new();
    for source in &sources {
        match source {
            Source::User(line) => dbs.push(Db {
                name: line.clone(),
                file: None,
            }),
            Source::Compiled { name, path } => {
                if let Some(note) = stale(path) {
                    notes.push(note);
                }
                let file = if path.exists() {
                    match gvdb::read::File::from_file(path) {
                        Ok(file) => Some(file),
                        Err(e) => {
                            return Outcome::Unsupported(format!(
                                "cannot read the compiled dconf database {}: {e}",
                                path.display()
                            ));
                        }
                    }
                } else {
                    None
                };
                dbs.push(Db {
                    name: name.clone(),
                    file,
                });
            }
        }
    }
    let writable: Vec<bool> = sources
        .iter()
        .map(|s| matches!(s, Source::User(_)))
        .collect();
    if writable.iter().skip(1).any(|w| *w) {
        return Outcome::Unsupported(format!(
            "{} lists a database the user writes after its first line; which values apply then depends on that user's files",
            profile_path.display()
        ));
    }
    let idle = effective(&dbs, &writable, IDLE_DELAY, |t, k| t.get::<u32>(k));
    let lock = effective(&dbs, &writable, LOCK_ENABLED, |t, k| t.get::<bool>(k));
    let mut problems = Vec::new();
    let idle_value = judge(&idle, "idle-delay", &mut problems);
    let lock_value = judge(&lock, "lock-enabled", &mut problems);
    match idle_value {
        None => {}
        Some(0) => problems.push("idle-delay is 0 (never idle)".to_owned()),
        Some(d) if d > max_seconds => problems.push(format!(
            "idle-delay is {d}s, policy needs at most {max_seconds}s"
        )),
        Some(_) => {}
    }
    if lock_value == Some(false) {
        problems.push("screensaver lock-enabled is false".to_owned());
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    if problems.is_empty() {
        Outcome::Pass(format!(
            "GNOME locks the screen after {}s of inactivity, locked in the dconf databases of {}{notes}",
            idle_value.unwrap_or(0),
            profile_path.display()
        ))
    } else {
        Outcome::Fail(format!(
            "{} (as dconf applies {}){notes}",
            problems.join("; "),
            profile_path.display()
        ))
    }
}

/// The user profile and its sources. dconf reads `/etc/dconf/profile/user`, else the first of
/// `/usr/local/share` and `/usr/share`; with none it uses the user's database alone.
fn profile(roots: &Roots) -> Result<(PathBuf, Vec<Source>), Outcome> {
    let candidates = [
        roots.etc.join("dconf/profile/user"),
        roots.usr.join("local/share/dconf/profile/user"),
        roots.usr.join("share/dconf/profile/user"),
    ];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(Outcome::Fail(format!(
            "no dconf user profile ({}), so dconf applies only each user's own settings: no system database is used",
            candidates[0].display()
        )));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Outcome::Unsupported(format!("cannot read {}: {e}", path.display())))?;
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((kind, name)) = line.split_once(':') else {
            continue;
        };
        match kind {
            "user-db" | "service-db" => sources.push(Source::User(line.to_owned())),
            "system-db" if !name.is_empty() && !name.contains('/') => {
                sources.push(Source::Compiled {
                    name: name.to_owned(),
                    path: roots.etc.join("dconf/db").join(name),
                })
            }
            "file-db" => {
                let mapped = name
                    .strip_prefix("/etc/")
                    .map(|rest| roots.etc.join(rest))
                    .or_else(|| name.strip_prefix("/usr/").map(|rest| roots.usr.join(rest)));
                let Some(mapped) = mapped else {
                    return Err(Outcome::Unsupported(format!(
                        "{} uses file-db:{name}, outside /etc and /usr, which is not read",
                        path.display()
                    )));
                };
                sources.push(Source::Compiled {
                    name: name.to_owned(),
                    path: mapped,
                });
            }
            // dconf ignores lines it does not know, with a warning.
            _ => {}
        }
    }
    Ok((path.clone(), sources))
}

/// "local.d changed after local was compiled": `dconf update` has not run since.
fn stale(compiled: &Path) -> Option<String> {
    let dir = PathBuf::from(format!("{}.d", compiled.display()));
    if !dir.is_dir() {
        return None;
    }
    let newest = newest_mtime(&dir)?;
    let name = compiled.display();
    match std::fs::metadata(compiled).and_then(|m| m.modified()) {
        Err(_) => Some(format!(
            "{name} does not exist: run `dconf update` to compile {}",
            dir.display()
        )),
        Ok(at) if newest > at => Some(format!(
            "{} changed after {name} was compiled: run `dconf update`",
            dir.display()
        )),
        Ok(_) => None,
    }
}

/// The latest modification time of a keyfile directory, its files and its `locks/`.
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok()?;
    for sub in [dir.to_path_buf(), dir.join("locks")] {
        for entry in std::fs::read_dir(&sub).into_iter().flatten().flatten() {
            if let Ok(at) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(at);
            }
        }
    }
    Some(newest)
}

/// The key's value for the user, following dconf's rules for locks.
fn effective<T>(
    dbs: &[Db],
    writable: &[bool],
    key: &str,
    read: impl Fn(&gvdb::read::HashTable<'_, '_>, &str) -> gvdb::read::Result<T>,
) -> Effective<Result<T, String>> {
    let locked_at = (1..dbs.len()).rev().find(|&i| {
        let Some(file) = &dbs[i].file else {
            return false;
        };
        let Ok(table) = file.hash_table() else {
            return false;
        };
        table
            .get_hash_table(".locks")
            .is_ok_and(|locks| locks.get_value(key).is_ok())
    });
    let value_from = |start: usize| {
        dbs.iter().skip(start).find_map(|db| {
            let table = db.file.as_ref()?.hash_table().ok()?;
            table.get_value(key).ok()?;
            Some(read(&table, key).map_err(|e| format!("cannot be read from {}: {e}", db.name)))
        })
    };
    match locked_at {
        Some(i) => Effective::Locked {
            value: value_from(i),
            by: dbs[i].name.clone(),
        },
        None if writable.first() == Some(&true) => Effective::UserChangeable,
        None => Effective::Fixed {
            value: value_from(0),
        },
    }
}

/// The value a key has for every user, or `None` with the problem noted.
fn judge<T: Copy>(
    found: &Effective<Result<T, String>>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    match found {
        Effective::UserChangeable => {
            problems.push(format!(
                "{name} is not locked in any system database the profile uses, so users can change it"
            ));
            None
        }
        Effective::Locked { value: None, by } => {
            problems.push(format!(
                "{name} is locked in {by} but not set there or in a database after it, so the desktop's default applies"
            ));
            None
        }
        Effective::Fixed { value: None } => {
            problems.push(format!(
                "{name} is not set in any system database the profile uses"
            ));
            None
        }
        Effective::Locked {
            value: Some(Err(why)),
            ..
        }
        | Effective::Fixed {
            value: Some(Err(why)),
        } => {
            problems.push(format!("{name} {why}"));
            None
        }
        Effective::Locked {
            value: Some(Ok(v)), ..
        }
        | Effective::Fixed { value: Some(Ok(v)) } => Some(*v),
    }
}

#[cfg(test)]
#[path = "autolock_tests.rs"]
mod tests;
