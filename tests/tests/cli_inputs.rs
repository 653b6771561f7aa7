//! Bad input through `wardctl`, the way an admin or an HR script would type it, against a
//! real controller: each case exits with its documented code and says what was wrong, and
//! nothing stored changes (devices, commands, policy, audit chain intact).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

/// Exit codes (README): 2 usage, 3 not found.
const USAGE: i32 = 2;
const NOT_FOUND: i32 = 3;

#[test]
fn bad_cli_input_is_refused_with_its_exit_code_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "cli", "cli@hospital.org");
    let dev = device.device_id.as_str();
    let unknown = "00000000-0000-4000-8000-000000000000";
    let devices_before = controller.devices();
    let policy = || json(&controller.ctl(&["policy", "show", "--output", "json"]));
    let policy_before = policy();

    let wipe = |extra: &[&'static str]| -> Vec<String> {
        let mut args = vec!["device".to_owned(), "wipe".to_owned()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        // unknown device or user
        (
            wipe(&[unknown, "--scope", "messaging", "--reason", "x"]),
            NOT_FOUND,
            unknown,
        ),
        // Neither an id nor the host name of a device: not found.
        (
            wipe(&["not-a-uuid", "--scope", "messaging", "--reason", "x"]),
            NOT_FOUND,
            "no device that is not retired has the host name",
        ),
        // Cannot even be a host name: bad input.
        (
            wipe(&["not a uuid!", "--scope", "messaging", "--reason", "x"]),
            USAGE,
            "not a device id",
        ),
        (
            vec!["device".into(), "lock".into(), unknown.into()],
            NOT_FOUND,
            unknown,
        ),
        (
            vec!["command".into(), "cancel".into(), unknown.into()],
            NOT_FOUND,
            unknown,
        ),
        (
            vec!["command".into(), "show".into(), "nope".into()],
            USAGE,
            "nope",
        ),
        (
            vec![
                "user".into(),
                "offboard".into(),
                "nobody@hospital.org".into(),
                "--reason".into(),
                "left".into(),
            ],
            NOT_FOUND,
            "nobody@hospital.org",
        ),
        (
            vec![
                "user".into(),
                "offboard".into(),
                "not-an-email".into(),
                "--reason".into(),
                "left".into(),
            ],
            USAGE,
            "not-an-email",
        ),
        // empty reason
        (
            wipe(&[dev_placeholder(), "--scope", "messaging", "--reason", ""]),
            USAGE,
            "reason",
        ),
        (
            wipe(&[dev_placeholder(), "--scope", "messaging", "--reason", "   "]),
            USAGE,
            "reason",
        ),
        (
            wipe(&[dev_placeholder(), "--scope", "messaging"]),
            USAGE,
            "--reason",
        ),
        (
            vec![
                "user".into(),
                "offboard".into(),
                "cli@hospital.org".into(),
                "--reason".into(),
                "".into(),
            ],
            USAGE,
            "reason",
        ),
        // bad values and durations
        (
            wipe(&[dev_placeholder(), "--scope", "everything", "--reason", "x"]),
            USAGE,
            "everything",
        ),
        (
            wipe(&[
                dev_placeholder(),
                "--scope",
                "messaging",
                "--reason",
                "x",
                "--wait",
                "--timeout",
                "banana",
            ]),
            USAGE,
            "banana",
        ),
        (
            wipe(&[
                dev_placeholder(),
                "--scope",
                "messaging",
                "--reason",
                "x",
                "--wait",
                "--timeout",
                "0s",
            ]),
            USAGE,
            "--timeout",
        ),
        (
            vec![
                "token".into(),
                "create".into(),
                "--user".into(),
                "a@hospital.org".into(),
                "--ttl".into(),
                "0s".into(),
            ],
            USAGE,
            "ttl",
        ),
        (
            vec![
                "token".into(),
                "create".into(),
                "--user".into(),
                "a@hospital.org".into(),
                "--ttl".into(),
                "30d".into(),
            ],
            USAGE,
            "--ttl: 30d is out of range: use 1m to 7d",
        ),
        (
            vec![
                "token".into(),
                "create".into(),
                "--user".into(),
                "not an email".into(),
            ],
            USAGE,
            "not an email",
        ),
        (
            vec![
                "policy".into(),
                "set".into(),
                "--max-inactivity".into(),
                "soon".into(),
            ],
            USAGE,
            "soon",
        ),
        (
            vec![
                "policy".into(),
                "set".into(),
                "--offline-wipe-after=-1h".into(),
            ],
            USAGE,
            "-1h",
        ),
        // conflicting or incomplete flags
        (
            wipe(&[
                dev_placeholder(),
                "--scope",
                "messaging",
                "--reason",
                "x",
                "--timeout",
                "5s",
            ]),
            USAGE,
            "--wait",
        ),
        (
            wipe(&[
                dev_placeholder(),
                "--scope",
                "messaging",
                "--scope",
                "full",
                "--reason",
                "x",
            ]),
            USAGE,
            "--scope",
        ),
        (
            vec![
                "device".into(),
                "list".into(),
                "--reason".into(),
                "disk_encryption".into(),
            ],
            USAGE,
            "--noncompliant",
        ),
        (
            vec![
                "device".into(),
                "list".into(),
                "--output".into(),
                "yaml".into(),
            ],
            USAGE,
            "yaml",
        ),
    ];

    let mut wrong = Vec::new();
    for (args, code, says) in &cases {
        let args: Vec<&str> = args
            .iter()
            .map(|a| if a == DEV { dev } else { a.as_str() })
            .collect();
        let out = controller.ctl(&args);
        let err = stderr(&out);
        if out.status.code() != Some(*code) || !err.contains(says) {
            wrong.push(format!(
                "wardctl {}: exit {:?} (want {code}), stderr {err:?} (want it to mention {says:?})",
                args.join(" "),
                out.status.code()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );

    // Nothing changed.
    assert_eq!(controller.devices(), devices_before);
    assert_eq!(policy(), policy_before);
    let commands = json(&controller.ctl(&["command", "list", "--output", "json"]));
    assert_eq!(commands.as_array().unwrap().len(), 0, "{commands}");
    let audit = json(&controller.ctl(&["audit", "verify", "--output", "json"]));
    assert_eq!(audit["ok"], true, "{audit}");
}

/// Stands for the enrolled device's id in the table above.
const DEV: &str = "<device>";

fn dev_placeholder() -> &'static str {
    DEV
}

#[test]
fn command_list_is_bounded_and_says_when_more_match() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "lim", "lim@hospital.org");
    for _ in 0..3 {
        json(&controller.ctl(&["device", "lock", &device.device_id, "--output", "json"]));
    }
    let out = controller.ctl(&["command", "list", "--limit", "2", "--output", "json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 2);
    assert!(
        stderr(&out).contains("newest 2 commands only"),
        "{}",
        stderr(&out)
    );
    let out = controller.ctl(&["command", "list", "--output", "json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 3);
    assert!(!stderr(&out).contains("only"), "{}", stderr(&out));
    let out = controller.ctl(&["command", "list", "--limit", "10001"]);
    assert_eq!(out.status.code(), Some(USAGE), "{}", stderr(&out));
}
