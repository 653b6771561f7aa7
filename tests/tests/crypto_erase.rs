//! Proof that crypto-erase erases: a reference messaging app keeps its messages in SQLite
//! encrypted with SQLCipher, keyed through the agent's local API exactly as a real app would
//! (docs/messaging-app-integration.md). A raw copy of its files and of the agent's state
//! directory is taken before the wipe, as a thief or a backup would. After the wipe the live
//! store is gone, the key is refused and destroyed, the copy cannot be decrypted (where the key
//! was in a TPM), and the canary messages appear nowhere on disk. Also: the wipe's
//! certificate of sanitization, and its signature checked with OpenSSL alone as README shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rusqlite::Connection;
use serde_json::Value;
use ward_agent::tpm::{DEFAULT_NV_INDEX, auth_file};
use ward_e2e::process::{
    AgentFixture, ControllerProcess, files_containing, json, local_api, stderr,
};
use ward_e2e::swtpm::{Swtpm, copy_tree};
use zeroize::Zeroizing;

/// The messages the app stores; after the wipe none may be readable anywhere.
const CANARIES: [&str; 3] = [
    "CANARY-SQLCIPHER-1: Jane Roe, MRN 000123, biopsy result positive",
    "CANARY-SQLCIPHER-2: call Dr. Okafor about bed 12 before 14:00",
    "CANARY-SQLCIPHER-3: John Doe, MRN 000456, allergic to penicillin",
];

/// The reference messaging app: asks the agent for the key, opens its SQLCipher store.
struct App {
    state_dir: PathBuf,
    store: PathBuf,
}

impl App {
    fn new(device: &AgentFixture) -> Self {
        Self {
            state_dir: device.state_dir.clone(),
            store: device.messaging_dir.join("db").join("messages.db"),
        }
    }

    /// `{"op":"key"}` on the local API: the raw 32-byte key, or the agent's refusal.
    fn fetch_key(&self) -> Result<Zeroizing<Vec<u8>>, Value> {
        let answer = local_api(&self.state_dir, r#"{"op":"key"}"#);
        match answer["key"].as_str() {
            Some(b64) => Ok(Zeroizing::new(STANDARD.decode(b64).unwrap())),
            None => Err(answer),
        }
    }

    /// Writes the canaries, and leaves the store open (in WAL mode, as apps run it).
    fn write_messages(&self) -> Connection {
        let key = self.fetch_key().expect("the agent hands out the key");
        std::fs::create_dir_all(self.store.parent().unwrap()).unwrap();
        let db = open_store(&self.store, Some(&key)).unwrap();
        let mode: String = db
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        db.execute_batch("CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .unwrap();
        for canary in CANARIES {
            db.execute("INSERT INTO messages (body) VALUES (?1)", [canary])
                .unwrap();
        }
        db
    }
}

/// Opens a SQLCipher database with a raw key (`PRAGMA key = "x'…'"`, no key derivation) and
/// reads it: SQLCipher only finds out a key is wrong at the first read.
fn open_store(path: &Path, key: Option<&[u8]>) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    if let Some(key) = key {
        let pragma = Zeroizing::new(format!("x'{}'", hex(key)));
        db.pragma_update(None, "key", pragma.as_str())?;
    }
    db.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(db)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The messages a store holds, if `key` opens it.
fn read_messages(path: &Path, key: Option<&[u8]>) -> rusqlite::Result<Vec<String>> {
    let db = open_store(path, key)?;
    let mut query = db.prepare("SELECT body FROM messages ORDER BY id")?;
    let rows = query.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

fn canary_bytes() -> Vec<&'static [u8]> {
    CANARIES.iter().map(|c| c.as_bytes()).collect()
}

/// Files under `roots` that hold a canary in the clear.
fn canaries_in(roots: &[&Path]) -> Vec<PathBuf> {
    let roots: Vec<PathBuf> = roots.iter().map(|r| r.to_path_buf()).collect();
    files_containing(&roots, &canary_bytes())
}

/// The key as it could rest on disk: raw, hex (as the app's pragma), or base64 (as the API).
fn key_forms(key: &[u8]) -> Vec<Vec<u8>> {
    vec![
        key.to_vec(),
        hex(key).into_bytes(),
        STANDARD.encode(key).into_bytes(),
    ]
}

/// An agent enrolled with an empty messaging directory (the app fills it).
fn device(controller: &ControllerProcess, root: &Path, name: &str) -> AgentFixture {
    let messaging = root.join(format!("{name}-messaging"));
    std::fs::create_dir_all(&messaging).unwrap();
    AgentFixture::enroll_at(
        controller,
        root.join(format!("{name}-state")),
        messaging,
        root.join(format!("{name}.log")),
        "ann@hospital.org",
    )
}

fn wipe(controller: &ControllerProcess, device: &AgentFixture) -> Value {
    let out = controller.ctl(&[
        "device",
        "wipe",
        &device.device_id,
        "--scope",
        "messaging",
        "--reason",
        "laptop reported stolen",
        "--wait",
        "--timeout",
        "60s",
        "--output",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let command = json(&out);
    assert_eq!(command["receipt"]["verified"], true, "{command}");
    command
}

fn certificate(controller: &ControllerProcess, id: &str, output: &str) -> Output {
    controller.ctl(&["command", "show", id, "--certificate", "--output", output])
}

/// The store as the thief has it: a raw copy of the messaging files and the agent's state,
/// taken while the app runs.
struct Copies {
    messaging: PathBuf,
    state: PathBuf,
}

fn take_copies(root: &Path, device: &AgentFixture) -> Copies {
    let copies = Copies {
        messaging: root.join("stolen-messaging"),
        state: root.join("stolen-state"),
    };
    copy_tree(&device.messaging_dir, &copies.messaging);
    copy_tree(&device.state_dir, &copies.state);
    copies
}

impl Copies {
    fn store(&self) -> PathBuf {
        self.messaging.join("db").join("messages.db")
    }
}

/// What holds before the wipe in both tests: the store is encrypted at rest (no canary in the
/// clear), needs the key, and the copy is a complete store the key opens.
fn encrypted_at_rest(app: &App, device: &AgentFixture, copies: &Copies, key: &[u8]) {
    assert!(
        canaries_in(&[&device.messaging_dir, &device.state_dir, &copies.messaging]).is_empty(),
        "a message rests in the clear"
    );
    assert!(read_messages(&app.store, None).is_err());
    assert_eq!(read_messages(&copies.store(), Some(key)).unwrap(), CANARIES);
}

#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn a_sqlcipher_store_keyed_through_the_local_api_is_unreadable_after_a_wipe_even_from_a_copy_taken_before()
 {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("tpm"));
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = device(&controller, tmp.path(), "m");
    let _agent = device.run_with(&["--tpm", &tpm.tcti], &[]);
    let app = App::new(&device);

    let db = app.write_messages();
    let key = app.fetch_key().unwrap();
    let copies = take_copies(tmp.path(), &device);
    encrypted_at_rest(&app, &device, &copies, &key);

    let command = wipe(&controller, &device);
    // The app is told, and lets go of its store.
    let status = local_api(&device.state_dir, r#"{"op":"status"}"#);
    assert_eq!(status["state"], "wiped", "{status}");
    drop(db);

    // The live store is gone and the agent refuses the key.
    assert!(!app.store.exists());
    assert!(
        std::fs::read_dir(&device.messaging_dir)
            .unwrap()
            .next()
            .is_none()
    );
    let refused = app.fetch_key().unwrap_err();
    assert_eq!(refused["state"], "wiped", "{refused}");
    // The TPM no longer holds the key, not even for the authorization in the copy.
    assert!(!tpm.nv_indices().contains(&DEFAULT_NV_INDEX));
    let copied_auth = copies
        .state
        .join(auth_file(&device.state_dir).file_name().unwrap());
    assert!(copied_auth.exists(), "the copy has the authorization value");
    assert_eq!(tpm.nv_read(DEFAULT_NV_INDEX, &copied_auth), None);
    // No form of the key rests anywhere the thief has: the device or the copies.
    let forms = key_forms(&key);
    let needles: Vec<&[u8]> = forms.iter().map(Vec::as_slice).collect();
    let roots = [
        device.state_dir.clone(),
        device.messaging_dir.clone(),
        copies.state.clone(),
        copies.messaging.clone(),
    ];
    assert_eq!(files_containing(&roots, &needles), Vec::<PathBuf>::new());
    // So the copied store opens with nothing the thief has: no key, or the only secret in the
    // copied state (the TPM authorization value, which is not the key).
    assert!(read_messages(&copies.store(), None).is_err());
    let auth = std::fs::read(&copied_auth).unwrap();
    assert!(read_messages(&copies.store(), Some(&auth)).is_err());
    // Only the destroyed key would: the copy is intact ciphertext, and the key was all it lacked.
    assert_eq!(
        read_messages(&copies.store(), Some(&key)).unwrap(),
        CANARIES
    );
    drop(key);
    // And no canary is anywhere in the clear: the device, the copies' ciphertext.
    let everywhere: Vec<&Path> = roots.iter().map(PathBuf::as_path).collect();
    assert_eq!(canaries_in(&everywhere), Vec::<PathBuf>::new());

    // The certificate says where the key was and how it went.
    let out = certificate(&controller, command["id"].as_str().unwrap(), "json");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cert = json(&out);
    assert_eq!(cert["key"]["protection"], "tpm", "{cert}");
    assert_eq!(cert["category"], "purge", "{cert}");
    assert_eq!(cert["method"], "cryptographic erase", "{cert}");
    assert!(
        cert["key"]["location"]
            .as_str()
            .unwrap()
            .contains("TPM 2.0 NV index 0x01"),
        "{cert}"
    );
    assert!(
        cert["key"]["destruction"]
            .as_str()
            .unwrap()
            .contains("tpm2_nvundefine"),
        "{cert}"
    );
    assert_eq!(cert["media"]["files"], 3, "db, -wal, -shm: {cert}");
}

#[test]
fn with_the_key_in_a_file_the_live_store_is_gone_but_a_copy_of_the_state_taken_before_still_opens_it()
 {
    // What `file-best-effort` means, shown rather than said: the receipt and certificate say
    // it, because a copy of the disk taken before the wipe holds the key.
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = device(&controller, tmp.path(), "f");
    let _agent = device.run(&[]);
    let app = App::new(&device);

    let db = app.write_messages();
    let key = app.fetch_key().unwrap();
    let copies = take_copies(tmp.path(), &device);
    encrypted_at_rest(&app, &device, &copies, &key);

    let command = wipe(&controller, &device);
    drop(db);
    assert!(!app.store.exists());
    assert_eq!(app.fetch_key().unwrap_err()["state"], "wiped");
    // The device itself holds neither the key nor a canary any more.
    assert!(!device.state_dir.join("messaging.key").exists());
    let forms = key_forms(&key);
    let needles: Vec<&[u8]> = forms.iter().map(Vec::as_slice).collect();
    let live = [device.state_dir.clone(), device.messaging_dir.clone()];
    assert_eq!(files_containing(&live, &needles), Vec::<PathBuf>::new());
    assert_eq!(
        canaries_in(&[
            &device.state_dir,
            &device.messaging_dir,
            &copies.messaging,
            &copies.state
        ]),
        Vec::<PathBuf>::new()
    );
    // But the copy of the state directory has the key file, and it opens the copied store.
    let stolen_key = std::fs::read(copies.state.join("messaging.key")).unwrap();
    assert_eq!(stolen_key, *key);
    assert_eq!(
        read_messages(&copies.store(), Some(&stolen_key)).unwrap(),
        CANARIES
    );

    let out = certificate(&controller, command["id"].as_str().unwrap(), "table");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "Certificate of sanitization (NIST SP 800-88 Rev. 2)",
        // The key's own destruction is an overwrite: no stronger than a clear.
        "clear: cryptographic erase",
        "file-best-effort: file ",
        "a copy of the disk taken before the wipe may still hold the key",
        "laptop reported stolen",
        "-----BEGIN PUBLIC KEY-----",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

/// The block of README.md that checks a certificate with OpenSSL, as a reader would paste it.
fn readme_openssl_block() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let after = readme
        .split_once("<!-- run by tests/tests/crypto_erase.rs")
        .expect("README marks the OpenSSL block")
        .1;
    let block = after.split_once("```sh\n").unwrap().1;
    block.split_once("```").unwrap().0.to_owned()
}

fn run_block(dir: &Path, block: &str) -> Output {
    std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", block])
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(
    not(ward_openssl),
    ignore = "needs openssl and jq: apt-get install openssl jq"
)]
fn a_certificate_verifies_with_openssl_alone_as_the_readme_shows_and_an_edit_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    let device = device(&controller, tmp.path(), "o");
    let _agent = device.run(&[]);
    drop(App::new(&device).write_messages());
    let command = wipe(&controller, &device);
    let out = certificate(&controller, command["id"].as_str().unwrap(), "json");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cert = json(&out);
    assert_eq!(cert["standard"], "NIST SP 800-88 Rev. 2");
    // The key was in a file: not claimed as a purge.
    assert_eq!(cert["category"], "clear");
    assert_eq!(cert["method"], "cryptographic erase");
    assert_eq!(cert["command"]["reason"], "laptop reported stolen");
    assert!(cert["command"]["requested_by"].as_str().unwrap() != "");
    assert_eq!(cert["device"]["id"], device.device_id.as_str());
    assert_eq!(cert["verification"]["method"], "full");
    assert!(cert["started_at"].is_string(), "{cert}");
    assert!(cert["tool_version"].is_string(), "{cert}");

    // The controller's attestation names the device certificate that certifies the key.
    let attested = &cert["attestation"]["statement"];
    assert_eq!(attested["type"], "ward.wipe-attestation/1", "{cert}");
    assert_eq!(attested["command"]["id"], command["id"]);
    assert_eq!(attested["command"]["reason"], "laptop reported stolen");
    assert_eq!(attested["device_id"], device.device_id.as_str());
    let device_pem = std::fs::read_to_string(device.state_dir.join("device.pem")).unwrap();
    let device_der = ward_certs::certificates_from_pem(&device_pem).unwrap();
    let serial = ward_certs::tls::serial_of(&device_der[0]).unwrap();
    assert_eq!(
        attested["receipt"]["signer_certificates"][0]["serial"],
        serial.as_str(),
        "{attested}"
    );
    assert_eq!(
        attested["receipt"]["signer_certificates"][0]["pem"]
            .as_str()
            .map(|pem| ward_certs::certificates_from_pem(pem).unwrap()),
        Some(device_der),
        "the certificate shown is the device's"
    );

    let block = readme_openssl_block();
    let dir = tmp.path().join("auditor");
    std::fs::create_dir_all(dir.join("ward-data")).unwrap();
    std::fs::copy(
        controller.data_dir.join("ca.pem"),
        dir.join("ward-data/ca.pem"),
    )
    .unwrap();
    std::fs::write(dir.join("certificate.json"), &out.stdout).unwrap();
    let checked = run_block(&dir, &block);
    let said = String::from_utf8_lossy(&checked.stdout).into_owned();
    assert!(
        checked.status.success()
            && said.matches("Verified OK").count() == 2
            && said.contains("device.pem: OK")
            && said.contains("certified by the Ward CA for this device"),
        "README's OpenSSL check failed:\n{block}\n{said}\n{}",
        stderr(&checked)
    );

    // Someone rewrites who asked for the wipe in the attestation: OpenSSL refuses it.
    let mut edited = cert.clone();
    let body = String::from_utf8(
        STANDARD
            .decode(cert["attestation"]["body_base64"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let requester = attested["command"]["requested_by"].as_str().unwrap();
    let forged = body.replace(
        &format!("\"requested_by\":\"{requester}\""),
        "\"requested_by\":\"someone-else\"",
    );
    assert_ne!(forged, body);
    edited["attestation"]["body_base64"] = Value::String(STANDARD.encode(forged));
    std::fs::write(
        dir.join("certificate.json"),
        serde_json::to_vec(&edited).unwrap(),
    )
    .unwrap();
    let refused = run_block(&dir, &block);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(
        said.matches("Verified OK").count() == 1 && said.contains("Verification failure"),
        "{said}"
    );
    // Pasted into a plain shell (no -e): the block still stops at the failed check.
    let pasted = std::process::Command::new("bash")
        .args(["-c", &block])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!pasted.status.success());
    assert!(
        !String::from_utf8_lossy(&pasted.stdout).contains("certified by the Ward CA"),
        "{}",
        String::from_utf8_lossy(&pasted.stdout)
    );

    // Another statement the device key signed, shown with this attestation: both signatures
    // verify, but the attestation does not name that receipt.
    let key_pem = std::fs::read_to_string(device.state_dir.join("device.key")).unwrap();
    let key = ward_certs::PrivateKeyDer::from_pem(&key_pem).unwrap();
    let other = br#"{"command_id":"another","verified_empty":true}"#;
    let mut swapped = cert.clone();
    swapped["signature"]["body_base64"] = Value::String(STANDARD.encode(other));
    swapped["signature"]["signature_base64"] =
        Value::String(STANDARD.encode(ward_certs::sign::sign(&key, other).unwrap()));
    std::fs::write(
        dir.join("certificate.json"),
        serde_json::to_vec(&swapped).unwrap(),
    )
    .unwrap();
    let refused = run_block(&dir, &block);
    let said = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(
        !refused.status.success() && said.matches("Verified OK").count() == 2,
        "{said}"
    );
    assert!(!said.contains("certified by the Ward CA"), "{said}");

    // One number changed in the signed bytes: OpenSSL refuses it.
    let mut edited = cert.clone();
    let body = String::from_utf8(
        STANDARD
            .decode(cert["signature"]["body_base64"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let forged = body.replace("\"verified_empty\":true", "\"verified_empty\":false");
    assert_ne!(forged, body);
    edited["signature"]["body_base64"] = Value::String(STANDARD.encode(forged));
    std::fs::write(
        dir.join("certificate.json"),
        serde_json::to_vec(&edited).unwrap(),
    )
    .unwrap();
    let refused = run_block(&dir, &block);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stdout).contains("Verification failure"),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
}
