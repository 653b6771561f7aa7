//! Remote disable, enable and retirement with real processes: `wardctl serve`, `ward-agent run`
//! with a messaging directory, and the messaging app's view through the agent's local API.
//! Disable withholds the data key and keeps the data; retire wipes it with a verified receipt,
//! the agent destroys its own identity and stops, and the host name is free for the machine's
//! next enrollment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, CANARY_FILES, ControllerProcess, json, local_api, stderr};
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::CheckInRequest;
use ward_proto::v1::agent_service_client::AgentServiceClient;

const DEADLINE: Duration = Duration::from_secs(60);
const KEY: &str = r#"{"op":"key"}"#;
const STATUS: &str = r#"{"op":"status"}"#;

fn show(controller: &ControllerProcess, device: &str) -> Value {
    json(&controller.ctl(&["device", "show", device, "--output", "json"]))
}

fn command(controller: &ControllerProcess, id: &str) -> Value {
    json(&controller.ctl(&["command", "show", id, "--output", "json"]))
}

fn wait_succeeded(controller: &ControllerProcess, id: &str) -> Value {
    eventually_blocking(&format!("command {id} to succeed"), DEADLINE, || {
        let c = command(controller, id);
        assert_ne!(c["state"], "failed", "{c}");
        (c["state"] == "succeeded").then_some(c)
    })
}

fn lifecycle(controller: &ControllerProcess, verb: &str, device: &str, reason: &str) -> Value {
    json(&controller.ctl(&[
        "device", verb, device, "--reason", reason, "--output", "json",
    ]))
}

fn exit_code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// The audit log without the entries that record admins' reads.
fn changes_audited(controller: &ControllerProcess) -> Vec<Value> {
    json(&controller.ctl(&["audit", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] != "read")
        .cloned()
        .collect()
}

/// Copies the identity the agent keeps (certificate, key, CA) out of its state directory.
fn copy_identity(state_dir: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in ["device.pem", "device.key", "ca.pem"] {
        std::fs::copy(state_dir.join(file), to.join(file)).unwrap();
    }
}

/// One check-in over mutual TLS with the identity in `dir`: Ok, or why it failed.
fn check_in_as(url: &str, dir: &Path) -> Result<(), String> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let chain = ward_certs::certificates_from_pem(&read("device.pem")).unwrap();
    let key = ward_certs::PrivateKeyDer::from_pem(&read("device.key")).unwrap();
    let ca = ward_certs::certificates_from_pem(&read("ca.pem")).unwrap();
    let tls = ward_certs::tls::client_config(&ca[0], Some((&chain, &key))).unwrap();
    let url: ServerUrl = url.parse().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let channel = connect(&url, tls, ChannelOptions::default())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            AgentServiceClient::new(channel)
                // As the agent would: its facts come with every check-in.
                .check_in(CheckInRequest {
                    facts: Some(ward_agent::facts::collect()),
                    ..CheckInRequest::default()
                })
                .await
                .map(|_| ())
                .map_err(|status| format!("{status:?}"))
        })
}

#[test]
fn disable_withholds_the_key_and_enable_gives_the_same_key_back() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "d", "dee@hospital.org");
    let _agent = device.run(&[]);
    let key = eventually_blocking("the agent to hand out the data key", DEADLINE, || {
        local_api(&device.state_dir, KEY)["key"]
            .as_str()
            .map(str::to_owned)
    });

    let reason = "mislaid on ward 5, probably in the nurses' room";
    let disabled = lifecycle(&controller, "disable", &device.device_id, reason);
    assert_eq!(disabled["device"]["id"], device.device_id.as_str());
    assert_eq!(disabled["device"]["state"], "active");
    assert_eq!(disabled["device"]["disabled"]["reason"], reason);
    assert_eq!(disabled["device"]["disabled"]["by"], "admin");
    assert_eq!(disabled["command"]["kind"], "disable");
    let disable_id = disabled["command"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        disabled["device"]["disabled"]["command_id"],
        disable_id.as_str()
    );
    wait_succeeded(&controller, &disable_id);

    // The app is told why and gets no key; the data stays.
    let status = local_api(&device.state_dir, STATUS);
    assert_eq!(status["state"], "disabled", "{status}");
    assert!(
        status["reason"].as_str().unwrap().contains(reason),
        "{status}"
    );
    let refused = local_api(&device.state_dir, KEY);
    assert!(refused["key"].is_null(), "{refused}");
    assert_eq!(refused["state"], "disabled", "{refused}");
    assert_eq!(device.canary_files().len() as u64, CANARY_FILES);

    // Lists: the table says disabled; JSON keeps the state and adds the disable.
    let listed = controller.devices();
    assert_eq!(listed[0]["state"], "active");
    assert_eq!(listed[0]["disabled"]["reason"], reason);
    let table = controller.ctl(&["device", "list", "--output", "table"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("disabled"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );

    // Disabling again issues nothing new.
    let commands_before = json(&controller.ctl(&["command", "list", "--output", "json"]));
    let again = lifecycle(&controller, "disable", &device.device_id, "again");
    assert_eq!(again["command"]["id"], disable_id.as_str());
    assert_eq!(again["device"]["disabled"]["reason"], reason);
    assert_eq!(
        json(&controller.ctl(&["command", "list", "--output", "json"])),
        commands_before
    );

    // Enable: the same key comes back (nothing was destroyed).
    let enabled = json(&controller.ctl(&[
        "device",
        "enable",
        &device.device_id,
        "--reason",
        "found it",
        "--output",
        "json",
    ]));
    assert_eq!(enabled["device"]["disabled"], Value::Null);
    assert_eq!(enabled["command"]["kind"], "enable");
    wait_succeeded(&controller, enabled["command"]["id"].as_str().unwrap());
    let answer = local_api(&device.state_dir, KEY);
    assert_eq!(answer["state"], "ok", "{answer}");
    assert_eq!(answer["key"], key.as_str());
    assert_eq!(local_api(&device.state_dir, STATUS)["state"], "ok");
    assert_eq!(
        show(&controller, &device.device_id)["disabled"],
        Value::Null
    );

    // Enabling a device that is not disabled is refused (failed precondition).
    let out = controller.ctl(&["device", "enable", &device.device_id]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not disabled"), "{}", stderr(&out));

    let audit = json(&controller.ctl(&["audit", "list", "--output", "json"]));
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("device.disable") || a.starts_with("device.enable"))
        .collect();
    assert_eq!(actions, ["device.disable", "device.enable"]);
}

#[test]
fn retire_wipes_with_a_receipt_destroys_the_agent_and_frees_the_host_name() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "r", "rue@hospital.org");
    let mut agent = device.run(&[]);
    let hostname = eventually_blocking("the agent to check in", DEADLINE, || {
        let d = show(&controller, &device.device_id);
        (!d["last_seen"].is_null()).then(|| d["hostname"].as_str().unwrap().to_owned())
    });
    assert!(!hostname.is_empty());
    eventually_blocking("the data key to be created", DEADLINE, || {
        local_api(&device.state_dir, KEY)["key"]
            .as_str()
            .map(|_| ())
    });
    // The identity as it is now, to try it again after retirement.
    let old_identity = tmp.path().join("old-identity");
    copy_identity(&device.state_dir, &old_identity);
    check_in_as(&controller.url, &old_identity).unwrap();

    let out = controller.ctl(&[
        "device",
        "retire",
        &device.device_id,
        "--reason",
        "sold to a refurbisher",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(exit_code(&out), Some(0), "{}", stderr(&out));
    let retired = json(&out);
    assert_eq!(retired["kind"], "retire");
    assert_eq!(retired["state"], "succeeded");
    assert_eq!(retired["device_id"], device.device_id.as_str());
    assert_eq!(retired["receipt"]["verified"], true);
    assert_eq!(retired["receipt"]["body"]["scope"], "messaging");
    assert_eq!(retired["receipt"]["body"]["key_destroyed"], true);
    assert_eq!(retired["receipt"]["body"]["files_removed"], CANARY_FILES);
    let retire_id = retired["id"].as_str().unwrap().to_owned();

    let record = eventually_blocking("the device to show as retired", DEADLINE, || {
        Some(show(&controller, &device.device_id)).filter(|d| d["state"] == "retired")
    });
    assert_eq!(record["id"], device.device_id.as_str());
    // The record keeps its proof: the retire command with its verified receipt.
    assert_eq!(record["retirement"]["id"], retire_id.as_str());
    assert_eq!(record["retirement"]["receipt"]["verified"], true);
    assert!(
        device.canary_files().is_empty(),
        "canary survived: {:?}",
        device.canary_files()
    );
    eventually_blocking("the agent to stop by itself", DEADLINE, || {
        (!agent.is_running()).then_some(())
    });
    assert!(
        !device.state_dir.exists(),
        "the agent's state directory is still there"
    );

    // The old identity is dead: retired devices are revoked.
    let refused = check_in_as(&controller.url, &old_identity);
    assert!(
        refused.is_err(),
        "the retired device's certificate checked in"
    );

    // Retiring again answers with the same command; nothing else can be done to it.
    let again = lifecycle(&controller, "retire", &device.device_id, "again");
    assert_eq!(again["command"]["id"], retire_id.as_str());
    assert_eq!(again["device"]["state"], "retired");
    let out = controller.ctl(&["device", "disable", &device.device_id, "--reason", "x"]);
    assert_eq!(exit_code(&out), Some(2), "{}", stderr(&out));
    let retire_commands = json(&controller.ctl(&[
        "command",
        "list",
        "--device",
        &device.device_id,
        "--output",
        "json",
    ]));
    assert_eq!(retire_commands.as_array().unwrap().len(), 1);

    // The same machine enrolls again: its host name now names the new device.
    let reborn = AgentFixture::enroll(&controller, tmp.path(), "r2", "rue@hospital.org");
    assert_ne!(reborn.device_id, device.device_id);
    let by_name = show(&controller, &hostname);
    assert_eq!(by_name["id"], reborn.device_id.as_str(), "{by_name}");
    assert_eq!(by_name["state"], "active");
    // The retired record stays, by its id.
    assert_eq!(show(&controller, &device.device_id)["state"], "retired");
    assert_eq!(
        json(&controller.ctl(&["audit", "verify", "--output", "json"]))["ok"],
        true
    );
}

#[test]
fn bad_lifecycle_input_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "b", "bo@hospital.org");
    let id = device.device_id.as_str();
    let snapshot = || {
        (
            show(&controller, id),
            // Every admin read is audited too: those are left out.
            changes_audited(&controller),
            json(&controller.ctl(&["command", "list", "--output", "json"])),
        )
    };
    let before = snapshot();
    let unknown = uuid::Uuid::new_v4().to_string();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["device", "disable", id], 2),
        (vec!["device", "disable", id, "--reason", ""], 2),
        (vec!["device", "disable", id, "--reason", "   "], 2),
        (vec!["device", "retire", id], 2),
        (vec!["device", "retire", id, "--reason", ""], 2),
        (
            vec!["device", "retire", id, "--reason", "x", "--timeout", "5s"],
            2,
        ),
        (
            vec![
                "device",
                "retire",
                id,
                "--reason",
                "x",
                "--wait",
                "--timeout",
                "0s",
            ],
            2,
        ),
        (vec!["device", "enable", id], 2),
        (vec!["device", "retire", &unknown, "--reason", "x"], 3),
        (vec!["device", "disable", &unknown, "--reason", "x"], 3),
        (vec!["device", "enable", &unknown], 3),
        (vec!["device", "retire", "no-such-host", "--reason", "x"], 3),
        (
            vec!["device", "retire", "not a device!", "--reason", "x"],
            2,
        ),
    ];
    for (args, code) in &cases {
        let out = controller.ctl(args);
        assert_eq!(exit_code(&out), Some(*code), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).trim().is_empty(), "{args:?}: no message");
    }
    assert_eq!(snapshot(), before);
}

#[test]
fn concurrent_disables_make_one_command() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "c", "cy@hospital.org");
    // Two helpdesk admins (or one double-clicking script) disable the same device at once.
    let ids: Vec<String> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let (controller, id) = (&controller, device.device_id.as_str());
                scope.spawn(move || {
                    let out = lifecycle(controller, "disable", id, &format!("mislaid ({i})"));
                    out["command"]["id"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let disables = json(&controller.ctl(&["command", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .len();
    let recorded = show(&controller, &device.device_id)["disabled"]["command_id"].clone();
    assert_eq!(
        disables, 1,
        "{disables} disable commands for one device; the callers got {ids:?}, the record says {recorded}"
    );
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(recorded, ids[0].as_str());
}
