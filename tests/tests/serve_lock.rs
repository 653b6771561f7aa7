//! Two controllers on one SQLite data directory (issue 16 item 8): the first `wardctl serve`
//! holds an advisory lock on the directory while it serves; a second exits 2 naming the first
//! (pid, start time) and changes nothing, `server-url` included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ward_e2e::eventually_blocking;
use ward_e2e::process::{ControllerProcess, bin, stderr};

/// Runs `wardctl ARGS`, killing it if it is still running after `deadline`.
fn run_with_deadline(args: &[&str], deadline: Duration) -> Output {
    let mut child = Command::new(bin("wardctl"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually_blocking("the second serve to exit", deadline, || {
            child.try_wait().unwrap().map(|_| ())
        })
    }));
    if finished.is_err() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "a second `wardctl serve` on the same data directory kept running: {}",
            stderr(&out)
        );
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_serve_on_the_same_data_directory_exits_2_naming_the_first() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let first = ControllerProcess::start(&data);
    let url_before = std::fs::read_to_string(data.join("server-url")).unwrap();

    let out = run_with_deadline(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(30),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("pid {}", first.daemon.pid())),
        "names the first controller's pid: {err}"
    );
    assert!(err.contains("started 20"), "and when it started: {err}");
    assert_eq!(
        std::fs::read_to_string(data.join("server-url")).unwrap(),
        url_before,
        "server-url untouched"
    );
    // The first one still answers.
    assert!(first.ctl(&["device", "list"]).status.success());

    // Once it has stopped, the lock is free again.
    first.stop();
    let second = ControllerProcess::start(&data);
    assert!(second.ctl(&["device", "list"]).status.success());
    second.stop();
}
