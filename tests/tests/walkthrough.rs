//! The README's walk-through with real processes: `wardctl serve`, `wardctl token create`,
//! `ward-agent enroll` and `ward-agent run`, over real mutual TLS on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ward_e2e::eventually_blocking;
use ward_e2e::process::{ControllerProcess, Daemon, agent, json, stderr, wardctl};

const DEADLINE: Duration = Duration::from_secs(60);

fn enroll_args<'a>(token: &'a serde_json::Value, state_dir: &'a str) -> Vec<&'a str> {
    vec![
        "enroll",
        "--server",
        token["server_url"].as_str().unwrap(),
        "--token",
        token["token"].as_str().unwrap(),
        "--ca-hash",
        token["ca_hash"].as_str().unwrap(),
        "--state-dir",
        state_dir,
    ]
}

#[test]
fn enrolled_agent_checks_in_and_shows_in_device_list() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let token = controller.token("alice@hospital.org", "15m");
    assert!(
        token["enroll_command"]
            .as_str()
            .unwrap()
            .starts_with("ward-agent enroll --server https://")
    );

    let state = tmp.path().join("agent");
    let state_str = state.to_str().unwrap();
    let out = agent(&enroll_args(&token, state_str));
    assert!(out.status.success(), "enroll failed: {}", stderr(&out));

    let _agent = Daemon::spawn(
        "ward-agent",
        &["run", "--state-dir", state_str],
        tmp.path().join("agent.log"),
    );
    let device = eventually_blocking("the device's first check-in", DEADLINE, || {
        controller.devices().into_iter().find(|d| {
            d["user"] == "alice@hospital.org"
                && !d["last_seen"].is_null()
                && !d["compliant"].is_null()
        })
    });
    assert_eq!(device["state"], "active");
    // The built-in default policy requires nothing, so the first report is compliant.
    assert_eq!(device["compliant"], true);
    assert!(!device["hostname"].as_str().unwrap().is_empty());
    let id = device["id"].as_str().unwrap().to_owned();

    // The device certificate: our CA, one ward://device URI, client auth, at most 7 days.
    let pem = std::fs::read_to_string(state.join("device.pem")).unwrap();
    let ca_pem = std::fs::read_to_string(controller.data_dir.join("ca.pem")).unwrap();
    let leaf = ward_certs::certificates_from_pem(&pem).unwrap().remove(0);
    let ca = ward_certs::certificates_from_pem(&ca_pem)
        .unwrap()
        .remove(0);
    let now = time::OffsetDateTime::now_utc();
    let peer =
        ward_certs::validate::validate_client_certificate(&leaf, &ca, now, Duration::ZERO).unwrap();
    assert_eq!(peer.identity.to_uri(), format!("ward://device/{id}"));
    assert!(peer.not_after - now <= Duration::from_secs(7 * 24 * 3600));

    // The agent's own view.
    let status = eventually_blocking("the agent to record its check-in", DEADLINE, || {
        let s = json(&agent(&[
            "status",
            "--state-dir",
            state_str,
            "--output",
            "json",
        ]));
        (!s["last_checkin"].is_null()).then_some(s)
    });
    assert_eq!(status["device_id"], id.as_str());
    assert_eq!(status["user"], "alice@hospital.org");

    let shown = json(&controller.ctl(&["device", "show", &id, "--output", "json"]));
    assert_eq!(shown["id"], id.as_str());

    // The device's credentials dressed up as an admin bundle: refused with exit code 4.
    let fake = tmp.path().join("device-as-admin.pem");
    let key = std::fs::read_to_string(state.join("device.key")).unwrap();
    std::fs::write(&fake, format!("{pem}{ca_pem}{key}")).unwrap();
    let out = wardctl(&[
        "device",
        "list",
        "--server",
        &controller.url,
        "--admin-cert",
        fake.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not an admin identity"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn second_use_of_a_token_fails_clearly_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let token = controller.token("bob@hospital.org", "15m");
    let first = tmp.path().join("first");
    assert!(
        agent(&enroll_args(&token, first.to_str().unwrap()))
            .status
            .success()
    );

    let second = tmp.path().join("second");
    let out = agent(&enroll_args(&token, second.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already used"), "{}", stderr(&out));
    assert!(!second.exists(), "a refused enrollment left state behind");
    assert_eq!(controller.devices().len(), 1);
}

#[test]
fn wrong_ca_hash_is_refused_and_the_token_stays_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let mut token = controller.token("carol@hospital.org", "15m");
    let right = token["ca_hash"].clone();
    token["ca_hash"] = format!("sha256:{}", "ab".repeat(32)).into();
    let state = tmp.path().join("agent");
    let out = agent(&enroll_args(&token, state.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does not match --ca-hash"),
        "{}",
        stderr(&out)
    );
    assert!(!state.exists());
    assert!(controller.devices().is_empty());

    token["ca_hash"] = right;
    assert!(
        agent(&enroll_args(&token, state.to_str().unwrap()))
            .status
            .success()
    );
}

#[test]
fn init_refuses_to_overwrite_an_existing_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let dir_str = dir.to_str().unwrap();
    let first = json(&wardctl(&[
        "init",
        "--data-dir",
        dir_str,
        "--output",
        "json",
    ]));
    let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();
    let out = wardctl(&["init", "--data-dir", dir_str]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("refusing to overwrite"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);
    assert!(first["ca_hash"].as_str().unwrap().starts_with("sha256:"));
    // A later serve may give new names (tests/tests/ca_cli.rs), but a bad one is refused
    // before anything changes.
    let server_before = std::fs::read(dir.join("server.pem")).unwrap();
    let out = wardctl(&[
        "serve",
        "--data-dir",
        dir_str,
        "--listen",
        "127.0.0.1:0",
        "--hostname",
        "ward..elsewhere",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a DNS name"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(dir.join("server.pem")).unwrap(),
        server_before
    );
    for secret in ["ca.key", "server.key", "admin.pem"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join(secret)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
}

#[test]
fn admin_issue_writes_a_bundle_that_works_from_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let bundle = tmp.path().join("helpdesk.pem");
    let bundle_str = bundle.to_str().unwrap();
    let issued = json(&controller.ctl(&[
        "admin",
        "issue",
        "--no-passphrase",
        "hd1",
        "--role",
        "helpdesk",
        "--out",
        bundle_str,
        "--output",
        "json",
    ]));
    assert_eq!(issued["role"], "helpdesk");

    // Used the way a remote admin would: --server and --admin-cert, no data dir.
    let out = wardctl(&[
        "device",
        "list",
        "--server",
        &controller.url,
        "--admin-cert",
        bundle_str,
        "--output",
        "json",
    ]);
    assert_eq!(json(&out), serde_json::json!([]));

    // The same name again: refused, and the existing bundle is untouched.
    let other = tmp.path().join("again.pem");
    let out = controller.ctl(&[
        "admin",
        "issue",
        "--no-passphrase",
        "hd1",
        "--role",
        "admin",
        "--out",
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert!(!other.exists());
    let admins = json(&controller.ctl(&["admin", "list", "--output", "json"]));
    // init's admin and break-glass identity, and the one issued above.
    assert_eq!(admins.as_array().unwrap().len(), 3);
}

#[test]
fn cli_errors_use_the_documented_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let unknown = controller.ctl(&["device", "show", "6f1c2d3e-0000-4000-8000-000000000000"]);
    assert_eq!(unknown.status.code(), Some(3), "{}", stderr(&unknown));
    let malformed = controller.ctl(&["device", "show", "not a uuid!"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(stderr(&malformed).contains("not a device id"));
    let no_such_host = controller.ctl(&["device", "show", "not-a-uuid"]);
    assert_eq!(no_such_host.status.code(), Some(3));
    assert!(stderr(&no_such_host).contains("no device that is not retired has the host name"));
    let bad_user = controller.ctl(&["token", "create", "--user", "alice"]);
    assert_eq!(bad_user.status.code(), Some(2));
    let bad_ttl = controller.ctl(&["token", "create", "--user", "a@h.org", "--ttl", "soon"]);
    assert_eq!(bad_ttl.status.code(), Some(2));
    let long_ttl = controller.ctl(&["token", "create", "--user", "a@h.org", "--ttl", "30d"]);
    assert_eq!(long_ttl.status.code(), Some(2));
    let no_credentials = wardctl(&["device", "list"]);
    assert_eq!(no_credentials.status.code(), Some(2));
    assert!(stderr(&no_credentials).contains("--admin-cert"));
    assert!(controller.devices().is_empty());
}

#[test]
fn agent_reconnects_after_the_controller_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("controller");
    let controller = ControllerProcess::start(&data);
    let token = controller.token("dora@hospital.org", "15m");
    let state = tmp.path().join("agent");
    let state_str = state.to_str().unwrap();
    assert!(agent(&enroll_args(&token, state_str)).status.success());
    let _agent = Daemon::spawn(
        "ward-agent",
        &["run", "--state-dir", state_str],
        tmp.path().join("agent.log"),
    );
    let last_seen = |c: &ControllerProcess| {
        c.devices()
            .first()
            .and_then(|d| d["last_seen"].as_str().map(str::to_owned))
    };
    let before = eventually_blocking("a first check-in", DEADLINE, || last_seen(&controller));

    // Kill the controller, then bring it back on the same port with the same data.
    let port = controller.url.rsplit(':').next().unwrap().to_owned();
    drop(controller);
    let controller = ControllerProcess::start_on(&data, &format!("127.0.0.1:{port}"));
    eventually_blocking("a check-in after the restart", DEADLINE, || {
        last_seen(&controller).filter(|t| *t > before)
    });
}
