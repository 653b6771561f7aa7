//! Review finding: making the device key wrote its TPM-wrapped private half (`tpm2_create -u
//! -r`) into the state directory before it was made persistent. That blob loads again under
//! the owner's storage key (made again from the same seed) for as long as the TPM is not
//! cleared: after the key's eviction and after a reboot. Whoever holds a copy of it (a disk
//! image or backup taken during enrollment, the file's freed blocks) and of the authorization
//! value could sign as the device with its TPM after retirement, when the key "exists
//! nowhere". The key is now created loaded (`-c` only): the context saved meanwhile does not
//! survive the TPM's reset.
//!
//! A thread watches the agent's work directory and copies what it holds, as a disk image or
//! backup taken during enrollment would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ward_agent::tpm::TpmChoice;
use ward_agent::tpm_key::{TpmDeviceKey, auth_file};
use ward_e2e::swtpm::Swtpm;

fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
#[cfg_attr(
    not(ward_swtpm),
    ignore = "needs swtpm: apt-get install swtpm swtpm-tools tpm2-tools"
)]
fn nothing_written_while_making_the_key_can_sign_after_its_eviction_and_a_reboot() {
    let tmp = tempfile::tempdir().unwrap();
    let stolen = tmp.path().join("stolen");
    std::fs::create_dir_all(&stolen).unwrap();
    let tpm_dir = tmp.path().join("tpm");
    let swtpm = Swtpm::start(&tpm_dir);
    let tpm = TpmChoice::Tcti(swtpm.tcti.clone()).resolve().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let work = state.join(".device-key-new");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, stolen) = (stop.clone(), stolen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for file in files_in(&work) {
                    let bytes = std::fs::read(&file).unwrap_or_default();
                    let copy = stolen.join(file.file_name().unwrap());
                    let had = std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0);
                    if !bytes.is_empty() && bytes.len() as u64 >= had {
                        std::fs::write(copy, bytes).unwrap();
                    }
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let key = rt.block_on(TpmDeviceKey::create(&tpm, &state)).unwrap();
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(
        !files_in(&stolen).is_empty(),
        "the watcher saw no work directory"
    );
    // The thief's copy of the disk holds the authorization value too.
    let auth = tmp.path().join("stolen-auth");
    std::fs::copy(auth_file(&state), &auth).unwrap();
    // Retired: evicted; then the device reboots (a TPM reset).
    rt.block_on(TpmDeviceKey::destroy(&tpm, key.handle(), &state))
        .unwrap();
    drop(swtpm);
    let swtpm = Swtpm::start(&tpm_dir);

    let file = |n: &str| stolen.join(n).display().to_string();
    let auth_arg = format!("file:{}", auth.display());
    let message = tmp.path().join("message");
    std::fs::write(&message, b"a receipt the device never signed").unwrap();
    let message = message.display().to_string();
    let sign = |context: &str| {
        swtpm
            .tool(
                "tpm2_sign",
                &[
                    "-c",
                    context,
                    "-p",
                    &auth_arg,
                    "-g",
                    "sha256",
                    "-o",
                    "/dev/null",
                    &message,
                ],
            )
            .status
            .success()
    };
    let _ = swtpm.tool("tpm2_flushcontext", &["-t"]);
    for ctx in files_in(&stolen)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ctx"))
    {
        let _ = swtpm.tool("tpm2_flushcontext", &["-t"]);
        assert!(
            !sign(&ctx.display().to_string()),
            "{} signs after the eviction and a reboot",
            ctx.display()
        );
    }
    if Path::new(&file("key.pub")).exists() && Path::new(&file("key.priv")).exists() {
        let primary = tmp.path().join("primary.ctx").display().to_string();
        let loaded = tmp.path().join("loaded.ctx").display().to_string();
        let _ = swtpm.tool("tpm2_flushcontext", &["-t"]);
        let made = swtpm.tool(
            "tpm2_createprimary",
            &[
                "-C", "o", "-g", "sha256", "-G", "ecc256", "-c", &primary, "-Q",
            ],
        );
        assert!(made.status.success());
        let _ = swtpm.tool("tpm2_flushcontext", &["-t"]);
        let reloaded = swtpm
            .tool(
                "tpm2_load",
                &[
                    "-C",
                    &primary,
                    "-u",
                    &file("key.pub"),
                    "-r",
                    &file("key.priv"),
                    "-c",
                    &loaded,
                    "-Q",
                ],
            )
            .status
            .success();
        let _ = swtpm.tool("tpm2_flushcontext", &["-t"]);
        assert!(
            !(reloaded && sign(&loaded)),
            "the wrapped key written during enrollment loads and signs after the eviction and a reboot"
        );
    }
}
