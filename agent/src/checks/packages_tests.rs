//! Fixture trees: dpkg status files, flatpak and snap directories, a fake `rpm`.

use std::fs;

use super::*;
use crate::checks::fixture::{script, tree, write};

const STATUS: &str = "\
Package: telegram-desktop
Status: install ok installed
Priority: optional
Description: messenger
 Package: not-a-field

Package: bash
Status: hold ok installed
Architecture: amd64

Package: bash
Status: install ok installed
Architecture: i386

Package: old-tool
Status: deinstall ok config-files

Package: gone
Status: purge ok not-installed

Package: half
Status: install reinstreq half-installed
";

/// Packages dpkg left part-way, e.g. an upgrade interrupted or a trigger not yet run: their
/// files are on disk all the same.
const PART_WAY: &str = "\
Package: anydesk
Status: install ok unpacked

Package: teamviewer
Status: install ok half-configured

Package: zoom
Status: install ok triggers-awaited

Package: skypeforlinux
Status: install ok triggers-pending
";

#[test]
fn dpkg_counts_packages_whose_files_are_on_disk() {
    let (_t, r) = tree();
    write(&r.var.join("lib/dpkg/status"), STATUS);
    let found = installed(&r);
    assert_eq!(
        found.managers,
        vec![Manager {
            name: "dpkg".into(),
            packages: vec!["bash".into(), "half".into(), "telegram-desktop".into()],
        }]
    );
    assert!(found.problems.is_empty());
    assert_eq!(counts(&r), vec![("dpkg".to_owned(), 3)]);
    assert_eq!(counts_of(&found), counts(&r));
}

#[test]
fn packages_left_part_way_by_dpkg_count_as_installed() {
    let (_t, r) = tree();
    write(
        &r.var.join("lib/dpkg/status"),
        &format!("{STATUS}\n{PART_WAY}"),
    );
    let deny: Vec<String> = [
        "AnyDesk",
        "teamviewer",
        "zoom",
        "skypeforlinux",
        "old-tool",
        "gone",
    ]
    .map(str::to_owned)
    .to_vec();
    assert_eq!(
        check(&r, &deny),
        Outcome::Fail(
            "forbidden packages installed: anydesk (dpkg), skypeforlinux (dpkg), teamviewer (dpkg), zoom (dpkg)"
                .into()
        )
    );
    assert_eq!(counts(&r), vec![("dpkg".to_owned(), 7)]);
}

#[test]
fn a_forbidden_package_fails_naming_its_manager() {
    let (_t, r) = tree();
    write(&r.var.join("lib/dpkg/status"), STATUS);
    fs::create_dir_all(r.var.join("lib/flatpak/app/org.telegram.desktop/current")).unwrap();
    let deny = [
        "Telegram-Desktop".to_owned(),
        "org.telegram.desktop".to_owned(),
    ];
    assert_eq!(
        check(&r, &deny),
        Outcome::Fail(
            "forbidden packages installed: telegram-desktop (dpkg), org.telegram.desktop (flatpak)"
                .into()
        )
    );
    // Deinstalled (config files only) does not count; partial names never match.
    let deny = ["old-tool".to_owned(), "telegram".to_owned()];
    assert_eq!(
        check(&r, &deny),
        Outcome::Pass(
            "none of 2 forbidden packages installed (system-wide: dpkg 3, flatpak 1; per-user flatpak installs are not read)"
                .into()
        )
    );
}

#[test]
fn one_reading_serves_the_check_and_the_counts() {
    let (_t, r) = tree();
    write(&r.var.join("lib/dpkg/status"), STATUS);
    fs::create_dir_all(r.var.join("lib/flatpak/app/org.telegram.desktop/current")).unwrap();
    let found = installed(&r);
    // The databases change after the reading: the answers stay those of the reading.
    fs::remove_dir_all(r.var.join("lib")).unwrap();
    let deny = ["org.telegram.desktop".to_owned()];
    assert_eq!(
        check_installed(&found, &deny),
        Outcome::Fail("forbidden packages installed: org.telegram.desktop (flatpak)".into())
    );
    assert_eq!(
        counts_of(&found),
        vec![("dpkg".to_owned(), 3), ("flatpak".to_owned(), 1)]
    );
    assert!(matches!(check(&r, &deny), Outcome::Unsupported(_)));
    assert_eq!(
        check_installed(&found, &[]),
        Outcome::Pass("the policy forbids no packages".into())
    );
}

#[test]
fn snaps_are_read_from_mounts_and_snap_files() {
    let (_t, r) = tree();
    for dir in ["firefox/4173", "core22/1033", "bin"] {
        fs::create_dir_all(r.snap.join(dir)).unwrap();
    }
    write(&r.snap.join("README"), "");
    for file in [
        "firefox_4173.snap",
        "spotify_80.snap",
        "foo_bar_1.snap",
        "notes.txt",
    ] {
        write(&r.var.join("lib/snapd/snaps").join(file), "");
    }
    fs::create_dir_all(r.var.join("lib/snapd/snaps/partial")).unwrap();
    let found = installed(&r);
    assert_eq!(
        found.managers[0].packages,
        ["core22", "firefox", "foo_bar", "spotify"]
    );
    assert!(matches!(
        check(&r, &["spotify".to_owned()]),
        Outcome::Fail(d) if d.contains("spotify (snap)")
    ));
}

#[test]
fn rpm_is_asked_when_its_database_exists() {
    let (_t, r) = tree();
    fs::create_dir_all(r.var.join("lib/rpm")).unwrap();
    script(
        &r,
        "rpm",
        "[ \"$1 $2 $3\" = '-qa --qf %{NAME}\\n' ] || exit 3\nprintf 'bash\\nzoom\\n'",
    );
    assert_eq!(counts(&r), vec![("rpm".to_owned(), 2)]);
    assert!(matches!(
        check(&r, &["ZOOM".to_owned()]),
        Outcome::Fail(d) if d == "forbidden packages installed: zoom (rpm)"
    ));
}

#[test]
fn an_unreadable_database_is_never_a_pass() {
    let (_t, r) = tree();
    write(&r.var.join("lib/dpkg/status"), STATUS);
    fs::create_dir_all(r.var.join("lib/rpm")).unwrap();
    // rpm's database is there but the program is not.
    let deny = ["zoom".to_owned()];
    assert!(matches!(
        check(&r, &deny),
        Outcome::Unsupported(d) if d.contains("rpm:") && d.contains("(system-wide: dpkg 3; per-user flatpak installs are not read)")
    ));
    script(
        &r,
        "rpm",
        "echo 'error: cannot open Packages database' >&2; exit 1",
    );
    assert!(matches!(
        check(&r, &deny),
        Outcome::Unsupported(d) if d.contains("cannot open Packages database")
    ));
}

#[test]
fn no_database_is_unsupported_and_an_empty_denylist_passes() {
    let (_t, r) = tree();
    assert!(matches!(
        check(&r, &["zoom".to_owned()]),
        Outcome::Unsupported(d) if d.starts_with("no package database could be read")
    ));
    assert!(counts(&r).is_empty());
    assert_eq!(
        check(&r, &[" ".to_owned()]),
        Outcome::Pass("the policy forbids no packages".into())
    );
}

#[test]
fn the_real_system_does_not_panic() {
    let roots = Roots::default();
    let outcome = check(&roots, &["ward-test-forbidden-package".to_owned()]);
    let (Outcome::Pass(d) | Outcome::Fail(d) | Outcome::Unsupported(d) | Outcome::Error(d)) =
        &outcome;
    assert!(!d.is_empty());
    println!(
        "packages on this system: {outcome:?}; counts {:?}",
        counts(&roots)
    );
}
