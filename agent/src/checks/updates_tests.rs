//! Fixture trees: dpkg logs and status files, apt lists, fake `apt-get` and `rpm`.

use std::fs;
use std::path::Path;

use time::macros::datetime;

use super::*;
use crate::checks::fixture::{script, tree, write};

const DAY: Duration = Duration::from_secs(86_400);

/// 2026-11-25 00:00 UTC: "now" in every fixture.
fn now() -> SystemTime {
    SystemTime::from(datetime!(2026-11-25 0:00 UTC))
}

fn touch(path: &Path, at: SystemTime) {
    write(path, "");
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

/// A Debian tree: status file, a dpkg.log whose last upgrade is `last_upgrade`, package
/// lists refreshed a day ago.
fn debian(last_upgrade: &str) -> (tempfile::TempDir, Roots) {
    let (t, r) = tree();
    touch(&r.var.join("lib/dpkg/status"), now() - 400 * DAY);
    write(
        &r.var.join("log/dpkg.log"),
        &format!(
            "2026-09-01 08:00:00 startup archives unpack\n\
             2026-09-01 08:00:01 install vim:amd64 <none> 2:9.0\n\
             {last_upgrade} upgrade libc6:amd64 2.36-9 2.36-9+deb12u4\n\
             2026-11-24 09:00:00 remove vim:amd64 2:9.0 <none>\n\
             2026-11-24 09:00:01 status not-installed vim:amd64 <none>\n"
        ),
    );
    touch(
        &r.var
            .join("lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"),
        now() - DAY,
    );
    (t, r)
}

const APT_SECURITY: &str = "NOTE: This is only a simulation!
Inst libssl3 [3.0.11-1~deb12u1] (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])
Inst libssl3:i386 [3.0.11-1~deb12u1] (3.0.13-1~deb12u1 Debian-Security:12/stable-security [i386])
Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.11/stable [all])
Inst openssh-server [1:9.2p1-2] (1:9.2p1-2+deb12u3 Debian-Security:12/stable-security [amd64]) []
Conf libssl3 (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])
";

const APT_NO_SECURITY: &str =
    "Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.11/stable [all])\n";

#[test]
fn recent_update_and_no_pending_security_updates_pass() {
    let (_t, r) = debian("2026-11-20 10:11:12");
    script(&r, "apt-get", &format!("cat <<'EOF'\n{APT_NO_SECURITY}EOF"));
    assert_eq!(
        check(&r, 30, now()),
        Outcome::Pass(
            "no security updates pending; package lists from 1 day ago; last package update 4 days ago, policy allows 30"
                .into()
        )
    );
}

#[test]
fn pending_security_updates_fail_naming_them() {
    let (_t, r) = debian("2026-11-20 10:11:12");
    script(&r, "apt-get", &format!("cat <<'EOF'\n{APT_SECURITY}EOF"));
    assert_eq!(
        check(&r, 30, now()),
        Outcome::Fail(
            "2 security updates pending (libssl3, openssh-server); package lists from 1 day ago; last package update 4 days ago, policy allows 30"
                .into()
        )
    );
    let many: String = (0..7)
        .map(|i| format!("Inst p{i} [1] (2 Ubuntu:24.04/noble-security [amd64])\n"))
        .collect();
    script(&r, "apt-get", &format!("cat <<'EOF'\n{many}EOF"));
    assert!(matches!(
        check(&r, 30, now()),
        Outcome::Fail(d) if d.starts_with("7 security updates pending (p0, p1, p2, p3, p4, …)")
    ));
}

#[test]
fn an_old_last_update_fails_even_when_pending_updates_are_unknown() {
    let (_t, r) = debian("2026-10-10 10:00:00");
    assert_eq!(
        check(&r, 30, now()),
        Outcome::Fail(format!(
            "last package update 45 days ago, policy allows 30; pending security updates not known: apt-get is not in {}",
            r.bin_dir.as_ref().unwrap().display()
        ))
    );
}

#[test]
fn unknown_pending_updates_are_unsupported() {
    // No apt-get.
    let (_t, r) = debian("2026-11-20 10:11:12");
    assert!(matches!(
        check(&r, 30, now()),
        Outcome::Unsupported(d) if d.starts_with("pending security updates cannot be known: apt-get is not in")
            && d.ends_with("last package update 4 days ago, policy allows 30")
    ));
    // apt-get fails.
    script(
        &r,
        "apt-get",
        "echo 'E: The package lists or status file could not be parsed' >&2; exit 100",
    );
    assert!(matches!(
        check(&r, 30, now()),
        Outcome::Unsupported(d) if d.contains("could not be parsed")
    ));
    // No package lists: apt-get is not even asked.
    script(&r, "apt-get", "exit 7");
    fs::remove_dir_all(r.var.join("lib/apt/lists")).unwrap();
    assert!(matches!(
        check(&r, 30, now()),
        Outcome::Unsupported(d) if d.contains("apt-get update has not run")
    ));
}

#[test]
fn stale_package_lists_cannot_vouch_for_no_pending_updates() {
    let (_t, r) = debian("2026-11-20 10:11:12");
    script(&r, "apt-get", &format!("cat <<'EOF'\n{APT_NO_SECURITY}EOF"));
    let list = r
        .var
        .join("lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages");
    touch(&list, now() - 60 * DAY);
    assert_eq!(
        check(&r, 30, now()),
        Outcome::Unsupported(
            "pending security updates cannot be known: the package lists are 60 days old: run apt-get update; \
             last package update 4 days ago, policy allows 30"
                .into()
        )
    );
    // Stale lists that still show security updates: those are real, and more may be.
    script(&r, "apt-get", &format!("cat <<'EOF'\n{APT_SECURITY}EOF"));
    assert_eq!(
        check(&r, 30, now()),
        Outcome::Fail(
            "2 security updates pending (libssl3, openssh-server); last package update 4 days ago, policy allows 30; \
             more may be pending: the package lists are 60 days old: run apt-get update"
                .into()
        )
    );
    // A newer list of another archive refreshes them; the lists' age is in the detail.
    script(&r, "apt-get", &format!("cat <<'EOF'\n{APT_NO_SECURITY}EOF"));
    touch(
        &r.var.join(
            "lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4",
        ),
        now() - 12 * DAY - DAY / 2,
    );
    touch(
        &r.var
            .join("lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease"),
        now(),
    );
    assert_eq!(
        check(&r, 30, now()),
        Outcome::Pass(
            "no security updates pending; package lists from 12 days ago; last package update 4 days ago, policy allows 30"
                .into()
        )
    );
    // Exactly as old as the policy allows still vouches; a day more does not.
    touch(&list, now() - 30 * DAY);
    fs::remove_file(r.var.join(
        "lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages.lz4",
    ))
    .unwrap();
    assert!(
        matches!(check(&r, 30, now()), Outcome::Pass(d) if d.contains("package lists from 30 days ago"))
    );
    touch(&list, now() - 31 * DAY);
    assert!(
        matches!(check(&r, 30, now()), Outcome::Unsupported(d) if d.contains("the package lists are 31 days old"))
    );
}

/// A kernel security update needs a new package (the next ABI's image), so `upgrade` keeps
/// it back and only `dist-upgrade` installs it.
const APT_KEPT_BACK: &str = "Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following packages have been kept back:
  linux-image-amd64
0 upgraded, 0 newly installed, 0 to remove and 1 not upgraded.
";

const APT_DIST_UPGRADE: &str = "Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following NEW packages will be installed:
  linux-image-6.1.0-28-amd64
The following packages will be upgraded:
  linux-image-amd64
1 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.
Inst linux-image-6.1.0-28-amd64 (6.1.119-1 Debian-Security:12/stable-security [amd64])
Inst linux-image-amd64 [6.1.115-1] (6.1.119-1 Debian-Security:12/stable-security [amd64])
Conf linux-image-6.1.0-28-amd64 (6.1.119-1 Debian-Security:12/stable-security [amd64])
Conf linux-image-amd64 (6.1.119-1 Debian-Security:12/stable-security [amd64])
";

#[test]
fn kept_back_security_updates_are_pending() {
    let (_t, r) = debian("2026-11-20 10:11:12");
    let bin = r.bin_dir.as_ref().unwrap();
    write(&bin.join("upgrade.out"), APT_KEPT_BACK);
    write(&bin.join("dist-upgrade.out"), APT_DIST_UPGRADE);
    // Like apt-get: a simulation of the verb given last, with the lock not taken.
    script(
        &r,
        "apt-get",
        &format!(
            "[ \"$1 $2 $3\" = '-s -o Debug::NoLocking=1' ] || exit 100\ncat '{}/'\"$4\".out",
            bin.display()
        ),
    );
    assert_eq!(
        check(&r, 30, now()),
        Outcome::Fail(
            "2 security updates pending (linux-image-6.1.0-28-amd64, linux-image-amd64); package lists from 1 day ago; \
             last package update 4 days ago, policy allows 30"
                .into()
        )
    );
}

#[test]
fn the_rotated_log_or_the_status_file_dates_the_last_update() {
    let (_t, r) = debian("2026-11-20 10:11:12");
    script(&r, "apt-get", "true");
    // Just rotated: dpkg.log has no install or upgrade yet.
    fs::rename(r.var.join("log/dpkg.log"), r.var.join("log/dpkg.log.1")).unwrap();
    write(
        &r.var.join("log/dpkg.log"),
        "2026-11-24 09:00:00 startup packages configure\n",
    );
    assert!(matches!(check(&r, 30, now()), Outcome::Pass(d) if d.contains("4 days ago")));
    // No log at all: the status file's modification time.
    fs::remove_dir_all(r.var.join("log")).unwrap();
    assert!(matches!(
        check(&r, 30, now()),
        Outcome::Fail(d) if d == "package lists from 1 day ago; last package update 400 days ago, policy allows 30"
    ));
    assert_eq!(
        newest_dpkg_change(
            "2026-11-20 10:11:12 upgrade a 1 2\ngarbage\n2026-11-21 00:00:00 install b <none> 1\n"
        ),
        Some(SystemTime::from(datetime!(2026-11-21 0:00 UTC)))
    );
}

#[test]
fn rpm_systems_check_the_age_only() {
    let (_t, r) = tree();
    fs::create_dir_all(r.var.join("lib/rpm")).unwrap();
    assert!(matches!(
        check(&r, 30, now()),
        Outcome::Unsupported(d) if d.starts_with("there is an rpm database but rpm is not in")
    ));
    let recent = (now() - 2 * DAY)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let old = (now() - 90 * DAY)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    script(
        &r,
        "rpm",
        &format!("printf '{}\\n(none)\\n'", old.as_secs()),
    );
    assert_eq!(
        check(&r, 30, now()),
        Outcome::Fail(
            "last package update 90 days ago, policy allows 30 (pending dnf/yum security updates are not checked)"
                .into()
        )
    );
    script(
        &r,
        "rpm",
        &format!("printf '{}\\n{}\\n'", old.as_secs(), recent.as_secs()),
    );
    assert!(matches!(
        check(&r, 30, now()),
        Outcome::Unsupported(d) if d.contains("dnf/yum advisories are not read") && d.contains("2 days ago")
    ));
}

#[test]
fn no_rule_passes_and_no_package_database_is_unsupported() {
    let (_t, r) = tree();
    assert_eq!(
        check(&r, 0, now()),
        Outcome::Pass("the policy sets no update rule".into())
    );
    assert!(matches!(
        check(&r, 30, now()),
        Outcome::Unsupported(d) if d.starts_with("neither a dpkg database")
    ));
}

#[test]
fn the_real_system_does_not_panic() {
    let outcome = check(&Roots::default(), 30, SystemTime::now());
    let (Outcome::Pass(d) | Outcome::Fail(d) | Outcome::Unsupported(d) | Outcome::Error(d)) =
        &outcome;
    assert!(!d.is_empty());
    println!("updates on this system: {outcome:?}");
}
