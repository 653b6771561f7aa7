//! Policy and compliance end to end: `wardctl policy set` is pushed to a running agent, whose
//! checks read fixture trees (its /proc, /sys and /etc roots point at them), and
//! `wardctl device list --noncompliant` shows the result with reasons.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};

const DEADLINE: Duration = Duration::from_secs(60);

/// A machine whose root filesystem is on LUKS, without swap, with no desktop settings.
fn fixture_roots(root: &Path) {
    std::fs::create_dir_all(root.join("proc/self")).unwrap();
    std::fs::write(
        root.join("proc/self/mountinfo"),
        "25 1 253:0 / / rw - ext4 /dev/mapper/root rw\n",
    )
    .unwrap();
    std::fs::write(
        root.join("proc/swaps"),
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
    )
    .unwrap();
    let dm = root.join("sys/class/block/dm-0");
    std::fs::create_dir_all(dm.join("dm")).unwrap();
    std::fs::create_dir_all(dm.join("slaves")).unwrap();
    std::fs::write(dm.join("dm/uuid"), "CRYPT-LUKS2-0123-root\n").unwrap();
    std::fs::create_dir_all(root.join("sys/dev/block")).unwrap();
    std::os::unix::fs::symlink(&dm, root.join("sys/dev/block/253:0")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
}

/// GNOME locked down to lock the screen after 300 s: the keyfiles, the user profile, and the
/// database `dconf update` compiled from them (dconf reads only that).
fn gnome_auto_lock_300s(root: &Path) {
    let db = root.join("etc/dconf/db");
    std::fs::create_dir_all(db.join("local.d/locks")).unwrap();
    std::fs::write(
        db.join("local.d/00-ward"),
        "[org/gnome/desktop/session]\nidle-delay=uint32 300\n[org/gnome/desktop/screensaver]\nlock-enabled=true\n",
    )
    .unwrap();
    std::fs::write(
        db.join("local.d/locks/ward"),
        "/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-enabled\n",
    )
    .unwrap();
    std::fs::write(
        db.join("local"),
        include_bytes!("../../agent/src/checks/fixtures/dconf/locked"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("etc/dconf/profile")).unwrap();
    std::fs::write(
        root.join("etc/dconf/profile/user"),
        "user-db:user\nsystem-db:local\n",
    )
    .unwrap();
}

fn list(controller: &ControllerProcess, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["device", "list", "--output", "json"];
    args.extend(extra);
    json(&controller.ctl(&args)).as_array().cloned().unwrap()
}

#[test]
fn policy_is_pushed_and_compliance_is_reported_with_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "p", "pat@hospital.org");
    let roots = tmp.path().join("roots");
    fixture_roots(&roots);
    let paths = [roots.join("proc"), roots.join("sys"), roots.join("etc")];
    let env: Vec<(&str, &str)> = [
        "WARD_AGENT_PROC_ROOT",
        "WARD_AGENT_SYS_ROOT",
        "WARD_AGENT_ETC_ROOT",
    ]
    .into_iter()
    .zip(paths.iter().map(|p| p.to_str().unwrap()))
    .collect();
    let _agent = device.run(&env);

    let policy = json(&controller.ctl(&[
        "policy",
        "set",
        "--require-encryption",
        "--max-inactivity",
        "5m",
        "--output",
        "json",
    ]));
    assert_eq!(policy["require_disk_encryption"], true);
    assert_eq!(policy["auto_lock_seconds"], 300);
    let revision = policy["revision"].as_u64().unwrap();

    // Encrypted root, but no desktop settings: non-compliant because of auto-lock only.
    let flagged = eventually_blocking("a report against the new policy", DEADLINE, || {
        list(&controller, &["--noncompliant"])
            .into_iter()
            .find(|d| {
                d["id"] == device.device_id.as_str() && d["compliance_policy_revision"] == revision
            })
    });
    let reasons = flagged["compliance_reasons"].to_string();
    assert!(reasons.contains("auto_lock"), "{reasons}");
    assert!(!reasons.contains("disk_encryption"), "{reasons}");
    assert_eq!(
        list(&controller, &["--noncompliant", "--reason", "auto_lock"]).len(),
        1
    );
    assert!(
        list(
            &controller,
            &["--noncompliant", "--reason", "disk_encryption"]
        )
        .is_empty()
    );

    // The desktop gets locked-down settings: compliant at the next check-in.
    gnome_auto_lock_300s(&roots);
    eventually_blocking("the device to become compliant", DEADLINE, || {
        list(&controller, &[])
            .into_iter()
            .find(|d| d["compliant"] == true)
    });

    // A stricter override for this user only: non-compliant again, default untouched.
    let own = json(&controller.ctl(&[
        "policy",
        "set",
        "--user",
        "pat@hospital.org",
        "--max-inactivity",
        "2m",
        "--output",
        "json",
    ]));
    assert_eq!(own["scope"], "user:pat@hospital.org");
    assert_eq!(
        own["require_disk_encryption"], true,
        "an override starts from the user's current policy"
    );
    assert_eq!(
        json(&controller.ctl(&["policy", "show", "--output", "json"]))["auto_lock_seconds"],
        300
    );
    eventually_blocking("the override to make it non-compliant", DEADLINE, || {
        list(&controller, &["--noncompliant", "--reason", "auto_lock"])
            .into_iter()
            .next()
    });
    let reset = json(&controller.ctl(&[
        "policy",
        "reset",
        "--user",
        "pat@hospital.org",
        "--output",
        "json",
    ]));
    assert_eq!(reset["scope"], "default");
    eventually_blocking("compliance after the override is removed", DEADLINE, || {
        list(&controller, &[])
            .into_iter()
            .find(|d| d["compliant"] == true)
    });
}

#[test]
fn bad_policy_input_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let before = json(&controller.ctl(&["policy", "show", "--output", "json"]));
    for args in [
        vec!["policy", "set"],
        vec!["policy", "set", "--min-classes", "5"],
        vec!["policy", "set", "--offline-wipe-after", "10m"],
        vec!["policy", "set", "--max-age", "36h"],
        vec!["policy", "set", "--max-inactivity", "soon"],
        vec![
            "policy",
            "set",
            "--user",
            "not-an-email",
            "--min-length",
            "12",
        ],
        vec!["policy", "reset", "--user", "nobody@hospital.org"],
        vec!["device", "list", "--reason", "auto_lock"],
    ] {
        let out = controller.ctl(&args);
        assert!(
            matches!(out.status.code(), Some(2 | 3)),
            "{args:?}: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
    assert_eq!(
        json(&controller.ctl(&["policy", "show", "--output", "json"])),
        before
    );
}
