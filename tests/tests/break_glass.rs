//! The break-glass path end to end, with the real `wardctl`: `init` writes an encrypted,
//! two-year `break-glass` bundle and its passphrase beside it; once they are in the "safe",
//! the controller runs with `--require-approval`, the everyday admin's bundle is lost and
//! revoked, and the break-glass identity alone issues a new admin (the one identity whose
//! custody counts as two people), who takes over; the lost bundle is refused with exit 4.
//! Also: the admin CLI's issue, approve, renew, revoke and list as scripts use them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use ward_e2e::process::{ControllerProcess, bin, json, stderr, wardctl};

const DENIED: i32 = 4;
const ENV: &str = "WARD_ADMIN_PASSPHRASE_FILE";

/// `wardctl ARGS --server URL --admin-cert BUNDLE`, unlocking it with `passphrase`.
fn as_admin(url: &str, bundle: &Path, passphrase: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(bin("wardctl"));
    command
        .args(args)
        .args(["--server", url, "--admin-cert"])
        .arg(bundle)
        .env_remove("WARD_SERVER")
        .env_remove("WARD_ADMIN_CERT")
        .env_remove("WARD_DATA_DIR")
        .env_remove(ENV)
        .stdin(Stdio::null());
    if let Some(file) = passphrase {
        command.env(ENV, file);
    }
    command.output().expect("run wardctl")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn admins(out: &Output) -> Vec<(String, String, String)> {
    json(out)
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
                a["created_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_break_glass_bundle_from_the_safe_brings_a_controller_back() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("controller");
    let init = wardctl(&[
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let report = json(&init);
    let bundle = Path::new(report["break_glass_bundle"].as_str().unwrap()).to_path_buf();
    let passphrase =
        Path::new(report["break_glass_passphrase_file"].as_str().unwrap()).to_path_buf();
    assert_eq!((mode(&bundle), mode(&passphrase)), (0o600, 0o600));
    let text = std::fs::read_to_string(&bundle).unwrap();
    assert!(text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert!(!text.contains("-----BEGIN PRIVATE KEY-----"));
    let secret = std::fs::read_to_string(&passphrase).unwrap();
    assert!(secret.trim().len() >= 32, "a long passphrase");
    for printed in [&init.stdout, &init.stderr] {
        assert!(
            !String::from_utf8_lossy(printed).contains(secret.trim()),
            "init printed the passphrase"
        );
    }
    assert!(stderr(&init).contains("offline safe"), "{}", stderr(&init));

    // Into the safe, apart from each other.
    let safe = tmp.path().join("safe");
    let envelope = tmp.path().join("envelope");
    for dir in [&safe, &envelope] {
        std::fs::create_dir(dir).unwrap();
    }
    let bundle_in_safe = safe.join("break-glass.pem");
    let passphrase_in_envelope = envelope.join("break-glass.passphrase");
    std::fs::rename(&bundle, &bundle_in_safe).unwrap();
    std::fs::rename(&passphrase, &passphrase_in_envelope).unwrap();

    let controller = ControllerProcess::start_with(&data, "127.0.0.1:0", &["--require-approval"]);
    let url = controller.url.clone();
    let glass =
        |args: &[&str]| as_admin(&url, &bundle_in_safe, Some(&passphrase_in_envelope), args);

    // Without its passphrase the bundle is of no use.
    let out = as_admin(&url, &bundle_in_safe, None, &["admin", "list"]);
    assert_ne!(out.status.code(), Some(0));

    // The everyday admin's bundle is lost: the break-glass identity revokes it…
    let out = glass(&[
        "admin",
        "revoke",
        "admin",
        "--reason",
        "bundle lost",
        "--output",
        "json",
    ]);
    let revoked = json(&out);
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(revoked["revoked_by"], "break-glass");
    // …and whoever holds the lost bundle is refused, with the exit code for a credential.
    let out = controller.ctl(&["device", "list"]);
    assert_eq!(out.status.code(), Some(DENIED), "{}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));

    // Break-glass alone issues a new admin, even under --require-approval.
    let carol = tmp.path().join("carol.pem");
    let carol_pass = tmp.path().join("carol.pass");
    std::fs::write(&carol_pass, "carol's long passphrase\n").unwrap();
    std::fs::set_permissions(&carol_pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = glass(&[
        "admin",
        "issue",
        "carol",
        "--role",
        "admin",
        "--out",
        carol.to_str().unwrap(),
        "--passphrase-file",
        carol_pass.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(json(&out)["bundle"], carol.to_str().unwrap());
    let as_carol = |args: &[&str]| as_admin(&url, &carol, Some(&carol_pass), args);
    let out = as_carol(&["admin", "list", "--output", "json"]);
    assert_eq!(
        admins(&out),
        [
            ("admin".into(), "revoked".into(), "init".into()),
            ("break-glass".into(), "active".into(), "init".into()),
            ("carol".into(), "active".into(), "break-glass".into()),
        ]
    );

    // Carol asks for a second admin; under --require-approval that waits (exit 0, no file)
    // until break-glass approves; then the same command writes the bundle.
    let dan = tmp.path().join("dan.pem");
    let issue_dan = [
        "admin",
        "issue",
        "dan",
        "--role",
        "admin",
        "--out",
        dan.to_str().unwrap(),
        "--no-passphrase",
        "--output",
        "json",
    ];
    let out = as_carol(&issue_dan);
    let waiting = json(&out);
    assert_eq!(waiting["state"], "awaiting_approval", "{waiting}");
    assert!(waiting["bundle"].is_null());
    assert!(!dan.exists());
    assert!(
        stderr(&out).contains("wardctl admin approve dan"),
        "{}",
        stderr(&out)
    );
    let out = as_carol(&["admin", "list", "--requests", "--output", "json"]);
    assert_eq!(json(&out)[0]["requested_by"], "carol");
    let out = as_carol(&["admin", "approve", "dan"]);
    assert_eq!(out.status.code(), Some(DENIED), "{}", stderr(&out));
    // Break-glass made carol's key, so it is not a second person for her requests; an admin
    // it issued for the purpose is.
    let out = glass(&["admin", "approve", "dan"]);
    assert_eq!(out.status.code(), Some(DENIED), "{}", stderr(&out));
    assert!(stderr(&out).contains("created"), "{}", stderr(&out));
    let erin = tmp.path().join("erin.pem");
    json(&glass(&[
        "admin",
        "issue",
        "erin",
        "--role",
        "admin",
        "--out",
        erin.to_str().unwrap(),
        "--no-passphrase",
        "--output",
        "json",
    ]));
    let out = as_admin(
        &url,
        &erin,
        None,
        &["admin", "approve", "dan", "--output", "json"],
    );
    assert_eq!(json(&out)["approved_by"], "erin");
    let out = as_carol(&issue_dan);
    assert_eq!(json(&out)["approved_by"], "erin");
    assert!(dan.exists());

    // Carol renews her own certificate into a new bundle; the old one is refused from then on.
    let renewed = tmp.path().join("carol-2.pem");
    let out = as_carol(&[
        "admin",
        "renew",
        "carol",
        "--out",
        renewed.to_str().unwrap(),
        "--passphrase-file",
        carol_pass.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(json(&out)["name"], "carol");
    let out = as_carol(&["admin", "list"]);
    assert_eq!(out.status.code(), Some(DENIED), "{}", stderr(&out));
    let out = as_admin(&url, &renewed, Some(&carol_pass), &["admin", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // While the break-glass files sat in the data directory, serve warned about it; once moved,
    // a restart is quiet.
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(!log.contains("still in the data directory"), "{log}");
}

#[test]
fn serve_warns_while_the_break_glass_files_are_in_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("controller");
    // `serve` initializes the empty directory itself, break-glass files included.
    let controller = ControllerProcess::start(&data);
    assert!(data.join("break-glass.pem").exists());
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(log.contains("still in the data directory"), "{log}");
    drop(controller);
}
