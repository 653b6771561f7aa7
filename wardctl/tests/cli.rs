//! `wardctl` as a script sees it: help, usage errors and exit codes, without a controller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn wardctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wardctl"))
        .args(args)
        .env_remove("WARD_SERVER")
        .env_remove("WARD_ADMIN_CERT")
        .env_remove("WARD_DATA_DIR")
        .output()
        .unwrap()
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["init", "--help"],
        vec!["serve", "--help"],
        vec!["token", "create", "--help"],
        vec!["device", "list", "--help"],
        vec!["device", "show", "--help"],
        vec!["admin", "issue", "--help"],
        vec!["admin", "list", "--help"],
    ] {
        let out = wardctl(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(wardctl(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(wardctl(&["token", "create"]).status.code(), Some(2));
    assert_eq!(
        wardctl(&["device", "list", "--output", "yaml"])
            .status
            .code(),
        Some(2)
    );
    let out = wardctl(&[
        "admin",
        "issue",
        "x",
        "--role",
        "root",
        "--out",
        "/nonexistent/x",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn admin_commands_without_credentials_say_what_to_pass() {
    let out = wardctl(&["device", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--admin-cert") && err.contains("--data-dir"),
        "{err}"
    );
}

#[test]
fn unreachable_controller_fails_with_exit_1_and_names_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(
        wardctl(&[
            "init",
            "--data-dir",
            data.to_str().unwrap(),
            "--output",
            "json"
        ])
        .status
        .success()
    );
    // Port 9 on loopback: nothing listens there.
    let out = wardctl(&[
        "device",
        "list",
        "--data-dir",
        data.to_str().unwrap(),
        "--server",
        "https://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://127.0.0.1:9"));
}

/// `--write-lanes` is PostgreSQL's: on the embedded SQLite store serve refuses it before it
/// creates anything, and names the flag it goes with.
#[test]
fn write_lanes_without_postgres_is_refused_and_creates_nothing() {
    let dir = std::env::temp_dir().join(format!("ward-write-lanes-{}", std::process::id()));
    let out = wardctl(&[
        "serve",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--write-lanes",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(!dir.exists(), "nothing is created");
    assert_eq!(
        wardctl(&["serve", "--write-lanes", "0"]).status.code(),
        Some(2)
    );
}

/// An admin command pointed at a data directory that does not exist says so and what to pass,
/// and creates nothing.
#[test]
fn a_missing_data_directory_is_named_with_what_to_do() {
    let dir = std::env::temp_dir().join(format!("ward-no-data-dir-{}", std::process::id()));
    let out = wardctl(&["device", "list", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no data directory") && stderr.contains("--admin-cert"),
        "{stderr}"
    );
    assert!(!dir.exists());
}
