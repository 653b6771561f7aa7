//! `wardctl … | head -1` (issue 16 item 9): a reader that goes away early is not an error of
//! wardctl's; it exits quietly (0, nothing on stderr), never with a panic (exit 101).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use ward_e2e::process::{ControllerProcess, bin};

#[test]
fn a_closed_stdout_ends_wardctl_quietly() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let controller = ControllerProcess::start(&data);
    for args in [
        vec!["audit", "list", "--output", "json"],
        vec!["audit", "list", "--output", "table"],
    ] {
        let mut child = Command::new(bin("wardctl"))
            .args(&args)
            .args(["--data-dir", data.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before wardctl writes a byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    controller.stop();
}
