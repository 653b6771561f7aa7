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
