//! Fixture trees: dpkg status files, flatpak and snap directories, a fake `rpm`.

use std::fs;
use std::path::Path;

use super::*;

fn tree() -> (tempfile::TempDir, Roots) {
    let tmp = tempfile::tempdir().unwrap();
    let roots = Roots::under(tmp.path());
    (tmp, roots)
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn script(roots: &Roots, name: &str, body: &str) {
    let path = roots.bin_dir.as_ref().unwrap().join(name);
    write(&path, &format!("#!/bin/sh\n{body}\n"));
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

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

Package: half
Status: install reinstreq half-installed
";

#[test]
fn dpkg_counts_only_installed_packages() {
    let (_t, r) = tree();
    write(&r.var.join("lib/dpkg/status"), STATUS);
    let found = installed(&r);
    assert_eq!(
        found.managers,
        vec![Manager {
            name: "dpkg".into(),
            packages: vec!["bash".into(), "telegram-desktop".into()],
        }]
    );
    assert!(found.problems.is_empty());
    assert_eq!(counts(&r), vec![("dpkg".to_owned(), 2)]);
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
            "none of 2 forbidden packages installed (checked dpkg: 2, flatpak: 1)".into()
        )
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
        Outcome::Unsupported(d) if d.contains("rpm:") && d.contains("checked dpkg: 2")
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
