//! CA rotation end to end (`wardctl ca rotate`): a real controller and two real agents go
//! through introduce, activate and retire without a device losing the controller or its
//! data; each step refuses while it would cut someone off and then changes nothing; after the
//! retirement a certificate made with the former CA's key is refused at the handshake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::Code;
use ward_certs::{CaHash, CertificateAuthority, Identity, PrivateKeyDer, VerifiedCsr};
use ward_e2e::clock::{AgentClock, env_refs};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, CANARY_FILES, ControllerProcess, json, stderr, wardctl};
use ward_proto::transport::{ChannelOptions, ServerUrl, connect};
use ward_proto::v1::CheckInRequest;
use ward_proto::v1::agent_service_client::AgentServiceClient;

/// `wardctl ARGS` as the admin whose bundle is `bundle`.
fn ctl(controller: &ControllerProcess, bundle: &Path, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "--server",
        controller.url.as_str(),
        "--admin-cert",
        bundle.to_str().unwrap(),
    ]);
    wardctl(&all)
}

fn rotation(controller: &ControllerProcess, bundle: &Path) -> serde_json::Value {
    json(&ctl(
        controller,
        bundle,
        &["ca", "rotate", "status", "--output", "json"],
    ))
}

fn hashes_in(pem_file: &Path) -> Vec<String> {
    let pem = std::fs::read_to_string(pem_file).unwrap();
    let mut hashes: Vec<String> = ward_certs::certificates_from_pem(&pem)
        .unwrap()
        .iter()
        .map(|c| CaHash::of_certificate(c).to_string())
        .collect();
    hashes.sort();
    hashes
}

fn pem_certificate(path: &Path) -> Vec<u8> {
    ward_certs::certificates_from_pem(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .remove(0)
}

/// The introduced CA's certificate file in the data directory.
fn new_ca_file(data: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("ca-") && name.ends_with(".pem")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn refused(out: &Output, why: &str) {
    assert!(!out.status.success(), "accepted: {}", stderr(out));
    assert!(stderr(out).contains(why), "{}", stderr(out));
}

fn renew_admin(controller: &ControllerProcess, bundle: &Path, name: &str, out: &Path) {
    let renewed = ctl(
        controller,
        bundle,
        &[
            "admin",
            "renew",
            name,
            "--out",
            out.to_str().unwrap(),
            "--no-passphrase",
        ],
    );
    assert!(renewed.status.success(), "{}", stderr(&renewed));
}

/// Both devices checked in after `since`.
fn wait_for_check_ins(controller: &ControllerProcess, bundle: &Path, since: OffsetDateTime) {
    eventually_blocking("both agents to check in", Duration::from_secs(60), || {
        let out = ctl(controller, bundle, &["device", "list", "--output", "json"]);
        let devices = json(&out).as_array().cloned().unwrap();
        devices
            .iter()
            .all(|d| {
                d["last_seen_at"]
                    .as_str()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                    .is_some_and(|t| t > since)
            })
            .then_some(())
    });
}

/// A device certificate for `device_id` made with `ca` (as someone holding that CA's key
/// would), and whether a new connection with it gets past the handshake to the service.
async fn handshake_accepts(
    url: &str,
    ca_der: &[u8],
    forged_by: &CertificateAuthority,
    device_id: &str,
) -> bool {
    let key = PrivateKeyDer::generate().unwrap();
    let csr = VerifiedCsr::from_der(&ward_certs::csr::make_csr(&key, "forged").unwrap()).unwrap();
    let cert = forged_by
        .issue_client(
            &csr,
            &Identity::Device(device_id.parse().unwrap()),
            OffsetDateTime::now_utc(),
            Duration::from_secs(24 * 3600),
        )
        .unwrap();
    let tls = ward_certs::tls::client_config(ca_der, Some((&[cert.der], &key))).unwrap();
    let url: ServerUrl = url.parse().unwrap();
    let Ok(channel) = connect(&url, tls, ChannelOptions::default()).await else {
        return false;
    };
    match AgentServiceClient::new(channel)
        .check_in(CheckInRequest::default())
        .await
    {
        Ok(_) => panic!("a certificate the controller never issued was taken"),
        // The service saw it (and refused it: it is not on record): past the handshake.
        Err(status) => matches!(
            status.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_rotation_keeps_every_device_and_retires_the_former_ca() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let controller =
        ControllerProcess::start_with(&data, "127.0.0.1:0", &["--device-cert-lifetime", "1h"]);
    let init_bundle = data.join("admin.pem");
    let old_ca = pem_certificate(&data.join("ca.pem"));
    let old_hash = CaHash::of_certificate(&old_ca).to_string();
    let old_authority = CertificateAuthority::from_pem(
        &std::fs::read_to_string(data.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(data.join("ca.key")).unwrap(),
    )
    .unwrap();

    let north = AgentFixture::enroll(&controller, root.path(), "north", "north@hospital.org");
    let south = AgentFixture::enroll(&controller, root.path(), "south", "south@hospital.org");
    let clock = AgentClock::new(root.path());
    let env_owned = clock.env();
    let env = env_refs(&env_owned);
    let north_run = north.run(&env);

    // Before anything: one CA, and no step but introduce.
    let status = rotation(&controller, &init_bundle);
    assert_eq!(status["cas"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status["cas"][0]["ca_state"], "active", "{status}");
    let early = ctl(&controller, &init_bundle, &["ca", "rotate", "activate"]);
    refused(&early, "no CA was introduced");
    let early = ctl(&controller, &init_bundle, &["ca", "rotate", "retire"]);
    refused(&early, "no former CA to retire");

    // Introduce: a new CA in the data directory (its key 0600), given to agents.
    let introduced = json(&ctl(
        &controller,
        &init_bundle,
        &["ca", "rotate", "introduce", "--output", "json"],
    ));
    assert!(
        introduced["done"].as_str().unwrap().contains("introduced"),
        "{introduced}"
    );
    let new_ca_path = new_ca_file(&data);
    let new_ca = pem_certificate(&new_ca_path);
    let new_hash = CaHash::of_certificate(&new_ca).to_string();
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(new_ca_path.with_extension("key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);
    let again = ctl(&controller, &init_bundle, &["ca", "rotate", "introduce"]);
    refused(&again, "already introduced");

    // The running agent takes the bundle at its next check-in; the stopped one cannot.
    let both = {
        let mut h = vec![old_hash.clone(), new_hash.clone()];
        h.sort();
        h
    };
    eventually_blocking("north to trust both CAs", Duration::from_secs(30), || {
        (hashes_in(&north.state_dir.join("ca.pem")) == both).then_some(())
    });
    eventually_blocking(
        "the controller to record north's trust",
        Duration::from_secs(30),
        || (rotation(&controller, &init_bundle)["devices_trusting_all"] == 1).then_some(()),
    );
    // Activating now would cut south off: refused, and nothing changed.
    let cut_off = ctl(&controller, &init_bundle, &["ca", "rotate", "activate"]);
    refused(&cut_off, "do not trust the new CA yet");
    let status = rotation(&controller, &init_bundle);
    assert_eq!(
        status["devices_behind"][0],
        south.device_id.as_str(),
        "{status}"
    );
    assert!(
        status["cas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["ca_hash"] == new_hash.as_str() && c["ca_state"] == "introduced"),
        "{status}"
    );
    assert!(ward_certs::validate::issued_by(
        &pem_certificate(&data.join("server.pem")),
        &old_ca
    ));

    let south_run = south.run(&env);
    eventually_blocking(
        "both devices to trust both CAs",
        Duration::from_secs(30),
        || (rotation(&controller, &init_bundle)["devices_trusting_all"] == 2).then_some(()),
    );
    // The admin's bundle from before the introduction trusts the old CA only: a renewal now
    // gives one that trusts both.
    let bundle = root.path().join("admin-both.pem");
    renew_admin(&controller, &init_bundle, "admin", &bundle);
    // The bundle: the admin's certificate, then the CAs it trusts.
    let mut bundle_cas = hashes_in(&bundle);
    bundle_cas.retain(|h| *h == old_hash || *h == new_hash);
    assert_eq!(bundle_cas, both);

    // Activate: the new CA signs, starting with the server certificate.
    let activated_at = OffsetDateTime::now_utc();
    let activated = ctl(&controller, &bundle, &["ca", "rotate", "activate"]);
    assert!(activated.status.success(), "{}", stderr(&activated));
    eventually_blocking(
        "the server certificate to be issued under the new CA",
        Duration::from_secs(30),
        || {
            ward_certs::validate::issued_by(&pem_certificate(&data.join("server.pem")), &new_ca)
                .then_some(())
        },
    );
    wait_for_check_ins(
        &controller,
        &bundle,
        activated_at + time::Duration::seconds(2),
    );

    // Retiring now would cut off every certificate of the former CA: refused.
    let early = ctl(&controller, &bundle, &["ca", "rotate", "retire"]);
    refused(&early, "still valid");

    // The devices renew under the new CA (their clocks 50 minutes on: two thirds of the
    // hour), the admins renew theirs, the break-glass identity is issued again.
    north_run.stop();
    south_run.stop();
    clock.set(50 * 60);
    let north_run = north.run(&env);
    let south_run = south.run(&env);
    for agent in [&north, &south] {
        eventually_blocking(
            "the agent to renew under the new CA",
            Duration::from_secs(60),
            || {
                ward_certs::validate::issued_by(
                    &pem_certificate(&agent.state_dir.join("device.pem")),
                    &new_ca,
                )
                .then_some(())
            },
        );
    }
    let bundle_new = root.path().join("admin-new.pem");
    renew_admin(&controller, &bundle, "admin", &bundle_new);
    renew_admin(
        &controller,
        &bundle_new,
        "break-glass",
        &root.path().join("break-glass-new.pem"),
    );
    eventually_blocking(
        "nothing valid left under the former CA",
        Duration::from_secs(60),
        || {
            let status = rotation(&controller, &bundle_new);
            status["cas"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["ca_hash"] == old_hash.as_str())
                .is_some_and(|c| {
                    c["live_device_certificates"] == 0 && c["live_admin_certificates"] == 0
                })
                .then_some(())
        },
    );

    // Before the retirement, a certificate made with the former CA's key passes the handshake
    // (the service refuses it: it was never issued); after it, the handshake refuses it.
    let forged_device = north.device_id.clone();
    assert!(handshake_accepts(&controller.url, &new_ca, &old_authority, &forged_device).await);
    let retired_at = OffsetDateTime::now_utc();
    let retired = ctl(&controller, &bundle_new, &["ca", "rotate", "retire"]);
    assert!(retired.status.success(), "{}", stderr(&retired));
    assert!(!handshake_accepts(&controller.url, &new_ca, &old_authority, &forged_device).await);

    // The agents drop the former CA and stay connected; nothing was lost.
    for agent in [&north, &south] {
        eventually_blocking(
            "the agent to trust the new CA only",
            Duration::from_secs(30),
            || (hashes_in(&agent.state_dir.join("ca.pem")) == [new_hash.clone()]).then_some(()),
        );
        assert_eq!(agent.canary_files().len() as u64, CANARY_FILES);
    }
    wait_for_check_ins(
        &controller,
        &bundle_new,
        retired_at + time::Duration::seconds(2),
    );
    let status = rotation(&controller, &bundle_new);
    assert_eq!(status["devices_trusting_all"], 2, "{status}");
    let verify = ctl(&controller, &bundle_new, &["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let audit = json(&ctl(
        &controller,
        &bundle_new,
        &["audit", "list", "--output", "json"],
    ));
    let mut actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("ca."))
        .collect();
    actions.sort_unstable();
    // Each step once: the refused ones left no entry.
    assert_eq!(
        actions,
        ["ca.activate", "ca.introduce", "ca.retire"],
        "{audit}"
    );

    north_run.stop();
    south_run.stop();
    controller.stop();
}

#[test]
fn an_introduced_ca_can_be_cancelled_and_a_new_rotation_started() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let controller = ControllerProcess::start(&data);
    let bundle = data.join("admin.pem");
    let early = ctl(&controller, &bundle, &["ca", "rotate", "cancel"]);
    refused(&early, "no introduced CA to cancel");
    let first = ctl(&controller, &bundle, &["ca", "rotate", "introduce"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let cancelled = json(&ctl(
        &controller,
        &bundle,
        &["ca", "rotate", "cancel", "--output", "json"],
    ));
    assert!(
        cancelled["done"].as_str().unwrap().contains("cancelled"),
        "{cancelled}"
    );
    let states: Vec<&str> = cancelled["cas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ca_state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["active", "retired"], "{cancelled}");
    // A new rotation starts; with no device enrolled, it can be activated at once.
    let second = ctl(&controller, &bundle, &["ca", "rotate", "introduce"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let renewed = root.path().join("admin-2.pem");
    renew_admin(&controller, &bundle, "admin", &renewed);
    let activated = ctl(&controller, &renewed, &["ca", "rotate", "activate"]);
    assert!(activated.status.success(), "{}", stderr(&activated));
    let verify = ctl(&controller, &renewed, &["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    controller.stop();
}

/// Under `serve --require-approval`, a forced step that would cut off more than the approval
/// threshold waits for a second admin, the way an `admin`-role identity does: the request is
/// listed under the name of the CA it concerns (`ca-rotation-<12 hex>`), the requester cannot
/// approve it, another admin runs `wardctl admin approve ca-rotation-<12 hex>`, and the
/// requester's same command then takes the step.
#[test]
fn a_forced_activation_under_require_approval_waits_for_a_second_admin() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let controller = ControllerProcess::start_with(
        &data,
        "127.0.0.1:0",
        &["--require-approval", "--approval-threshold", "0"],
    );
    // One device that never checks in: it will not trust the new CA.
    let device = AgentFixture::enroll(&controller, root.path(), "a", "ada@hospital.org");
    let bundle = data.join("admin.pem");
    let introduced = ctl(&controller, &bundle, &["ca", "rotate", "introduce"]);
    assert!(introduced.status.success(), "{}", stderr(&introduced));
    // The admin's own renewal needs nobody: the new bundle trusts both CAs.
    let renewed = root.path().join("admin-2.pem");
    renew_admin(&controller, &bundle, "admin", &renewed);

    let forced = ctl(
        &controller,
        &renewed,
        &["ca", "rotate", "activate", "--force"],
    );
    let standing = rotation(&controller, &renewed);
    let introduced =
        standing["cas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ca| ca["ca_state"] == "introduced")
            .unwrap_or_else(|| {
                panic!("the forced activation went ahead with one admin: {standing}")
            })["ca_hash"]
            .as_str()
            .unwrap()
            .to_owned();
    // The request is named after the CA to activate, and the refusal names the command.
    let name = format!(
        "ca-rotation-{}",
        &introduced.strip_prefix("sha256:").unwrap()[..12]
    );
    refused(&forced, &format!("wardctl admin approve {name}`"));
    let requests = json(&ctl(
        &controller,
        &renewed,
        &["admin", "list", "--requests", "--output", "json"],
    ));
    assert_eq!(requests[0]["name"], name.as_str(), "{requests}");
    assert_eq!(requests[0]["kind"], "ca-activate", "{requests}");
    assert_eq!(requests[0]["requested_by"], "admin", "{requests}");
    let own = ctl(&controller, &renewed, &["admin", "approve", &name]);
    refused(&own, "a second admin must approve it");

    // The break-glass identity, out of the safe, approves.
    let approved = std::process::Command::new(ward_e2e::process::bin("wardctl"))
        .args(["admin", "approve", &name, "--server"])
        .arg(&controller.url)
        .arg("--admin-cert")
        .arg(data.join("break-glass.pem"))
        .env_remove("WARD_SERVER")
        .env_remove("WARD_ADMIN_CERT")
        .env_remove("WARD_DATA_DIR")
        .env(
            "WARD_ADMIN_PASSPHRASE_FILE",
            data.join("break-glass.passphrase"),
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(approved.status.success(), "{}", stderr(&approved));
    let approved = json(&approved);
    assert_eq!(
        (&approved["kind"], &approved["approved_by"]),
        (&"ca-activate".into(), &"break-glass".into()),
        "{approved}"
    );

    let activated = json(&ctl(
        &controller,
        &renewed,
        &["ca", "rotate", "activate", "--force", "--output", "json"],
    ));
    assert!(
        activated["done"]
            .as_str()
            .unwrap()
            .contains("signs from now on"),
        "{activated}"
    );
    assert_eq!(activated["devices_trusting_all"], 0, "{activated}");
    let verify = ctl(&controller, &renewed, &["audit", "verify"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    drop(device);
    controller.stop();
}
