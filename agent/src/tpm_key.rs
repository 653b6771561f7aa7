//! The device's own key (its mTLS identity, which also signs wipe receipts) inside a TPM 2.0:
//! made there, never exported, so a copy of the state directory cannot act as the device.
//!
//! The key is an ECDSA P-256 signing key created under the owner hierarchy's storage primary
//! key with the attributes `fixedtpm|fixedparent|sensitivedataorigin` (the TPM generated it
//! and will not duplicate it to another TPM or hand it out) and made persistent at one of
//! Ward's eight handles (0x81005741–0x81005748; the one used is recorded in state.json). Using
//! it needs its authorization value, 32 random bytes in `STATE/device-key.tpm-auth` (0600), so
//! other programs that can reach the TPM cannot sign with it; with no dictionary-attack lockout,
//! as the value is random, not a password. Every signature is one `tpm2_sign` run over a
//! SHA-256 digest (the TLS handshake's, a certificate request's, a receipt's).
//!
//! Destroying the key (a full wipe or a retirement the controller accepted) evicts it from the
//! TPM: it then exists nowhere.
//!
//! Renewal keeps this key (the renewal's request is signed by it): a key that never leaves the
//! TPM gains nothing from being replaced, and a second persistent key would need a second
//! handle and a swap a crash could interrupt.

use std::path::{Path, PathBuf};

use sha2::Digest;
use ward_certs::HeldKey;

use crate::tpm::{Tpm, TpmError};

/// The first of Ward's persistent handles for device keys (owner range 0x81000000–0x817FFFFF).
pub const FIRST_HANDLE: u32 = 0x8100_5741;
/// How many handles from [`FIRST_HANDLE`] Ward may use (one per enrollment on this TPM).
pub const HANDLES: u32 = 8;

/// The attributes a device key must have; `open` refuses a key without all of them (the TPM
/// reports them, so this holds for a key someone else put at the handle too). `noda`: a wrong
/// authorization value tried on another program's key (a state.json naming it) must not count
/// toward the TPM's dictionary-attack lockout, which would lock that program out.
const REQUIRED_ATTRIBUTES: [&str; 5] = [
    "fixedtpm",
    "fixedparent",
    "sensitivedataorigin",
    "sign",
    "noda",
];

fn is_ward_handle(handle: u32) -> bool {
    (FIRST_HANDLE..FIRST_HANDLE + HANDLES).contains(&handle)
}

/// The device key held by a TPM.
#[derive(Debug)]
pub struct TpmDeviceKey {
    tpm: Tpm,
    handle: u32,
    auth: PathBuf,
    spki: Vec<u8>,
}

/// The authorization value's file in `state_dir`.
pub fn auth_file(state_dir: &Path) -> PathBuf {
    state_dir.join("device-key.tpm-auth")
}

fn handle_arg(handle: u32) -> String {
    format!("{handle:#010x}")
}

fn auth_arg(auth: &Path) -> String {
    format!("file:{}", auth.display())
}

impl TpmDeviceKey {
    /// Makes a new device key in the TPM at the first free Ward handle, with a new
    /// authorization value in `state_dir`.
    pub async fn create(tpm: &Tpm, state_dir: &Path) -> Result<Self, TpmError> {
        let auth = auth_file(state_dir);
        let auth_error = |source| TpmError::Auth {
            path: auth.display().to_string(),
            source,
        };
        // A value left by an enrollment stopped before state.json was written (a crash,
        // Ctrl-C): the key it unlocks, which nothing else can use, is evicted first.
        if auth.exists() {
            for leftover in persistent_handles(tpm).await? {
                if is_ward_handle(leftover) && prove_ours(tpm, leftover, state_dir).await.is_ok() {
                    evict(tpm, leftover).await?;
                }
            }
        }
        let handle = free_handle(tpm).await?;
        crate::secrets::destroy_file(&auth).map_err(auth_error)?;
        let value = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
        ward_files::create_secret_file(&auth, value.as_slice()).map_err(auth_error)?;
        // The tools pass objects between runs in context files (saved contexts, which the
        // TPM's next reset voids), kept in a private directory and removed afterwards.
        let work = state_dir.join(".device-key-new");
        let work_error = |source| TpmError::Auth {
            path: work.display().to_string(),
            source,
        };
        let _ = std::fs::remove_dir_all(&work);
        ward_files::create_private_dir(&work).map_err(work_error)?;
        let made = make_persistent(tpm, handle, &auth, &work).await;
        // Without a resource manager (a TPM reached directly, as swtpm's socket is), objects
        // loaded by one program stay loaded after it ends: free them whatever happened.
        let _ = tpm.run("tpm2_flushcontext", &["-t"], None).await;
        let _ = std::fs::remove_dir_all(&work);
        made?;
        Self::open(tpm, handle, state_dir).await
    }

    /// The key at `handle`, checked to be a non-exportable P-256 signing key at one of Ward's
    /// handles.
    pub async fn open(tpm: &Tpm, handle: u32, state_dir: &Path) -> Result<Self, TpmError> {
        if !is_ward_handle(handle) {
            return Err(TpmError::NotOurs {
                handle,
                why: format!(
                    "Ward's device keys are at {} to {}",
                    handle_arg(FIRST_HANDLE),
                    handle_arg(FIRST_HANDLE + HANDLES - 1)
                ),
            });
        }
        let described = tpm
            .run("tpm2_readpublic", &["-c", &handle_arg(handle)], None)
            .await?;
        let text = String::from_utf8_lossy(&described);
        let attributes = text
            .lines()
            .skip_while(|l| l.trim() != "attributes:")
            .find_map(|l| l.trim().strip_prefix("value:"))
            .map(str::trim)
            .unwrap_or_default();
        let has = |a: &str| attributes.split('|').any(|x| x == a);
        if let Some(missing) = REQUIRED_ATTRIBUTES.iter().find(|a| !has(a)) {
            return Err(TpmError::Unexpected {
                program: "tpm2_readpublic",
                detail: format!(
                    "the key at {} lacks the attribute {missing} ({attributes}): it is not a device key this agent made",
                    handle_arg(handle)
                ),
            });
        }
        let spki = tpm
            .run(
                "tpm2_readpublic",
                &[
                    "-c",
                    &handle_arg(handle),
                    "-f",
                    "der",
                    "-o",
                    "/dev/stdout",
                    "-Q",
                ],
                None,
            )
            .await?
            .to_vec();
        Ok(Self {
            tpm: tpm.clone(),
            handle,
            auth: auth_file(state_dir),
            spki,
        })
    }

    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Evicts the key from the TPM (it then exists nowhere) and destroys its authorization
    /// value. A key already gone is not an error. Only a key that signs with the authorization
    /// value in `state_dir` is evicted: eviction needs the owner's authorization alone, and a
    /// state.json naming another key (edited, restored from a backup, run against another
    /// TPM) must not destroy another enrollment's or another program's key.
    pub async fn destroy(tpm: &Tpm, handle: u32, state_dir: &Path) -> Result<(), TpmError> {
        let evicted = evict_if_ours(tpm, handle, state_dir).await;
        // Destroyed also when the TPM refused the eviction (an owner password, a busy TPM) or
        // did not answer: the key it keeps then signs for no one, where an authorization value
        // left in the state directory (or only unlinked with it) would let a copy of the disk
        // use it.
        let auth = auth_file(state_dir);
        crate::secrets::destroy_file(&auth).map_err(|source| TpmError::Auth {
            path: auth.display().to_string(),
            source,
        })?;
        evicted
    }
}

/// Evicts the key at `handle` if it is there and [`prove_ours`] shows it is this agent's.
async fn evict_if_ours(tpm: &Tpm, handle: u32, state_dir: &Path) -> Result<(), TpmError> {
    if persistent_handles(tpm).await?.contains(&handle) {
        prove_ours(tpm, handle, state_dir).await?;
        evict(tpm, handle).await?;
    }
    Ok(())
}

async fn evict(tpm: &Tpm, handle: u32) -> Result<(), TpmError> {
    tpm.run(
        "tpm2_evictcontrol",
        &["-C", "o", "-c", &handle_arg(handle)],
        None,
    )
    .await
    .map(|_| ())
}

/// Shows that the key at `handle` is the one whose authorization value is in `state_dir`: it
/// passes [`TpmDeviceKey::open`]'s checks (a Ward handle; `noda`, so a wrong value counts
/// toward no lockout) and signs a fresh challenge with that value, verified against its public
/// half. The value never leaves the state directory, so only this agent's key passes.
async fn prove_ours(tpm: &Tpm, handle: u32, state_dir: &Path) -> Result<(), TpmError> {
    let not_ours = |why: String| TpmError::NotOurs { handle, why };
    let key = TpmDeviceKey::open(tpm, handle, state_dir)
        .await
        .map_err(|e| not_ours(e.to_string()))?;
    let challenge = rand::random::<[u8; 32]>();
    let digest = sha2::Sha256::digest(challenge);
    let args = sign_args(handle, &key.auth);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let signature = tpm
        .run("tpm2_sign", &args, Some(&digest))
        .await
        .map_err(|e| {
            not_ours(format!(
                "the authorization value in this state directory does not sign with it: {e}"
            ))
        })?;
    ward_certs::sign::verify(&key.spki, &challenge, &signature)
        .map_err(|e| not_ours(format!("its signature does not verify: {e}")))
}

fn sign_args(handle: u32, auth: &Path) -> Vec<String> {
    [
        "-c",
        &handle_arg(handle),
        "-p",
        &auth_arg(auth),
        "-g",
        "sha256",
        "-s",
        "ecdsa",
        "-d",
        "-f",
        "plain",
        "-o",
        "/dev/stdout",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn make_persistent(tpm: &Tpm, handle: u32, auth: &Path, work: &Path) -> Result<(), TpmError> {
    let path = |name: &str| work.join(name).display().to_string();
    let (primary, loaded) = (path("primary.ctx"), path("key.ctx"));
    // Each program that is given a context file loads it again: without a resource manager
    // those copies stay loaded, and a TPM holds only a few objects. Free them between steps.
    let flush = || tpm.run("tpm2_flushcontext", &["-t"], None);
    flush().await?;
    tpm.run(
        "tpm2_createprimary",
        &[
            "-C", "o", "-g", "sha256", "-G", "ecc256", "-c", &primary, "-Q",
        ],
        None,
    )
    .await?;
    flush().await?;
    // Created loaded (`-c`, TPM2_CreateLoaded), never as a wrapped private half (`-r`): that
    // blob would load again under the owner's storage key for as long as the TPM is not
    // cleared, after the key's eviction too, from any copy of the disk that caught it. The
    // saved context written instead is worthless after the TPM's next reset.
    tpm.run(
        "tpm2_create",
        &[
            "-C",
            &primary,
            "-G",
            "ecc256:ecdsa-sha256",
            "-a",
            "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign",
            "-p",
            &auth_arg(auth),
            "-c",
            &loaded,
            "-Q",
        ],
        None,
    )
    .await?;
    flush().await?;
    tpm.run(
        "tpm2_evictcontrol",
        &["-C", "o", "-c", &loaded, &handle_arg(handle), "-Q"],
        None,
    )
    .await
    .map(|_| ())
}

async fn persistent_handles(tpm: &Tpm) -> Result<Vec<u32>, TpmError> {
    let listed = tpm
        .run("tpm2_getcap", &["handles-persistent"], None)
        .await?;
    Ok(crate::tpm::handles_listed(&String::from_utf8_lossy(
        &listed,
    )))
}

async fn free_handle(tpm: &Tpm) -> Result<u32, TpmError> {
    let used = persistent_handles(tpm).await?;
    (FIRST_HANDLE..FIRST_HANDLE + HANDLES)
        .find(|h| !used.contains(h))
        .ok_or(TpmError::HandlesFull {
            first: FIRST_HANDLE,
            last: FIRST_HANDLE + HANDLES - 1,
        })
}

impl HeldKey for TpmDeviceKey {
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let digest = sha2::Sha256::digest(message);
        let args = sign_args(self.handle, &self.auth);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = || {
            self.tpm
                .run_sync("tpm2_sign", &args, &digest)
                .map_err(|e| e.to_string())
        };
        // On the agent's multi-thread runtime, the wait for the TPM leaves the scheduler: the
        // other worker runs the offline timer, the local API and commands meanwhile. (A
        // current-thread runtime cannot hand its tasks over; there the call simply blocks.)
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
            _ => run(),
        }
    }

    fn describe(&self) -> String {
        format!("TPM 2.0, persistent handle {}", handle_arg(self.handle))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Review finding: when the TPM did not answer at retirement (or answered with an error
    /// before the eviction), `destroy` returned before destroying the authorization value, which
    /// the retirement then only unlinked with the state directory: a copy of the disk kept it,
    /// and with the device's TPM, its key.
    #[test]
    fn a_tpm_that_does_not_answer_at_destruction_still_loses_the_authorization_value() {
        let tmp = tempfile::tempdir().unwrap();
        let auth = auth_file(tmp.path());
        std::fs::write(&auth, [7u8; 32]).unwrap();
        let tpm = Tpm::new(
            format!("swtpm:path={}", tmp.path().join("no-tpm.sock").display()),
            0,
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(
            rt.block_on(TpmDeviceKey::destroy(&tpm, FIRST_HANDLE, tmp.path()))
                .is_err()
        );
        assert!(!auth.exists());
    }

    /// Review finding (fixed: two workers, the signature's wait out of the scheduler): rustls asks for the handshake's signature synchronously, and the agent
    /// runs on one thread (a current-thread runtime): each `tpm2_sign` stops every other task
    /// of the agent — the offline timer, the local API that hands the messaging app its key,
    /// commands — for as long as the TPM takes, up to the tools' 30 s limit, at every connection
    /// attempt. A TPM that does not answer (here a socket that never replies; on a device a TPM
    /// kept busy by another program) stalls the whole agent.
    #[test]
    fn a_tpm_that_does_not_answer_a_handshake_signature_does_not_stop_the_agent() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("tpm.sock");
        let mut held = Vec::new();
        for path in [socket.clone(), tmp.path().join("tpm.sock.ctrl")] {
            let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
            held.push(std::thread::spawn(move || {
                // Accepts and never answers.
                let streams: Vec<_> = listener.incoming().take(4).collect();
                std::thread::sleep(Duration::from_secs(60));
                drop(streams);
            }));
        }
        let key = TpmDeviceKey {
            tpm: Tpm::new(format!("swtpm:path={}", socket.display()), 0),
            handle: FIRST_HANDLE,
            auth: auth_file(tmp.path()),
            spki: Vec::new(),
        };
        // The agent's runtime (cli.rs).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ticks = rt.block_on(async move {
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let counted = ticks.clone();
            // Another task of the agent: the offline timer, the local API.
            tokio::spawn(async move {
                loop {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            tokio::task::yield_now().await;
            // The handshake, as rustls signs in it.
            let started = std::time::Instant::now();
            let signing = tokio::spawn(async move { key.sign(b"transcript") });
            tokio::time::sleep(Duration::from_secs(3)).await;
            let during = ticks.load(std::sync::atomic::Ordering::SeqCst);
            let _ = signing.await;
            (during, started.elapsed())
        });
        let (ticks, elapsed) = ticks;
        // Three seconds at 100 ms: about 30 ticks when the agent keeps running.
        assert!(
            ticks >= 20,
            "{ticks} ticks of another task while a signature waited {elapsed:?} for the TPM"
        );
    }
}
