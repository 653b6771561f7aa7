//! Finding and clearing commands that wait (issue 16 item 17): `command list --stale AGE`
//! lists the unfinished commands older than AGE, and `command cancel --device D --kind K`
//! cancels every one of that kind the device has not started, in one call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn stale_commands_are_listed_and_cancelled_by_device_and_kind() {
    let root = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&root.path().join("data"));
    let agent = AgentFixture::enroll(&controller, root.path(), "ws2", "di@hospital.org");
    let device = agent.device_id.as_str();
    let lock = json(&controller.ctl(&["device", "lock", device, "--output", "json"]));
    let wipe = json(&controller.ctl(&[
        "device",
        "wipe",
        device,
        "--scope",
        "messaging",
        "--reason",
        "gone",
        "--output",
        "json",
    ]));

    let fresh = json(&controller.ctl(&["command", "list", "--stale", "7d", "--output", "json"]));
    assert_eq!(ids(&fresh), Vec::<String>::new(), "nothing waits a week");
    let stale = eventually_blocking(
        "both commands to be older than 1s",
        Duration::from_secs(30),
        || {
            let list =
                json(&controller.ctl(&["command", "list", "--stale", "1s", "--output", "json"]));
            (ids(&list).len() == 2).then_some(list)
        },
    );
    assert!(ids(&stale).contains(&lock["id"].as_str().unwrap().to_owned()));

    let out = controller.ctl(&["command", "list", "--stale", "-5m"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Cancel every lock of the device: the wipe stays.
    let out = controller.ctl(&[
        "command", "cancel", "--device", device, "--kind", "lock", "--output", "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cancelled = json(&out);
    assert_eq!(
        ids(&cancelled),
        vec![lock["id"].as_str().unwrap().to_owned()]
    );
    assert_eq!(cancelled[0]["state"], "cancelled");
    let show = json(&controller.ctl(&[
        "command",
        "show",
        wipe["id"].as_str().unwrap(),
        "--output",
        "json",
    ]));
    assert_eq!(show["state"], "queued");

    // Nothing left of that kind: not an error, an empty list.
    let again = json(&controller.ctl(&[
        "command", "cancel", "--device", device, "--kind", "lock", "--output", "json",
    ]));
    assert_eq!(ids(&again), Vec::<String>::new());

    // An id, or a device and a kind: not both, not neither, and only known kinds.
    for args in [
        vec!["command", "cancel"],
        vec!["command", "cancel", "--device", device],
        vec!["command", "cancel", "--device", device, "--kind", "reboot"],
    ] {
        let out = controller.ctl(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    controller.stop();
}
