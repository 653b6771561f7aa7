//! Screen auto-lock from the system-wide GNOME (dconf) settings in `/etc/dconf/db/*.d/`:
//! `idle-delay` within the policy, `lock-enabled=true`, and both locked so users cannot
//! change them. Other desktops are reported as unsupported.

use super::{Outcome, Roots};

const SESSION: &str = "org/gnome/desktop/session";
const SCREENSAVER: &str = "org/gnome/desktop/screensaver";

#[derive(Default)]
struct Found {
    idle_delay: Option<u32>,
    lock_enabled: Option<bool>,
    locked: Vec<String>,
}

pub fn check(roots: &Roots, max_seconds: u32) -> Outcome {
    if max_seconds == 0 {
        return Outcome::Pass("the policy sets no auto-lock rule".into());
    }
    let db = roots.etc.join("dconf/db");
    let Ok(dirs) = std::fs::read_dir(&db) else {
        return Outcome::Unsupported(format!(
            "no system-wide desktop settings ({} is missing): auto-lock can only be verified for GNOME",
            db.display()
        ));
    };
    let mut found = Found::default();
    let mut keyfiles = 0;
    for dir in dirs
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.extension().is_some_and(|e| e == "d"))
    {
        for file in std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
        {
            keyfiles += 1;
            read_keyfile(
                &std::fs::read_to_string(&file).unwrap_or_default(),
                &mut found,
            );
        }
        for file in std::fs::read_dir(dir.join("locks"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
        {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            found.locked.extend(
                text.lines()
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty() && !l.starts_with('#')),
            );
        }
    }
    if keyfiles == 0 {
        return Outcome::Unsupported(format!(
            "{} holds no settings: auto-lock can only be verified for GNOME",
            db.display()
        ));
    }
    let mut problems = Vec::new();
    match found.idle_delay {
        None => problems.push("idle-delay is not set system-wide".to_owned()),
        Some(0) => problems.push("idle-delay is 0 (never idle)".to_owned()),
        Some(d) if d > max_seconds => problems.push(format!(
            "idle-delay is {d}s, policy needs at most {max_seconds}s"
        )),
        Some(_) => {}
    }
    if found.lock_enabled != Some(true) {
        problems.push("screensaver lock-enabled is not true".to_owned());
    }
    for key in [
        format!("/{SESSION}/idle-delay"),
        format!("/{SCREENSAVER}/lock-enabled"),
    ] {
        if !found.locked.contains(&key) {
            problems.push(format!("{key} is not locked, so users can change it"));
        }
    }
    if problems.is_empty() {
        Outcome::Pass(format!(
            "GNOME locks the screen after {}s of inactivity",
            found.idle_delay.unwrap_or(0)
        ))
    } else {
        Outcome::Fail(problems.join("; "))
    }
}

fn read_keyfile(text: &str, found: &mut Found) {
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim_matches('/').to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        match (section.as_str(), key.trim()) {
            (SESSION, "idle-delay") => {
                // GVariant text: "uint32 300" or "300".
                found.idle_delay = value.rsplit(' ').next().and_then(|v| v.parse().ok());
            }
            (SCREENSAVER, "lock-enabled") => found.lock_enabled = Some(value == "true"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(files: &[(&str, &str)]) -> (tempfile::TempDir, Roots) {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        for (name, text) in files {
            let path = etc.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        (
            tmp,
            Roots {
                proc: "/proc".into(),
                sys: "/sys".into(),
                etc,
                ..Roots::under(std::path::Path::new("/nonexistent"))
            },
        )
    }

    const SETTINGS: &str = "[org/gnome/desktop/session]\nidle-delay=uint32 300\n\n[org/gnome/desktop/screensaver]\nlock-enabled=true\n";
    const LOCKS: &str =
        "/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-enabled\n";

    #[test]
    fn locked_gnome_settings_within_policy_pass() {
        let (_t, r) = roots(&[
            ("dconf/db/local.d/00-ward", SETTINGS),
            ("dconf/db/local.d/locks/ward", LOCKS),
        ]);
        assert!(matches!(check(&r, 300), Outcome::Pass(_)));
        assert!(matches!(check(&r, 120), Outcome::Fail(d) if d.contains("at most 120s")));
    }

    #[test]
    fn unlocked_settings_fail_and_no_desktop_is_unsupported() {
        let (_t, r) = roots(&[("dconf/db/local.d/00-ward", SETTINGS)]);
        assert!(matches!(check(&r, 600), Outcome::Fail(d) if d.contains("not locked")));
        let (_t2, none) = roots(&[]);
        assert!(matches!(check(&none, 600), Outcome::Unsupported(_)));
        assert!(matches!(check(&none, 0), Outcome::Pass(_)));
    }
}
