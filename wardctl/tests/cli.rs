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
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https://127.0.0.1:9"), "{err}");
    // What to check: is the controller running, and where the address came from.
    assert!(
        err.contains("hint: nothing answers at https://127.0.0.1:9")
            && err.contains("Is `wardctl serve` running")
            && err.contains("port 9")
            && err.contains("from --server"),
        "{err}"
    );
}

/// Optional texts show no `[default: ""]` in their help.
#[test]
fn optional_texts_show_no_empty_default() {
    for args in [
        vec!["token", "revoke", "--help"],
        vec!["device", "lock", "--help"],
        vec!["device", "enable", "--help"],
    ] {
        let out = wardctl(&args);
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(!help.contains("[default: ]"), "{args:?}: {help}");
        assert!(!help.contains("[default: \"\"]"), "{args:?}: {help}");
    }
}

/// `--listen` that is not an address is refused (exit 2) with an example, before anything is
/// created.
#[test]
fn a_listen_address_that_is_not_one_is_refused_with_an_example() {
    let dir = std::env::temp_dir().join(format!("ward-listen-{}", std::process::id()));
    let out = wardctl(&[
        "serve",
        "--data-dir",
        dir.to_str().unwrap(),
        "--listen",
        "nonsense",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("expected IP:PORT such as 0.0.0.0:7443"),
        "{err}"
    );
    assert!(!dir.exists());
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
