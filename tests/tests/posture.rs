//! Device posture end to end, with real `wardctl serve` and `ward-agent run` processes whose
//! checks read fixture trees: a forbidden package makes the device non-compliant, and the
//! policy's action for that check decides whether the messaging app still gets its data key
//! from the agent's local API. The inventory the agent reports shows up in `device show`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json as j};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, Daemon, json, local_api};

const DEADLINE: Duration = Duration::from_secs(60);

/// dpkg's status file: three packages installed (one of them on hold), one removed with only
/// its configuration files left (which is not installed and must not count).
const DPKG_STATUS: &str = "\
Package: base-files
Status: install ok installed
Priority: required
Version: 13ubuntu10

Package: telegram-desktop
Status: install ok installed
Priority: optional
Version: 4.14.9+ds-1

Package: openssl
Status: hold ok installed
Priority: optional
Version: 3.0.13-0ubuntu3

Package: signal-desktop
Status: deinstall ok config-files
Priority: optional
Version: 7.0.0
";
const DPKG_INSTALLED: u64 = 3;

/// A machine under `root`: the root filesystem on LUKS, /boot on a plain partition, a tmpfs
/// (never a disk's data), no swap, dpkg and flatpak databases, hardware facts, and in its own
/// program directory an `iptables-save` and an `ip6tables-save` whose INPUT chains drop by
/// default.
fn fixture_roots(root: &Path) {
    let proc = root.join("proc");
    std::fs::create_dir_all(proc.join("self")).unwrap();
    std::fs::write(
        proc.join("self/mountinfo"),
        "25 1 253:0 / / rw,relatime - ext4 /dev/mapper/root rw\n\
         26 25 252:1 / /boot rw,relatime - ext4 /dev/vda1 rw\n\
         27 25 0:30 / /run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755\n",
    )
    .unwrap();
    std::fs::write(
        proc.join("cpuinfo"),
        "processor\t: 0\nmodel name\t: Ward Test CPU @ 2.0GHz\n\n\
         processor\t: 1\nmodel name\t: Ward Test CPU @ 2.0GHz\n",
    )
    .unwrap();
    std::fs::write(
        proc.join("swaps"),
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
    )
    .unwrap();
    std::fs::write(
        proc.join("meminfo"),
        "MemTotal:       16384 kB\nMemFree:         1024 kB\n",
    )
    .unwrap();
    // Up 41 days.
    std::fs::write(proc.join("uptime"), "3542400.25 7012345.50\n").unwrap();

    let sys = root.join("sys");
    let dm = sys.join("class/block/dm-0");
    std::fs::create_dir_all(dm.join("dm")).unwrap();
    std::fs::create_dir_all(dm.join("slaves")).unwrap();
    std::fs::write(dm.join("dm/uuid"), "CRYPT-LUKS2-0123-root\n").unwrap();
    std::fs::write(dm.join("dev"), "253:0\n").unwrap();
    let part = sys.join("class/block/vda1");
    std::fs::create_dir_all(&part).unwrap();
    std::fs::write(part.join("dev"), "252:1\n").unwrap();
    std::fs::create_dir_all(sys.join("dev/block")).unwrap();
    std::os::unix::fs::symlink(&dm, sys.join("dev/block/253:0")).unwrap();
    std::os::unix::fs::symlink(&part, sys.join("dev/block/252:1")).unwrap();
    let dmi = sys.join("class/dmi/id");
    std::fs::create_dir_all(&dmi).unwrap();
    std::fs::write(dmi.join("sys_vendor"), "Acme Medical\n").unwrap();
    std::fs::write(dmi.join("product_name"), "Ward Station 5\n").unwrap();

    std::fs::create_dir_all(root.join("etc")).unwrap();
    let var = root.join("var");
    std::fs::create_dir_all(var.join("lib/dpkg")).unwrap();
    std::fs::write(var.join("lib/dpkg/status"), DPKG_STATUS).unwrap();
    std::fs::create_dir_all(var.join("lib/flatpak/app/org.mozilla.firefox/current")).unwrap();

    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for program in ["iptables-save", "ip6tables-save"] {
        let path = bin.join(program);
        std::fs::write(
            &path,
            "#!/bin/sh\nprintf '*filter\\n:INPUT DROP [0:0]\\n:FORWARD DROP [0:0]\\n:OUTPUT ACCEPT [0:0]\\nCOMMIT\\n'\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
}

/// Starts the agent with every root pointed into the fixture (programs only from its `bin`;
/// `snap` does not exist there, so there are no snaps).
fn run_on_fixture(device: &AgentFixture, root: &Path) -> Daemon {
    let dirs: Vec<(&str, PathBuf)> = vec![
        ("WARD_AGENT_PROC_ROOT", root.join("proc")),
        ("WARD_AGENT_SYS_ROOT", root.join("sys")),
        ("WARD_AGENT_ETC_ROOT", root.join("etc")),
        ("WARD_AGENT_VAR_ROOT", root.join("var")),
        ("WARD_AGENT_SNAP_ROOT", root.join("snap")),
        ("WARD_AGENT_BIN_DIR", root.join("bin")),
    ];
    let env: Vec<(&str, &str)> = dirs
        .iter()
        .map(|(name, dir)| (*name, dir.to_str().unwrap()))
        .collect();
    device.run(&env)
}

fn show(controller: &ControllerProcess, device: &AgentFixture) -> Value {
    json(&controller.ctl(&["device", "show", &device.device_id, "--output", "json"]))
}

fn list(controller: &ControllerProcess, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["device", "list", "--output", "json"];
    args.extend(extra);
    json(&controller.ctl(&args)).as_array().cloned().unwrap()
}

/// `policy set FLAGS --output json`.
fn set_policy(controller: &ControllerProcess, flags: &[&str]) -> Value {
    let mut args = vec!["policy", "set"];
    args.extend(flags);
    args.extend(["--output", "json"]);
    json(&controller.ctl(&args))
}

/// The device as the controller shows it once it has judged a report against `revision` and
/// updated the enforcement to `enforcing` ((check, action) pairs). The two are separate
/// writes on the controller, so a reader may see the first without the second for a moment.
fn reported_against(
    controller: &ControllerProcess,
    device: &AgentFixture,
    revision: &Value,
    enforcing: &[(&str, &str)],
) -> Value {
    let expected: Vec<(String, String)> = enforcing
        .iter()
        .map(|(c, a)| ((*c).to_owned(), (*a).to_owned()))
        .collect();
    eventually_blocking(
        &format!("a compliance report against policy revision {revision}, enforcing {enforcing:?}"),
        DEADLINE,
        || {
            Some(show(controller, device)).filter(|d| {
                d["compliance_policy_revision"] == *revision && enforcement_actions(d) == expected
            })
        },
    )
}

/// What the messaging app gets when it asks for its key: the key, or why not. The agent
/// records its verdict before it sends the report, so once the controller has a report
/// against a revision the local API answers by that revision too.
fn ask_for_key(device: &AgentFixture) -> Value {
    local_api(&device.state_dir, r#"{"op":"key"}"#)
}

fn assert_key_withheld_for(device: &AgentFixture, check: &str) {
    let answer = ask_for_key(device);
    assert!(answer["key"].is_null(), "key handed out: {answer}");
    assert_eq!(answer["state"], "withheld", "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains(check), "{error}");
    let status = local_api(&device.state_dir, r#"{"op":"status"}"#);
    assert_eq!(status["state"], "withheld", "{status}");
    assert!(
        status["reason"].as_str().unwrap().contains(check),
        "{status}"
    );
}

fn assert_key_handed_out(device: &AgentFixture, key: &str) {
    let answer = ask_for_key(device);
    assert_eq!(answer["state"], "ok", "{answer}");
    assert_eq!(answer["key"], key, "{answer}");
}

fn enforcement_actions(device: &Value) -> Vec<(String, String)> {
    device["enforcement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["check"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_forbidden_package_withholds_the_key_only_while_its_action_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "p", "pia@hospital.org");
    let roots = tmp.path().join("roots");
    fixture_roots(&roots);
    let _agent = run_on_fixture(&device, &roots);

    // No rule yet: the messaging app gets its key.
    let key = eventually_blocking("the agent to hand out the data key", DEADLINE, || {
        ask_for_key(&device)["key"].as_str().map(str::to_owned)
    });

    // signal-desktop is forbidden too, but only its configuration files are left.
    let policy = set_policy(
        &controller,
        &[
            "--forbid-package",
            "telegram-desktop",
            "--forbid-package",
            "signal-desktop",
        ],
    );
    assert_eq!(
        policy["forbidden_packages"],
        j!(["telegram-desktop", "signal-desktop"])
    );
    assert_eq!(policy["check_actions"]["forbidden_packages"], "block");
    let shown = reported_against(
        &controller,
        &device,
        &policy["revision"],
        &[("forbidden_packages", "block")],
    );
    assert_eq!(shown["compliant"], false);
    let reasons = shown["compliance_reasons"].to_string();
    assert!(reasons.contains("telegram-desktop (dpkg)"), "{reasons}");
    assert!(!reasons.contains("signal-desktop"), "{reasons}");
    let flagged = list(
        &controller,
        &["--noncompliant", "--reason", "forbidden_packages"],
    );
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0]["id"], device.device_id.as_str());
    assert!(list(&controller, &["--noncompliant", "--reason", "firewall"]).is_empty());
    assert_key_withheld_for(&device, "forbidden_packages");

    // Report only: still non-compliant for the admin, but the app keeps working.
    let policy = set_policy(&controller, &["--action", "forbidden_packages=report"]);
    assert_eq!(policy["check_actions"]["forbidden_packages"], "report");
    assert_eq!(
        policy["forbidden_packages"],
        j!(["telegram-desktop", "signal-desktop"]),
        "an action change keeps the denylist"
    );
    let shown = reported_against(
        &controller,
        &device,
        &policy["revision"],
        &[("forbidden_packages", "report")],
    );
    assert_eq!(shown["compliant"], false);
    assert_key_handed_out(&device, &key);

    // Block again: withheld again.
    let policy = set_policy(&controller, &["--action", "forbidden_packages=block"]);
    reported_against(
        &controller,
        &device,
        &policy["revision"],
        &[("forbidden_packages", "block")],
    );
    assert_key_withheld_for(&device, "forbidden_packages");

    // The package is allowed: compliant (the check still runs for signal-desktop), and the
    // key is the same one as before: nothing was wiped.
    let policy = set_policy(&controller, &["--allow-package", "telegram-desktop"]);
    assert_eq!(policy["forbidden_packages"], j!(["signal-desktop"]));
    let shown = reported_against(&controller, &device, &policy["revision"], &[]);
    assert_eq!(shown["compliant"], true, "{shown}");
    assert_key_handed_out(&device, &key);
    assert!(!device.canary_files().is_empty());

    // Each step of the episode is in the audit log.
    let steps: Vec<(String, Value)> = json(&controller.ctl(&[
        "audit",
        "list",
        "--device",
        &device.device_id,
        "--output",
        "json",
    ]))
    .as_array()
    .unwrap()
    .iter()
    .filter(|e| e["action"] == "device.enforcement")
    .map(|e| {
        assert_eq!(e["details"]["check"], "forbidden_packages", "{e}");
        (
            e["details"]["step"].as_str().unwrap().to_owned(),
            e["details"]["action"].clone(),
        )
    })
    .collect();
    assert_eq!(
        steps,
        [
            ("failing".into(), j!("block")),
            ("action_changed".into(), j!("report")),
            ("action_changed".into(), j!("block")),
            ("cleared".into(), Value::Null),
        ]
    );

    // The uptime rule: up 41 days is too long for a 30-day limit. Report only, so the app
    // keeps its key; unset again, the device is compliant.
    let policy = set_policy(
        &controller,
        &["--max-uptime", "30d", "--action", "uptime=report"],
    );
    assert_eq!(policy["max_uptime_days"], 30);
    assert_eq!(policy["check_actions"]["uptime"], "report");
    let shown = reported_against(
        &controller,
        &device,
        &policy["revision"],
        &[("uptime", "report")],
    );
    assert_eq!(shown["compliant"], false);
    let reasons = shown["compliance_reasons"].to_string();
    assert!(reasons.contains("up 41 days"), "{reasons}");
    let flagged = list(&controller, &["--noncompliant", "--reason", "uptime"]);
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_key_handed_out(&device, &key);
    let policy = set_policy(&controller, &["--max-uptime", "0"]);
    assert_eq!(policy["max_uptime_days"], 0);
    let shown = reported_against(&controller, &device, &policy["revision"], &[]);
    assert_eq!(shown["compliant"], true, "{shown}");
}

#[test]
fn device_show_has_the_inventory_the_agent_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "i", "ivy@hospital.org");
    let roots = tmp.path().join("roots");
    fixture_roots(&roots);
    let _agent = run_on_fixture(&device, &roots);

    let shown = eventually_blocking("the agent to report its inventory", DEADLINE, || {
        Some(show(&controller, &device)).filter(|d| !d["inventory"].is_null())
    });
    let inventory = &shown["inventory"];
    assert_eq!(
        inventory["packages"],
        j!([
            {"manager": "dpkg", "count": DPKG_INSTALLED},
            {"manager": "flatpak", "count": 1},
        ])
    );
    assert_eq!(inventory["packages_installed"], DPKG_INSTALLED + 1);
    // The filesystem holding the data comes first; the tmpfs is not a disk.
    assert_eq!(
        inventory["filesystems"],
        j!([
            {"mount_point": "/", "fs_type": "ext4", "source": "/dev/mapper/root", "encryption": "encrypted"},
            {"mount_point": "/boot", "fs_type": "ext4", "source": "/dev/vda1", "encryption": "not encrypted"},
        ])
    );
    assert_eq!(inventory["hardware_vendor"], "Acme Medical");
    assert_eq!(inventory["hardware_model"], "Ward Station 5");
    assert_eq!(inventory["cpu_model"], "Ward Test CPU @ 2.0GHz");
    assert_eq!(inventory["cpu_count"], 2);
    assert_eq!(inventory["memory_bytes"], 16384 * 1024);
    assert_eq!(inventory["firewall"], "active: ip6tables, iptables");

    assert!(shown["last_seen"].is_string(), "{shown}");
    let expires = shown["certificate_expires_at"].as_str().unwrap();
    assert!(
        expires > shown["last_seen"].as_str().unwrap(),
        "the certificate expires at {expires}"
    );
    assert_eq!(shown["disabled"], Value::Null);
    assert_eq!(shown["enforcement"], j!([]));
    // The table view says the same.
    let out = controller.ctl(&["device", "show", &device.device_id, "--output", "table"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&format!(
            "{} installed (dpkg {DPKG_INSTALLED}, flatpak 1)",
            DPKG_INSTALLED + 1
        )),
        "{table}"
    );
    assert!(
        table.contains("/ ext4 on /dev/mapper/root: encrypted"),
        "{table}"
    );
}
