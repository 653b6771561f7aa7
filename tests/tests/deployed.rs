//! The messaging-data vault as deployed: `ward-agent run` as root under the shipped systemd
//! unit's sandbox and capability bounding set (reproduced with `unshare` and `setpriv`, read
//! from deploy/systemd/ward-agent.service), the messaging app as a different, unprivileged
//! user with its data under /home, a real controller, and a wipe.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, stderr};
use ward_e2e::sandbox::{
    SandboxPaths, TestUser, Unit, cap_line, expected_effective_caps, spawn_agent, unit_path,
};

const DEADLINE: Duration = Duration::from_secs(60);

fn app() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_messaging-app"))
}

#[test]
#[cfg_attr(
    not(all(ward_root, ward_setpriv)),
    ignore = "needs root, setpriv and useradd: run as root with util-linux and passwd installed"
)]
fn under_the_shipped_unit_the_app_user_gets_the_key_and_a_wipe_removes_its_files() {
    let unit = Unit::load(&unit_path());
    // Not under /tmp: the unit's PrivateTmp hides /tmp from the agent. Reachable (0755) by
    // the app user, who must get to the runtime directory's socket.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));

    // The messaging app's user, and its data under /home, written by the app itself.
    let user = TestUser::create("wardapp");
    let messaging = user.home.join(".local/share/messenger");
    let out = user.run(Path::new("mkdir"), &["-p", messaging.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = user.run(app(), &["seed", messaging.to_str().unwrap()]);
    assert!(out.status.success(), "seed: {}", stderr(&out));
    let seeded: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();

    // Enrolled by the administrator, as root.
    let state = tmp.path().join("var-lib-ward-agent");
    let device = AgentFixture::enroll_at(
        &controller,
        state.clone(),
        messaging.clone(),
        tmp.path().join("enroll.log"),
        "nurse@hospital.org",
    );

    // Started as systemd would: WARD_MESSAGING_DIR from /etc/ward/agent.env, the messaging
    // directory added to ReadWritePaths by a drop-in (deploy/OPERATIONS.md).
    let runtime = tmp.path().join("run-ward-agent");
    let paths = SandboxPaths {
        state_dir: state.clone(),
        runtime_dir: runtime.clone(),
        extra_read_write: vec![messaging.clone()],
    };
    let mut daemon = spawn_agent(
        &unit,
        &paths,
        &[],
        &[("WARD_MESSAGING_DIR", messaging.to_str().unwrap())],
        tmp.path().join("agent.log"),
    );

    // Exactly the unit's capabilities, nothing more.
    let status = eventually_blocking("the agent to start", DEADLINE, || {
        assert!(daemon.is_running(), "the agent exited:\n{}", daemon.log());
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).ok()?;
        let name = status.lines().next().unwrap_or_default().to_owned();
        name.contains("ward-agent").then_some(status)
    });
    assert_eq!(
        cap_line(&status, "CapEff"),
        Some(expected_effective_caps(&unit)),
        "the agent runs with other capabilities than the unit's bounding set"
    );
    assert_eq!(
        cap_line(&status, "CapAmb").as_deref(),
        Some("0000000000000000")
    );

    // The app, as its own user, fetches the key over the socket systemd's runtime directory
    // holds.
    let socket = runtime.join("agent.sock");
    let key = eventually_blocking("the app user to get the key", DEADLINE, || {
        assert!(daemon.is_running(), "the agent exited:\n{}", daemon.log());
        let out = user.run(app(), &["key", socket.to_str().unwrap()]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    assert_eq!(key.len(), 32);

    let out = controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "lost on ward 7",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    let command: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\nagent log:\n{}", stderr(&out), daemon.log()));
    assert_eq!(
        command["state"],
        "succeeded",
        "{command}\nagent log:\n{}",
        daemon.log()
    );
    assert_eq!(command["receipt"]["verified"], true);
    assert_eq!(command["receipt"]["body"]["files_removed"], seeded);
    assert_eq!(
        command["receipt"]["body"]["key_protection"],
        "file-best-effort"
    );
    // The app's directory is kept (the app may start over), empty.
    let left: Vec<_> = std::fs::read_dir(&messaging)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // And the app now gets no key.
    let out = user.run(app(), &["key", socket.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("wiped"), "{}", stderr(&out));
}
