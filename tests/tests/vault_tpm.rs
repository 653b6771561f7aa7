//! The messaging data key in a TPM 2.0 (a real `swtpm`, driven through `tpm2-tools` exactly as
//! on a device): it never rests on disk, and after a wipe neither the TPM nor a copy of the
//! state directory taken before the wipe yields it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ward_agent::secrets::SecretStoreKind;
use ward_agent::tpm::{DEFAULT_NV_INDEX, TpmChoice, auth_file};
use ward_agent::vault::{KeyProtection, Vault};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{
    AgentFixture, ControllerProcess, files_containing, json, local_api, stderr,
};
use ward_e2e::swtpm::{Swtpm, copy_tree};

const DEADLINE: Duration = Duration::from_secs(60);

/// The key as it could rest on disk: raw, or base64 as the local API sends it.
fn forms(key: &[u8]) -> [Vec<u8>; 2] {
    [key.to_vec(), STANDARD.encode(key).into_bytes()]
}

fn nothing_holds(root: &Path, key: &[u8]) {
    let [raw, b64] = forms(key);
    let found = files_containing(&[root.to_path_buf()], &[&raw, &b64]);
    assert!(found.is_empty(), "the key rests in {found:?}");
}

#[tokio::test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
async fn a_key_in_the_tpm_is_gone_from_the_tpm_and_from_a_copy_after_the_wipe() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("tpm"));
    let (state, messaging) = (tmp.path().join("state"), tmp.path().join("messaging"));
    std::fs::create_dir_all(&state).unwrap();
    ward_e2e::process::plant_canaries(&messaging);
    let choice = TpmChoice::Tcti(tpm.tcti.clone());
    let vault = Vault::open_with(&messaging, &state, SecretStoreKind::File, "dev", &choice)
        .await
        .unwrap();
    assert_eq!(vault.protection(), KeyProtection::Tpm);
    let key = vault.key().await.unwrap().unwrap();
    assert_eq!(key.len(), 32);
    assert!(tpm.nv_indices().contains(&DEFAULT_NV_INDEX));
    // Never on disk, not even before the wipe.
    nothing_holds(&state, &key);

    // Reopened (a restart): the same key, from the TPM.
    drop(vault);
    let vault = Vault::open_with(&messaging, &state, SecretStoreKind::File, "dev", &choice)
        .await
        .unwrap();
    assert_eq!(
        vault.key().await.unwrap().unwrap().as_slice(),
        key.as_slice()
    );
    // A restart that lost the TPM setting does not quietly make a weaker key.
    let err = Vault::open_with(
        &messaging,
        &state,
        SecretStoreKind::File,
        "dev",
        &TpmChoice::None,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--tpm"), "{err}");

    let copy = tmp.path().join("stolen-state");
    copy_tree(&state, &copy);
    let journal = vault.wipe("cmd-tpm").await.unwrap();
    assert_eq!(journal.key_protection, Some(KeyProtection::Tpm));
    assert!(journal.verified_empty);

    assert!(!vault.key_present().await.unwrap());
    assert!(
        !tpm.nv_indices().contains(&DEFAULT_NV_INDEX),
        "the NV index survived the wipe"
    );
    // The copy's authorization opens nothing any more, and the copy holds no key.
    let copied_auth = copy.join(auth_file(&state).file_name().unwrap());
    assert!(
        copied_auth.exists(),
        "the copy was taken with the authorization"
    );
    assert_eq!(tpm.nv_read(DEFAULT_NV_INDEX, &copied_auth), None);
    nothing_holds(&copy, &key);
    nothing_holds(&state, &key);
    assert!(!auth_file(&state).exists());
    // And a restart makes no new key after the wipe.
    let again = Vault::open_with(&messaging, &state, SecretStoreKind::File, "dev", &choice)
        .await
        .unwrap();
    assert!(!again.key_present().await.unwrap());
}

#[tokio::test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
async fn an_nv_index_another_program_defined_is_neither_used_nor_destroyed() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("tpm"));
    let handle = format!("{DEFAULT_NV_INDEX:#010x}");
    let out = tpm.tool("tpm2_nvdefine", &[&handle, "-C", "o", "-s", "32"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (state, messaging) = (tmp.path().join("state"), tmp.path().join("messaging"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&messaging).unwrap();
    let err = Vault::open_with(
        &messaging,
        &state,
        SecretStoreKind::File,
        "dev",
        &TpmChoice::Tcti(tpm.tcti.clone()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already defined"), "{err}");
    assert!(tpm.nv_indices().contains(&DEFAULT_NV_INDEX));
}

#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn offboarding_a_device_whose_key_is_in_the_tpm_reports_tpm_and_leaves_no_key_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("tpm"));
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = AgentFixture::enroll(&controller, tmp.path(), "t", "tom@hospital.org");
    let _agent = device.run_with(&["--tpm", &tpm.tcti], &[]);

    // The app fetches its key; the agent's state directory never holds it.
    let answer = local_api(&device.state_dir, r#"{"op":"key"}"#);
    let key = STANDARD.decode(answer["key"].as_str().unwrap()).unwrap();
    assert_eq!(key.len(), 32);
    assert!(tpm.nv_indices().contains(&DEFAULT_NV_INDEX));
    nothing_holds(&device.state_dir, &key);
    let copy = tmp.path().join("stolen-state");
    copy_tree(&device.state_dir, &copy);

    let out = controller.ctl(&[
        "user",
        "offboard",
        "tom@hospital.org",
        "--reason",
        "left the hospital",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = json(&out);
    let entry = &report["devices"][0];
    assert_eq!(entry["receipt_verified"], true, "{report}");
    assert_eq!(entry["key_protection"], "tpm", "{report}");
    let shown = json(&controller.ctl(&[
        "command",
        "show",
        entry["command_id"].as_str().unwrap(),
        "--output",
        "json",
    ]));
    assert_eq!(shown["receipt"]["key_protection"], "tpm", "{shown}");
    assert_eq!(shown["receipt"]["body"]["key_protection"], "tpm");
    let table = controller.ctl(&[
        "command",
        "show",
        entry["command_id"].as_str().unwrap(),
        "--output",
        "table",
    ]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("held in the TPM and deleted there"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );

    eventually_blocking("the NV index to be gone", DEADLINE, || {
        (!tpm.nv_indices().contains(&DEFAULT_NV_INDEX)).then_some(())
    });
    let copied_auth = copy.join(auth_file(&device.state_dir).file_name().unwrap());
    assert_eq!(tpm.nv_read(DEFAULT_NV_INDEX, &copied_auth), None);
    nothing_holds(&copy, &key);
    nothing_holds(&device.state_dir, &key);
    assert!(device.canary_files().is_empty());
}

/// A TPM that does not answer when the agent starts (the resource manager not up yet after a
/// boot, a firmware hiccup) must not switch the offline timer off: the agent keeps running,
/// says why it cannot reach the key, and destroys it as soon as the TPM answers.
#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn a_tpm_silent_at_start_does_not_stop_the_offline_wipe() {
    use ward_e2e::clock::{AgentClock, env_refs};
    use ward_e2e::timer::{offline_wipe_after_an_hour, wait_for_policy_and_check_in};

    let tmp = tempfile::tempdir().unwrap();
    let tpm_dir = tmp.path().join("tpm");
    let tpm = Swtpm::start(&tpm_dir);
    let tcti = tpm.tcti.clone();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    offline_wipe_after_an_hour(&controller);
    let device = AgentFixture::enroll(&controller, tmp.path(), "t", "tia@hospital.org");
    let clock = AgentClock::new(tmp.path());
    let env = clock.env();
    let running = device.run_with(&["--tpm", &tcti], &env_refs(&env));
    wait_for_policy_and_check_in(&device);
    assert!(tpm.nv_indices().contains(&DEFAULT_NV_INDEX));
    running.stop();
    drop(controller);
    drop(tpm);

    // Two hours later, offline; the TPM does not answer yet.
    clock.set(2 * 3600);
    let mut running = device.run_with(&["--tpm", &tcti], &env_refs(&env));
    eventually_blocking("the agent to say the key is out of reach", DEADLINE, || {
        device
            .log_text()
            .contains("the offline timer cannot reach the messaging key")
            .then_some(())
    });
    assert!(
        running.is_running(),
        "the agent exited:\n{}",
        device.log_text()
    );

    // The TPM answers again (same state): the timer destroys the key there.
    let tpm = Swtpm::start(&tpm_dir);
    assert!(tpm.nv_indices().contains(&DEFAULT_NV_INDEX));
    eventually_blocking("the NV index to be gone", DEADLINE, || {
        (!tpm.nv_indices().contains(&DEFAULT_NV_INDEX)).then_some(())
    });
    eventually_blocking("the messaging files to be gone", DEADLINE, || {
        device.canary_files().is_empty().then_some(())
    });
    assert!(
        running.is_running(),
        "the agent exited:\n{}",
        device.log_text()
    );
}
