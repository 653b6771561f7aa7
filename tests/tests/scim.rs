//! SCIM 2.0 provisioning from an identity provider, end to end: a real controller with
//! `--scim-listen`, a real HTTP client over TLS trusting the controller's CA, enrolled agents.
//! The request bodies are the shapes Entra ID and Okta really send.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};
use ward_e2e::scim::Scim;

const DEADLINE: Duration = Duration::from_secs(60);
const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn start(tmp: &std::path::Path) -> (ControllerProcess, Scim) {
    let controller = ControllerProcess::start_with(
        &tmp.join("controller"),
        "127.0.0.1:0",
        &["--scim-listen", "127.0.0.1:0"],
    );
    let scim = Scim::of(&controller.data_dir);
    (controller, scim)
}

fn scim_token(controller: &ControllerProcess, name: &str) -> String {
    let created = json(&controller.ctl(&[
        "scim", "token", "create", "--name", name, "--output", "json",
    ]));
    assert_eq!(created["actor"], format!("ward://scim/{name}"));
    created["token"].as_str().unwrap().to_owned()
}

fn new_user(email: &str, external_id: &str) -> Value {
    json!({
        "schemas": [CORE_USER],
        "userName": email,
        "externalId": external_id,
        "active": true,
        "name": { "givenName": "Test", "familyName": "User" },
        "emails": [{ "primary": true, "type": "work", "value": email }],
    })
}

/// The user's device, once its messaging wipe has succeeded with a verified receipt and it
/// has been revoked; the wipe's command.
fn wiped_and_revoked(controller: &ControllerProcess, device: &AgentFixture) -> Value {
    let shown = eventually_blocking("the device to be wiped and revoked", DEADLINE, || {
        let d = json(&controller.ctl(&["device", "show", &device.device_id, "--output", "json"]));
        (d["device_state"] == "revoked" && !d["messaging_wipe"].is_null()).then_some(d)
    });
    let command_id = shown["messaging_wipe"]["command_id"].as_str().unwrap();
    let command = json(&controller.ctl(&["command", "show", command_id, "--output", "json"]));
    assert_eq!(command["receipt"]["verified"], true, "{command}");
    assert!(device.canary_files().is_empty());
    command
}

fn audit(controller: &ControllerProcess) -> Vec<Value> {
    json(&controller.ctl(&["audit", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn commands(controller: &ControllerProcess) -> usize {
    json(&controller.ctl(&["command", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .len()
}

fn users(controller: &ControllerProcess) -> Vec<Value> {
    json(&controller.ctl(&["user", "list", "--output", "json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn user_entry(controller: &ControllerProcess, email: &str) -> Value {
    users(controller)
        .into_iter()
        .find(|u| u["user"] == email)
        .unwrap_or_else(|| panic!("{email} is not in user list"))
}

#[test]
fn entra_and_okta_deprovisioning_and_a_delete_wipe_the_users_devices_with_verified_receipts() {
    let tmp = tempfile::tempdir().unwrap();
    let (controller, scim) = start(tmp.path());
    let entra = scim_token(&controller, "entra");
    // Token management needs the admin role: an offboarding-role admin is refused (exit 4).
    let hr = tmp.path().join("hr.pem");
    json(&controller.ctl(&[
        "admin",
        "issue",
        "--no-passphrase",
        "hr",
        "--role",
        "offboarding",
        "--out",
        hr.to_str().unwrap(),
        "--output",
        "json",
    ]));
    let refused = ward_e2e::process::wardctl(&[
        "scim",
        "token",
        "create",
        "--name",
        "rogue",
        "--server",
        &controller.url,
        "--admin-cert",
        hr.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    let okta = scim_token(&controller, "okta");

    let alice = AgentFixture::enroll(&controller, tmp.path(), "alice", "alice@hospital.org");
    let bob = AgentFixture::enroll(&controller, tmp.path(), "bob", "bob@hospital.org");
    let carol = AgentFixture::enroll(&controller, tmp.path(), "carol", "carol@hospital.org");
    let _running: Vec<_> = [&alice, &bob, &carol].iter().map(|a| a.run(&[])).collect();

    // Entra ID: is she there? (no) — create her.
    let found = scim.call(
        "GET",
        "/Users?filter=userName%20eq%20%22alice%40hospital.org%22",
        &entra,
        None,
    );
    assert_eq!(found.status, 200, "{}", found.raw);
    assert_eq!(found.content_type, "application/scim+json");
    assert_eq!(found.body["totalResults"], 0);
    let created = scim.call(
        "POST",
        "/Users",
        &entra,
        Some(&new_user("Alice@Hospital.org", "e-1")),
    );
    assert_eq!(created.status, 201, "{}", created.raw);
    let alice_id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["userName"], "Alice@Hospital.org");
    assert_eq!(
        user_entry(&controller, "alice@hospital.org")["scim_user_name"],
        "Alice@Hospital.org"
    );
    assert_eq!(
        user_entry(&controller, "alice@hospital.org")["directory_state"],
        "active"
    );
    let found = scim.call(
        "GET",
        "/Users?filter=userName%20eq%20%22ALICE%40hospital.org%22",
        &entra,
        None,
    );
    assert_eq!(found.body["totalResults"], 1);
    assert_eq!(found.body["Resources"][0]["id"], alice_id.as_str());

    // Entra ID deprovisions her: capitalised op, the boolean as a string.
    let entra_patch = json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "Replace", "path": "active", "value": "False" }],
    });
    let patched = scim.call(
        "PATCH",
        &format!("/Users/{alice_id}"),
        &entra,
        Some(&entra_patch),
    );
    assert_eq!(patched.status, 200, "{}", patched.raw);
    assert_eq!(patched.body["active"], false);
    let wipe = wiped_and_revoked(&controller, &alice);
    assert_eq!(wipe["created_by"], "scim:entra", "{wipe}");
    assert!(
        wipe["reason"]
            .as_str()
            .unwrap()
            .contains("SCIM client entra")
    );
    let trail = audit(&controller);
    let by_entra = |action: &str| {
        trail.iter().any(|e| {
            e["actor"] == "ward://scim/entra"
                && e["action"] == action
                && e["target"] == "alice@hospital.org"
        })
    };
    assert!(by_entra("scim.user.deactivate"));
    assert!(by_entra("user.offboard"));
    assert!(
        trail
            .iter()
            .any(|e| e["actor"] == "ward://scim/entra" && e["action"] == "command.issue")
    );
    let entry = user_entry(&controller, "alice@hospital.org");
    assert_eq!(entry["directory_state"], "deactivated");
    assert_eq!(entry["directory_updated_by"], "entra");
    // The offboarding shows as usual.
    let report = json(&controller.ctl(&[
        "user",
        "offboard",
        "alice@hospital.org",
        "--reason",
        "check",
        "--output",
        "json",
    ]));
    assert_eq!(report["complete"], true);

    // The same PATCH again (providers retry): nothing new is issued.
    let before = commands(&controller);
    let again = scim.call(
        "PATCH",
        &format!("/Users/{alice_id}"),
        &entra,
        Some(&entra_patch),
    );
    assert_eq!(again.status, 200, "{}", again.raw);
    assert_eq!(commands(&controller), before);

    // Deactivated: no new enrollment token; reactivated: one may be made again.
    let refused = controller.ctl(&["token", "create", "--user", "alice@hospital.org"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("deactivated by the identity provider"),
        "{}",
        stderr(&refused)
    );
    let reactivate = json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "Replace", "path": "active", "value": "True" }],
    });
    let back = scim.call(
        "PATCH",
        &format!("/Users/{alice_id}"),
        &entra,
        Some(&reactivate),
    );
    assert_eq!(back.status, 200, "{}", back.raw);
    assert_eq!(back.body["active"], true);
    controller.token("alice@hospital.org", "15m");
    assert_eq!(
        commands(&controller),
        before,
        "reactivation issued something"
    );
    assert!(
        audit(&controller)
            .iter()
            .any(|e| e["actor"] == "ward://scim/entra" && e["action"] == "scim.user.reactivate")
    );

    // Okta: no path, an object of attributes.
    let created = scim.call(
        "POST",
        "/Users",
        &okta,
        Some(&new_user("bob@hospital.org", "00u2")),
    );
    assert_eq!(created.status, 201, "{}", created.raw);
    let bob_id = created.body["id"].as_str().unwrap().to_owned();
    let okta_patch = json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "replace", "value": { "active": false } }],
    });
    let patched = scim.call(
        "PATCH",
        &format!("/Users/{bob_id}"),
        &okta,
        Some(&okta_patch),
    );
    assert_eq!(patched.status, 200, "{}", patched.raw);
    let wipe = wiped_and_revoked(&controller, &bob);
    assert_eq!(wipe["created_by"], "scim:okta");
    assert!(
        audit(&controller)
            .iter()
            .any(|e| e["actor"] == "ward://scim/okta"
                && e["action"] == "user.offboard"
                && e["target"] == "bob@hospital.org")
    );

    // DELETE: offboarded, the record kept as deleted (not served any more).
    let created = scim.call(
        "POST",
        "/Users",
        &entra,
        Some(&new_user("carol@hospital.org", "e-3")),
    );
    let carol_id = created.body["id"].as_str().unwrap().to_owned();
    let deleted = scim.call("DELETE", &format!("/Users/{carol_id}"), &entra, None);
    assert_eq!(deleted.status, 204, "{}", deleted.raw);
    wiped_and_revoked(&controller, &carol);
    assert_eq!(
        scim.call("GET", &format!("/Users/{carol_id}"), &entra, None)
            .status,
        404
    );
    let entry = user_entry(&controller, "carol@hospital.org");
    assert_eq!(entry["directory_state"], "deleted");
    assert!(entry["deactivated_at"].is_string());
    assert!(
        audit(&controller)
            .iter()
            .any(|e| e["actor"] == "ward://scim/entra" && e["action"] == "scim.user.delete")
    );
    assert_eq!(
        scim.call("DELETE", &format!("/Users/{carol_id}"), &entra, None)
            .status,
        404
    );

    // PUT with active false deprovisions too (dave has no device: nothing to wipe).
    let created = scim.call(
        "POST",
        "/Users",
        &entra,
        Some(&new_user("dave@hospital.org", "e-4")),
    );
    let dave_id = created.body["id"].as_str().unwrap().to_owned();
    let mut replaced = new_user("dave@hospital.org", "e-4");
    replaced["active"] = json!(false);
    let put = scim.call("PUT", &format!("/Users/{dave_id}"), &entra, Some(&replaced));
    assert_eq!(put.status, 200, "{}", put.raw);
    assert_eq!(put.body["active"], false);
    assert_eq!(
        user_entry(&controller, "dave@hospital.org")["directory_state"],
        "deactivated"
    );
    // Leaving `active` out (a PATCH that removes it, a PUT without it) never reactivates.
    let remove = json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "remove", "path": "active" }],
    });
    let patched = scim.call("PATCH", &format!("/Users/{dave_id}"), &entra, Some(&remove));
    assert_eq!(patched.status, 200, "{}", patched.raw);
    assert_eq!(patched.body["active"], false);
    let mut without = new_user("dave@hospital.org", "e-4");
    without.as_object_mut().unwrap().remove("active");
    let put = scim.call("PUT", &format!("/Users/{dave_id}"), &entra, Some(&without));
    assert_eq!(put.body["active"], false, "{}", put.raw);
    assert_eq!(
        user_entry(&controller, "dave@hospital.org")["directory_state"],
        "deactivated"
    );
    let refused = controller.ctl(&["token", "create", "--user", "dave@hospital.org"]);
    assert!(!refused.status.success());

    // Paging.
    let page = scim.call("GET", "/Users?startIndex=2&count=1", &entra, None);
    assert_eq!(page.body["totalResults"], 3, "{}", page.raw);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["itemsPerPage"], 1);
    assert_eq!(page.body["Resources"][0]["userName"], "bob@hospital.org");
}

/// What SCIM requests could change: `user list`, `command list`, and the audit trail's
/// entries by SCIM clients (other than refusals) and about their tokens.
fn snapshot(controller: &ControllerProcess) -> (Vec<Value>, usize, usize) {
    let changes = audit(controller)
        .iter()
        .filter(|e| {
            let action = e["action"].as_str().unwrap();
            (e["actor"].as_str().unwrap().starts_with("ward://scim/")
                && !action.starts_with("scim.denied"))
                || action.starts_with("scim.token")
        })
        .count();
    (users(controller), commands(controller), changes)
}

fn assert_scim_error(answer: &ward_e2e::scim::Answer, status: u16, scim_type: Option<&str>) {
    assert_eq!(answer.status, status, "{}", answer.raw);
    assert_eq!(
        answer.content_type, "application/scim+json",
        "{}",
        answer.raw
    );
    assert_eq!(
        answer.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(answer.body["status"], status.to_string());
    if let Some(t) = scim_type {
        assert_eq!(answer.body["scimType"], t, "{}", answer.raw);
    }
    assert!(
        answer.body["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

#[test]
fn a_client_over_its_request_rate_gets_429_before_its_token_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start_with(
        &tmp.path().join("controller"),
        "127.0.0.1:0",
        &[
            "--scim-listen",
            "127.0.0.1:0",
            "--scim-burst",
            "5",
            "--scim-per-minute",
            "1",
        ],
    );
    let scim = Scim::of(&controller.data_dir);
    let entra = scim_token(&controller, "entra");
    for _ in 0..5 {
        assert_eq!(scim.call("GET", "/Users", &entra, None).status, 200);
    }
    let refused = scim.call("GET", "/Users", &entra, None);
    assert_scim_error(&refused, 429, None);
    // A flood past the limit is not even authenticated: no refusal entries for bad tokens.
    for _ in 0..20 {
        assert_eq!(scim.call("GET", "/Users", "wardscim_bad", None).status, 429);
    }
    assert!(
        !audit(&controller)
            .iter()
            .any(|e| e["action"] == "scim.denied")
    );
}

#[test]
fn bad_scim_requests_get_scim_errors_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (controller, scim) = start(tmp.path());
    let entra = scim_token(&controller, "entra");
    let alice = AgentFixture::enroll(&controller, tmp.path(), "alice", "alice@hospital.org");
    let _running = alice.run(&[]);
    let created = scim.call(
        "POST",
        "/Users",
        &entra,
        Some(&new_user("alice@hospital.org", "e-1")),
    );
    assert_eq!(created.status, 201, "{}", created.raw);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let user = format!("/Users/{id}");
    let before = snapshot(&controller);

    let deactivate = json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "Replace", "path": "active", "value": "False" }],
    });
    // Bad filters.
    for filter in [
        "userName%20co%20%22a%22",
        "displayName%20eq%20%22A%22",
        "userName%20eq%20alice",
        "userName%20eq%20%22a%22%20and%20active%20eq%20true",
    ] {
        assert_scim_error(
            &scim.call("GET", &format!("/Users?filter={filter}"), &entra, None),
            400,
            Some("invalidFilter"),
        );
    }
    // Bad JSON, a non-object, a PATCH that is not a PatchOp, an unsupported op, a bad value.
    assert_scim_error(
        &scim.raw("PATCH", &user, &entra, Some(b"{\"schemas\": [".to_vec())),
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(
        &scim.raw("POST", "/Users", &entra, Some(b"[1,2]".to_vec())),
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(
        &scim.call(
            "PATCH",
            &user,
            &entra,
            Some(&json!({"Operations": [{"op": "Replace", "path": "active", "value": false}]})),
        ),
        400,
        Some("invalidSyntax"),
    );
    assert_scim_error(&scim.call("PATCH", &user, &entra, Some(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "Move", "path": "active", "value": false}]}))), 400, Some("invalidSyntax"));
    assert_scim_error(&scim.call("PATCH", &user, &entra, Some(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "nope"}]}))), 400, Some("invalidValue"));
    assert_scim_error(
        &scim.call(
            "PATCH",
            &user,
            &entra,
            Some(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "Remove"}]})),
        ),
        400,
        Some("noTarget"),
    );
    // A second operation that fails undoes the first (active false is not applied).
    assert_scim_error(&scim.call("PATCH", &user, &entra, Some(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}, {"op": "Replace", "path": "emails[type eq \"home\"]", "value": {"value": "x"}}]}))), 400, Some("noTarget"));
    // A userName that is no e-mail address, a duplicate, a rename.
    assert_scim_error(
        &scim.call("POST", "/Users", &entra, Some(&new_user("alice", "e-9"))),
        400,
        Some("invalidValue"),
    );
    assert_scim_error(
        &scim.call(
            "POST",
            "/Users",
            &entra,
            Some(&new_user("ALICE@hospital.org", "e-9")),
        ),
        409,
        Some("uniqueness"),
    );
    let mut renamed = new_user("alice2@hospital.org", "e-1");
    renamed["active"] = json!(false);
    assert_scim_error(
        &scim.call("PUT", &user, &entra, Some(&renamed)),
        400,
        Some("mutability"),
    );
    // Unknown users.
    let unknown = "/Users/00000000-0000-4000-8000-000000000000";
    assert_scim_error(
        &scim.call("PATCH", unknown, &entra, Some(&deactivate)),
        404,
        None,
    );
    assert_scim_error(
        &scim.call("DELETE", "/Users/not-a-uuid", &entra, None),
        404,
        None,
    );
    // Groups are not implemented, and say so.
    assert_scim_error(
        &scim.call(
            "POST",
            "/Groups",
            &entra,
            Some(&json!({"displayName": "ICU"})),
        ),
        501,
        None,
    );
    // An oversized body.
    let mut huge = new_user("eve@hospital.org", "e-5");
    huge["displayName"] = json!("x".repeat(70 * 1024));
    assert_scim_error(&scim.call("POST", "/Users", &entra, Some(&huge)), 413, None);
    // No token, a wrong one, a revoked one: 401, audited.
    assert_scim_error(&scim.call("PATCH", &user, "", Some(&deactivate)), 401, None);
    assert_scim_error(
        &scim.call(
            "PATCH",
            &user,
            "wardscim_not-a-real-token",
            Some(&deactivate),
        ),
        401,
        None,
    );
    let okta = scim_token(&controller, "okta");
    json(&controller.ctl(&["scim", "token", "revoke", "okta", "--output", "json"]));
    let listed = json(&controller.ctl(&["scim", "token", "list", "--output", "json"]));
    assert_eq!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "okta")
            .unwrap()["state"],
        "revoked"
    );
    assert_scim_error(
        &scim.call("PATCH", &user, &okta, Some(&deactivate)),
        401,
        None,
    );
    assert_scim_error(&scim.call("GET", "/Users", &okta, None), 401, None);

    let (users_after, commands_after, changes_after) = snapshot(&controller);
    assert_eq!(users_after, before.0);
    assert_eq!(commands_after, before.1);
    // Only the okta token's own creation and revocation were recorded as changes.
    assert_eq!(changes_after, before.2 + 2);
    assert!(
        !alice.canary_files().is_empty(),
        "alice's messaging data was touched"
    );
    let denied = audit(&controller)
        .iter()
        .filter(|e| e["action"] == "scim.denied")
        .count();
    assert_eq!(denied, 4);

    // A flood of bad tokens writes a bounded number of entries.
    for _ in 0..30 {
        assert_eq!(
            scim.call("GET", "/Users", "wardscim_flood", None).status,
            401
        );
    }
    let denied = audit(&controller)
        .iter()
        .filter(|e| e["action"] == "scim.denied")
        .count();
    assert_eq!(
        denied, 10,
        "one by one up to the per-minute bound, then counted"
    );
    assert_eq!(snapshot(&controller).1, before.1);
}

/// Review finding (fixed: at most 16 connections per address): the SCIM listener's 256 connection slots (`MAX_CONNECTIONS`) are shared by
/// every client address, and a connection keeps its slot while it sends a byte a minute (the
/// idle timer restarts on every byte read). One address that is not the identity
/// provider (no token needed) opens 256 TLS connections, and the identity provider's
/// deprovisioning waits in the kernel's backlog for as long as the attacker likes. Here the
/// attacker speaks from 127.0.0.2, the identity provider from 127.0.0.1; the provider's request
/// must be answered.
#[test]
fn one_address_holding_every_scim_connection_does_not_stop_the_identity_provider() {
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let (controller, scim) = start(tmp.path());
    let entra = scim_token(&controller, "entra");
    let url: http::Uri = scim.base.parse().unwrap();
    let port = url.port_u16().unwrap();
    let ca = std::fs::read(controller.data_dir.join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem::parse_many(&ca).unwrap() {
        roots
            .add(rustls::pki_types::CertificateDer::from(
                cert.contents().to_vec(),
            ))
            .unwrap();
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The attacker: 256 silent TLS connections from 127.0.0.2, no token.
    let held = runtime.block_on(async {
        let mut held = Vec::new();
        for _ in 0..256 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let Ok(tcp) = socket
                .connect(format!("127.0.0.1:{port}").parse().unwrap())
                .await
            else {
                continue;
            };
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            // Past its share, the listener closes the address's new connections.
            if let Ok(stream) = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name.to_owned(), tcp)
                .await
            {
                held.push(stream);
            }
        }
        held
    });
    assert!(
        held.len() <= 16,
        "one address holds {} connections",
        held.len()
    );
    // The identity provider, from another address, lists its users.
    let (tx, rx) = std::sync::mpsc::channel();
    let provider = scim.clone();
    std::thread::spawn(move || {
        let _ = tx.send(provider.call("GET", "/Users", &entra, None).status);
    });
    let answered = rx.recv_timeout(Duration::from_secs(15));
    drop(held);
    assert_eq!(
        answered.ok(),
        Some(200),
        "the identity provider's request waited behind another address's idle connections"
    );
}
