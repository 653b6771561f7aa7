use super::*;

const CANARY: &[u8] = b"PATIENT-CANARY-7f3a: BP 120/80, call Dr. Who";

struct Fixture {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    messaging: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let messaging = tmp.path().join("messaging");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(messaging.join("threads/2026")).unwrap();
    std::fs::write(messaging.join("db.sqlite"), CANARY.repeat(100)).unwrap();
    std::fs::write(messaging.join("threads/2026/a.msg"), CANARY).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", messaging.join("link")).unwrap();
    Fixture {
        _tmp: tmp,
        state,
        messaging,
    }
}

async fn open(f: &Fixture) -> Vault {
    Vault::open(&f.messaging, &f.state, SecretStoreKind::File, "dev")
        .await
        .unwrap()
}

/// Every file under `root` (outside the test's own fixtures) that holds the canary.
fn files_with_canary(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(CANARY.len()).any(|w| w == CANARY) {
                    found.push(path);
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn wipe_destroys_key_and_every_file_but_no_link_target() {
    let f = fixture();
    let vault = open(&f).await;
    assert!(vault.key_present().await.unwrap());
    let journal = vault.wipe("cmd-1").await.unwrap();
    assert_eq!(journal.step, WipeStep::Done);
    assert!(journal.verified_empty);
    assert_eq!(journal.files_removed, 3);
    assert_eq!(journal.bytes_removed, (CANARY.len() * 101) as u64);
    assert!(!vault.key_present().await.unwrap());
    assert!(!f.state.join("messaging.key").exists());
    assert!(files_with_canary(f.messaging.parent().unwrap()).is_empty());
    assert!(
        Path::new("/etc/hostname").exists(),
        "a symlink's target must never be touched"
    );
    // Asking again answers from the journal.
    assert_eq!(vault.wipe("cmd-1").await.unwrap(), journal);
}

#[tokio::test]
async fn a_wipe_interrupted_after_any_step_completes_after_restart() {
    for stop in [
        WipeStep::Started,
        WipeStep::KeyDestroyed,
        WipeStep::FilesRemoved,
    ] {
        let f = fixture();
        let first = open(&f).await;
        let partial = first.wipe_until("cmd-2", Some(stop)).await.unwrap();
        assert_eq!(partial.step, stop);
        drop(first);
        // A new process: the vault is opened again, which must not make a new key.
        let again = open(&f).await;
        if stop >= WipeStep::KeyDestroyed {
            assert!(
                !again.key_present().await.unwrap(),
                "reopening after {stop:?} recreated the key"
            );
        }
        let done = again.wipe("cmd-2").await.unwrap();
        assert_eq!(done.step, WipeStep::Done, "after {stop:?}");
        assert!(done.verified_empty);
        assert!(!again.key_present().await.unwrap());
        assert!(
            files_with_canary(f.messaging.parent().unwrap()).is_empty(),
            "after {stop:?}"
        );
    }
}

#[tokio::test]
async fn a_new_wipe_takes_over_an_unfinished_one_and_finishes_it() {
    let f = fixture();
    let vault = open(&f).await;
    vault
        .wipe_until("cmd-a", Some(WipeStep::KeyDestroyed))
        .await
        .unwrap();
    let done = vault.wipe("cmd-b").await.unwrap();
    assert_eq!((done.cause.as_str(), done.step), ("cmd-b", WipeStep::Done));
    assert!(done.verified_empty);
    assert!(files_with_canary(f.messaging.parent().unwrap()).is_empty());
}

#[tokio::test]
async fn a_missing_messaging_directory_is_an_error_not_an_empty_wipe() {
    let f = fixture();
    let missing = f.messaging.with_file_name("typo");
    let err = Vault::open(&missing, &f.state, SecretStoreKind::File, "dev")
        .await
        .unwrap_err();
    assert!(matches!(err, VaultError::Missing(_)));
    assert!(!missing.exists());
}

/// One failpoint configuration at a time: the tests that set it take this first.
#[cfg(feature = "failpoints")]
static FAILPOINT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Wipes a messaging directory holding `entry` (made by `make`) while a local user, at the
/// failpoint between the wipe's look at the entry and what it does to it, swaps the entry for
/// a symbolic link into a directory outside (`swap(entry, outside, tmp)`). Nothing outside may
/// change, and the messaging directory must end empty. `test` is the calling test's name: the
/// swap happens on its thread only.
#[cfg(feature = "failpoints")]
async fn wipe_while_a_user_swaps(
    test: &'static str,
    entry: &str,
    make: impl Fn(&Path),
    swap: impl Fn(&Path, &Path, &Path) + Send + Sync + 'static,
) {
    let _one_at_a_time = FAILPOINT.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let (state, messaging) = (tmp.path().join("state"), tmp.path().join("messaging"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&messaging).unwrap();
    make(&messaging.join(entry));
    let (outside, files) = precious(tmp.path());
    let vault = Vault::open(&messaging, &state, SecretStoreKind::File, "dev")
        .await
        .unwrap();
    let (target, root) = (messaging.join(entry), tmp.path().to_path_buf());
    let done = std::sync::atomic::AtomicBool::new(false);
    fail::cfg_callback("vault-wipe-before-act", move || {
        let mine = std::thread::current()
            .name()
            .is_some_and(|name| name.ends_with(test));
        if mine && !done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            swap(&target, &outside, &root);
        }
    })
    .unwrap();
    let journal = vault.wipe("cmd-swap").await;
    fail::remove("vault-wipe-before-act");
    assert_untouched(&files);
    let journal = journal.unwrap();
    assert!(journal.verified_empty, "{journal:?}");
    assert_eq!(std::fs::read_dir(&messaging).unwrap().count(), 0);
}

/// A directory outside the messaging directory that nothing may touch: (path, its files).
fn precious(root: &Path) -> (PathBuf, Vec<(PathBuf, Vec<u8>)>) {
    let dir = root.join("outside");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let files = vec![
        (dir.join("precious.txt"), b"hospital payroll".to_vec()),
        (dir.join("sub/also.txt"), b"do not delete".to_vec()),
    ];
    for (path, bytes) in &files {
        std::fs::write(path, bytes).unwrap();
    }
    (dir, files)
}

fn assert_untouched(files: &[(PathBuf, Vec<u8>)]) {
    for (path, bytes) in files {
        assert_eq!(
            std::fs::read(path).ok().as_deref(),
            Some(bytes.as_slice()),
            "{} was touched by the wipe",
            path.display()
        );
    }
}

#[tokio::test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the failpoints feature: cargo test -p ward-agent --features failpoints"
)]
async fn a_directory_swapped_for_a_symlink_mid_wipe_leads_nowhere_outside() {
    #[cfg(feature = "failpoints")]
    wipe_while_a_user_swaps(
        "a_directory_swapped_for_a_symlink_mid_wipe_leads_nowhere_outside",
        "threads",
        |dir| {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("a.msg"), CANARY).unwrap();
        },
        |dir, outside, root| {
            std::fs::rename(dir, root.join("moved")).unwrap();
            std::os::unix::fs::symlink(outside, dir).unwrap();
        },
    )
    .await;
}

#[tokio::test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs the failpoints feature: cargo test -p ward-agent --features failpoints"
)]
async fn a_file_swapped_for_a_symlink_mid_wipe_leads_nowhere_outside() {
    #[cfg(feature = "failpoints")]
    wipe_while_a_user_swaps(
        "a_file_swapped_for_a_symlink_mid_wipe_leads_nowhere_outside",
        "db.sqlite",
        |file| std::fs::write(file, CANARY).unwrap(),
        |file, outside, _| {
            std::fs::remove_file(file).unwrap();
            std::os::unix::fs::symlink(outside.join("precious.txt"), file).unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn a_key_file_replaced_by_a_symlink_is_neither_read_nor_written_through() {
    let f = fixture();
    let (outside, files) = precious(f.messaging.parent().unwrap());
    let vault = open(&f).await;
    let key_file = f.state.join("messaging.key");
    std::fs::remove_file(&key_file).unwrap();
    std::os::unix::fs::symlink(outside.join("precious.txt"), &key_file).unwrap();
    let read = vault.key().await;
    assert!(
        !matches!(&read, Ok(Some(k)) if k.as_slice() == b"hospital payroll"),
        "the key was read through a symlink"
    );
    let _ = vault.wipe("cmd-key-link").await;
    assert_untouched(&files);
    assert!(
        std::fs::symlink_metadata(&key_file).is_err(),
        "the link itself is removed"
    );
}

/// Attack by the app's user, who owns the messaging directory's parent: while the agent is
/// stopped (a reboot), they replace the directory with a symbolic link to one they may not
/// touch. The agent runs as root: at its next start it must not wipe through the link.
#[tokio::test]
async fn a_messaging_dir_swapped_for_a_symlink_before_a_restart_leads_nowhere_outside() {
    let f = fixture();
    drop(open(&f).await);
    let (outside, files) = precious(f.messaging.parent().unwrap());
    std::fs::rename(&f.messaging, f.messaging.with_file_name("moved")).unwrap();
    std::os::unix::fs::symlink(&outside, &f.messaging).unwrap();

    let vault = Vault::open(&f.messaging, &f.state, SecretStoreKind::File, "dev")
        .await
        .expect("a vault set up earlier still opens, so its key can be destroyed");
    let wiped = vault.wipe("cmd-after-restart").await;
    assert_untouched(&files);
    assert!(
        !vault.key_present().await.unwrap(),
        "the key is destroyed all the same"
    );
    // It ends (so the offline timer's receipt can be reported), saying the directory was
    // not its own: never "verified empty" (the command reports it as incomplete).
    let journal = wiped.expect("the wipe ends");
    assert_eq!(journal.step, WipeStep::Done);
    assert!(
        journal.directory_missing && !journal.verified_empty,
        "{journal:?}"
    );
}

/// Attack by the app's user: they move the messaging directory away while the agent is
/// stopped, and back once it runs. The agent must still start (its offline timer with it)
/// and a wipe must still destroy the key, which is what makes the moved data unreadable.
#[tokio::test]
async fn a_messaging_dir_moved_away_before_a_restart_still_loses_its_key() {
    let f = fixture();
    drop(open(&f).await);
    let hidden = f.messaging.with_file_name("hidden");
    std::fs::rename(&f.messaging, &hidden).unwrap();

    let vault = Vault::open(&f.messaging, &f.state, SecretStoreKind::File, "dev")
        .await
        .expect("a vault set up earlier opens without its directory");
    let journal = vault.wipe("cmd-moved").await.unwrap();
    assert_eq!(journal.step, WipeStep::Done);
    assert!(!vault.key_present().await.unwrap());
    assert!(!f.state.join("messaging.key").exists());
    // The files moved away were not removed: nothing may say the directory was found empty
    // (attack review F3: the receipt said "verified empty, 0 files").
    assert!(!journal.verified_empty, "{journal:?}");
    assert!(journal.directory_missing, "{journal:?}");
    assert_eq!(journal.files_removed, 0);
}

/// A full disk (here: the journal's temporary file blocked by a directory) must not keep the
/// key alive: the key goes first, and the wipe then fails saying why (attack review F2: the
/// journal was written before the key's destruction, so a full disk left the key readable).
#[tokio::test]
async fn a_journal_that_cannot_be_written_does_not_save_the_key() {
    let f = fixture();
    let vault = open(&f).await;
    std::fs::create_dir(f.state.join(".wipe-journal.json.tmp")).unwrap();
    let e = vault.wipe("cmd-full-disk").await.unwrap_err();
    assert!(!vault.key_present().await.unwrap(), "the key survived: {e}");
    assert!(e.to_string().contains("the data key is destroyed"), "{e}");

    // Space again: the same wipe goes on to the end.
    std::fs::remove_dir(f.state.join(".wipe-journal.json.tmp")).unwrap();
    let journal = vault.wipe("cmd-full-disk").await.unwrap();
    assert_eq!(journal.step, WipeStep::Done);
    assert!(journal.verified_empty);
    assert!(files_with_canary(&f.messaging).is_empty());
}

/// The same with a symbolic link to itself (resolving it fails with a loop, not "not found"):
/// the agent must still open the vault and destroy the key.
#[tokio::test]
async fn a_messaging_dir_replaced_by_a_symlink_loop_before_a_restart_still_loses_its_key() {
    let f = fixture();
    drop(open(&f).await);
    std::fs::rename(&f.messaging, f.messaging.with_file_name("hidden")).unwrap();
    std::os::unix::fs::symlink(&f.messaging, &f.messaging).unwrap();

    let vault = Vault::open(&f.messaging, &f.state, SecretStoreKind::File, "dev")
        .await
        .expect("a vault set up earlier opens whatever its directory became");
    let _ = vault.wipe("cmd-loop").await;
    assert!(!vault.key_present().await.unwrap());
}

/// Attack by the app's user (attack review, F3 continued): the F3 fix says "not found" for a
/// directory moved away, but moving it away and making a new, empty one in its place
/// (`mv messaging hidden && mkdir messaging`) is one command more: the wipe then says
/// "verified empty", 0 files found, and the command reports success with a receipt, while
/// every file survives in `hidden` (unreadable only thanks to the key's destruction). The
/// directory's identity (device and inode, recorded when its key was made) is not checked.
#[tokio::test]
async fn a_messaging_dir_swapped_for_an_empty_one_is_not_verified_empty() {
    let f = fixture();
    let vault = open(&f).await;
    let hidden = f.messaging.with_file_name("hidden");
    std::fs::rename(&f.messaging, &hidden).unwrap();
    std::fs::create_dir(&f.messaging).unwrap();

    let journal = vault.wipe("cmd-swapped").await.unwrap();
    assert!(!vault.key_present().await.unwrap());
    assert!(
        !files_with_canary(&hidden).is_empty(),
        "the files survive elsewhere"
    );
    assert!(
        !journal.verified_empty,
        "the receipt says the directory was verified empty: {journal:?}"
    );
}

/// A full disk when a wipe starts: the key goes first (F2), but no journal is written. At the
/// next start (a reboot, an agent restart) `Vault::open_with` sees no journal and no key and
/// makes a NEW key: the app is handed a key again ("ok"), the old files are still there, and
/// nothing on the device says a wipe destroyed the old key. For a commanded wipe nothing
/// retries it (the command was reported failed, its message says "it is tried again").
#[tokio::test]
async fn a_key_destroyed_without_its_journal_is_not_replaced_at_the_next_start() {
    let f = fixture();
    let vault = open(&f).await;
    std::fs::create_dir(f.state.join(".wipe-journal.json.tmp")).unwrap();
    vault.wipe("cmd-full-disk").await.unwrap_err();
    assert!(!vault.key_present().await.unwrap());
    drop(vault);

    // Space again, and the agent restarts.
    std::fs::remove_dir(f.state.join(".wipe-journal.json.tmp")).unwrap();
    let vault = open(&f).await;
    assert!(
        !vault.key_present().await.unwrap(),
        "a new data key was made after a wipe destroyed the old one, with no journal saying so"
    );
}

/// Attack review: a key made before the vault kept a record (an agent upgraded from before
/// `messaging-key.json`) is recorded with `key_made: false` (the `None` branch of `open_with`
/// leaves it at its initial false). Destroyed later with no journal (the full-disk wipe path,
/// `journal_or_key_first`, or the key deleted by anyone), the next start silently makes a NEW
/// key and the messaging app is handed one again, instead of recording KEY_FOUND_GONE.
#[tokio::test]
async fn a_key_from_before_the_record_found_gone_is_not_replaced() {
    let f = fixture();
    let vault = open(&f).await;
    assert!(vault.key_present().await.unwrap());
    drop(vault);
    // An agent from before the record: the key, no messaging-key.json.
    std::fs::remove_file(record_path(&f.state)).unwrap();
    let vault = open(&f).await;
    assert!(vault.key_present().await.unwrap(), "the old key is kept");
    // Destroyed with no journal (as journal_or_key_first does on a full disk).
    vault.destroy_key().await.unwrap();
    assert!(!vault.key_present().await.unwrap());
    assert!(vault.journal().unwrap().is_none());
    drop(vault);
    let vault = open(&f).await;
    assert!(
        !vault.key_present().await.unwrap(),
        "a new key was made after a journal-less destruction"
    );
    assert_eq!(
        vault.journal().unwrap().map(|j| j.cause),
        Some(KEY_FOUND_GONE.to_owned())
    );
}

/// A home directory mounted at login (systemd-homed, pam_mount): while the user is logged out
/// the messaging directory's parent is not there at all. A wipe then (the offline timer's, a
/// command's) destroys the key and says NOT FOUND — not "replaced", and never verified empty —
/// and when the home is mounted again later, with the same directory in it, the finished wipe
/// does not turn into "verified empty" for a directory it never read (issue 14, third
/// finding). Pins the behaviour, which was already so.
#[tokio::test]
async fn a_messaging_dir_whose_home_is_not_mounted_at_the_wipe_is_reported_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let home = tmp.path().join("home").join("alice");
    let messaging = home.join(".local/share/chat");
    std::fs::create_dir_all(&messaging).unwrap();
    std::fs::write(messaging.join("db.sqlite"), CANARY).unwrap();
    drop(
        Vault::open(&messaging, &state, SecretStoreKind::File, "dev")
            .await
            .unwrap(),
    );

    // Logged out: the home is not mounted (its mount point empty, here: away).
    let unmounted = tmp.path().join("volume");
    std::fs::rename(&home, &unmounted).unwrap();
    std::fs::create_dir(&home).unwrap();
    let vault = Vault::open(&messaging, &state, SecretStoreKind::File, "dev")
        .await
        .expect("a vault set up earlier opens while its directory is not mounted");
    let journal = vault.wipe("cmd-logged-out").await.unwrap();
    assert!(!vault.key_present().await.unwrap(), "the key goes at once");
    assert_eq!(journal.step, WipeStep::Done, "the receipt is not held back");
    assert!(
        journal.directory_missing && !journal.directory_replaced && !journal.verified_empty,
        "absent, not replaced, not verified: {journal:?}"
    );
    let key = ward_certs::DeviceKey::from(ward_certs::PrivateKeyDer::generate().unwrap());
    let wiped = crate::receipt::Wiped {
        command_id: "cmd-logged-out".into(),
        device_id: "dev".into(),
        completed_at: journal.completed_at.clone().unwrap(),
        scope: ward_certs::receipt::WipeScope::Messaging,
        full_erase: None,
        key_destroyed: true,
    };
    let body = crate::receipt::body(&vault, &journal, wiped, &key).unwrap();
    assert!(!body.verified_empty);
    let verification = body.sanitization.unwrap().verification;
    assert!(
        verification.contains("NOT FOUND (nothing at its path: not mounted"),
        "{verification}"
    );

    // Logged in again: the same directory is back. The wipe is finished and stays as it was
    // (a retried command is answered from the journal); its files are not vouched for.
    std::fs::remove_dir(&home).unwrap();
    std::fs::rename(&unmounted, &home).unwrap();
    let again = vault.wipe("cmd-logged-out").await.unwrap();
    assert_eq!(again, journal);
    assert!(messaging.join("db.sqlite").exists());
    assert!(!vault.key_present().await.unwrap());
}

/// The other half of the distinction: another directory where the key's directory was (a
/// filesystem mounted over the path, or `mv` and `mkdir`) is "replaced", also never verified.
#[tokio::test]
async fn another_directory_at_the_path_is_reported_replaced() {
    let f = fixture();
    let vault = open(&f).await;
    std::fs::rename(&f.messaging, f.messaging.with_file_name("hidden")).unwrap();
    std::fs::create_dir(&f.messaging).unwrap();
    let journal = vault.wipe("cmd-replaced").await.unwrap();
    assert!(
        journal.directory_missing && journal.directory_replaced && !journal.verified_empty,
        "{journal:?}"
    );
}
