//! Messages an admin reads in week one (issue 16 item 16): a filter that matches nothing is
//! not "no devices enrolled"; cancelling a finished command says what it is; audit details
//! name a token by the id `token list` shows, not by a debug dump.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

#[test]
fn messages_say_what_is_the_case() {
    let root = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&root.path().join("data"));

    let out = controller.ctl(&["device", "list", "--output", "table"]);
    assert!(
        stderr(&out).contains("No devices enrolled"),
        "{}",
        stderr(&out)
    );

    let agent = AgentFixture::enroll(&controller, root.path(), "ws3", "ed@hospital.org");
    let out = controller.ctl(&[
        "device",
        "list",
        "--user",
        "nobody@hospital.org",
        "--output",
        "table",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("No devices enrolled"), "{err}");
    assert!(err.contains("No device matches"), "{err}");

    let lock = json(&controller.ctl(&["device", "lock", &agent.device_id, "--output", "json"]));
    let id = lock["id"].as_str().unwrap();
    assert!(controller.ctl(&["command", "cancel", id]).status.success());
    let out = controller.ctl(&["command", "cancel", id]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("cannot become cancelled"), "{err}");
    assert!(err.contains("already cancelled"), "{err}");

    let audit = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let text = audit.to_string();
    assert!(!text.contains("TokenHash("), "{text}");
    let tokens: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token.create" || e["action"] == "device.enroll")
        .map(|e| e["details"]["token"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 2, "{audit}");
    assert!(
        tokens
            .iter()
            .all(|t| t.len() == 16 && t.chars().all(|c| c.is_ascii_hexdigit())),
        "{tokens:?}"
    );
    assert_eq!(tokens[0], tokens[1], "the same token, by the same id");
    controller.stop();
}
