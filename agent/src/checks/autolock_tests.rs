//! Fixture trees of `/etc/dconf`. The compiled databases in `fixtures/dconf/` are what
//! `dconf compile` (dconf 0.40) made of these keyfiles: `locked` and `unlocked` from
//! `SETTINGS`, `locked` and `locks-only` with `LOCKS` in `locks/`.

use std::time::{Duration, SystemTime};

use super::*;
use crate::checks::fixture::{tree, write};

const SETTINGS: &str = "[org/gnome/desktop/session]\nidle-delay=uint32 300\n\n[org/gnome/desktop/screensaver]\nlock-enabled=true\n";
const LOCKS: &str =
    "/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-enabled\n";
const LOCKED: &[u8] = include_bytes!("fixtures/dconf/locked");
const UNLOCKED: &[u8] = include_bytes!("fixtures/dconf/unlocked");
const LOCKS_ONLY: &[u8] = include_bytes!("fixtures/dconf/locks-only");
const PROFILE: &str = "user-db:user\nsystem-db:local\n";

/// A tree with the user profile, `local.d`'s keyfiles and locks, and (if given) the compiled
/// `local` database, written after the keyfiles as `dconf update` does.
fn gnome(profile: Option<&str>, compiled: Option<&[u8]>) -> (tempfile::TempDir, Roots) {
    let (tmp, r) = tree();
    let dconf = r.etc.join("dconf");
    write(&dconf.join("db/local.d/00-ward"), SETTINGS);
    write(&dconf.join("db/local.d/locks/ward"), LOCKS);
    age(&dconf.join("db/local.d/00-ward"));
    age(&dconf.join("db/local.d/locks/ward"));
    age(&dconf.join("db/local.d/locks"));
    age(&dconf.join("db/local.d"));
    if let Some(profile) = profile {
        write(&dconf.join("profile/user"), profile);
    }
    if let Some(db) = compiled {
        std::fs::write(dconf.join("db/local"), db).unwrap();
    }
    (tmp, r)
}

/// Dates a file an hour back, as if written before the database was compiled.
fn age(path: &Path) {
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(!path.is_dir())
        .read(path.is_dir())
        .open(path)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
}

#[test]
fn locked_settings_compiled_into_a_profile_database_pass() {
    let (_t, r) = gnome(Some(PROFILE), Some(LOCKED));
    let outcome = check(&r, 300);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("after 300s")),
        "{outcome:?}"
    );
    assert!(matches!(check(&r, 120), Outcome::Fail(d) if d.contains("at most 120s")));
    // The distribution's profile serves when /etc has none.
    std::fs::remove_file(r.etc.join("dconf/profile/user")).unwrap();
    write(&r.usr.join("share/dconf/profile/user"), PROFILE);
    assert!(matches!(check(&r, 300), Outcome::Pass(_)));
}

// dconf reads only the compiled database: keyfiles `dconf update` never compiled apply nothing.
#[test]
fn keyfiles_without_dconf_update_do_not_count() {
    let (_t, r) = gnome(Some(PROFILE), None);
    let outcome = check(&r, 300);
    assert!(
        matches!(&outcome, Outcome::Fail(d)
            if d.contains("idle-delay is not locked") && d.contains("run `dconf update`")),
        "{outcome:?}"
    );
    // Compiled before the locks were added: the settings apply, unlocked, and the detail
    // says the keyfiles changed since.
    let (_t, r) = gnome(Some(PROFILE), Some(UNLOCKED));
    age(&r.etc.join("dconf/db/local"));
    write(&r.etc.join("dconf/db/local.d/locks/ward"), LOCKS);
    let outcome = check(&r, 300);
    assert!(
        matches!(&outcome, Outcome::Fail(d)
            if d.contains("lock-enabled is not locked") && d.contains("changed after") && d.contains("dconf update")),
        "{outcome:?}"
    );
}

// Only the databases the user profile lists apply.
#[test]
fn a_database_the_profile_does_not_use_does_not_count() {
    let (_t, r) = gnome(None, Some(LOCKED));
    let outcome = check(&r, 300);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("no dconf user profile")),
        "{outcome:?}"
    );
    let (_t, r) = gnome(Some("user-db:user\nsystem-db:site\n"), Some(LOCKED));
    let outcome = check(&r, 300);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("not locked in any system database the profile uses")),
        "{outcome:?}"
    );
}

#[test]
fn locks_decide_which_database_a_value_is_taken_from() {
    // Values in local, locks only in site, later in the profile: dconf reads from site on,
    // so the values in local are hidden (as `dconf read` shows for this profile).
    let (_t, r) = gnome(
        Some("user-db:user\nsystem-db:local\nsystem-db:site\n"),
        Some(UNLOCKED),
    );
    std::fs::write(r.etc.join("dconf/db/site"), LOCKS_ONLY).unwrap();
    let outcome = check(&r, 300);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("idle-delay is locked in site but not set there")),
        "{outcome:?}"
    );
    // The other order: locked in local, set in site after it.
    write(
        &r.etc.join("dconf/profile/user"),
        "user-db:user\nsystem-db:site\nsystem-db:local\n",
    );
    assert!(matches!(check(&r, 300), Outcome::Pass(_)));
    // A profile without a user database: nobody can change anything, locks or not.
    write(&r.etc.join("dconf/profile/user"), "system-db:local\n");
    assert!(matches!(check(&r, 300), Outcome::Pass(_)));
    // A user database after the first line: its files decide.
    write(
        &r.etc.join("dconf/profile/user"),
        "system-db:local\nuser-db:user\n",
    );
    assert!(matches!(check(&r, 300), Outcome::Unsupported(_)));
}

#[test]
fn unreadable_databases_and_other_desktops_are_unsupported() {
    let (_t, r) = gnome(Some(PROFILE), Some(b"not a database"));
    assert!(
        matches!(check(&r, 300), Outcome::Unsupported(d) if d.contains("cannot read the compiled dconf database"))
    );
    let (_t, r) = gnome(Some("user-db:user\nfile-db:/home/x/db\n"), Some(LOCKED));
    assert!(matches!(check(&r, 300), Outcome::Unsupported(d) if d.contains("file-db:/home/x/db")));
    let (_t, none) = tree();
    assert!(matches!(check(&none, 600), Outcome::Unsupported(_)));
    assert!(matches!(check(&none, 0), Outcome::Pass(_)));
}
