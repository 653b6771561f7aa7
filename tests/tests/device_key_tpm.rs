//! The device's own key (its mTLS identity, which signs wipe receipts) in a TPM 2.0 — a real
//! `swtpm`, driven through `tpm2-tools` as on a device: made there and never exported, it signs
//! the TLS handshake, the renewal's request and the receipt; a copy of the state directory
//! holds no key and cannot act as the device on another machine; retirement evicts it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use ward_agent::tpm::{Tpm, TpmChoice};
use ward_agent::tpm_key::{FIRST_HANDLE, HANDLES, TpmDeviceKey};
use ward_certs::{DeviceKey, HeldKey, PrivateKeyDer};
use ward_e2e::clock::{AgentClock, env_refs};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, ControllerProcess, json, stderr};
use ward_e2e::swtpm::{Swtpm, copy_tree};

const DEADLINE: Duration = Duration::from_secs(90);

fn show(controller: &ControllerProcess, id: &str) -> serde_json::Value {
    json(&controller.ctl(&["device", "show", id, "--output", "json"]))
}

/// No file under `root` holds a private key in any form the agent writes one.
fn holds_no_private_key(root: &Path) {
    for entry in walk(root) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("PRIVATE KEY") && PrivateKeyDer::from_pem(&text).is_err(),
            "{} holds a private key",
            entry.display()
        );
    }
    assert!(!root.join("device.key").exists());
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                found.push(entry.path());
            }
        }
    }
    found
}

/// [`eventually_blocking`], showing the agent's log when the wait fails.
fn until<T>(device: &AgentFixture, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; the agent's log:\n{}",
            device.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn enroll_into(
    controller: &ControllerProcess,
    root: &Path,
    name: &str,
    user: &str,
    tpm: &Swtpm,
) -> AgentFixture {
    let messaging = root.join(format!("{name}-messaging"));
    ward_e2e::process::plant_canaries(&messaging);
    AgentFixture::enroll_at_with(
        controller,
        root.join(format!("{name}-state")),
        messaging,
        root.join(format!("{name}.log")),
        user,
        // auto would find it on a device; here the test's TPM is named.
        &["--tpm", &tpm.tcti],
    )
}

#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn a_device_key_in_the_tpm_connects_and_renews_and_a_copy_of_the_state_cannot_act_as_the_device() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("tpm"));
    let controller = ControllerProcess::start_with(
        &tmp.path().join("controller"),
        "127.0.0.1:0",
        &["--device-cert-lifetime", "1h"],
    );
    let device = enroll_into(&controller, tmp.path(), "t", "tara@hospital.org", &tpm);

    // Enrolled into the TPM (the default where one is found): no key file, the key at Ward's
    // first handle, and status says so.
    let status = device.status(&[]);
    assert_eq!(status["secret_store"], "tpm", "{status}");
    assert_eq!(status["tpm_key_handle"], format!("{FIRST_HANDLE:#010x}"));
    assert!(tpm.persistent_handles().contains(&FIRST_HANDLE));
    let table = device.status_output("table", &[]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("in the TPM (persistent handle 0x81005741"),
        "{table}"
    );
    holds_no_private_key(&device.state_dir);
    let enrolled = show(&controller, &device.device_id);
    let first_serial = enrolled["certificate_serial"].as_str().unwrap().to_owned();

    // It connects with the TPM signing the handshake, and renews by itself at two thirds of
    // its hour with the same key: the renewed certificate comes into use, no clone suspected.
    let clock = AgentClock::new(tmp.path());
    clock.set(50 * 60);
    let env = clock.env();
    let running = device.run_with(&["--tpm", &tpm.tcti], &env_refs(&env));
    let renewed = until(&device, "the renewed certificate in use", || {
        let shown = show(&controller, &device.device_id);
        (shown["certificate_serial"].as_str() != Some(first_serial.as_str())).then_some(shown)
    });
    clock.set(0);
    assert!(renewed["renewal_conflict"].is_null(), "{renewed}");
    let seen = show(&controller, &device.device_id)["last_seen"].clone();
    eventually_blocking("a check-in with the renewed certificate", DEADLINE, || {
        (show(&controller, &device.device_id)["last_seen"] != seen).then_some(())
    });
    holds_no_private_key(&device.state_dir);
    running.stop();

    // A thief copies the state directory and runs it on another machine (another TPM): the
    // key is not there, so it cannot even start a session; the controller sees nothing.
    let thief = AgentFixture::existing(tmp.path(), "thief", device.device_id.clone());
    copy_tree(&device.state_dir, &thief.state_dir);
    holds_no_private_key(&thief.state_dir);
    std::fs::create_dir_all(&thief.messaging_dir).unwrap();
    let elsewhere = Swtpm::start(&tmp.path().join("other-tpm"));
    let seen = show(&controller, &device.device_id)["last_seen"].clone();
    let mut stolen = thief.run_with(&["--tpm", &elsewhere.tcti], &[]);
    eventually_blocking("the copy to fail on the key", DEADLINE, || {
        thief
            .log_text()
            .contains("the device key in the TPM")
            .then_some(())
    });
    assert!(stolen.is_running(), "{}", thief.log_text());
    stolen.stop();
    // Without any TPM, it says where the key is and what to do.
    let stolen = thief.run_with(&["--tpm", "none"], &[]);
    eventually_blocking("the copy to say no TPM is reachable", DEADLINE, || {
        thief
            .log_text()
            .contains("no TPM is reachable")
            .then_some(())
    });
    stolen.stop();
    assert_eq!(show(&controller, &device.device_id)["last_seen"], seen);
}

#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn a_receipt_signed_in_the_tpm_verifies_and_retirement_evicts_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("tpm"));
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = enroll_into(&controller, tmp.path(), "t", "theo@hospital.org", &tpm);
    let _agent = device.run_with(&["--tpm", &tpm.tcti], &[]);

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
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let retired = json(&out);
    // The receipt, signed inside the TPM, verifies against the key enrolled.
    assert_eq!(retired["receipt"]["verified"], true, "{retired}");
    assert!(device.canary_files().is_empty());
    // Retired: the key is evicted from the TPM, so it exists nowhere.
    until(&device, "the device key to be evicted", || {
        (!tpm.persistent_handles().contains(&FIRST_HANDLE)).then_some(())
    });
}

/// A fresh software TPM, the agent's handle on it, and a runtime for its async calls.
struct TpmBench {
    tmp: tempfile::TempDir,
    swtpm: Swtpm,
    tpm: Tpm,
    rt: tokio::runtime::Runtime,
}

impl TpmBench {
    fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let swtpm = Swtpm::start(&tmp.path().join("tpm"));
        let tpm = TpmChoice::Tcti(swtpm.tcti.clone()).resolve().unwrap();
        Self {
            tmp,
            swtpm,
            tpm,
            rt: rt(),
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn a_key_someone_else_put_at_the_handle_that_can_leave_the_tpm_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let swtpm = Swtpm::start(&tmp.path().join("tpm"));
    // A signing key that may be duplicated out of the TPM (no fixedtpm, no fixedparent).
    plant(
        &swtpm,
        &tmp.path().join("work"),
        "sensitivedataorigin|userwithauth|sign",
        FIRST_HANDLE,
    );
    let tpm = Tpm::new(swtpm.tcti.clone(), 0);
    let err = rt()
        .block_on(TpmDeviceKey::open(&tpm, FIRST_HANDLE, tmp.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lacks the attribute fixedtpm"), "{err}");
}

#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn keys_take_free_handles_sign_verifiably_and_a_full_range_is_a_clear_error() {
    let TpmBench {
        tmp,
        swtpm,
        tpm,
        rt,
    } = TpmBench::start();
    let mut made = Vec::new();
    for n in 0..HANDLES {
        let state = tmp.path().join(format!("state-{n}"));
        std::fs::create_dir_all(&state).unwrap();
        let key = rt.block_on(TpmDeviceKey::create(&tpm, &state)).unwrap();
        assert_eq!(key.handle(), FIRST_HANDLE + n);
        made.push((state, key));
    }
    // Each signs with its own key, as OpenSSL and the controller check it.
    let (state, key) = &made[3];
    let signature = key.sign(b"a receipt").unwrap();
    ward_certs::sign::verify(key.public_key_der(), b"a receipt", &signature).unwrap();
    let device_key = DeviceKey::held(std::sync::Arc::new(
        rt.block_on(TpmDeviceKey::open(&tpm, key.handle(), state))
            .unwrap(),
    ))
    .unwrap();
    ward_certs::VerifiedCsr::from_der(&device_key.make_csr("laptop").unwrap()).unwrap();
    // With another key's authorization value, the TPM refuses to sign.
    std::fs::copy(
        ward_agent::tpm_key::auth_file(&made[4].0),
        ward_agent::tpm_key::auth_file(state),
    )
    .unwrap();
    assert!(key.sign(b"a receipt").is_err());

    let full = tmp.path().join("state-full");
    std::fs::create_dir_all(&full).unwrap();
    let err = rt
        .block_on(TpmDeviceKey::create(&tpm, &full))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tpm2_evictcontrol -C o -c HANDLE"), "{err}");
    // Destroyed keys free their handles, and a destroyed key no longer signs.
    let (state, key) = &made[0];
    rt.block_on(TpmDeviceKey::destroy(&tpm, key.handle(), state))
        .unwrap();
    assert!(!swtpm.persistent_handles().contains(&FIRST_HANDLE));
    assert!(key.sign(b"after").is_err());
    let again = rt.block_on(TpmDeviceKey::create(&tpm, &full)).unwrap();
    assert_eq!(again.handle(), FIRST_HANDLE);
}

/// Puts a P-256 signing key with `attributes` (and no authorization value) at `handle`, as
/// another program (or someone with the TPM's owner authorization) would.
fn plant(swtpm: &Swtpm, work: &Path, attributes: &str, handle: u32) {
    std::fs::create_dir_all(work).unwrap();
    let path = |n: &str| work.join(n).display().to_string();
    let handle = format!("{handle:#010x}");
    for args in [
        vec!["tpm2_createprimary", "-C", "o", "-c", &path("p.ctx"), "-Q"],
        vec![
            "tpm2_create",
            "-C",
            &path("p.ctx"),
            "-G",
            "ecc256:ecdsa-sha256",
            "-a",
            attributes,
            "-u",
            &path("k.pub"),
            "-r",
            &path("k.priv"),
            "-Q",
        ],
        vec!["tpm2_flushcontext", "-t"],
        vec![
            "tpm2_load",
            "-C",
            &path("p.ctx"),
            "-u",
            &path("k.pub"),
            "-r",
            &path("k.priv"),
            "-c",
            &path("k.ctx"),
            "-Q",
        ],
        vec![
            "tpm2_evictcontrol",
            "-C",
            "o",
            "-c",
            &path("k.ctx"),
            &handle,
        ],
        vec!["tpm2_flushcontext", "-t"],
    ] {
        let out = swtpm.tool(args[0], &args[1..]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
}

/// Review finding: `destroy` (retirement, a full wipe, a failed enrollment's cleanup) evicted
/// whatever sat at the handle state.json names, with the owner authorization alone. A
/// state.json edited or restored from a backup, or a state directory run against the wrong
/// TPM (`--tpm`), then evicted another enrollment's key or another program's key for good.
#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn destroy_evicts_only_a_key_this_state_directory_holds_the_authorization_of() {
    let TpmBench {
        tmp,
        swtpm,
        tpm,
        rt,
    } = TpmBench::start();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    for dir in [&a, &b, &c] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let key_a = rt.block_on(TpmDeviceKey::create(&tpm, &a)).unwrap();
    let key_b = rt.block_on(TpmDeviceKey::create(&tpm, &b)).unwrap();
    let key_c = rt.block_on(TpmDeviceKey::create(&tpm, &c)).unwrap();

    // c's state names a's handle: a's key stays, and still signs. (c's own authorization value
    // is destroyed all the same: whatever key it unlocked signs for no one now.)
    let err = rt
        .block_on(TpmDeviceKey::destroy(&tpm, key_a.handle(), &c))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not this agent's"), "{err}");
    assert!(swtpm.persistent_handles().contains(&key_a.handle()));
    key_a.sign(b"still here").unwrap();
    assert!(key_c.sign(b"gone").is_err());

    // Another program's key, outside Ward's handles: left alone too.
    let foreign = 0x8100_0100;
    plant(
        &swtpm,
        &tmp.path().join("foreign"),
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign",
        foreign,
    );
    assert!(
        rt.block_on(TpmDeviceKey::destroy(&tpm, foreign, &c))
            .is_err()
    );
    assert!(swtpm.persistent_handles().contains(&foreign));

    // Its own key: evicted, and its authorization value destroyed.
    rt.block_on(TpmDeviceKey::destroy(&tpm, key_b.handle(), &b))
        .unwrap();
    assert!(!swtpm.persistent_handles().contains(&key_b.handle()));
    assert!(!ward_agent::tpm_key::auth_file(&b).exists());
}

/// Review finding: a key at the recorded handle that counts failed authorizations toward the
/// TPM's dictionary-attack lockout (no `noda`; Ward's keys all have it) was accepted, so a
/// state.json naming another program's key made every session start, retried for ever, spend
/// one failed authorization on it: the TPM then locks out every program's protected keys.
#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn a_key_at_the_handle_whose_failed_authorizations_count_toward_lockout_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let swtpm = Swtpm::start(&tmp.path().join("tpm"));
    let tpm = Tpm::new(swtpm.tcti.clone(), 0);
    plant(
        &swtpm,
        &tmp.path().join("planted"),
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign",
        FIRST_HANDLE,
    );
    let err = rt()
        .block_on(TpmDeviceKey::open(&tpm, FIRST_HANDLE, tmp.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lacks the attribute noda"), "{err}");
    // Outside Ward's handles, even a key with every attribute is not the device key.
    let elsewhere = 0x8100_0200;
    plant(
        &swtpm,
        &tmp.path().join("elsewhere"),
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign",
        elsewhere,
    );
    assert!(
        rt().block_on(TpmDeviceKey::open(&tpm, elsewhere, tmp.path()))
            .is_err()
    );
}

/// Review finding: an enrollment stopped after it made its key in the TPM and before
/// state.json was written (Ctrl-C while the controller does not answer, a crash, a power
/// cut) left the key persistent, and the next enrollment in the same directory overwrote its
/// authorization value: the key stayed in the TPM for good, unusable and holding one of
/// Ward's eight handles (eight such interruptions and no enrollment can use the TPM).
#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn an_enrollment_interrupted_after_making_its_key_leaves_no_key_behind_in_the_tpm() {
    let TpmBench {
        tmp,
        swtpm,
        tpm,
        rt,
    } = TpmBench::start();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Another enrollment's key on the same TPM, which must survive.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let kept = rt.block_on(TpmDeviceKey::create(&tpm, &other)).unwrap();
    // What `enroll` leaves when it is stopped between making the key and state.json.
    let interrupted = rt.block_on(TpmDeviceKey::create(&tpm, &state)).unwrap();
    drop(interrupted);
    assert_eq!(swtpm.persistent_handles().len(), 2);
    // Enrolling again in that directory takes the interrupted enrollment's key away.
    let again = rt.block_on(TpmDeviceKey::create(&tpm, &state)).unwrap();
    let mut held = swtpm.persistent_handles();
    held.sort_unstable();
    let mut expected = vec![kept.handle(), again.handle()];
    expected.sort_unstable();
    assert_eq!(held, expected);
    kept.sign(b"still here").unwrap();
    again.sign(b"works").unwrap();
}

/// Review finding: when the TPM refused to evict the key (an owner with a password, an NV
/// write-rate limit), `destroy` returned before destroying the authorization value, and a
/// retirement then only unlinked it with the rest of the state directory: the key stayed in
/// the TPM, and its value stayed on the disk's free blocks, enough with the device's TPM to
/// sign as the retired device. The value is now destroyed whatever the eviction did.
#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn a_key_the_tpm_refuses_to_evict_is_left_unusable() {
    let TpmBench {
        tmp,
        swtpm,
        tpm,
        rt,
    } = TpmBench::start();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let key = rt.block_on(TpmDeviceKey::create(&tpm, &state)).unwrap();
    // The owner hierarchy now has a password the agent does not know.
    let out = swtpm.tool("tpm2_changeauth", &["-c", "o", "owner-password"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = rt
        .block_on(TpmDeviceKey::destroy(&tpm, key.handle(), &state))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tpm2_evictcontrol"), "{err}");
    assert!(!ward_agent::tpm_key::auth_file(&state).exists());
    assert!(key.sign(b"after").is_err());
}
