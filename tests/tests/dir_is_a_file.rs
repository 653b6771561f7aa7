//! A data, state or messaging directory that is a file (issue 16 item 15): "is a file, not a
//! directory", exit 2, before anything else happens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::process::{agent, stderr, wardctl};

#[test]
fn a_directory_argument_that_is_a_file_is_refused_with_exit_2() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let f = file.to_str().unwrap();
    let state = root.path().join("state");
    let s = state.to_str().unwrap();
    let runs = [
        ("wardctl", vec!["init", "--data-dir", f]),
        (
            "wardctl",
            vec!["serve", "--data-dir", f, "--listen", "127.0.0.1:0"],
        ),
        ("wardctl", vec!["device", "list", "--data-dir", f]),
        ("ward-agent", vec!["status", "--state-dir", f]),
        (
            "ward-agent",
            vec![
                "enroll",
                "--server",
                "https://localhost:1",
                "--token",
                "t",
                "--ca-hash",
                "sha256:00",
                "--state-dir",
                f,
            ],
        ),
        (
            "ward-agent",
            vec!["run", "--state-dir", s, "--messaging-dir", f],
        ),
    ];
    for (program, args) in runs {
        let out = if program == "wardctl" {
            wardctl(&args)
        } else {
            agent(&args)
        };
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{program} {args:?}: {err}");
        assert!(
            err.contains(&format!("{f} is a file, not a directory")),
            "{program} {args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "x",
        "left as it was"
    );
}

/// A directory to be created under a file (`FILE/ward`): the same refusal naming the file,
/// instead of "Not a directory (os error 20)" with exit 1.
#[test]
fn a_directory_argument_under_a_file_is_refused_with_exit_2_and_what_to_do() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let f = file.to_str().unwrap();
    let under = file.join("ward");
    let u = under.to_str().unwrap();
    let state = root.path().join("state");
    let s = state.to_str().unwrap();
    let runs = [
        ("wardctl", vec!["init", "--data-dir", u]),
        (
            "wardctl",
            vec!["serve", "--data-dir", u, "--listen", "127.0.0.1:0"],
        ),
        ("wardctl", vec!["init", "--data-dir", f]),
        ("ward-agent", vec!["status", "--state-dir", u]),
        (
            "ward-agent",
            vec!["run", "--state-dir", s, "--messaging-dir", u],
        ),
    ];
    for (program, args) in runs {
        let out = if program == "wardctl" {
            wardctl(&args)
        } else {
            agent(&args)
        };
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{program} {args:?}: {err}");
        assert!(
            err.contains(&format!("{f} is a file, not a directory")),
            "{program} {args:?}: {err}"
        );
        assert!(
            err.contains(
                "give a directory (or a path where one can be made), or move the file away"
            ),
            "{program} {args:?}: says what to do: {err}"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    assert!(!state.exists(), "nothing created");
}
