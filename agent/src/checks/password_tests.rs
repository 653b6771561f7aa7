//! Fixture trees of `/etc/pam.d`, `/etc/security` and `login.defs`, shaped like Debian's
//! (`passwd` including `common-password`) and Red Hat's (`passwd` with a substack of
//! `system-auth`).

use super::*;
use crate::checks::fixture::{tree, write};

/// A tree with these files under `etc`.
fn roots(files: &[(&str, &str)]) -> (tempfile::TempDir, Roots) {
    let (tmp, r) = tree();
    std::fs::create_dir_all(r.etc.join("pam.d")).unwrap();
    for (name, text) in files {
        write(&r.etc.join(name), text);
    }
    (tmp, r)
}

const PASSWD: (&str, &str) = ("pam.d/passwd", "@include common-password\n");
/// Debian 12's `common-password` with pwquality and pwhistory enabled.
const COMMON_PASSWORD: &str = "password\trequisite\t\t\tpam_pwquality.so retry=3\n\
    password\trequired\t\t\tpam_pwhistory.so use_authtok\n\
    password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\n\
    password\trequisite\t\t\tpam_deny.so\n\
    password\trequired\t\t\tpam_permit.so\n";

fn debian(common_password: &str) -> [(&'static str, String); 2] {
    [
        ("pam.d/passwd", PASSWD.1.to_owned()),
        ("pam.d/common-password", common_password.to_owned()),
    ]
}

fn with(
    base: &[(&'static str, String)],
    more: &[(&'static str, &str)],
) -> (tempfile::TempDir, Roots) {
    let mut files: Vec<(&str, &str)> = base.iter().map(|(n, t)| (*n, t.as_str())).collect();
    files.extend_from_slice(more);
    roots(&files)
}

fn policy() -> Policy {
    Policy {
        password_min_length: 12,
        password_min_classes: 3,
        password_history: 5,
        password_max_age_days: 90,
        ..Policy::default()
    }
}

fn length(n: u32) -> Policy {
    Policy {
        password_min_length: n,
        ..Policy::default()
    }
}

#[test]
fn configured_rules_pass() {
    let (_t, r) = with(
        &debian(COMMON_PASSWORD),
        &[
            ("security/pwquality.conf", "minlen = 14\nminclass = 3\n"),
            ("security/pwhistory.conf", "remember = 5\n"),
            ("login.defs", "PASS_MAX_DAYS\t60\n"),
        ],
    );
    let outcome = check(&r, &policy(), false);
    assert!(matches!(&outcome, Outcome::Pass(_)), "{outcome:?}");
}

#[test]
fn weak_or_missing_settings_fail_with_each_reason() {
    let (_t, r) = with(
        &debian(COMMON_PASSWORD),
        &[
            ("security/pwquality.conf", "minlen = 8\n"),
            ("login.defs", "PASS_MAX_DAYS 99999\n"),
        ],
    );
    match check(&r, &policy(), false) {
        Outcome::Fail(d) => {
            assert!(d.contains("shortest accepted 8 (minlen=8 from"), "{d}");
            assert!(d.contains("minclass=0 from pam_pwquality's default"), "{d}");
            assert!(d.contains("PASS_MAX_DAYS is 99999"), "{d}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rule_whose_pam_module_is_off_does_not_count() {
    let (_t, r) = with(
        &debian("password required pam_unix.so\n"),
        &[("security/pwquality.conf", "minlen = 20\n")],
    );
    let outcome = check(&r, &length(12), false);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("pam_pwquality or pam_cracklib is not enabled")),
        "{outcome:?}"
    );
}

// Options on the module's PAM line are read after every file and override them.
#[test]
fn pam_line_options_override_the_configuration_files() {
    let (_t, r) = with(
        &debian(&COMMON_PASSWORD.replace("retry=3", "retry=3 minlen=6")),
        &[("security/pwquality.conf", "minlen = 14\n")],
    );
    let outcome = check(&r, &length(12), false);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("shortest accepted 6 (minlen=6 from the PAM line `password requisite pam_pwquality.so`")),
        "{outcome:?}"
    );
    // Enforcement cannot fix a PAM line by writing a file: it says so and writes nothing.
    let outcome = check(&r, &length(12), true);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if !d.contains("written")),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(r.etc.join("security/pwquality.conf")).unwrap(),
        "minlen = 14\n"
    );
}

// pwquality reads `pwquality.conf.d/*.conf` in name order, then `pwquality.conf`.
#[test]
fn pwquality_drop_ins_are_read_in_order_before_the_main_file() {
    let base = debian(COMMON_PASSWORD);
    // A drop-in lowers the default of 8.
    let (_t, r) = with(
        &base,
        &[("security/pwquality.conf.d/50-site.conf", "minlen = 6\n")],
    );
    let outcome = check(&r, &length(8), false);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("shortest accepted 6") && d.contains("50-site.conf")),
        "{outcome:?}"
    );
    // The later name wins; a file not ending in .conf is not read.
    let (_t, r) = with(
        &base,
        &[
            ("security/pwquality.conf.d/10-a.conf", "minlen = 6\n"),
            ("security/pwquality.conf.d/20-b.conf", "minlen = 12\n"),
            ("security/pwquality.conf.d/30-c.conf.bak", "minlen = 6\n"),
        ],
    );
    assert!(matches!(check(&r, &length(12), false), Outcome::Pass(_)));
    let (_t, r) = with(
        &base,
        &[
            ("security/pwquality.conf.d/10-a.conf", "minlen = 12\n"),
            ("security/pwquality.conf.d/20-b.conf", "minlen = 6\n"),
        ],
    );
    assert!(matches!(check(&r, &length(12), false), Outcome::Fail(_)));
    // pwquality.conf comes last and wins over every drop-in.
    let (_t, r) = with(
        &base,
        &[
            ("security/pwquality.conf.d/20-b.conf", "minlen = 14\n"),
            ("security/pwquality.conf", "minlen = 9\n"),
        ],
    );
    assert!(matches!(check(&r, &length(12), false), Outcome::Fail(d) if d.contains("minlen=9")));
    // Enforcement writes pwquality.conf, where the value takes effect over the drop-in.
    let (_t, r) = with(
        &base,
        &[("security/pwquality.conf.d/50-site.conf", "minlen = 6\n")],
    );
    let outcome = check(&r, &length(12), true);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("written")),
        "{outcome:?}"
    );
    assert!(matches!(check(&r, &length(12), false), Outcome::Pass(_)));
}

// A newer libpwquality also reads /usr/lib/security; which release runs is not known, so a
// weaker /usr/lib drop-in fails the rule, and a stronger one never makes it pass.
#[test]
fn vendor_pwquality_files_count_only_against_a_pass() {
    let base = debian(COMMON_PASSWORD);
    let (_t, r) = with(&base, &[]);
    write(
        &r.usr.join("lib/security/pwquality.conf.d/50-vendor.conf"),
        "minlen = 6\n",
    );
    assert!(
        matches!(check(&r, &length(8), false), Outcome::Fail(d) if d.contains("50-vendor.conf"))
    );
    write(
        &r.usr.join("lib/security/pwquality.conf.d/50-vendor.conf"),
        "minlen = 14\n",
    );
    assert!(matches!(check(&r, &length(12), false), Outcome::Fail(_)));
    write(&r.etc.join("security/pwquality.conf"), "minlen = 12\n");
    assert!(matches!(check(&r, &length(12), false), Outcome::Pass(_)));
}

#[test]
fn credits_shorten_the_minimum_and_enforcing_0_only_warns() {
    let base = debian(COMMON_PASSWORD);
    // minlen 12 with a credit for digits and for capitals: 10 characters can pass.
    let (_t, r) = with(
        &base,
        &[(
            "security/pwquality.conf",
            "minlen = 12\ndcredit = 1\nucredit = 1\n",
        )],
    );
    let outcome = check(&r, &length(12), false);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("shortest accepted 10") && d.contains("less credits dcredit=1")),
        "{outcome:?}"
    );
    // Negative credits require classes.
    let (_t, r) = with(
        &base,
        &[(
            "security/pwquality.conf",
            "dcredit = -1\nucredit = -1\nlcredit = -1\n",
        )],
    );
    let classes = Policy {
        password_min_classes: 3,
        ..Policy::default()
    };
    assert!(matches!(check(&r, &classes, false), Outcome::Pass(_)));
    // Warn-only pwquality enforces nothing.
    let (_t, r) = with(
        &base,
        &[("security/pwquality.conf", "minlen = 14\nenforcing = 0\n")],
    );
    let outcome = check(&r, &length(12), false);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("only warns")),
        "{outcome:?}"
    );
    assert!(
        matches!(check(&r, &length(12), true), Outcome::Pass(d) if d.contains("enforcing = 1"))
    );
}

#[test]
fn an_optional_pam_line_does_not_enforce() {
    let (_t, r) = with(
        &debian(&COMMON_PASSWORD.replace(
            "requisite\t\t\tpam_pwquality",
            "optional\t\t\tpam_pwquality",
        )),
        &[("security/pwquality.conf", "minlen = 14\n")],
    );
    let outcome = check(&r, &length(12), false);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("`password optional pam_pwquality.so` in") && d.contains("does not enforce")),
        "{outcome:?}"
    );
}

#[test]
fn includes_and_substacks_that_reach_a_required_line_enforce() {
    // Red Hat: passwd → substack system-auth.
    let rh = [
        (
            "pam.d/passwd",
            "auth include system-auth\npassword substack system-auth\n-password optional pam_gnome_keyring.so use_authtok\n",
        ),
        (
            "pam.d/system-auth",
            "password    requisite     pam_pwquality.so local_users_only\n\
             password    sufficient    pam_unix.so yescrypt shadow use_authtok\n\
             password    required      pam_deny.so\n",
        ),
        ("security/pwquality.conf", "minlen = 12\n"),
    ];
    let (_t, r) = roots(&rh);
    assert!(matches!(check(&r, &length(12), false), Outcome::Pass(_)));
    // The same chain ending in an optional line does not.
    let (_t, r) = roots(&[
        rh[0],
        ("pam.d/system-auth", "password optional pam_pwquality.so\n"),
        rh[2],
    ]);
    assert!(
        matches!(check(&r, &length(12), false), Outcome::Fail(d) if d.contains("does not enforce"))
    );
    // An include of a file that does not exist, or no passwd service: unsupported.
    let (_t, r) = roots(&[rh[0], rh[2]]);
    assert!(
        matches!(check(&r, &length(12), false), Outcome::Unsupported(d) if d.contains("does not exist"))
    );
    let (_t, r) = roots(&[("pam.d/common-password", COMMON_PASSWORD), rh[2]]);
    assert!(
        matches!(check(&r, &length(12), false), Outcome::Unsupported(d) if d.contains("no PAM configuration for the passwd service"))
    );
}

#[test]
fn lines_that_may_skip_the_module_or_unclear_controls_are_unsupported() {
    let (_t, r) = with(
        &debian(&format!(
            "password sufficient pam_sss.so\n{COMMON_PASSWORD}"
        )),
        &[("security/pwquality.conf", "minlen = 14\n")],
    );
    assert!(
        matches!(check(&r, &length(12), false), Outcome::Unsupported(d) if d.contains("may skip it"))
    );
    let (_t, r) = with(
        &debian("password [success=ok default=ok] pam_pwquality.so\n"),
        &[("security/pwquality.conf", "minlen = 14\n")],
    );
    assert!(
        matches!(check(&r, &length(12), false), Outcome::Unsupported(d) if d.contains("[success=ok default=ok]"))
    );
    // `[default=die]` enforces.
    let (_t, r) = with(
        &debian("password [success=ok default=die] pam_pwquality.so\n"),
        &[("security/pwquality.conf", "minlen = 14\n")],
    );
    assert!(matches!(check(&r, &length(12), false), Outcome::Pass(_)));
}

#[test]
fn pam_cracklib_is_read_from_its_pam_line_with_its_own_defaults() {
    // Defaults: minlen 9 and one credit per class, so 5 characters can pass.
    let (_t, r) = with(&debian("password required pam_cracklib.so retry=3\n"), &[]);
    let outcome = check(&r, &length(8), false);
    assert!(
        matches!(&outcome, Outcome::Fail(d) if d.contains("shortest accepted 5")),
        "{outcome:?}"
    );
    let (_t, r) = with(
        &debian(
            "password required pam_cracklib.so minlen=12 dcredit=0 ucredit=0 lcredit=-1 ocredit=-1 minclass=3\n",
        ),
        &[("security/pwquality.conf", "minlen = 6\n")],
    );
    assert!(matches!(
        check(
            &r,
            &Policy {
                password_min_classes: 3,
                ..length(11)
            },
            false
        ),
        Outcome::Pass(_)
    ));
}

#[test]
fn history_and_lockout_read_their_pam_lines_and_files() {
    let debian_auth = "auth\trequisite\t\t\tpam_faillock.so preauth\n\
        auth\t[success=1 default=ignore]\tpam_unix.so nullok\n\
        auth\t[default=die]\t\t\tpam_faillock.so authfail\n\
        auth\trequisite\t\t\tpam_deny.so\n\
        auth\trequired\t\t\tpam_permit.so\n\
        auth\tsufficient\t\t\tpam_faillock.so authsucc\n";
    let base = debian(&COMMON_PASSWORD.replace(
        "pam_pwhistory.so use_authtok\n",
        "pam_pwhistory.so use_authtok remember=3\n",
    ));
    let lockout = Policy {
        max_failed_attempts: 5,
        ..Policy::default()
    };
    let history = Policy {
        password_history: 5,
        ..Policy::default()
    };
    let (_t, r) = with(
        &base,
        &[
            ("security/pwhistory.conf", "remember = 24\n"),
            ("pam.d/login", "@include common-auth\n"),
            ("pam.d/common-auth", debian_auth),
            ("security/faillock.conf", "deny = 5\n"),
        ],
    );
    // remember=3 on the PAM line overrides the file's 24.
    assert!(
        matches!(check(&r, &history, false), Outcome::Fail(d) if d.contains("remember=3 (the PAM line"))
    );
    assert!(matches!(check(&r, &lockout, false), Outcome::Pass(d) if d.contains("login")));
    // deny on the preauth line overrides faillock.conf.
    write(
        &r.etc.join("pam.d/common-auth"),
        &debian_auth.replacen("preauth", "preauth deny=10", 1),
    );
    assert!(matches!(check(&r, &lockout, false), Outcome::Fail(d) if d.contains("deny=10")));
    // An optional preauth line locks no one out; no authfail line counts nothing.
    write(
        &r.etc.join("pam.d/common-auth"),
        &debian_auth.replacen(
            "requisite\t\t\tpam_faillock",
            "optional\t\t\tpam_faillock",
            1,
        ),
    );
    assert!(
        matches!(check(&r, &lockout, false), Outcome::Fail(d) if d.contains("does not enforce"))
    );
    write(
        &r.etc.join("pam.d/common-auth"),
        &debian_auth.replace("authfail", "x"),
    );
    assert!(matches!(check(&r, &lockout, false), Outcome::Fail(d) if d.contains("authfail")));
    // Every login service present must lock out.
    write(&r.etc.join("pam.d/common-auth"), debian_auth);
    write(
        &r.etc.join("pam.d/gdm-password"),
        "auth required pam_unix.so\n",
    );
    assert!(matches!(check(&r, &lockout, false), Outcome::Fail(d) if d.contains("(gdm-password)")));
}

#[test]
fn enforcement_writes_the_values_and_keeps_the_rest() {
    let (_t, r) = with(
        &debian(COMMON_PASSWORD),
        &[
            (
                "security/pwquality.conf",
                "# local\ndictcheck = 1\nminlen = 8\n",
            ),
            ("login.defs", "UMASK 022\n"),
        ],
    );
    let outcome = check(&r, &policy(), true);
    assert!(
        matches!(&outcome, Outcome::Pass(d) if d.contains("written")),
        "{outcome:?}"
    );
    let pwq = std::fs::read_to_string(r.etc.join("security/pwquality.conf")).unwrap();
    assert!(
        pwq.contains("dictcheck = 1")
            && pwq.contains("minlen = 12")
            && pwq.contains("minclass = 3"),
        "{pwq}"
    );
    assert!(
        std::fs::read_to_string(r.etc.join("login.defs"))
            .unwrap()
            .contains("UMASK 022")
    );
    assert!(matches!(check(&r, &policy(), false), Outcome::Pass(_)));
}

#[test]
fn no_rules_no_requirement() {
    let (_t, r) = roots(&[]);
    assert!(matches!(
        check(&r, &Policy::default(), false),
        Outcome::Pass(_)
    ));
}
