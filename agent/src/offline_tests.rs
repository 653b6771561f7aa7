use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::secrets::{SecretStore, SecretStoreKind};

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn policy(hours: u64) -> AgentPolicy {
    AgentPolicy::from(Policy {
        offline_wipe_after_seconds: hours * 3600,
        ..Policy::default()
    })
}

#[test]
fn due_only_after_the_limit_and_never_without_one() {
    assert!(!due(
        &policy(72),
        t0(),
        t0() + 72 * HOUR - Duration::from_secs(1)
    ));
    assert!(due(&policy(72), t0(), t0() + 72 * HOUR));
    assert!(!due(&policy(0), t0(), t0() + 1000 * HOUR));
    assert_eq!(deadline(&policy(0), t0()), None);
}

#[test]
fn the_timer_clock_never_goes_back_and_follows_the_wall_clock_forward() {
    let clock = ManualClock::new(t0());
    let mut timer = TimerClock::resume(clock.shared(), None);
    clock.advance(HOUR);
    assert_eq!(timer.now(), t0() + HOUR);
    // Set back a day: the count goes on from where it was, at the monotonic pace.
    clock.set_wall(t0() - 24 * HOUR);
    assert_eq!(timer.now(), t0() + HOUR);
    clock.advance(HOUR);
    assert_eq!(timer.now(), t0() + 2 * HOUR);
    // Set forward: the count jumps with it (the safe direction).
    clock.set_wall(t0() + 10 * HOUR);
    assert_eq!(timer.now(), t0() + 10 * HOUR);
}

fn state_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir_all(&dir).unwrap();
    (tmp, dir)
}

#[test]
fn a_restart_with_the_clock_set_back_resumes_the_count() {
    let (_tmp, dir) = state_dir();
    let clock = ManualClock::new(t0());
    let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
    clock.advance(50 * HOUR);
    timer.stop();

    // The agent starts again with the wall clock a week back, on a new monotonic clock.
    let after = ManualClock::new(t0() - 7 * 24 * HOUR);
    let timer = OfflineTimer::load(&dir, "dev-1", after.shared(), t0() - 7 * 24 * HOUR);
    let (now, last_checkin) = timer.tick();
    assert_eq!(last_checkin, t0());
    assert_eq!(now, t0() + 50 * HOUR);
    after.advance(22 * HOUR);
    let (now, _) = timer.tick();
    assert!(due(&policy(72), last_checkin, now), "{now}");

    // A record of another enrollment is not this device's.
    let other = OfflineTimer::load(&dir, "dev-2", after.shared(), after.now());
    assert_eq!(other.tick().1, after.now());
}

#[test]
fn the_count_is_written_down_every_minute_and_a_check_in_resets_it() {
    let (_tmp, dir) = state_dir();
    let clock = ManualClock::new(t0());
    let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
    clock.advance(Duration::from_secs(30));
    timer.tick();
    let stored = || TimerRecord::load(&dir).unwrap().unwrap();
    assert_eq!(stored().reached_time(), Some(t0()), "not yet a minute");
    clock.advance(Duration::from_secs(31));
    timer.tick();
    assert_eq!(
        stored().reached_time(),
        Some(t0() + Duration::from_secs(61))
    );

    clock.advance(HOUR);
    timer.checked_in();
    assert_eq!(stored().last_checkin_time(), Some(clock.now()));
    assert_eq!(timer.tick().1, clock.now());
}

#[test]
fn without_a_record_the_count_starts_at_the_last_check_in_in_state_json() {
    let (_tmp, dir) = state_dir();
    std::fs::write(TimerRecord::path(&dir), b"{damaged").unwrap();
    // The wall clock is behind the last check-in state.json recorded.
    let clock = ManualClock::new(t0() - 24 * HOUR);
    let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
    assert_eq!(timer.tick(), (t0(), t0()));
}

async fn vault_with_canary(
    tmp: &std::path::Path,
    state: &std::path::Path,
) -> (Arc<Vault>, PathBuf) {
    let messaging = tmp.join("messaging");
    std::fs::create_dir_all(&messaging).unwrap();
    std::fs::write(messaging.join("chat.db"), b"CANARY").unwrap();
    let vault = Vault::open(&messaging, state, SecretStoreKind::File, "dev-1")
        .await
        .unwrap();
    (Arc::new(vault), messaging)
}

fn wiper(dir: &Path, vault: &Arc<Vault>) -> Wiper {
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    std::fs::write(dir.join("device.key"), key.to_pem().as_bytes()).unwrap();
    Wiper {
        vault: Arc::new(VaultSlot::opened(vault.clone())),
        wipe_lock: Arc::default(),
        key_store: crate::device_key::DeviceKeyStore::Secret(SecretStore::new(
            SecretStoreKind::File,
            dir.join("device.key"),
            "dev-1",
        )),
        device_id: "dev-1".into(),
        state_dir: dir.to_path_buf(),
    }
}

async fn eventually_pending(dir: &Path) -> WipeReceipt {
    for _ in 0..1000 {
        if let Some(receipt) = pending(dir) {
            return receipt;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("no offline-wipe receipt");
}

#[tokio::test(start_paused = true)]
async fn the_timer_wipes_once_and_leaves_a_signed_receipt_to_report() {
    let (tmp, dir) = state_dir();
    policy(72).save(&dir).unwrap();
    let (vault, messaging) = vault_with_canary(tmp.path(), &dir).await;
    let wiper = wiper(&dir, &vault);
    let key = wiper.key_store.load().await.unwrap();
    let clock = ManualClock::new(t0());
    let timer = Arc::new(OfflineTimer::load(&dir, "dev-1", clock.shared(), t0()));
    let task = tokio::spawn(run(timer.clone(), wiper));

    clock.advance(71 * HOUR);
    tokio::time::sleep(2 * TICK).await;
    assert!(messaging.join("chat.db").exists(), "an hour short");
    assert!(pending(&dir).is_none());

    clock.advance(2 * HOUR);
    let receipt = eventually_pending(&dir).await;
    assert!(!messaging.join("chat.db").exists());
    assert!(!vault.key_present().await.unwrap());
    let spki = ward_certs::VerifiedCsr::from_der(&key.make_csr("x").unwrap()).unwrap();
    let signed = ward_certs::receipt::SignedReceipt {
        body: receipt.body,
        signature: receipt.signature,
    };
    ward_certs::receipt::verify_receipt(&signed, spki.public_key_der(), CAUSE, "dev-1").unwrap();
    let record = timer.record();
    assert_eq!(record.receipt, Some(ReceiptState::Pending));
    assert!(record.wiped_at.is_some());

    // Reported: cleared, and later ticks do not wipe or sign again.
    timer.receipt_reported();
    clock.advance(200 * HOUR);
    tokio::time::sleep(3 * TICK).await;
    assert!(pending(&dir).is_none());
    assert_eq!(timer.record().receipt, Some(ReceiptState::Reported));
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_timer_wipe_a_crash_kept_from_its_receipt_still_gets_one() {
    let (tmp, dir) = state_dir();
    policy(1).save(&dir).unwrap();
    let (vault, _) = vault_with_canary(tmp.path(), &dir).await;
    vault.wipe(CAUSE).await.unwrap();
    let clock = ManualClock::new(t0() + 2 * HOUR);
    let timer = Arc::new(OfflineTimer::load(&dir, "dev-1", clock.shared(), t0()));
    let task = tokio::spawn(run(timer.clone(), wiper(&dir, &vault)));
    eventually_pending(&dir).await;
    task.abort();
}

/// The device key was out of reach when the timer wiped (a keyring not unlocked yet): the
/// receipt is signed once the key is back, not left unsigned for ever (attack review).
#[tokio::test(start_paused = true)]
async fn a_receipt_the_key_could_not_sign_is_signed_when_the_key_is_back() {
    let (tmp, dir) = state_dir();
    policy(1).save(&dir).unwrap();
    let (vault, _) = vault_with_canary(tmp.path(), &dir).await;
    let wiper = wiper(&dir, &vault);
    let key = std::fs::read(dir.join("device.key")).unwrap();
    std::fs::remove_file(dir.join("device.key")).unwrap();
    let clock = ManualClock::new(t0() + 2 * HOUR);
    let timer = Arc::new(OfflineTimer::load(&dir, "dev-1", clock.shared(), t0()));
    let task = tokio::spawn(run(timer.clone(), wiper));
    for _ in 0..100 {
        if timer.record().receipt.is_some() {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    assert_eq!(timer.record().receipt, Some(ReceiptState::Unsigned));
    assert!(!vault.key_present().await.unwrap());

    std::fs::write(dir.join("device.key"), key).unwrap();
    eventually_pending(&dir).await;
    assert_eq!(timer.record().receipt, Some(ReceiptState::Pending));
    task.abort();
}

/// A vault that cannot be opened when the agent starts (here: a TPM that does not answer)
/// is tried again at every tick; the timer wipes once it opens.
#[tokio::test(start_paused = true)]
async fn a_vault_that_cannot_open_yet_is_tried_again() {
    let (tmp, dir) = state_dir();
    policy(1).save(&dir).unwrap();
    let messaging = tmp.path().join("messaging");
    let slot = Arc::new(VaultSlot::open_later(crate::vault_slot::VaultOpener {
        messaging_dir: messaging.clone(),
        state_dir: dir.clone(),
        kind: SecretStoreKind::File,
        device_id: "dev-1".into(),
        tpm: crate::tpm::TpmChoice::None,
        clock: crate::clock::system(),
    }));
    // The directory is not there yet: the vault cannot open.
    assert!(slot.get().await.is_err());
    let key = ward_certs::PrivateKeyDer::generate().unwrap();
    std::fs::write(dir.join("device.key"), key.to_pem().as_bytes()).unwrap();
    let wiper = Wiper {
        vault: slot.clone(),
        wipe_lock: Arc::default(),
        key_store: crate::device_key::DeviceKeyStore::Secret(SecretStore::new(
            SecretStoreKind::File,
            dir.join("device.key"),
            "dev-1",
        )),
        device_id: "dev-1".into(),
        state_dir: dir.clone(),
    };
    let clock = ManualClock::new(t0() + 2 * HOUR);
    let timer = Arc::new(OfflineTimer::load(&dir, "dev-1", clock.shared(), t0()));
    let task = tokio::spawn(run(timer.clone(), wiper));
    tokio::time::sleep(3 * TICK).await;
    assert_eq!(timer.record().wiped_at, None);

    std::fs::create_dir_all(&messaging).unwrap();
    std::fs::write(messaging.join("chat.db"), b"CANARY").unwrap();
    eventually_pending(&dir).await;
    assert!(!messaging.join("chat.db").exists());
    task.abort();
}

#[tokio::test(start_paused = true)]
async fn data_a_command_already_wiped_is_left_alone() {
    let (tmp, dir) = state_dir();
    policy(1).save(&dir).unwrap();
    let (vault, _) = vault_with_canary(tmp.path(), &dir).await;
    vault.wipe("command-7").await.unwrap();
    let clock = ManualClock::new(t0() + 2 * HOUR);
    let timer = Arc::new(OfflineTimer::load(&dir, "dev-1", clock.shared(), t0()));
    let task = tokio::spawn(run(timer.clone(), wiper(&dir, &vault)));
    tokio::time::sleep(3 * TICK).await;
    assert!(pending(&dir).is_none());
    assert_eq!(timer.record().wiped_at, None);
    task.abort();
}

/// The check-in loop sends the receipt as soon as its file is there, and may hear the
/// controller take it before the timer has recorded the wipe: that acknowledgement must stand
/// (it was overwritten by "pending", and `ward-agent status` then said pending for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the failpoints feature: cargo test -p ward-agent --features failpoints"
)]
async fn a_receipt_the_controller_took_at_once_stays_reported() {
    #[cfg(feature = "failpoints")]
    {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::mpsc;

        let (tmp, dir) = state_dir();
        policy(1).save(&dir).unwrap();
        let (vault, _) = vault_with_canary(tmp.path(), &dir).await;
        let clock = ManualClock::new(t0() + 2 * HOUR);
        let timer = Arc::new(OfflineTimer::load(&dir, "dev-1", clock.shared(), t0()));
        // At the moment the receipt's file is written, the check-in loop reports it (on its
        // own thread) and is given a second to get there first.
        let (reporter, watched, acted) = (timer.clone(), dir.clone(), AtomicBool::new(false));
        let (reported_tx, reported_rx) = mpsc::channel::<()>();
        let reported_rx = std::sync::Mutex::new(reported_rx);
        let (done_tx, done_rx) = mpsc::channel::<()>();
        fail::cfg_callback("offline-receipt-written", move || {
            // Other tests' timers pass here too: only this test's receipt counts.
            if pending(&watched).is_none() || acted.swap(true, Ordering::SeqCst) {
                return;
            }
            let (reporter, reported_tx, done_tx) =
                (reporter.clone(), reported_tx.clone(), done_tx.clone());
            std::thread::spawn(move || {
                reporter.receipt_reported();
                let _ = reported_tx.send(());
                let _ = done_tx.send(());
            });
            let _ = reported_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(1));
        })
        .unwrap();
        let task = tokio::spawn(run(timer.clone(), wiper(&dir, &vault)));
        let reported =
            tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(90)))
                .await
                .unwrap();
        fail::remove("offline-receipt-written");
        reported.expect("the receipt was never written");
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while timer.record().wiped_at.is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the wipe was never recorded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(timer.record().receipt, Some(ReceiptState::Reported));
        assert!(pending(&dir).is_none());
        task.abort();
    }
}

/// Attack by the app's user: they swap the messaging directory for a symbolic link (to a
/// copy, or to itself) while the device is offline. At the deadline the timer destroys the
/// key, but the removal refuses the link and fails, so the wipe never reaches Done: no
/// receipt is signed, `wiped_at` is never set, and it is tried only while the deadline is
/// past. Once the device is back and checks in, the count starts again and the timer never
/// tries again: the controller never hears that the timer destroyed the key (F3 handled a
/// directory that is gone, not one replaced by a link). Expected: a wipe the timer began is
/// finished (the directory "replaced, not removed") and reported, check-in or not.
#[tokio::test(start_paused = true)]
async fn a_timer_wipe_kept_from_finishing_by_a_link_is_still_reported() {
    let (tmp, dir) = state_dir();
    policy(1).save(&dir).unwrap();
    let (vault, messaging) = vault_with_canary(tmp.path(), &dir).await;
    let kept = tmp.path().join("kept");
    std::fs::rename(&messaging, &kept).unwrap();
    std::os::unix::fs::symlink(&kept, &messaging).unwrap();
    let clock = ManualClock::new(t0() + 2 * HOUR);
    let timer = Arc::new(OfflineTimer::load(&dir, "dev-1", clock.shared(), t0()));
    let task = tokio::spawn(run(timer.clone(), wiper(&dir, &vault)));
    tokio::time::sleep(3 * TICK).await;
    assert!(!vault.key_present().await.unwrap(), "the key goes first");

    // Back online.
    timer.checked_in();
    tokio::time::sleep(10 * RETRY_AFTER).await;
    let record = timer.record();
    task.abort();
    assert!(
        record.wiped_at.is_some() && pending(&dir).is_some(),
        "the timer destroyed the key, but no receipt will ever reach the controller: {record:?}, journal {:?}",
        vault.journal()
    );
}

/// A timer wipe interrupted part-way (a crash, a failing step) is finished and reported even
/// after a check-in moved the deadline: the key it destroyed must not go unreported (attack
/// review, finding 1's second half).
#[tokio::test(start_paused = true)]
async fn an_unfinished_timer_wipe_is_finished_after_a_check_in() {
    let (tmp, dir) = state_dir();
    policy(1).save(&dir).unwrap();
    let (vault, messaging) = vault_with_canary(tmp.path(), &dir).await;
    vault
        .wipe_until(CAUSE, Some(WipeStep::KeyDestroyed))
        .await
        .unwrap();
    // Checked in just now: the deadline is an hour away.
    let clock = ManualClock::new(t0());
    let timer = Arc::new(OfflineTimer::load(&dir, "dev-1", clock.shared(), t0()));
    let task = tokio::spawn(run(timer.clone(), wiper(&dir, &vault)));
    eventually_pending(&dir).await;
    assert!(!messaging.join("chat.db").exists());
    assert!(timer.record().wiped_at.is_some());
    task.abort();
}

/// A small filesystem mounted for one test (a tmpfs, or an ext4 image on a loop device),
/// unmounted when dropped. `None` where the test may not mount (not root).
struct SmallDisk {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl SmallDisk {
    fn mount(kind: &str) -> Option<Self> {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mnt");
        std::fs::create_dir(&root).unwrap();
        let ok = |cmd: &mut std::process::Command| {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mounted = match kind {
            "tmpfs" => ok(std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
                .arg(&root)),
            _ => {
                let image = tmp.path().join("disk.img");
                std::fs::File::create(&image)
                    .unwrap()
                    .set_len(4 << 20)
                    .unwrap();
                ok(std::process::Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-m", "0"])
                    .arg(&image))
                    && ok(std::process::Command::new("mount")
                        .args(["-o", "loop"])
                        .arg(&image)
                        .arg(&root))
            }
        };
        if !mounted {
            eprintln!(
                "SKIPPED: cannot mount a {kind} (needs root, and for ext4 mkfs.ext4 and a loop device)"
            );
            return None;
        }
        Some(Self { _tmp: tmp, root })
    }

    /// Fills the filesystem until it refuses one more byte.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.root.join("filler")).unwrap();
        let chunk = vec![0xa5_u8; 4096];
        while filler.write_all(&chunk).is_ok() {}
        while filler.write_all(&[0xa5]).is_ok() {}
        let _ = filler.sync_all();
        let e = std::fs::write(self.root.join("one-more"), [0_u8; 4096]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.root)
            .status();
    }
}

/// Attack review M2: a thief fills the disk (so a new file cannot be written), sets the wall
/// clock back and cuts the power every few minutes. Each start resumed from the last record
/// that did get written, so the running time in between was lost every time and the
/// deadline never came (the record was replaced through a new file, which a full disk
/// refuses). Now the count is written in place into a file made whole beforehand.
fn a_full_disk_and_the_clock_set_back_at_every_restart_do_not_stall_the_count(kind: &str) {
    let Some(disk) = SmallDisk::mount(kind) else {
        return;
    };
    let dir = disk.root.join("state");
    std::fs::create_dir(&dir).unwrap();
    policy(1).save(&dir).unwrap();
    drop(OfflineTimer::load(
        &dir,
        "dev-1",
        ManualClock::new(t0()).shared(),
        t0(),
    ));
    disk.fill();

    // Seven boots, each with the wall clock set back to the last check-in, each running ten
    // minutes, then the power cut (no clean stop).
    for boot in 0..7_u32 {
        let clock = ManualClock::new(t0());
        let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
        let resumed = timer.tick().0;
        assert!(
            resumed >= t0() + 10 * MINUTE * boot,
            "boot {boot}: the count went back to {resumed}"
        );
        for _ in 0..10 {
            clock.advance(MINUTE);
            timer.tick();
        }
        assert!(
            !matches!(timer.withhold(), Some(Withhold::Unsaved { .. })),
            "boot {boot}: the count could not be written down on the full disk"
        );
    }
    let clock = ManualClock::new(t0());
    let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
    assert!(
        timer.overdue().is_some(),
        "seventy minutes ran on a full disk with the clock set back at each start, and the one-hour deadline has not come: {:?}",
        timer.record()
    );
}

#[test]
fn a_full_tmpfs_and_the_clock_set_back_at_every_restart_do_not_stall_the_count() {
    a_full_disk_and_the_clock_set_back_at_every_restart_do_not_stall_the_count("tmpfs");
}

#[test]
fn a_full_ext4_and_the_clock_set_back_at_every_restart_do_not_stall_the_count() {
    a_full_disk_and_the_clock_set_back_at_every_restart_do_not_stall_the_count("ext4");
}

/// M2, the rest: the count cannot be written at all (here: directories where its files go;
/// on a device, an I/O error, a filesystem gone read-only, a full copy-on-write filesystem).
/// The key is handed out only as far as the count is written down, so no time in which the
/// app had the key can be lost to a restart; a restart with the clock set back resumes from
/// the furthest point written down, and the key stays withheld until the count can be
/// written again.
#[test]
fn while_the_count_cannot_be_written_the_key_is_withheld() {
    let (_tmp, dir) = state_dir();
    policy(1).save(&dir).unwrap();
    let clock = ManualClock::new(t0());
    let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
    assert_eq!(timer.withhold(), None);
    clock.advance(10 * MINUTE);
    timer.tick();
    let written_to = t0() + 10 * MINUTE + Duration::from_secs(70);

    let block = || {
        std::fs::remove_file(timer_file::path(&dir)).unwrap();
        std::fs::create_dir(timer_file::path(&dir)).unwrap();
        std::fs::create_dir(dir.join(".offline-timer.json.tmp")).unwrap();
        std::fs::create_dir(dir.join(".offline-timer.slots.tmp")).unwrap();
    };
    block();
    clock.advance(MINUTE);
    assert_eq!(timer.withhold(), None, "within what is written down");
    clock.advance(Duration::from_secs(15));
    let withheld = timer.withhold().expect("past what is written down");
    assert!(
        matches!(&withheld, Withhold::Unsaved { written_to: Some(t), .. } if *t == written_to),
        "{withheld:?}"
    );
    assert!(
        withheld.to_string().contains("cannot write down"),
        "{withheld}"
    );

    // A restart with the clock set back a day: the count resumes where it is written down.
    drop(timer);
    let after = ManualClock::new(t0() - 24 * HOUR);
    let timer = OfflineTimer::load(&dir, "dev-1", after.shared(), t0() - 24 * HOUR);
    assert_eq!(timer.tick().0, written_to);
    after.advance(Duration::from_secs(1));
    assert!(matches!(timer.withhold(), Some(Withhold::Unsaved { .. })));

    // Writable again: the key is handed out again, and the count goes on from there.
    for name in [
        "offline-timer.slots",
        ".offline-timer.json.tmp",
        ".offline-timer.slots.tmp",
    ] {
        std::fs::remove_dir(dir.join(name)).unwrap();
    }
    after.advance(Duration::from_secs(5));
    assert_eq!(timer.withhold(), None);
    after.advance(49 * MINUTE);
    assert!(timer.overdue().is_some());
}

/// A power cut loses no counting: each write puts the point a restart resumes from past the
/// next write (it lost up to a minute per start before, which a thief cutting the power
/// every 59 s with the clock set back could repeat for ever).
#[test]
fn a_power_cut_loses_no_counting() {
    let (_tmp, dir) = state_dir();
    let clock = ManualClock::new(t0());
    let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
    clock.advance(Duration::from_secs(59));
    assert_eq!(timer.tick().0, t0() + Duration::from_secs(59));
    drop(timer);
    let after = ManualClock::new(t0());
    let timer = OfflineTimer::load(&dir, "dev-1", after.shared(), t0());
    assert!(timer.tick().0 >= t0() + Duration::from_secs(59));
    // A clean stop resumes exactly where it stopped.
    after.advance(Duration::from_secs(30));
    timer.stop();
    let stopped_at = timer.tick().0;
    drop(timer);
    let timer = OfflineTimer::load(&dir, "dev-1", ManualClock::new(t0()).shared(), t0());
    assert_eq!(timer.tick().0, stopped_at);
}

/// Review finding (timer, L/M, older than this diff): `AgentPolicy::load` is an `Option`
/// that is `None` on any read or parse error, and both `withhold()` and the timer task
/// (`run`: `due`) take `unwrap_or_default()`: a policy without a deadline. So once the
/// deadline has passed, a `policy.json` that cannot be read at that moment (EMFILE while the
/// agent's descriptors are held by idle local-API connections, which have no cap and no idle
/// timeout; EIO; a damaged or removed file) makes the timer neither withhold the key nor
/// wipe. Its gate should fail closed: the last deadline known (kept in memory / in the
/// slots record) stands while the policy cannot be read.
#[test]
fn an_unreadable_policy_does_not_lift_the_deadline() {
    let (_tmp, dir) = state_dir();
    policy(1).save(&dir).unwrap();
    let clock = ManualClock::new(t0());
    let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
    clock.advance(2 * HOUR);
    assert!(matches!(timer.withhold(), Some(Withhold::Overdue { .. })));
    // policy.json can no longer be read (here: a directory stands at its path; EMFILE or
    // EIO act the same).
    std::fs::remove_file(dir.join("policy.json")).unwrap();
    std::fs::create_dir(dir.join("policy.json")).unwrap();
    let (now, last_checkin) = timer.tick();
    assert!(
        matches!(timer.withhold(), Some(Withhold::Overdue { .. })),
        "past the deadline, the key is handed out again while policy.json cannot be read"
    );
    let policy_now = timer.policy();
    assert!(
        due(&policy_now, last_checkin, now),
        "past the deadline, the timer does not wipe while policy.json cannot be read"
    );
}

/// Attack review 2 (thief, M): the last policy was kept in memory only, so a restart with
/// `policy.json` damaged or removed (a thief with the disk keeps the device offline, edits
/// the state directory and reboots; or a torn write, EIO) started with no deadline: the app got
/// its key and the timer never wiped. The limit is now kept in the timer's own record too.
#[test]
fn a_restart_with_policy_json_damaged_or_removed_keeps_the_deadline() {
    for damage in ["garbage", "removed"] {
        let (_tmp, dir) = state_dir();
        policy(1).save(&dir).unwrap();
        let clock = ManualClock::new(t0());
        let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
        assert!(timer.withhold().is_none());
        timer.stop();
        drop(timer);
        match damage {
            "garbage" => std::fs::write(dir.join("policy.json"), b"{not json").unwrap(),
            _ => std::fs::remove_file(dir.join("policy.json")).unwrap(),
        }
        clock.advance(2 * HOUR);
        let timer = OfflineTimer::load(&dir, "dev-1", clock.shared(), t0());
        assert!(
            matches!(timer.withhold(), Some(Withhold::Overdue { .. })),
            "{damage}: after a restart the key is handed out past the deadline"
        );
        let (now, last_checkin) = timer.tick();
        assert!(
            due(&timer.policy(), last_checkin, now),
            "{damage}: after a restart the timer does not wipe"
        );
    }
}
