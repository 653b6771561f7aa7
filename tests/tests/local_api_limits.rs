//! The local API outlives a shortage of file descriptors: a local user opening connections until
//! the agent runs out (its limit lowered on the running process with `prlimit`) makes accepts
//! fail for a moment, and the API answers again once they close. Before, the first failed
//! accept ended the local API until the agent restarted: the app could not get its key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, local_api, stderr};

#[test]
#[cfg_attr(
    not(ward_prlimit),
    ignore = "needs prlimit: apt-get install util-linux"
)]
fn running_out_of_file_descriptors_does_not_end_the_local_api() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "t", "fay@hospital.org");
    let agent = device.run(&[]);
    local_api(&device.state_dir, r#"{"op":"status"}"#);
    let socket = device.state_dir.join("agent.sock");

    // Leave the agent four descriptors more than it holds now.
    let open = std::fs::read_dir(format!("/proc/{}/fd", agent.pid()))
        .unwrap()
        .count();
    // The soft limit only: the hard one stays, so it can be raised again.
    let limit = format!("--nofile={}:", open + 4);
    let out = Command::new("prlimit")
        .args(["--pid", &agent.pid().to_string(), &limit])
        .output()
        .expect("run prlimit (util-linux)");
    assert!(out.status.success(), "prlimit: {}", stderr(&out));
    let held: Vec<UnixStream> = (0..12)
        .filter_map(|_| UnixStream::connect(&socket).ok())
        .collect();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", agent.pid()))
            .map(Iterator::count)
            .unwrap_or(0)
    };
    eventually_blocking(
        "the agent to run out of descriptors",
        Duration::from_secs(30),
        || (fds() >= open + 4).then_some(()),
    );
    drop(held);
    // Room again (the limit back up): it answers.
    let out = Command::new("prlimit")
        .args(["--pid", &agent.pid().to_string(), "--nofile=1024:"])
        .output()
        .unwrap();
    assert!(out.status.success(), "prlimit: {}", stderr(&out));
    let answer = local_api(&device.state_dir, r#"{"op":"status"}"#);
    assert!(answer["state"].is_string(), "{answer}");
    let log = device.log_text();
    assert!(
        log.contains("local API: cannot accept a connection"),
        "{log}"
    );
    assert!(
        log.contains("local API: accepting connections again"),
        "{log}"
    );
}
