//! Duration flags through the real `wardctl` (issue 16 item 14): zero, negative and absurd
//! values are refused by the flag's range, with the range in the error (exit 2, before any
//! connection), and `--help` shows every duration flag's range.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::process::{stderr, wardctl};

/// Exit code for bad usage (README).
const USAGE: i32 = 2;

fn refused(args: &[&str], expected: &str) {
    let out = wardctl(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(USAGE), "{args:?}: {err}");
    assert!(
        err.contains(expected),
        "{args:?}: expected {expected:?} in {err}"
    );
}

#[test]
fn a_zero_ttl_is_refused_with_the_range() {
    refused(
        &["token", "create", "--user", "a@hospital.org", "--ttl", "0"],
        "--ttl: 0s is out of range: use 1m to 7d (e.g. --ttl 1h)",
    );
}

#[test]
fn a_negative_ttl_is_refused_with_the_range_not_taken_for_a_flag() {
    refused(
        &[
            "token",
            "create",
            "--user",
            "a@hospital.org",
            "--ttl",
            "-5m",
        ],
        "--ttl: -5m is negative: use 1m to 7d (e.g. --ttl 1h)",
    );
    refused(
        &["policy", "set", "--wipe-grace", "-1h"],
        "--wipe-grace: -1h is negative: use 0 (off) or 1h to 365d",
    );
}

#[test]
fn an_absurd_timeout_is_refused_by_the_range() {
    refused(
        &[
            "device",
            "lock",
            "host-1",
            "--wait",
            "--timeout",
            "100000000d",
        ],
        "--timeout: 100000000d is out of range: use 1s to 7d (e.g. --timeout 10m)",
    );
    refused(
        &[
            "user",
            "offboard",
            "a@hospital.org",
            "--reason",
            "left",
            "--wait",
            "--timeout",
            "100000000d",
        ],
        "--timeout: 100000000d is out of range: use 1s to 7d",
    );
    refused(
        &[
            "admin",
            "issue",
            "bob",
            "--role",
            "helpdesk",
            "--lifetime",
            "100y",
        ],
        "--lifetime: 36525d is out of range: use 1h to 730d (e.g. --lifetime 90d)",
    );
}

#[test]
fn help_shows_each_duration_flag_range() {
    for (command, expected) in [
        (vec!["token", "create"], "1m to 7d"),
        (vec!["device", "lock"], "1s to 7d"),
        (vec!["admin", "issue"], "1h to 730d"),
        (vec!["serve"], "1s to 1d"),
        (vec!["policy", "set"], "0 (never) or 1h to 365d"),
        (vec!["command", "list"], "e.g. 7d"),
        (vec!["console"], "1s to 12h"),
    ] {
        let mut args = command.clone();
        args.push("--help");
        let out = wardctl(&args);
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains(expected),
            "{args:?}: expected {expected:?} in {help}"
        );
    }
}
