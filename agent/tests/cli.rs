//! `ward-agent` as an installer script sees it: help, usage errors and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ward-agent"))
        .args(args)
        .env_remove("WARD_AGENT_STATE_DIR")
        .env_remove("WARD_ENROLL_TOKEN")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["enroll", "--help"],
        vec!["run", "--help"],
        vec!["status", "--help"],
    ] {
        assert!(agent(&args).status.success(), "{args:?}");
    }
}

#[test]
fn status_before_enrollment_says_how_to_enroll() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(&["status", "--state-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("ward-agent enroll"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn malformed_ca_hash_and_server_are_usage_errors_that_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = state.to_str().unwrap();
    let out = agent(&[
        "enroll",
        "--server",
        "https://127.0.0.1:9",
        "--token",
        "t",
        "--ca-hash",
        "abc",
        "--state-dir",
        s,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("sha256:"), "{}", stderr(&out));
    let hash = format!("sha256:{}", "0".repeat(64));
    let out = agent(&[
        "enroll",
        "--server",
        "ward.example.org",
        "--token",
        "t",
        "--ca-hash",
        &hash,
        "--state-dir",
        s,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("https://"), "{}", stderr(&out));
    assert!(!state.exists());
}

#[test]
fn unreachable_controller_is_exit_1_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let hash = format!("sha256:{}", "0".repeat(64));
    let out = agent(&[
        "enroll",
        "--server",
        "https://127.0.0.1:9",
        "--token",
        "t",
        "--ca-hash",
        &hash,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!state.exists());
}

/// `ward-agent run --messaging-dir DIR` for a directory a wipe must never empty: refused with
/// exit 2 and the reason, before anything else happens.
fn refused_messaging_dir(dir: &std::path::Path, state: &std::path::Path, reason: &str) {
    let out = agent(&[
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--messaging-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}: {}",
        dir.display(),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(reason),
        "{}: expected {reason:?} in: {}",
        dir.display(),
        stderr(&out)
    );
}

#[test]
fn a_messaging_directory_whose_wipe_would_brick_the_device_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("agent").join("state");
    std::fs::create_dir_all(&state).unwrap();
    let s = state.as_path();
    refused_messaging_dir(std::path::Path::new("/"), s, "the root directory");
    for system in [
        "/etc",
        "/usr",
        "/var",
        "/var/lib",
        "/home",
        "/boot",
        "/usr/share/doc",
    ] {
        let dir = std::path::Path::new(system);
        if dir.is_dir() {
            refused_messaging_dir(dir, s, "system directory");
        }
    }
    refused_messaging_dir(s, s, "is the agent's state directory");
    refused_messaging_dir(
        &tmp.path().join("agent"),
        s,
        "contains the agent's state directory",
    );
    refused_messaging_dir(tmp.path(), s, "contains the agent's state directory");
    // The same through a symbolic link or a path with `..` in it.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(tmp.path().join("agent"), &link).unwrap();
    refused_messaging_dir(&link, s, "contains the agent's state directory");
    refused_messaging_dir(&state.join(".."), s, "contains the agent's state directory");
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    refused_messaging_dir(&file, s, "is a file, not a directory");
    refused_messaging_dir(&tmp.path().join("typo"), s, "does not exist");
}
