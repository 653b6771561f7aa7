//! Remote wipe and lock with real processes: `wardctl serve`, `ward-agent run --messaging-dir`
//! and `wardctl device wipe --wait`, over real mutual TLS on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, http_get, json, stderr};

const DEADLINE: Duration = Duration::from_secs(60);

fn command_state(controller: &ControllerProcess, id: &str) -> Value {
    json(&controller.ctl(&["command", "show", id, "--output", "json"]))
}

#[test]
fn online_agent_is_wiped_with_a_verified_receipt_and_no_canary_left() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "a", "ann@hospital.org");
    assert!(!device.canary_files().is_empty());
    let _agent = device.run(&[]);
    eventually_blocking("the messaging key to be created", DEADLINE, || {
        device
            .state_dir
            .join("messaging.key")
            .exists()
            .then_some(())
    });

    let out = controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "test",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let command = json(&out);
    assert_eq!(command["state"], "succeeded");
    assert_eq!(command["kind"], "wipe");
    assert_eq!(command["receipt"]["verified"], true);
    assert_eq!(command["receipt"]["body"]["key_destroyed"], true);
    assert_eq!(command["receipt"]["body"]["files_removed"], 2);
    // No TPM (test agents run with `--tpm none`): the receipt says the key was in a file,
    // never more.
    assert_eq!(
        command["receipt"]["body"]["key_protection"],
        "file-best-effort"
    );
    assert_eq!(command["receipt"]["key_protection"], "file-best-effort");
    assert!(
        device.canary_files().is_empty(),
        "canary survived: {:?}",
        device.canary_files()
    );
    assert!(!device.state_dir.join("messaging.key").exists());

    let shown = command_state(&controller, command["id"].as_str().unwrap());
    assert_eq!(shown["receipt"]["verified"], true);
}

#[test]
fn an_agent_stopped_before_the_wipe_gets_it_when_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "b", "ben@hospital.org");

    // Nobody is listening: --wait gives up with exit 5 and the partial state.
    let out = controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "stolen",
        "--wait",
        "--timeout",
        "1s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let partial = json_lenient(&out.stdout);
    assert_eq!(partial["state"], "queued");
    let id = partial["id"].as_str().unwrap().to_owned();

    let _agent = device.run(&[]);
    eventually_blocking("the queued wipe to succeed", DEADLINE, || {
        (command_state(&controller, &id)["state"] == "succeeded").then_some(())
    });
    assert!(device.canary_files().is_empty());
}

#[test]
fn wipes_issued_just_before_the_controller_is_killed_all_complete_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("controller");
    let controller = ControllerProcess::start(&data);
    let devices: Vec<AgentFixture> = ["c", "d", "e"]
        .iter()
        .map(|n| AgentFixture::enroll(&controller, tmp.path(), n, &format!("{n}@hospital.org")))
        .collect();
    let ids: Vec<String> = devices
        .iter()
        .map(|d| {
            let out = controller.ctl(&[
                "device",
                "wipe",
                &d.device_id,
                "--scope",
                "messaging",
                "--reason",
                "leaver",
                "--output",
                "json",
            ]);
            json(&out)["id"].as_str().unwrap().to_owned()
        })
        .collect();
    // The controller dies right after accepting them; the agents start while it is down.
    let port = controller.url.rsplit(':').next().unwrap().to_owned();
    drop(controller);
    let _agents: Vec<_> = devices.iter().map(|d| d.run(&[])).collect();
    let controller = ControllerProcess::start_on(&data, &format!("127.0.0.1:{port}"));
    for id in &ids {
        eventually_blocking("every wipe to succeed after the restart", DEADLINE, || {
            (command_state(&controller, id)["state"] == "succeeded").then_some(())
        });
    }
    for d in &devices {
        assert!(d.canary_files().is_empty());
        assert_eq!(
            d.ledger_entries(),
            1,
            "each command is recorded, and executed, once"
        );
    }
}

#[test]
fn lock_without_a_session_manager_fails_with_a_readable_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "f", "fay@hospital.org");
    let _agent = device.run(&[("WARD_AGENT_LOGINCTL", "/nonexistent/loginctl")]);
    let out = controller.ctl(&[
        "device",
        "lock",
        &device.device_id,
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let command = json_lenient(&out.stdout);
    assert_eq!(command["state"], "failed");
    let reason = command["failure_reason"].as_str().unwrap();
    assert!(
        reason.contains("not supported") && reason.contains("loginctl"),
        "{reason}"
    );
}

/// A `loginctl` whose `lock-sessions` succeeds while the one graphical session never
/// reports itself locked (a desktop without a screen locker).
fn loginctl_that_never_locks(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("loginctl");
    std::fs::write(
        &script,
        "#!/bin/sh
case \"$1\" in
lock-sessions) exit 0 ;;
         list-sessions) echo '      2 1000 fay seat0 tty2' ;;
         show-session) printf 'Type=x11\\nClass=user\\nName=fay\\nLockedHint=no\\n' ;;
         *) exit 1 ;;
esac
",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[test]
fn a_lock_no_session_confirms_is_reported_as_not_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "v", "val@hospital.org");
    let loginctl = loginctl_that_never_locks(tmp.path());
    let _agent = device.run(&[("WARD_AGENT_LOGINCTL", loginctl.to_str().unwrap())]);
    let out = controller.ctl(&[
        "device",
        "lock",
        &device.device_id,
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    // loginctl exited 0, but nothing was seen locked: not a success.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let command = json_lenient(&out.stdout);
    assert_eq!(command["state"], "failed");
    let reason = command["failure_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("not verified: ")
            && reason.contains("session 2 (fay, x11) did not report LockedHint=yes")
            && reason.contains("the messaging key is withheld"),
        "{reason}"
    );
}

#[test]
fn full_wipe_is_refused_honestly_where_it_is_not_supported() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "g", "gus@hospital.org");
    let _agent = device.run(&[]);
    let out = controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "full",
        "--reason",
        "retire",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let command = json_lenient(&out.stdout);
    assert_eq!(command["state"], "failed");
    assert!(
        command["failure_reason"]
            .as_str()
            .unwrap()
            .contains("full wipe not supported")
    );
    // Nothing was destroyed on the way to that refusal.
    assert!(!device.canary_files().is_empty());
}

#[test]
fn full_wipe_runs_the_erase_hook_then_retires_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "h", "hal@hospital.org");
    let marker = tmp.path().join("erased");
    let hook = tmp.path().join("erase-hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$WARD_COMMAND_ID\" > {}\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut agent = device.run(&[("WARD_FULL_ERASE_HOOK", hook.to_str().unwrap())]);

    let out = controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "full",
        "--reason",
        "disposal",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let command = json(&out);
    assert_eq!(command["receipt"]["verified"], true);
    assert_eq!(command["receipt"]["body"]["scope"], "full");
    // What is known is that the hook ran and exited 0; never "device wiped".
    let hook_report = command["receipt"]["body"]["full_erase"].as_str().unwrap();
    assert!(
        hook_report.starts_with("hook ran: ") && hook_report.contains("exited 0"),
        "{hook_report}"
    );
    let outcome = command["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("the device's erase hook ran")
            && outcome.contains("Ward does not verify that the device was erased")
            && !outcome.contains("device wiped"),
        "{outcome}"
    );
    let shown = controller.ctl(&["command", "show", command["id"].as_str().unwrap()]);
    let table = String::from_utf8_lossy(&shown.stdout);
    assert!(
        table.contains("outcome") && table.contains("erase hook ran"),
        "{table}"
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        command["id"].as_str().unwrap()
    );
    assert!(device.canary_files().is_empty());
    // The agent destroys its own key and state, then stops.
    eventually_blocking("the agent to retire", DEADLINE, || {
        (!agent.is_running()).then_some(())
    });
    assert!(!device.state_dir.exists());
    // Its identity is gone with it: the controller revokes the device.
    let shown = json(&controller.ctl(&["device", "show", &device.device_id, "--output", "json"]));
    assert_eq!(shown["state"], "revoked");
}

#[test]
fn the_controller_stops_promptly_on_sigterm_with_agents_connected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "t", "tia@hospital.org");
    let _agent = device.run(&[]);
    eventually_blocking("the agent to check in", DEADLINE, || {
        controller
            .devices()
            .first()
            .and_then(|d| (!d["last_seen"].is_null()).then_some(()))
    });
    controller.daemon.terminate();
    eventually_blocking(
        "wardctl serve to exit after SIGTERM",
        Duration::from_secs(15),
        || (!controller.daemon.is_running()).then_some(()),
    );
}

/// stdout JSON of a command that exited non-zero on purpose.
fn json_lenient(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(stdout)))
}

#[test]
fn metrics_and_health_are_served_on_their_own_listener() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("controller");
    let controller =
        ControllerProcess::start_with(&data, "127.0.0.1:0", &["--metrics-listen", "127.0.0.1:0"]);
    let device = AgentFixture::enroll(&controller, tmp.path(), "m", "mo@hospital.org");
    let _agent = device.run(&[]);
    let out = controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "metrics",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let base = std::fs::read_to_string(data.join("metrics-url"))
        .unwrap()
        .trim()
        .to_owned();
    let (status, body) = http_get(&base, "/healthz");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");
    let metrics = eventually_blocking("a check-in to be counted", DEADLINE, || {
        let (_, body) = http_get(&base, "/metrics");
        body.contains("ward_checkins_total").then_some(body)
    });
    assert!(metrics.contains("ward_enrollments_total 1"), "{metrics}");
    assert!(
        metrics.contains("ward_commands{state=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ward_command_delivery_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("ward_connected_agents 1"), "{metrics}");
}
