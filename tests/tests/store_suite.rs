//! The store's behaviour, run against every backend: SQLite and memory always, PostgreSQL when
//! `WARD_TEST_POSTGRES_URL` names a server (each test gets a fresh database there); without
//! it the PostgreSQL tests show as ignored. `.ci/run` starts the local PostgreSQL and sets
//! the variable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ward_controller::core::audit::{AuditEvent, GenesisOrigin, genesis_event, verify};
use ward_controller::core::{
    CertificateRecord, Command, CommandId, CommandKind, CommandState, DeviceBrief, DeviceFacts,
    DeviceId, DeviceState, Event, NewDevice, Policy, PolicyBody, PolicyChanges, PolicyScope,
    Timestamp, TokenHash, TokenRecord, WipeScope,
};
use ward_controller::store::tx::{CheckInWrite, TokenClaim};
use ward_controller::store::{AuditFilter, MemoryStore, Redemption, SqlStore, Store};
use ward_e2e::postgres::{FreshDatabase, fresh_database_async};

struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    /// Declared after `store`, so the database is dropped after the store's connections.
    _pg: Option<FreshDatabase>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqlStore::open_sqlite(&dir.path().join("ward.db"))
        .await
        .unwrap();
    Backend {
        name: "sqlite",
        store: Arc::new(sqlite),
        _dir: Some(dir),
        _pg: None,
    }
}

async fn memory() -> Backend {
    Backend {
        name: "memory",
        store: Arc::new(MemoryStore::new()),
        _dir: None,
        _pg: None,
    }
}

async fn postgres() -> Backend {
    let db = fresh_database_async().await;
    let store = SqlStore::connect_postgres(&db.url).await.unwrap();
    Backend {
        name: "postgres",
        store: Arc::new(store),
        _dir: None,
        _pg: Some(db),
    }
}

/// Each behaviour below runs as three tests, `<behaviour>::sqlite`, `<behaviour>::memory` and
/// `<behaviour>::postgres`.
/// The PostgreSQL one is ignored, with the reason shown in the test summary, when the build
/// did not see `WARD_TEST_POSTGRES_URL` (tests/build.rs sets `ward_postgres`).
/// Every open forced-CA-step request, approved or not, is withdrawn by one call in a write;
/// requests for admin identities and used ones are left alone.
async fn a_rotation_step_withdraws_every_open_forced_step_request(b: Backend) {
    use ward_controller::core::AdminRole;
    use ward_controller::core::admins::{AdminRequest, RequestKind};
    let now = Timestamp::from_unix_ms(1_000);
    let request = |kind, name: &str| {
        AdminRequest::new(kind, name.parse().unwrap(), AdminRole::Admin, "alice", now)
    };
    let carol = request(RequestKind::Issue, "carol");
    let approved = request(RequestKind::CaActivate, "ca-rotation-aaaaaaaaaaaa");
    let waiting = request(RequestKind::CaRetire, "ca-rotation-bbbbbbbbbbbb");
    let used = request(RequestKind::CaRetire, "ca-rotation-cccccccccccc");
    for r in [&carol, &approved, &waiting, &used] {
        b.store.open_admin_request(r, now).await.unwrap();
    }
    for r in [&approved, &used] {
        assert!(
            b.store
                .approve_admin_request(&r.id, "bob", now)
                .await
                .unwrap()
        );
    }
    assert!(b.store.use_admin_request(&used.id, now).await.unwrap());
    let withdraw = || async {
        let withdrawn: Result<Vec<String>, ward_controller::store::StoreError> = b
            .store
            .write(ward_controller::store::Priority::High, move |tx| {
                Box::pin(async move { tx.withdraw_ca_rotation_requests(now).await })
            })
            .await;
        withdrawn.unwrap()
    };
    let mut expected = vec![approved.id.clone(), waiting.id.clone()];
    expected.sort();
    assert_eq!(withdraw().await, expected, "{}", b.name);
    let open: Vec<String> = b
        .store
        .list_admin_requests(now)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(open, vec![carol.id.clone()], "{}", b.name);
    assert!(
        !b.store.use_admin_request(&approved.id, now).await.unwrap(),
        "a withdrawn approval was used ({})",
        b.name
    );
    assert!(withdraw().await.is_empty(), "{}", b.name);
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::sqlite().await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::memory().await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(ward_postgres),
                ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
            )]
            async fn postgres() {
                super::$name(super::postgres().await).await
            }
        }
    )*};
}

on_every_backend!(
    a_token_is_redeemed_exactly_once_under_concurrency,
    many_tokens_are_redeemed_in_one_job_each_claim_with_its_own_outcome,
    commands_are_idempotent_and_change_only_by_compare_and_set,
    concurrent_audit_appends_form_one_linear_chain,
    policies_get_increasing_revisions_and_revocation_is_recorded,
    posture_columns_round_trip_and_a_retired_device_stays_retired,
    a_failing_change_fails_alone_and_the_rest_of_its_batch_commits,
    a_withdrawn_token_is_refused_whatever_the_redeeming_clock_says,
    admin_requests_are_open_once_per_name_approved_once_and_used_once,
    a_rotation_step_withdraws_every_open_forced_step_request,
    only_usable_tokens_are_listed_and_one_can_be_withdrawn,
    a_renewal_is_pending_until_used_and_the_key_history_is_kept,
    every_other_renewal_is_revoked_by_one_switch,
    an_admin_certificate_a_renewal_replaced_keeps_its_connections_until_the_admin_is_revoked,
    only_queued_commands_past_their_deadline_are_found_for_the_sweep,
    only_succeeded_wipes_and_retirements_show_a_messaging_wipe,
    an_export_cursor_starts_at_zero_and_never_moves_back,
    scim_clients_and_directory_users_round_trip,
    a_check_in_is_written_whole_and_only_for_an_active_device,
    many_check_ins_are_written_together_each_for_its_own_device,
    many_commands_are_inserted_at_once_each_key_once,
    check_ins_on_every_lane_and_audited_changes_keep_one_chain,
    a_users_device_briefs_are_read_in_the_listing_order,
    a_compare_and_set_misses_a_command_edited_to_another_device_or_action,
    many_devices_are_revoked_at_once_each_with_its_own_certificates,
);

/// Someone with the database writes a command's delivery count out of the range the
/// controller reads (it reads such a count as `u32::MAX`): a compare-and-set from what was
/// read must still match, or the command can never again be delivered, finished or
/// cancelled ("kept changing under concurrent updates" at every try).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_count_out_of_range_does_not_freeze_its_command() {
    use ward_controller::store::Priority;
    let b = sqlite().await;
    let device = enrolled(&b.store, 1).await;
    let (one, _) = b
        .store
        .insert_command(&command(device, "k1"))
        .await
        .unwrap();
    let (two, _) = b
        .store
        .insert_command(&command(device, "k2"))
        .await
        .unwrap();
    let path = b._dir.as_ref().unwrap().path().join("ward.db");
    let ids = [one.id.to_string(), two.id.to_string()];
    tokio::task::spawn_blocking(move || {
        let db = rusqlite::Connection::open(path).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        for (id, count) in ids.iter().zip([-1_i64, 1_i64 << 40]) {
            db.execute(
                "UPDATE commands SET deliveries = ?1 WHERE id = ?2",
                rusqlite::params![count, id],
            )
            .unwrap();
        }
    })
    .await
    .unwrap();
    let now = Timestamp::from_unix_ms(6);

    let one = b.store.get_command(one.id).await.unwrap().unwrap();
    assert_eq!(one.deliveries, u32::MAX);
    let cancelled = one.apply(&Event::Cancelled, now).unwrap();
    assert!(
        b.store
            .update_command(one.version(), &cancelled)
            .await
            .unwrap(),
        "the compare-and-set from the count as read missed"
    );

    let two = b.store.get_command(two.id).await.unwrap().unwrap();
    let delivered = two.apply(&Event::Delivered, now).unwrap();
    let changes = vec![(two.version(), delivered)];
    let written = b
        .store
        .write(Priority::High, move |tx| {
            let changes = changes.clone();
            Box::pin(async move { tx.update_commands(&changes).await })
        })
        .await
        .unwrap();
    assert_eq!(
        written,
        [two.id],
        "the compare-and-set of many from the count as read missed"
    );
}

/// Someone with the database writes a value of another type into a device's key history (SQLite
/// keeps what it is given), or text that is not UTF-8: reading it is the row's failure,
/// `Corrupt`, not the database's, whether the driver meets it reading the column or
/// fetching the row. The receipts' key reads split a batch only for `Corrupt` (lane.rs), so
/// that an unreadable history fails only its own device's receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_history_edited_to_another_type_reads_as_corrupt() {
    use ward_controller::store::StoreError;
    let b = sqlite().await;
    let number = enrolled(&b.store, 1).await;
    let bytes = enrolled(&b.store, 2).await;
    let intact = enrolled(&b.store, 3).await;
    let path = b._dir.as_ref().unwrap().path().join("ward.db");
    let ids = (number.to_string(), bytes.to_string());
    tokio::task::spawn_blocking(move || {
        let db = rusqlite::Connection::open(path).unwrap();
        db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        db.execute(
            "UPDATE device_keys SET issued_at = 'yesterday' WHERE device_id = ?1",
            rusqlite::params![ids.0],
        )
        .unwrap();
        db.execute(
            "UPDATE device_keys SET serial = CAST(x'ff' AS TEXT) WHERE device_id = ?1",
            rusqlite::params![ids.1],
        )
        .unwrap();
    })
    .await
    .unwrap();

    for edited in [number, bytes] {
        let read = b.store.device_keys_of(&[edited, intact]).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
    }
    let alone = b.store.device_keys_of(&[intact]).await.unwrap();
    assert_eq!(alone[&intact].len(), 1, "the intact history reads alone");
}

/// Two replicas on one PostgreSQL database (READ COMMITTED): a redelivery the other replica
/// commits between a job's read of a command and its compare-and-set (a device's result
/// finishing it, as `finish_command` does) is not overwritten with the delivery count the job
/// read. The job's write misses, and the job, run again from a fresh read, keeps both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn a_redelivery_committed_between_a_jobs_read_and_its_write_is_kept() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use ward_controller::store::Priority;
    let b = postgres().await;
    let url = b._pg.as_ref().unwrap().url.clone();
    let other: Arc<dyn Store> = Arc::new(SqlStore::connect_postgres(&url).await.unwrap());
    let at = Timestamp::from_unix_ms;
    let device = enrolled(&b.store, 1).await;
    let (stored, _) = b
        .store
        .insert_command(&command(device, "k1"))
        .await
        .unwrap();
    let delivered = stored.apply(&Event::Delivered, at(6)).unwrap();
    assert!(
        b.store
            .update_command(stored.version(), &delivered)
            .await
            .unwrap()
    );
    let acked = delivered.apply(&Event::Acknowledged, at(7)).unwrap();
    assert!(
        b.store
            .update_command(delivered.version(), &acked)
            .await
            .unwrap()
    );
    let id = acked.id;

    let interleaved = Arc::new(AtomicBool::new(false));
    let mut finished = false;
    for _ in 0..3 {
        let (other, interleaved) = (other.clone(), interleaved.clone());
        let written: bool = b
            .store
            .write(Priority::High, move |tx| {
                let (other, interleaved) = (other.clone(), interleaved.clone());
                Box::pin(async move {
                    let current = tx.command(id).await?.expect("the command exists");
                    if !interleaved.swap(true, Ordering::SeqCst) {
                        // The other replica redelivers it (the device reconnected there),
                        // and commits, while this job's transaction is open.
                        let again = current.apply(&Event::Delivered, at(8)).unwrap();
                        assert!(other.update_command(current.version(), &again).await?);
                    }
                    let next = current.apply(&Event::Succeeded, at(9)).unwrap();
                    tx.update_command(current.version(), &next).await
                })
            })
            .await
            .unwrap();
        if written {
            finished = true;
            break;
        }
    }
    assert!(finished, "the job never wrote");
    let after = b.store.get_command(id).await.unwrap().unwrap();
    assert_eq!(after.state, CommandState::Succeeded);
    assert_eq!(
        after.deliveries, 2,
        "the redelivery committed meanwhile was overwritten with the count the job read"
    );
}

/// Behaviours that need a fresh store more than once: each gets the backend's constructor.
macro_rules! on_fresh_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::memory).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(ward_postgres),
                ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
            )]
            async fn postgres() {
                super::$name(super::postgres).await
            }
        }
    )*};
}

on_fresh_backends!(of_two_admins_revoking_each_other_at_once_one_remains);

fn device(id: DeviceId) -> NewDevice {
    NewDevice {
        id,
        facts: DeviceFacts {
            hostname: "h".into(),
            ..DeviceFacts::default()
        },
        public_key_der: vec![1, 2, 3],
        certificate: CertificateRecord {
            serial: format!("serial-{id}"),
            subject: format!("ward://device/{id}"),
            not_before: Timestamp::from_unix_ms(0),
            not_after: Timestamp::from_unix_ms(i64::MAX / 2),
            issued_at: Timestamp::from_unix_ms(0),
            revoked_at: None,
            der: None,
        },
    }
}

fn token(hash: u8, expires: i64) -> TokenRecord {
    TokenRecord {
        hash: TokenHash([hash; 32]),
        user: "a@h.org".parse().unwrap(),
        created_at: Timestamp::from_unix_ms(0),
        expires_at: Timestamp::from_unix_ms(expires),
        created_by: "admin".into(),
        used_at: None,
        device_id: None,
        withdrawn_at: None,
    }
}

async fn enrolled(store: &Arc<dyn Store>, tag: u8) -> DeviceId {
    store.insert_token(&token(tag, 1_000)).await.unwrap();
    let id = DeviceId::new_random();
    assert!(matches!(
        store
            .redeem_token(
                &TokenHash([tag; 32]),
                Timestamp::from_unix_ms(1),
                &device(id)
            )
            .await
            .unwrap(),
        Redemption::Enrolled { .. }
    ));
    id
}

fn command(device: DeviceId, key: &str) -> Command {
    Command {
        id: CommandId::new_random(),
        device_id: device,
        kind: CommandKind::Wipe {
            scope: WipeScope::Messaging,
        },
        state: CommandState::Queued,
        reason: "r".into(),
        failure_reason: None,
        idempotency_key: key.into(),
        created_by: "admin".into(),
        created_at: Timestamp::from_unix_ms(5),
        deadline: None,
        delivered_at: None,
        acknowledged_at: None,
        finished_at: None,
        deliveries: 0,
        receipt: None,
        approved_by: None,
        revoke_after: false,
    }
}

/// What an offboarding decides by and reports: each of the user's devices in brief (id, host
/// name, state), in the order the device listing gives them, and nobody else's; inside a job
/// and out of one.
async fn a_users_device_briefs_are_read_in_the_listing_order(b: Backend) {
    let mut ids = Vec::new();
    for tag in 1..=4 {
        ids.push(enrolled(&b.store, tag).await);
    }
    let revoked = ids[2];
    b.store
        .write(ward_controller::store::Priority::High, move |tx| {
            Box::pin(async move { tx.revoke_device(revoked, Timestamp::from_unix_ms(9)).await })
        })
        .await
        .unwrap();
    let user: ward_controller::core::UserEmail = "a@h.org".parse().unwrap();
    let listed: Vec<DeviceBrief> = b
        .store
        .list_devices(Some(&user))
        .await
        .unwrap()
        .iter()
        .map(DeviceBrief::from)
        .collect();
    let in_job = b
        .store
        .write(ward_controller::store::Priority::High, {
            let user = user.clone();
            move |tx| {
                let user = user.clone();
                Box::pin(async move { tx.device_briefs(&user).await })
            }
        })
        .await
        .unwrap();
    assert_eq!(in_job, listed, "{}", b.name);
    assert_eq!(
        b.store.device_briefs(&user).await.unwrap(),
        listed,
        "{}",
        b.name
    );
    assert_eq!(listed.len(), 4, "{}", b.name);
    assert!(listed.iter().all(|d| d.hostname == "h"), "{}", b.name);
    assert_eq!(
        listed
            .iter()
            .filter(|d| d.state == DeviceState::Revoked)
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        vec![revoked],
        "{}",
        b.name
    );
    let nobody: ward_controller::core::UserEmail = "b@h.org".parse().unwrap();
    assert!(
        b.store.device_briefs(&nobody).await.unwrap().is_empty(),
        "{}",
        b.name
    );
}

async fn a_token_is_redeemed_exactly_once_under_concurrency(b: Backend) {
    b.store.insert_token(&token(7, 1_000)).await.unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let store = b.store.clone();
            tokio::spawn(async move {
                store
                    .redeem_token(
                        &TokenHash([7; 32]),
                        Timestamp::from_unix_ms(10),
                        &device(DeviceId::new_random()),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut enrolled = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Redemption::Enrolled { .. }) {
            enrolled += 1;
        }
    }
    assert_eq!(enrolled, 1, "{}", b.name);
    assert_eq!(
        b.store.list_devices(None).await.unwrap().len(),
        1,
        "{}",
        b.name
    );
    // Expired and unknown tokens are refused.
    b.store.insert_token(&token(8, 5)).await.unwrap();
    let r = b
        .store
        .redeem_token(
            &TokenHash([8; 32]),
            Timestamp::from_unix_ms(10),
            &device(DeviceId::new_random()),
        )
        .await
        .unwrap();
    assert!(matches!(r, Redemption::Refused(_)), "{}", b.name);
    let r = b
        .store
        .redeem_token(
            &TokenHash([9; 32]),
            Timestamp::from_unix_ms(10),
            &device(DeviceId::new_random()),
        )
        .await
        .unwrap();
    assert_eq!(r, Redemption::Unknown, "{}", b.name);
}

/// An enrollment batch's claims in one job ([`Tx::redeem_tokens`]), past one statement's
/// rows: each usable token enrolls its claim's device (with its certificate and key in use
/// from the claim's time), and every other claim gets `None` and writes nothing: a token
/// expired at its claim's time, one already used, one withdrawn, one nobody made, and a
/// token claimed a second time in the same call (the first claim takes it, also when the
/// two are in different statements).
async fn many_tokens_are_redeemed_in_one_job_each_claim_with_its_own_outcome(b: Backend) {
    use ward_controller::store::Priority;
    const USABLE: usize = 600;
    let hash = |i: usize| {
        let mut h = [0_u8; 32];
        h[..8].copy_from_slice(&(i as u64).to_be_bytes());
        h[31] = 0xee;
        TokenHash(h)
    };
    let tokens: Vec<TokenRecord> = (0..USABLE + 3)
        .map(|i| TokenRecord {
            hash: hash(i),
            // USABLE: expired before the claims' time.
            expires_at: Timestamp::from_unix_ms(if i == USABLE { 50 } else { 1_000 }),
            ..token(0, 0)
        })
        .collect();
    b.store
        .write(Priority::High, move |tx| {
            let tokens = tokens.clone();
            Box::pin(async move {
                for t in &tokens {
                    tx.insert_token(t).await?;
                }
                // USABLE + 1: withdrawn at 20 (an offboarding), claimed below with a clock
                // that says 10, before its withdrawal and its end.
                assert!(
                    tx.expire_token(&hash(USABLE + 1), Timestamp::from_unix_ms(20))
                        .await?
                );
                Ok::<_, ward_controller::store::StoreError>(())
            })
        })
        .await
        .unwrap();
    // USABLE + 2: used by an earlier enrollment.
    let earlier = DeviceId::new_random();
    assert!(matches!(
        b.store
            .redeem_token(
                &hash(USABLE + 2),
                Timestamp::from_unix_ms(10),
                &device(earlier)
            )
            .await
            .unwrap(),
        Redemption::Enrolled { .. }
    ));

    // Claims: every usable token, the three unusable ones, an unknown one, and the first
    // token again, last (another statement than its first claim).
    let mut hashes: Vec<TokenHash> = (0..USABLE + 3).map(hash).collect();
    hashes.push(hash(USABLE + 3));
    hashes.push(hash(0));
    let devices: Vec<NewDevice> = hashes
        .iter()
        .map(|_| device(DeviceId::new_random()))
        .collect();
    let (now, early) = (Timestamp::from_unix_ms(100), Timestamp::from_unix_ms(10));
    let (claims_hashes, claims_devices) = (hashes.clone(), devices.clone());
    let users = b
        .store
        .write(Priority::High, move |tx| {
            let (hashes, devices) = (claims_hashes.clone(), claims_devices.clone());
            Box::pin(async move {
                let claims: Vec<TokenClaim<'_>> = hashes
                    .iter()
                    .zip(&devices)
                    .enumerate()
                    .map(|(i, (hash, device))| TokenClaim {
                        hash,
                        device,
                        now: if i == USABLE + 1 { early } else { now },
                    })
                    .collect();
                tx.redeem_tokens(&claims).await
            })
        })
        .await
        .unwrap();
    assert_eq!(users.len(), hashes.len(), "{}", b.name);
    let user: ward_controller::core::UserEmail = "a@h.org".parse().unwrap();
    for (i, got) in users.iter().enumerate() {
        let expected = (i < USABLE).then(|| user.clone());
        assert_eq!(got, &expected, "{}: claim {i}", b.name);
    }

    let mut stored: Vec<DeviceId> = b
        .store
        .list_devices(None)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    stored.sort_unstable();
    let mut expected: Vec<DeviceId> = devices[..USABLE].iter().map(|d| d.id).collect();
    expected.push(earlier);
    expected.sort_unstable();
    assert_eq!(
        stored, expected,
        "{}: only the claims that took a token",
        b.name
    );
    for (i, d) in devices.iter().enumerate().take(USABLE).step_by(97) {
        let token = b.store.find_token(&hash(i)).await.unwrap().unwrap();
        assert_eq!(token.device_id, Some(d.id), "{}", b.name);
        assert_eq!(token.used_at, Some(now), "{}", b.name);
        let stored = b.store.get_device(d.id).await.unwrap().unwrap();
        assert_eq!(stored.enrolled_at, now, "{}", b.name);
        assert_eq!(
            stored.certificate_serial, d.certificate.serial,
            "{}",
            b.name
        );
        let keys = b.store.device_keys(d.id).await.unwrap();
        assert_eq!(keys.len(), 1, "{}", b.name);
        assert_eq!(keys[0].serial, d.certificate.serial, "{}", b.name);
        assert_eq!(keys[0].in_use_at, Some(now), "{}", b.name);
        assert!(
            b.store
                .get_certificate(&d.certificate.serial)
                .await
                .unwrap()
                .is_some(),
            "{}",
            b.name
        );
    }
    // The unusable tokens are as they were.
    let expired = b.store.find_token(&hash(USABLE)).await.unwrap().unwrap();
    assert_eq!(
        (expired.used_at, expired.device_id),
        (None, None),
        "{}",
        b.name
    );
    let withdrawn = b
        .store
        .find_token(&hash(USABLE + 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (withdrawn.used_at, withdrawn.device_id),
        (None, None),
        "{}",
        b.name
    );
    let used = b
        .store
        .find_token(&hash(USABLE + 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.device_id, Some(earlier), "{}", b.name);
    assert!(
        b.store
            .find_token(&hash(USABLE + 3))
            .await
            .unwrap()
            .is_none(),
        "{}",
        b.name
    );
}

/// What `device list` reads to show that a device's messaging data was wiped: the wipes and
/// retirements that succeeded, of one device or of all, nothing else.
async fn only_succeeded_wipes_and_retirements_show_a_messaging_wipe(b: Backend) {
    let (one, two) = (enrolled(&b.store, 1).await, enrolled(&b.store, 2).await);
    let insert = |device, key: &'static str, kind: CommandKind, state| {
        let store = b.store.clone();
        async move {
            let c = Command {
                kind,
                state,
                ..command(device, key)
            };
            store.insert_command(&c).await.unwrap().0.id
        }
    };
    let messaging = CommandKind::Wipe {
        scope: WipeScope::Messaging,
    };
    let full = CommandKind::Wipe {
        scope: WipeScope::Full,
    };
    let lock = CommandKind::Lock {
        message: String::new(),
    };
    let wiped = insert(one, "w1", messaging.clone(), CommandState::Succeeded).await;
    insert(one, "w-failed", messaging.clone(), CommandState::Failed).await;
    insert(one, "w-queued", messaging, CommandState::Queued).await;
    insert(one, "lock", lock, CommandState::Succeeded).await;
    let retired = insert(two, "r2", CommandKind::Retire, CommandState::Succeeded).await;
    let erased = insert(two, "f2", full, CommandState::Succeeded).await;
    let ids = |found: Vec<Command>| {
        let mut ids: Vec<String> = found.iter().map(|c| c.id.to_string()).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<CommandId>| {
        v.sort_by_key(ToString::to_string);
        v.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(b.store.succeeded_wipes(Some(one)).await.unwrap()),
        sorted(vec![wiped]),
        "{}",
        b.name
    );
    assert_eq!(
        ids(b.store.succeeded_wipes(None).await.unwrap()),
        sorted(vec![wiped, retired, erased]),
        "{}",
        b.name
    );
}

/// The time-to-live sweep's read: queued commands whose deadline has passed, nothing else.
async fn only_queued_commands_past_their_deadline_are_found_for_the_sweep(b: Backend) {
    let id = enrolled(&b.store, 1).await;
    let lock = |key: &str, deadline: Option<i64>| Command {
        kind: CommandKind::Lock {
            message: String::new(),
        },
        deadline: deadline.map(Timestamp::from_unix_ms),
        ..command(id, key)
    };
    let (due, _) = b
        .store
        .insert_command(&lock("due", Some(100)))
        .await
        .unwrap();
    b.store
        .insert_command(&lock("later", Some(500)))
        .await
        .unwrap();
    b.store.insert_command(&lock("never", None)).await.unwrap();
    let at = |ms| Timestamp::from_unix_ms(ms);
    assert!(
        b.store
            .commands_past_deadline(at(99))
            .await
            .unwrap()
            .is_empty(),
        "{}",
        b.name
    );
    let found: Vec<CommandId> = b
        .store
        .commands_past_deadline(at(100))
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(found, vec![due.id], "{}", b.name);
}

/// Writes `next` over the stored command if it still has `expected`'s version.
async fn compare_and_set(b: &Backend, expected: &Command, next: &Command) -> bool {
    b.store
        .update_command(expected.version(), next)
        .await
        .unwrap()
}

async fn commands_are_idempotent_and_change_only_by_compare_and_set(b: Backend) {
    let id = enrolled(&b.store, 1).await;
    let first = command(id, "k1");
    let (stored, created) = b.store.insert_command(&first).await.unwrap();
    assert!(created, "{}", b.name);
    let (again, created) = b.store.insert_command(&command(id, "k1")).await.unwrap();
    assert!(!created, "{}", b.name);
    assert_eq!(again.id, stored.id, "{}", b.name);

    let delivered = stored
        .apply(&Event::Delivered, Timestamp::from_unix_ms(6))
        .unwrap();
    assert!(compare_and_set(&b, &stored, &delivered).await, "{}", b.name);
    // A stale writer loses.
    assert!(
        !compare_and_set(&b, &stored, &delivered).await,
        "{}",
        b.name
    );
    // So does one that read before a redelivery, which kept the state: it would write back
    // the delivery count it read.
    let redelivered = delivered
        .apply(&Event::Delivered, Timestamp::from_unix_ms(6))
        .unwrap();
    assert!(
        compare_and_set(&b, &delivered, &redelivered).await,
        "{}",
        b.name
    );
    let stale = delivered
        .apply(&Event::Acknowledged, Timestamp::from_unix_ms(7))
        .unwrap();
    assert!(
        !compare_and_set(&b, &delivered, &stale).await,
        "a write from before the redelivery won ({})",
        b.name
    );
    let expected = delivered.version();
    let written: Vec<CommandId> = b
        .store
        .write(ward_controller::store::Priority::High, move |tx| {
            let stale = stale.clone();
            Box::pin(async move { tx.update_commands(&[(expected, stale)]).await })
        })
        .await
        .map_err(|e: ward_controller::store::StoreError| e)
        .unwrap();
    assert!(
        written.is_empty(),
        "a write of many from before the redelivery won ({})",
        b.name
    );
    let delivered = redelivered;
    assert_eq!(
        b.store.unfinished_commands(id).await.unwrap().len(),
        1,
        "{}",
        b.name
    );
    let acked = delivered
        .apply(&Event::Acknowledged, Timestamp::from_unix_ms(7))
        .unwrap();
    let done = acked
        .apply(
            &Event::Failed { reason: "x".into() },
            Timestamp::from_unix_ms(8),
        )
        .unwrap();
    assert!(compare_and_set(&b, &delivered, &acked).await);
    assert!(compare_and_set(&b, &acked, &done).await);
    assert!(
        b.store.unfinished_commands(id).await.unwrap().is_empty(),
        "{}",
        b.name
    );
    let listed = b
        .store
        .list_commands(Some(id), Some(CommandState::Failed))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{}", b.name);
    assert_eq!(
        b.store.get_command(stored.id).await.unwrap().unwrap(),
        done,
        "{}",
        b.name
    );
    assert_eq!(
        b.store.command_by_key("k1").await.unwrap().unwrap().id,
        stored.id
    );
}

/// What the controller writes after a device's acknowledgement or result was judged on the
/// command it delivered: if the row names another device or another action since (only a
/// hand edit of the database does that), the write misses, alone and among many, so one
/// device's receipt never finishes another's wipe and a lock's success is never a wipe's.
async fn a_compare_and_set_misses_a_command_edited_to_another_device_or_action(b: Backend) {
    let (alice, bob) = (enrolled(&b.store, 1).await, enrolled(&b.store, 2).await);
    let now = Timestamp::from_unix_ms(6);
    let (wipe, _) = b.store.insert_command(&command(alice, "w")).await.unwrap();
    let mut lock = command(alice, "l");
    lock.kind = CommandKind::Lock {
        message: "call IT".into(),
    };
    let (lock, _) = b.store.insert_command(&lock).await.unwrap();

    let mut edits = Vec::new();
    for stored in [&wipe, &lock] {
        let delivered = stored.apply(&Event::Delivered, now).unwrap();
        let mut moved = delivered.clone();
        moved.device_id = bob;
        edits.push((stored.version(), moved));
        for kind in [
            CommandKind::Wipe {
                scope: WipeScope::Full,
            },
            CommandKind::Lock {
                message: "other".into(),
            },
            CommandKind::Unlock,
        ] {
            if kind != stored.kind {
                let mut relabelled = delivered.clone();
                relabelled.kind = kind;
                edits.push((stored.version(), relabelled));
            }
        }
    }
    for (expected, edited) in &edits {
        assert!(
            !b.store.update_command(*expected, edited).await.unwrap(),
            "written over as {:?} for {} ({})",
            edited.kind,
            edited.device_id,
            b.name
        );
    }
    let many = edits.clone();
    let written: Vec<CommandId> = b
        .store
        .write(ward_controller::store::Priority::High, move |tx| {
            let many = many.clone();
            Box::pin(async move { tx.update_commands(&many).await })
        })
        .await
        .unwrap();
    assert!(written.is_empty(), "{}: {written:?}", b.name);
    assert_eq!(b.store.get_command(wipe.id).await.unwrap().unwrap(), wipe);
    assert_eq!(b.store.get_command(lock.id).await.unwrap().unwrap(), lock);

    // The same writes as the rows stand go through, one alone and one among many.
    let delivered = wipe.apply(&Event::Delivered, now).unwrap();
    assert!(compare_and_set(&b, &wipe, &delivered).await, "{}", b.name);
    let expected = lock.version();
    let delivered = lock.apply(&Event::Delivered, now).unwrap();
    let written: Vec<CommandId> = b
        .store
        .write(ward_controller::store::Priority::High, move |tx| {
            let changes = [(expected, delivered.clone())];
            Box::pin(async move { tx.update_commands(&changes).await })
        })
        .await
        .unwrap();
    assert_eq!(written, [lock.id], "{}", b.name);
}

/// Wipes finishing together revoke their devices a few statements at a time: each device
/// found is revoked with exactly its own certificates (a retired one stays retired), an
/// unknown one is left out, and one named twice has its serials once.
async fn many_devices_are_revoked_at_once_each_with_its_own_certificates(b: Backend) {
    let mut ids = Vec::new();
    for tag in 1..=3 {
        ids.push(enrolled(&b.store, tag).await);
    }
    assert!(
        b.store
            .set_device_state(ids[2], DeviceState::Retired)
            .await
            .unwrap()
    );
    let unknown = DeviceId::new_random();
    let asked = vec![ids[0], unknown, ids[1], ids[0], ids[2]];
    let now = Timestamp::from_unix_ms(9);
    let revoke = |asked: Vec<DeviceId>| {
        b.store
            .write(ward_controller::store::Priority::High, move |tx| {
                let asked = asked.clone();
                Box::pin(async move { tx.revoke_devices(&asked, now).await })
            })
    };
    let revoked = revoke(asked).await.unwrap();
    assert_eq!(revoked.len(), 3, "{}: {revoked:?}", b.name);
    assert!(!revoked.contains_key(&unknown), "{}", b.name);
    for id in &ids {
        assert_eq!(revoked[id], [format!("serial-{id}")], "{}", b.name);
    }
    let states: Vec<DeviceState> = {
        let mut states = Vec::new();
        for id in &ids {
            states.push(b.store.get_device(*id).await.unwrap().unwrap().state);
        }
        states
    };
    assert_eq!(
        states,
        [
            DeviceState::Revoked,
            DeviceState::Revoked,
            DeviceState::Retired
        ],
        "{}",
        b.name
    );
    let listed = b.store.revoked_serials(now).await.unwrap();
    for id in &ids {
        assert!(listed.contains(&format!("serial-{id}")), "{}", b.name);
    }
    // Again: found, nothing newly revoked.
    let again = revoke(vec![ids[0]]).await.unwrap();
    assert_eq!(again.get(&ids[0]), Some(&Vec::new()), "{}", b.name);
}

async fn concurrent_audit_appends_form_one_linear_chain(b: Backend) {
    b.store
        .append_audit(
            &genesis_event("sha256:test", &[1; 16], GenesisOrigin::Init),
            Timestamp::from_unix_ms(0),
            &|_: &[u8]| Ok(vec![1]),
            &|_: &[u8], _: &[u8]| true,
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let store = b.store.clone();
            tokio::spawn(async move {
                let event = AuditEvent {
                    actor: "a".into(),
                    action: "x".into(),
                    target: format!("t{i}"),
                    details: serde_json::json!({ "i": i }),
                };
                store
                    .append_audit(
                        &event,
                        Timestamp::from_unix_ms(i),
                        &|_: &[u8]| Ok(vec![1]),
                        &|_: &[u8], _: &[u8]| true,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let entries = b.store.list_audit(&AuditFilter::default()).await.unwrap();
    let head = b.store.audit_head().await.unwrap();
    let v = verify(&entries, &head, |_| true);
    assert!(v.ok, "{}: {v:?}", b.name);
    assert_eq!(v.entries, 31, "{}", b.name);

    // Paging: pages of 7 after the last seq seen give every entry once, in order.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = b
            .store
            .list_audit(&AuditFilter {
                after_seq: Some(after),
                limit: Some(7),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert!(page.len() <= 7, "{}", b.name);
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, entries, "{}", b.name);
}

async fn policies_get_increasing_revisions_and_revocation_is_recorded(b: Backend) {
    let p1 = b
        .store
        .put_policy(
            &PolicyScope::Default,
            &PolicyBody::Full(Policy::default()),
            "a",
            Timestamp::from_unix_ms(1),
        )
        .await
        .unwrap();
    let user = PolicyScope::User("u@h.org".parse().unwrap());
    let p2 = b
        .store
        .put_policy(
            &user,
            &PolicyBody::Override {
                fields: PolicyChanges {
                    require_disk_encryption: Some(true),
                    ..PolicyChanges::default()
                },
            },
            "a",
            Timestamp::from_unix_ms(2),
        )
        .await
        .unwrap();
    let p3 = b
        .store
        .put_policy(
            &PolicyScope::Default,
            &PolicyBody::Full(Policy {
                auto_lock_seconds: 60,
                ..Policy::default()
            }),
            "a",
            Timestamp::from_unix_ms(3),
        )
        .await
        .unwrap();
    assert!(
        p1.revision < p2.revision && p2.revision < p3.revision,
        "{}",
        b.name
    );
    assert_eq!(
        b.store.get_policy(&user).await.unwrap().unwrap().body,
        PolicyBody::Override {
            fields: PolicyChanges {
                require_disk_encryption: Some(true),
                ..PolicyChanges::default()
            },
        },
        "{}: an override keeps only the fields it sets",
        b.name
    );
    assert_eq!(
        b.store.list_policies().await.unwrap().len(),
        2,
        "{}",
        b.name
    );
    assert!(b.store.delete_policy(&user).await.unwrap());
    assert!(!b.store.delete_policy(&user).await.unwrap());

    let id = enrolled(&b.store, 2).await;
    let revoked = b
        .store
        .revoke_device(id, Timestamp::from_unix_ms(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(revoked, vec![format!("serial-{id}")], "{}", b.name);
    assert_eq!(
        b.store
            .revoked_serials(Timestamp::from_unix_ms(11))
            .await
            .unwrap(),
        revoked
    );
    assert!(
        b.store
            .revoke_device(DeviceId::new_random(), Timestamp::from_unix_ms(10))
            .await
            .unwrap()
            .is_none()
    );
}

async fn posture_columns_round_trip_and_a_retired_device_stays_retired(b: Backend) {
    use ward_controller::core::posture::{Filesystem, PackageCount};
    use ward_controller::core::{DeviceState, Disabled, Inventory};
    use ward_controller::store::PostureField;
    let id = enrolled(&b.store, 3).await;
    let fresh = b.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(
        (fresh.inventory, fresh.disabled, fresh.enforcement.len()),
        (None, None, 0),
        "{}",
        b.name
    );
    let inventory = Inventory {
        cpu_model: "AMD EPYC".into(),
        cpu_count: 2,
        memory_bytes: 1 << 34,
        packages: vec![PackageCount {
            manager: "dpkg".into(),
            count: 754,
        }],
        filesystems: vec![Filesystem {
            mount_point: "/".into(),
            fs_type: "ext4".into(),
            source: "/dev/vda".into(),
            encryption: "not encrypted".into(),
        }],
        ..Inventory::default()
    };
    let disabled = Disabled {
        reason: "mislaid".into(),
        at: 5,
        by: "admin".into(),
        command_id: "c".into(),
    };
    for (field, value) in [
        (
            PostureField::Inventory,
            serde_json::to_string(&inventory).unwrap(),
        ),
        (
            PostureField::Disabled,
            serde_json::to_string(&disabled).unwrap(),
        ),
    ] {
        assert!(
            b.store
                .set_device_posture(id, field, Some(&value))
                .await
                .unwrap()
        );
    }
    let stored = b.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(stored.inventory.as_ref(), Some(&inventory), "{}", b.name);
    assert_eq!(stored.disabled.as_ref(), Some(&disabled), "{}", b.name);
    assert!(
        b.store
            .set_device_posture(id, PostureField::Disabled, None)
            .await
            .unwrap()
    );
    assert_eq!(
        b.store.get_device(id).await.unwrap().unwrap().disabled,
        None
    );
    assert!(
        !b.store
            .set_device_posture(DeviceId::new_random(), PostureField::Inventory, Some("{}"))
            .await
            .unwrap(),
        "an unknown device is reported, not created"
    );

    // Compare-and-set: only from the value the caller saw.
    let d = serde_json::to_string(&disabled).unwrap();
    let swap = |expected: Option<String>, new: Option<String>| {
        let store = b.store.clone();
        async move {
            store
                .swap_device_posture(
                    id,
                    PostureField::Disabled,
                    expected.as_deref(),
                    new.as_deref(),
                )
                .await
                .unwrap()
        }
    };
    assert!(swap(None, Some(d.clone())).await, "{}", b.name);
    assert!(
        !swap(None, Some(d.clone())).await,
        "{}: NULL expected",
        b.name
    );
    assert!(
        !swap(Some("{}".into()), None).await,
        "{}: other value expected",
        b.name
    );
    assert!(swap(Some(d.clone()), None).await, "{}", b.name);
    assert_eq!(
        b.store.get_device(id).await.unwrap().unwrap().disabled,
        None
    );

    // Retired after its revocation; a later revocation leaves it retired.
    b.store
        .revoke_device(id, Timestamp::from_unix_ms(10))
        .await
        .unwrap();
    assert!(
        b.store
            .set_device_state(id, DeviceState::Retired)
            .await
            .unwrap()
    );
    b.store
        .revoke_device(id, Timestamp::from_unix_ms(11))
        .await
        .unwrap();
    let retired = b.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(retired.state, DeviceState::Retired, "{}", b.name);
    assert_eq!(
        retired.inventory.as_ref(),
        Some(&inventory),
        "the record stays"
    );
}

async fn a_failing_change_fails_alone_and_the_rest_of_its_batch_commits(b: Backend) {
    use ward_controller::store::{Priority, StoreError};
    {
        let device = enrolled(&b.store, 90).await;
        b.store.insert_token(&token(91, 1_000)).await.unwrap();
        let batches_before = b
            .store
            .writer()
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut tasks = Vec::new();
        for i in 0..40u32 {
            let store = b.store.clone();
            tasks.push(tokio::spawn(async move {
                let c = command(device, &format!("batch-{i}"));
                store
                    .write(Priority::High, move |tx| {
                        let c = c.clone();
                        Box::pin(async move {
                            match i {
                                // Writes, then fails: its write must not survive.
                                7 => {
                                    tx.insert_command(&c).await?;
                                    Err(StoreError::Corrupt("job 7 refuses".into()))
                                }
                                // The database refuses it (a token that exists already).
                                13 => tx.insert_token(&token(91, 1_000)).await.map(|()| c),
                                _ => tx.insert_command(&c).await.map(|(c, _)| c),
                            }
                        })
                    })
                    .await
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        for (i, answer) in answers.iter().enumerate() {
            match i {
                7 => assert!(
                    matches!(answer, Err(StoreError::Corrupt(m)) if m == "job 7 refuses"),
                    "{}: job 7 gets its own error: {answer:?}",
                    b.name
                ),
                13 => assert!(answer.is_err(), "{}: the duplicate token fails", b.name),
                _ => assert!(answer.is_ok(), "{}: job {i}: {answer:?}", b.name),
            }
        }
        assert!(
            b.store.command_by_key("batch-7").await.unwrap().is_none(),
            "{}: the failed job's write was rolled back",
            b.name
        );
        for i in (0..40).filter(|i| ![7, 13].contains(i)) {
            assert!(
                b.store
                    .command_by_key(&format!("batch-{i}"))
                    .await
                    .unwrap()
                    .is_some(),
                "{}: job {i} committed",
                b.name
            );
        }
        let batches = b
            .store
            .writer()
            .stats()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
            - batches_before;
        assert!(
            batches < 38,
            "{}: 38 changes committed in {batches} transactions: they were grouped",
            b.name
        );
    }
}

async fn a_withdrawn_token_is_refused_whatever_the_redeeming_clock_says(b: Backend) {
    b.store.insert_token(&token(1, 1_000)).await.unwrap();
    // Already expired by the offboarding's clock, not by a slow enrollment's.
    b.store.insert_token(&token(2, 300)).await.unwrap();
    let user = "a@h.org".parse().unwrap();
    let withdrawn = b
        .store
        .expire_unused_tokens(&user, Timestamp::from_unix_ms(500))
        .await
        .unwrap();
    assert_eq!(
        withdrawn, 1,
        "{}: only unexpired tokens are counted",
        b.name
    );
    for tag in [1, 2] {
        // An enrollment that read the clock before the offboarding.
        let outcome = b
            .store
            .redeem_token(
                &TokenHash([tag; 32]),
                Timestamp::from_unix_ms(100),
                &device(DeviceId::new_random()),
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Redemption::Refused(ward_controller::core::TokenStatus::Withdrawn),
            "{}: token {tag}",
            b.name
        );
    }
    assert!(b.store.list_devices(None).await.unwrap().is_empty());
    // Withdrawing again finds nothing more.
    assert_eq!(
        b.store
            .expire_unused_tokens(&user, Timestamp::from_unix_ms(600))
            .await
            .unwrap(),
        0
    );
}

fn admin_certificate(name: &str, serial: &str) -> CertificateRecord {
    CertificateRecord {
        serial: serial.into(),
        subject: format!("ward://admin/{name}"),
        not_before: Timestamp::from_unix_ms(0),
        not_after: Timestamp::from_unix_ms(i64::MAX / 2),
        issued_at: Timestamp::from_unix_ms(0),
        revoked_at: None,
        der: None,
    }
}

async fn of_two_admins_revoking_each_other_at_once_one_remains<F, Fut>(backend: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Backend>,
{
    use ward_controller::core::admins::RevokeOutcome;
    use ward_controller::core::{Admin, AdminRole};
    for _ in 0..5 {
        {
            let b = backend().await;
            for name in ["x", "y"] {
                let admin = Admin::new(
                    name.parse().unwrap(),
                    AdminRole::Admin,
                    Timestamp::from_unix_ms(0),
                    "init",
                );
                b.store
                    .insert_admin(&admin, &admin_certificate(name, &format!("s-{name}")))
                    .await
                    .unwrap();
            }
            let now = Timestamp::from_unix_ms(1);
            let (s1, s2) = (b.store.clone(), b.store.clone());
            let (x, y) = ("x".parse().unwrap(), "y".parse().unwrap());
            let (r1, r2) = tokio::join!(
                tokio::spawn(async move { s1.revoke_admin(&x, "y", "race", now).await }),
                tokio::spawn(async move { s2.revoke_admin(&y, "x", "race", now).await }),
            );
            let outcomes = [r1.unwrap().unwrap(), r2.unwrap().unwrap()];
            let revoked = outcomes
                .iter()
                .filter(|o| matches!(o, RevokeOutcome::Revoked(serials) if serials.len() == 1))
                .count();
            assert_eq!(revoked, 1, "{}: {outcomes:?}", b.name);
            assert!(
                outcomes.contains(&RevokeOutcome::LastAdmin),
                "{}: {outcomes:?}",
                b.name
            );
            // The revoked one's certificate is on the revocation list; the other's is not.
            let listed = b.store.revoked_serials(now).await.unwrap();
            assert_eq!(listed.len(), 1, "{}: {listed:?}", b.name);
        }
    }
}

/// The old certificate of an admin who renewed is revoked (refused at every handshake and
/// call) but its open connections are kept, so the renewing call is answered; once the admin
/// is revoked, they are not.
async fn an_admin_certificate_a_renewal_replaced_keeps_its_connections_until_the_admin_is_revoked(
    b: Backend,
) {
    use ward_controller::core::{Admin, AdminRole};
    for name in ["root", "nina"] {
        let admin = Admin::new(
            name.parse().unwrap(),
            AdminRole::Admin,
            Timestamp::from_unix_ms(0),
            "init",
        );
        b.store
            .insert_admin(&admin, &admin_certificate(name, &format!("{name}-1")))
            .await
            .unwrap();
    }
    let nina = "nina".parse().unwrap();
    let now = Timestamp::from_unix_ms(10);
    let revoked = b
        .store
        .renew_admin(&nina, &admin_certificate("nina", "nina-2"), None, now)
        .await
        .unwrap();
    assert_eq!(revoked, Some(vec!["nina-1".to_owned()]), "{}", b.name);
    assert_eq!(
        b.store.revoked_serials(now).await.unwrap(),
        vec!["nina-1".to_owned()],
        "{}",
        b.name
    );
    assert_eq!(
        b.store.replaced_serials(now).await.unwrap(),
        vec!["nina-1".to_owned()],
        "{}",
        b.name
    );
    // A minute on, they are cut like any revoked certificate's.
    assert!(
        b.store
            .replaced_serials(Timestamp::from_unix_ms(10 + 60_001))
            .await
            .unwrap()
            .is_empty(),
        "{}",
        b.name
    );
    b.store
        .revoke_admin(&nina, "root", "left", Timestamp::from_unix_ms(20))
        .await
        .unwrap();
    let later = Timestamp::from_unix_ms(21);
    let mut listed = b.store.revoked_serials(later).await.unwrap();
    listed.sort();
    assert_eq!(
        listed,
        vec!["nina-1".to_owned(), "nina-2".to_owned()],
        "{}",
        b.name
    );
    assert!(
        b.store.replaced_serials(later).await.unwrap().is_empty(),
        "{}",
        b.name
    );
}

async fn admin_requests_are_open_once_per_name_approved_once_and_used_once(b: Backend) {
    use ward_controller::core::AdminRole;
    use ward_controller::core::admins::{AdminRequest, RequestKind};
    let now = Timestamp::from_unix_ms(1_000);
    let name: ward_certs::AdminName = "carol".parse().unwrap();
    let first = AdminRequest::new(RequestKind::Issue, name.clone(), AdminRole::Admin, "a", now);
    let second = AdminRequest::new(RequestKind::Issue, name.clone(), AdminRole::Admin, "b", now);
    assert_eq!(
        b.store.open_admin_request(&first, now).await.unwrap(),
        first
    );
    assert_eq!(
        b.store.open_admin_request(&second, now).await.unwrap(),
        first,
        "{}",
        b.name
    );
    assert!(
        !b.store.use_admin_request(&first.id, now).await.unwrap(),
        "used unapproved"
    );
    assert!(
        b.store
            .approve_admin_request(&first.id, "z", now)
            .await
            .unwrap()
    );
    assert!(
        !b.store
            .approve_admin_request(&first.id, "y", now)
            .await
            .unwrap()
    );
    assert!(b.store.use_admin_request(&first.id, now).await.unwrap());
    assert!(
        !b.store.use_admin_request(&first.id, now).await.unwrap(),
        "used twice"
    );
    // Used: no longer open, so a new request can be made; an expired one is not open.
    assert_eq!(b.store.admin_request(&name, now).await.unwrap(), None);
    assert_eq!(
        b.store.open_admin_request(&second, now).await.unwrap(),
        second
    );
    let later = second.expires_at;
    assert_eq!(b.store.admin_request(&name, later).await.unwrap(), None);
    assert!(b.store.list_admin_requests(later).await.unwrap().is_empty());
    assert!(
        !b.store
            .approve_admin_request(&second.id, "z", later)
            .await
            .unwrap()
    );
}

async fn only_usable_tokens_are_listed_and_one_can_be_withdrawn(b: Backend) {
    {
        let store = &b.store;
        let now = Timestamp::from_unix_ms(500);
        // 1: usable, 2: expired, 3: used, 4: usable and another user's.
        store.insert_token(&token(1, 1_000)).await.unwrap();
        store.insert_token(&token(2, 400)).await.unwrap();
        let used = enrolled(store, 3).await;
        let mut other = token(4, 2_000);
        other.user = "b@h.org".parse().unwrap();
        other.created_at = Timestamp::from_unix_ms(10);
        store.insert_token(&other).await.unwrap();
        let _ = used;

        let all = store.list_usable_tokens(None, now).await.unwrap();
        let hashes: Vec<u8> = all.iter().map(|t| t.hash.0[0]).collect();
        assert_eq!(hashes, [1, 4], "{}: oldest first, usable only", b.name);
        let mine = store
            .list_usable_tokens(Some(&"a@h.org".parse().unwrap()), now)
            .await
            .unwrap();
        assert_eq!(mine.len(), 1, "{}", b.name);
        assert_eq!(mine[0].hash, TokenHash([1; 32]), "{}", b.name);

        assert!(store.expire_token(&TokenHash([1; 32]), now).await.unwrap());
        assert!(
            !store.expire_token(&TokenHash([1; 32]), now).await.unwrap(),
            "{}: withdrawing twice withdraws nothing",
            b.name
        );
        assert!(
            !store.expire_token(&TokenHash([3; 32]), now).await.unwrap(),
            "{}: a used token stays used",
            b.name
        );
        assert!(
            !store.expire_token(&TokenHash([9; 32]), now).await.unwrap(),
            "{}: unknown",
            b.name
        );
        let left = store.list_usable_tokens(None, now).await.unwrap();
        assert_eq!(left.len(), 1, "{}", b.name);
        assert_eq!(left[0].hash, TokenHash([4; 32]), "{}", b.name);
        let withdrawn = store
            .find_token(&TokenHash([1; 32]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            withdrawn.status(now),
            ward_controller::core::TokenStatus::Withdrawn,
            "{}: a withdrawn token cannot be redeemed",
            b.name
        );
    }
}

fn renewed_certificate(device: DeviceId, serial: &str, at: i64) -> CertificateRecord {
    CertificateRecord {
        serial: serial.into(),
        subject: format!("ward://device/{device}"),
        not_before: Timestamp::from_unix_ms(at),
        not_after: Timestamp::from_unix_ms(at + 1_000_000),
        issued_at: Timestamp::from_unix_ms(at),
        revoked_at: None,
        der: None,
    }
}

async fn a_renewal_is_pending_until_used_and_the_key_history_is_kept(b: Backend) {
    let id = enrolled(&b.store, 7).await;
    let first = format!("serial-{id}");
    let keys = b.store.device_keys(id).await.unwrap();
    assert_eq!(keys.len(), 1, "{}: enrollment records its key", b.name);
    assert_eq!(keys[0].serial, first);
    assert_eq!(keys[0].public_key_der, vec![1, 2, 3]);
    assert!(keys[0].in_use_at.is_some() && keys[0].replaced_at.is_none());

    // Two renewals (the second with another key): both pending, the device unchanged.
    b.store
        .record_renewal(id, &renewed_certificate(id, "r1", 10), &[4, 5])
        .await
        .unwrap();
    b.store
        .record_renewal(id, &renewed_certificate(id, "r2", 11), &[6, 7])
        .await
        .unwrap();
    let device = b.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(device.certificate_serial, first, "{}", b.name);
    assert_eq!(device.public_key_der, Some(vec![1, 2, 3]));
    let keys = b.store.device_keys(id).await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.serial.as_str()).collect::<Vec<_>>(),
        [first.as_str(), "r1", "r2"],
        "{}",
        b.name
    );
    assert!(keys[1].is_pending() && keys[2].is_pending());
    // Read with other devices' at once (the receipts of many wipes): the same history, each
    // device's its own, oldest first, a device with none left out.
    let other = enrolled(&b.store, 8).await;
    let unknown = DeviceId::new_random();
    let many = b
        .store
        .device_keys_of(&[other, id, unknown, id])
        .await
        .unwrap();
    assert_eq!(many.len(), 2, "{}", b.name);
    assert_eq!(many[&id], keys, "{}", b.name);
    assert_eq!(
        many[&other]
            .iter()
            .map(|k| k.serial.as_str())
            .collect::<Vec<_>>(),
        [format!("serial-{other}")],
        "{}",
        b.name
    );

    // The first call with r1: it is the device's, the rest revoked; r2 was another key.
    let now = Timestamp::from_unix_ms(20);
    let switch = b
        .store
        .write(ward_controller::store::Priority::High, move |tx| {
            Box::pin(async move { tx.switch_key(id, "r1", now).await })
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        switch.revoked,
        vec!["r2".to_owned(), first.clone()],
        "{}",
        b.name
    );
    assert_eq!(switch.other_parties, vec!["r2".to_owned()]);
    let device = b.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(device.certificate_serial, "r1", "{}", b.name);
    assert_eq!(device.public_key_der, Some(vec![4, 5]));
    assert_eq!(
        device.certificate_expires_at,
        Timestamp::from_unix_ms(10 + 1_000_000)
    );
    let keys = b.store.device_keys(id).await.unwrap();
    assert_eq!(keys[0].replaced_at, Some(now), "{}", b.name);
    assert_eq!(keys[1].in_use_at, Some(now));
    assert_eq!(keys[1].replaced_at, None);
    assert_eq!(keys[2].replaced_at, Some(now));
    assert_eq!(keys[2].in_use_at, None);
    let mut revoked = b
        .store
        .revoked_serials(Timestamp::from_unix_ms(21))
        .await
        .unwrap();
    revoked.sort();
    assert_eq!(revoked, vec!["r2".to_owned(), first.clone()], "{}", b.name);
    assert!(
        b.store
            .get_certificate(&first)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    // Their connections are kept (a call there is how a clone shows), while the device is
    // active.
    let mut replaced = b
        .store
        .replaced_serials(Timestamp::from_unix_ms(21))
        .await
        .unwrap();
    replaced.sort();
    assert_eq!(replaced, vec!["r2".to_owned(), first.clone()], "{}", b.name);

    // Once in use, no second switch; an unknown or replaced serial is not switched to.
    for serial in ["r1", "r2", "nope"] {
        let serial = serial.to_owned();
        let again = b
            .store
            .write(ward_controller::store::Priority::High, move |tx| {
                let serial = serial.clone();
                Box::pin(async move { tx.switch_key(id, &serial, now).await })
            })
            .await
            .unwrap();
        assert!(again.is_none(), "{}", b.name);
    }

    // The clone flag is kept and read back.
    let conflict = ward_controller::core::RenewalConflict {
        at: 30,
        serial: first.clone(),
        detail: "suspected clone".into(),
        reported: vec!["r0".into()],
    };
    let flagged = conflict.clone();
    assert!(
        b.store
            .write(ward_controller::store::Priority::High, move |tx| {
                let flagged = flagged.clone();
                Box::pin(async move { tx.flag_renewal_conflict(id, &flagged).await })
            })
            .await
            .unwrap()
    );
    assert_eq!(
        b.store
            .get_device(id)
            .await
            .unwrap()
            .unwrap()
            .renewal_conflict,
        Some(conflict),
        "{}",
        b.name
    );
    // A revoked device's connections are all cut.
    b.store
        .revoke_device(id, Timestamp::from_unix_ms(40))
        .await
        .unwrap();
    assert!(
        b.store
            .replaced_serials(Timestamp::from_unix_ms(41))
            .await
            .unwrap()
            .is_empty(),
        "{}",
        b.name
    );
}

async fn every_other_renewal_is_revoked_by_one_switch(b: Backend) {
    use ward_controller::core::keys::PENDING_LAPSES_AFTER_MS;
    let id = enrolled(&b.store, 8).await;
    let first = format!("serial-{id}");
    for (n, at) in [10, 11, 12, 13, 14, 15].into_iter().enumerate() {
        b.store
            .record_renewal(
                id,
                &renewed_certificate(id, &format!("r{n}"), at),
                &[9, u8::try_from(n).unwrap()],
            )
            .await
            .unwrap();
    }
    let switch = |serial: &'static str, now: Timestamp| {
        let store = b.store.clone();
        async move {
            store
                .write(ward_controller::store::Priority::High, move |tx| {
                    Box::pin(async move { tx.switch_key(id, serial, now).await })
                })
                .await
                .unwrap()
        }
    };
    // r5's first use, after the others lapsed: a lapsed renewal still comes into use (an
    // agent offline for a night after its renewal is not locked out), and the previous
    // certificate and every other renewal are revoked.
    let now = Timestamp::from_unix_ms(10 + PENDING_LAPSES_AFTER_MS);
    let done = switch("r5", now).await.unwrap();
    let mut expected: Vec<String> = (0..5).map(|n| format!("r{n}")).collect();
    expected.push(first.clone());
    expected.sort();
    assert_eq!(done.revoked, expected, "{}", b.name);
    assert_eq!(done.other_parties.len(), 5, "{}", b.name);
    for serial in &expected {
        let record = b.store.get_certificate(serial).await.unwrap().unwrap();
        assert_eq!(record.revoked_at, Some(now), "{}: {serial}", b.name);
    }
    assert_eq!(
        b.store
            .get_device(id)
            .await
            .unwrap()
            .unwrap()
            .certificate_serial,
        "r5",
        "{}",
        b.name
    );
}

async fn an_export_cursor_starts_at_zero_and_never_moves_back(b: Backend) {
    use ward_controller::store::SYSLOG_EXPORT;
    let s = &b.store;
    let at = Timestamp::from_unix_ms(1_000);
    assert_eq!(
        s.export_cursor(SYSLOG_EXPORT).await.unwrap(),
        0,
        "{}",
        b.name
    );
    s.set_export_cursor(SYSLOG_EXPORT, 7, at).await.unwrap();
    assert_eq!(
        s.export_cursor(SYSLOG_EXPORT).await.unwrap(),
        7,
        "{}",
        b.name
    );
    // A replica that lost its lease and writes an older position changes nothing.
    s.set_export_cursor(SYSLOG_EXPORT, 3, at).await.unwrap();
    assert_eq!(
        s.export_cursor(SYSLOG_EXPORT).await.unwrap(),
        7,
        "{}",
        b.name
    );
    s.set_export_cursor(SYSLOG_EXPORT, 12, at).await.unwrap();
    assert_eq!(
        s.export_cursor(SYSLOG_EXPORT).await.unwrap(),
        12,
        "{}",
        b.name
    );
    assert_eq!(s.export_cursor("other").await.unwrap(), 0, "{}", b.name);
    let mut lease = s
        .try_export_lease(SYSLOG_EXPORT)
        .await
        .unwrap()
        .expect("the first taker gets the lease");
    assert!(lease.held().await, "{}", b.name);
}

/// Two replicas on one PostgreSQL database: one holds the export's lease at a time, and the
/// other gets it once the holder's session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn one_postgres_replica_at_a_time_holds_the_export_lease() {
    use ward_controller::store::SYSLOG_EXPORT;
    let db = fresh_database_async().await;
    let a = SqlStore::connect_postgres(&db.url).await.unwrap();
    let b = SqlStore::connect_postgres(&db.url).await.unwrap();
    let mut held = a.try_export_lease(SYSLOG_EXPORT).await.unwrap().unwrap();
    assert!(held.held().await);
    assert!(b.try_export_lease(SYSLOG_EXPORT).await.unwrap().is_none());
    assert!(a.try_export_lease(SYSLOG_EXPORT).await.unwrap().is_none());
    assert!(
        b.try_export_lease("another export")
            .await
            .unwrap()
            .is_some()
    );
    drop(held);
    let taken = ward_e2e::eventually(
        "the lease free again",
        std::time::Duration::from_secs(10),
        || async { b.try_export_lease(SYSLOG_EXPORT).await.unwrap() },
    )
    .await;
    drop(taken);
    a.close().await;
    b.close().await;
}

async fn scim_clients_and_directory_users_round_trip(b: Backend) {
    use ward_controller::core::directory::{DirectoryUser, ScimClient};
    use ward_controller::store::{Priority, StoreError};
    let s = &b.store;
    let at = Timestamp::from_unix_ms(1_000);
    let client = ScimClient {
        name: "entra".parse().unwrap(),
        token_hash: "ab".repeat(32),
        created_at: at,
        created_by: "admin".into(),
        revoked_at: None,
        revoked_by: None,
    };
    let insert = |c: ScimClient| {
        s.write(Priority::High, move |tx| {
            let c = c.clone();
            Box::pin(async move { tx.insert_scim_client(&c).await })
        })
    };
    let revoke = || {
        s.write(Priority::High, move |tx| {
            Box::pin(async move {
                let name = "entra".parse().unwrap();
                tx.revoke_scim_client(&name, "admin", Timestamp::from_unix_ms(2_000))
                    .await
            })
        })
    };
    assert!(insert(client.clone()).await.unwrap(), "{}", b.name);
    let other = ScimClient {
        token_hash: "cd".repeat(32),
        ..client.clone()
    };
    assert!(
        !insert(other.clone()).await.unwrap(),
        "{}: name taken",
        b.name
    );
    let found = s.scim_client_by_hash(&client.token_hash).await.unwrap();
    assert_eq!(found, Some(client.clone()), "{}", b.name);
    assert!(revoke().await.unwrap());
    assert!(!revoke().await.unwrap(), "{}: revoked twice", b.name);
    assert_eq!(
        s.scim_client_by_hash(&client.token_hash).await.unwrap(),
        None
    );
    let listed = s.list_scim_clients().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_by.as_deref(), Some("admin"));
    // A revoked client's name may be used again, with a new token.
    assert!(insert(other.clone()).await.unwrap(), "{}", b.name);
    assert_eq!(
        s.scim_client_by_hash(&other.token_hash).await.unwrap(),
        Some(other)
    );

    let user = DirectoryUser {
        id: uuid::Uuid::new_v4(),
        user_name: "JDoe".into(),
        user: "j.doe@hospital.org".parse().unwrap(),
        external_id: Some("e-1".into()),
        active: true,
        attributes: "{\"displayName\":\"J Doe\"}".into(),
        created_at: at,
        created_by: "entra".into(),
        updated_at: at,
        updated_by: "entra".into(),
        deactivated_at: None,
        deleted_at: None,
    };
    let put = |u: DirectoryUser| {
        s.write(Priority::High, move |tx| {
            let u = u.clone();
            Box::pin(async move { tx.put_directory_user(&u).await })
        })
    };
    put(user.clone()).await.unwrap();
    assert_eq!(
        s.get_directory_user(user.id).await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(
        s.find_directory_user(&user.user).await.unwrap(),
        Some(user.clone())
    );
    let by_name = s
        .write(Priority::High, move |tx| {
            Box::pin(async move { tx.directory_user_by_user_name("jdoe").await })
        })
        .await
        .map_err(|e: StoreError| e)
        .unwrap();
    assert_eq!(
        by_name,
        Some(user.clone()),
        "{}: userName without regard to case",
        b.name
    );
    let deactivated = DirectoryUser {
        active: false,
        deactivated_at: Some(Timestamp::from_unix_ms(3_000)),
        updated_at: Timestamp::from_unix_ms(3_000),
        ..user.clone()
    };
    put(deactivated.clone()).await.unwrap();
    assert_eq!(
        s.list_directory_users().await.unwrap(),
        vec![deactivated],
        "{}",
        b.name
    );
}

/// A check-in's one statement: facts, last-seen and the report together; a check-in without
/// facts or without a report keeps the ones on record; a device no longer active gets nothing
/// written.
async fn a_check_in_is_written_whole_and_only_for_an_active_device(b: Backend) {
    use ward_controller::core::{CheckStatus, Compliance, ComplianceCheck};
    use ward_controller::store::Priority;
    async fn check_in(
        store: &Arc<dyn Store>,
        id: DeviceId,
        facts: Option<DeviceFacts>,
        compliance: Option<Compliance>,
        at: i64,
    ) -> Option<ward_controller::core::Device> {
        store
            .write(Priority::Sheddable, move |tx| {
                let (facts, compliance) = (facts.clone(), compliance.clone());
                Box::pin(async move {
                    let write = CheckInWrite {
                        id,
                        facts: facts.as_ref(),
                        compliance: compliance.as_ref(),
                        now: Timestamp::from_unix_ms(at),
                    };
                    Ok::<_, ward_controller::store::StoreError>(
                        tx.record_check_ins(&[write]).await?.pop().flatten(),
                    )
                })
            })
            .await
            .unwrap()
    }
    let id = enrolled(&b.store, 40).await;
    let facts = DeviceFacts {
        hostname: "ward-ws-7".into(),
        os_name: "Debian".into(),
        os_version: "13".into(),
        kernel_version: "6.12".into(),
        arch: "x86_64".into(),
        agent_version: "0.9.0".into(),
    };
    let report = Compliance {
        compliant: false,
        reasons: vec!["disk_encryption: not encrypted".into()],
        checks: vec![ComplianceCheck {
            name: "disk_encryption".into(),
            status: CheckStatus::Fail,
            detail: "not encrypted".into(),
        }],
        reported_at: Timestamp::from_unix_ms(100),
        policy_revision: 3,
    };
    // What the check-in does not write comes back as it is on record (the job enforces on it).
    let disabled = ward_controller::core::Disabled {
        reason: "mislaid".into(),
        at: 5,
        by: "admin".into(),
        command_id: "c".into(),
    };
    b.store
        .set_device_posture(
            id,
            ward_controller::store::PostureField::Disabled,
            Some(&serde_json::to_string(&disabled).unwrap()),
        )
        .await
        .unwrap();
    let written = check_in(&b.store, id, Some(facts.clone()), Some(report.clone()), 100)
        .await
        .expect("an active device is written");
    assert_eq!(written.disabled.as_ref(), Some(&disabled), "{}", b.name);
    let stored = b.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(
        written, stored,
        "{}: the answer is the row as written",
        b.name
    );
    assert_eq!(stored.facts, facts, "{}", b.name);
    assert_eq!(stored.compliance.as_ref(), Some(&report), "{}", b.name);
    assert_eq!(
        stored.last_seen,
        Some(Timestamp::from_unix_ms(100)),
        "{}",
        b.name
    );

    // Neither facts nor a report: only last-seen moves.
    check_in(&b.store, id, None, None, 200).await.unwrap();
    let stored = b.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(
        (&stored.facts, stored.compliance.as_ref(), stored.last_seen),
        (&facts, Some(&report), Some(Timestamp::from_unix_ms(200))),
        "{}",
        b.name
    );

    // Revoked: nothing is written, and the caller learns it.
    b.store
        .revoke_device(id, Timestamp::from_unix_ms(250))
        .await
        .unwrap()
        .unwrap();
    let other = DeviceFacts {
        hostname: "someone-else".into(),
        ..facts.clone()
    };
    assert!(
        check_in(&b.store, id, Some(other), None, 300)
            .await
            .is_none(),
        "{}: a revoked device's check-in is refused",
        b.name
    );
    let stored = b.store.get_device(id).await.unwrap().unwrap();
    assert_eq!(
        (&stored.facts, stored.last_seen),
        (&facts, Some(Timestamp::from_unix_ms(200))),
        "{}: nothing of the refused check-in was written",
        b.name
    );
    assert!(
        check_in(&b.store, DeviceId::new_random(), None, None, 300)
            .await
            .is_none(),
        "{}: an unknown device",
        b.name
    );
}

/// A batch of check-ins is one call: each active device gets its own facts, report and
/// last-seen (a check-in without facts or a report keeps the ones on record), a revoked or
/// unknown device gets nothing, and the answers keep the callers' order. One read gives the
/// unfinished commands of many devices, each device's oldest first. A batch naming a device
/// twice is refused and writes nothing.
async fn many_check_ins_are_written_together_each_for_its_own_device(b: Backend) {
    use ward_controller::core::{CheckStatus, Compliance, ComplianceCheck, Device};
    use ward_controller::store::Priority;
    let (ann, bob, gone) = (
        enrolled(&b.store, 41).await,
        enrolled(&b.store, 42).await,
        enrolled(&b.store, 43).await,
    );
    let unknown = DeviceId::new_random();
    b.store
        .revoke_device(gone, Timestamp::from_unix_ms(50))
        .await
        .unwrap();
    let bob_before = b.store.get_device(bob).await.unwrap().unwrap();
    let gone_before = b.store.get_device(gone).await.unwrap().unwrap();
    let facts = DeviceFacts {
        hostname: "ward-ws-9".into(),
        os_name: "Debian".into(),
        os_version: "13".into(),
        kernel_version: "6.12".into(),
        arch: "aarch64".into(),
        agent_version: "0.9.1".into(),
    };
    let report = Compliance {
        compliant: false,
        reasons: vec!["firewall: off".into()],
        checks: vec![ComplianceCheck {
            name: "firewall".into(),
            status: CheckStatus::Fail,
            detail: "off".into(),
        }],
        reported_at: Timestamp::from_unix_ms(100),
        policy_revision: 7,
    };
    type Batch = Vec<(DeviceId, Option<DeviceFacts>, Option<Compliance>, i64)>;
    async fn write(
        store: &Arc<dyn Store>,
        batch: Batch,
    ) -> Result<Vec<Option<Device>>, ward_controller::store::StoreError> {
        store
            .write(Priority::Sheddable, move |tx| {
                let batch = batch.clone();
                Box::pin(async move {
                    let writes: Vec<CheckInWrite<'_>> = batch
                        .iter()
                        .map(|(id, facts, compliance, at)| CheckInWrite {
                            id: *id,
                            facts: facts.as_ref(),
                            compliance: compliance.as_ref(),
                            now: Timestamp::from_unix_ms(*at),
                        })
                        .collect();
                    tx.record_check_ins(&writes).await
                })
            })
            .await
    }
    let written = write(
        &b.store,
        vec![
            (gone, Some(facts.clone()), Some(report.clone()), 101),
            (ann, Some(facts.clone()), Some(report.clone()), 102),
            (unknown, None, None, 103),
            (bob, None, None, 104),
        ],
    )
    .await
    .unwrap();
    let stored_ann = b.store.get_device(ann).await.unwrap().unwrap();
    let stored_bob = b.store.get_device(bob).await.unwrap().unwrap();
    assert_eq!(
        written,
        vec![
            None,
            Some(stored_ann.clone()),
            None,
            Some(stored_bob.clone())
        ],
        "{}: each answer is its own device's row as written, in the callers' order",
        b.name
    );
    assert_eq!(
        (
            &stored_ann.facts,
            stored_ann.compliance.as_ref(),
            stored_ann.last_seen
        ),
        (&facts, Some(&report), Some(Timestamp::from_unix_ms(102))),
        "{}",
        b.name
    );
    assert_eq!(
        (
            &stored_bob.facts,
            &stored_bob.compliance,
            stored_bob.last_seen
        ),
        (
            &bob_before.facts,
            &bob_before.compliance,
            Some(Timestamp::from_unix_ms(104))
        ),
        "{}: a check-in without facts or a report keeps those on record",
        b.name
    );
    assert_eq!(
        b.store.get_device(gone).await.unwrap().unwrap(),
        gone_before,
        "{}: nothing is written for a revoked device",
        b.name
    );

    let twice = write(
        &b.store,
        vec![
            (ann, None, None, 200),
            (bob, None, None, 200),
            (ann, None, None, 201),
        ],
    )
    .await;
    assert!(twice.is_err(), "{}: a device twice in one batch", b.name);
    assert_eq!(
        b.store.get_device(bob).await.unwrap().unwrap().last_seen,
        Some(Timestamp::from_unix_ms(104)),
        "{}: the refused batch wrote nothing",
        b.name
    );

    // The unfinished commands of many devices in one read.
    let mut ann_first = command(ann, "batch-ann-1");
    ann_first.created_at = Timestamp::from_unix_ms(10);
    let mut ann_second = command(ann, "batch-ann-2");
    ann_second.created_at = Timestamp::from_unix_ms(20);
    let mut ann_done = command(ann, "batch-ann-done");
    ann_done.state = CommandState::Succeeded;
    let bob_one = command(bob, "batch-bob-1");
    for c in [&ann_second, &bob_one, &ann_done, &ann_first] {
        b.store.insert_command(c).await.unwrap();
    }
    let unfinished = b
        .store
        .write(Priority::High, move |tx| {
            Box::pin(async move { tx.unfinished_commands_of(&[ann, bob, gone]).await })
        })
        .await
        .unwrap();
    let ids = |device| -> Vec<CommandId> {
        unfinished
            .get(&device)
            .map(|cs: &Vec<Command>| cs.iter().map(|c| c.id).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        (ids(ann), ids(bob), unfinished.contains_key(&gone)),
        (vec![ann_first.id, ann_second.id], vec![bob_one.id], false),
        "{}",
        b.name
    );
}

/// An offboarding's or a bulk wipe's commands go in many rows a statement (past the rows one
/// statement takes, so in several): each is inserted unless its key is taken, by a stored
/// command or by one earlier in the same call, and the answers keep the callers' order.
async fn many_commands_are_inserted_at_once_each_key_once(b: Backend) {
    use ward_controller::store::{Priority, StoreError};
    let device = enrolled(&b.store, 1).await;
    let (before, _) = b
        .store
        .insert_command(&command(device, "many-7"))
        .await
        .unwrap();
    let mut many: Vec<Command> = (0..1200)
        .map(|i| command(device, &format!("many-{i}")))
        .collect();
    // A key the call itself used earlier.
    many.push(command(device, "many-3"));
    let asked = many.clone();
    let stored = b
        .store
        .write(Priority::High, move |tx| {
            let many = many.clone();
            Box::pin(async move { tx.insert_commands(&many).await })
        })
        .await
        .map_err(|e: StoreError| e)
        .unwrap();
    assert_eq!(stored.len(), asked.len(), "{}", b.name);
    for (i, ((found, created), asked)) in stored.iter().zip(&asked).enumerate() {
        assert_eq!(
            found.idempotency_key, asked.idempotency_key,
            "{}: {i}",
            b.name
        );
        match i {
            7 => {
                assert!(!created, "{}: a stored key", b.name);
                assert_eq!(found.id, before.id, "{}", b.name);
            }
            1200 => {
                assert!(!created, "{}: a key used earlier in the call", b.name);
                assert_eq!(found.id, asked_id(&stored, 3), "{}", b.name);
            }
            _ => {
                assert!(created, "{}: {i}", b.name);
                assert_eq!(found, asked, "{}: stored as asked", b.name);
            }
        }
    }
    let listed = b.store.list_commands(Some(device), None).await.unwrap();
    assert_eq!(listed.len(), 1200, "{}: each key once", b.name);
    // What the call answered is what the store holds, field by field.
    let held: std::collections::HashMap<CommandId, Command> =
        listed.into_iter().map(|c| (c.id, c)).collect();
    for (found, _) in &stored {
        assert_eq!(Some(found), held.get(&found.id), "{}", b.name);
    }
    // Read back by id, many statements' worth, an unknown id among them.
    let mut ids: Vec<CommandId> = held.keys().copied().collect();
    ids.push(CommandId::new_random());
    let read = b
        .store
        .write(Priority::High, move |tx| {
            let ids = ids.clone();
            Box::pin(async move { tx.commands(&ids).await })
        })
        .await
        .map_err(|e: StoreError| e)
        .unwrap();
    assert_eq!(read.len(), 1200, "{}", b.name);
    for command in &read {
        assert_eq!(Some(command), held.get(&command.id), "{}", b.name);
    }
}

fn asked_id(stored: &[(Command, bool)], i: usize) -> CommandId {
    stored[i].0.id
}

/// Signs the audit head with a fixed signature, for jobs that record audit entries.
#[derive(Debug)]
struct TestKeeper;

impl ward_controller::store::HeadKey for TestKeeper {
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, ward_controller::store::StoreError> {
        Ok(vec![1])
    }
    fn verify(&self, _: &[u8], _: &[u8]) -> bool {
        true
    }
}

impl ward_controller::store::AuditKeeper for TestKeeper {
    fn appended(&self, _: u64, _: Option<(&ward_controller::core::audit::ChainBreak, u64)>) {}
}

/// PostgreSQL's writer has several lanes (its own connection and transaction each): check-ins
/// spread over them while admin changes run on the first, on the same rows. Every admin change
/// commits; a check-in may be refused as busy (its lane yields a contended row to the first
/// lane rather than deadlock with it), never half written; each audited change, whichever lane
/// commits it, lands in one linear chain.
async fn check_ins_on_every_lane_and_audited_changes_keep_one_chain(b: Backend) {
    use ward_controller::store::Priority;
    let lanes = b.store.writer().lanes();
    let expected = if b.name == "postgres" {
        ward_controller::store::POSTGRES_WRITER_LANES
    } else {
        1
    };
    assert_eq!(lanes, expected, "{}", b.name);
    b.store.keep_audit_with(Arc::new(TestKeeper));
    b.store
        .append_audit(
            &genesis_event("sha256:test", &[1; 16], GenesisOrigin::Init),
            Timestamp::from_unix_ms(0),
            &|_: &[u8]| Ok(vec![1]),
            &|_: &[u8], _: &[u8]| true,
        )
        .await
        .unwrap();
    let mut devices = Vec::new();
    for tag in 0..8u8 {
        devices.push(enrolled(&b.store, 100 + tag).await);
    }
    let event = |i: u32, what: &str| AuditEvent {
        actor: "a".into(),
        action: what.into(),
        target: format!("t{i}"),
        details: serde_json::json!({ "i": i }),
    };
    let mut tasks = Vec::new();
    for i in 0..160u32 {
        let store = b.store.clone();
        let device = devices[i as usize % devices.len()];
        let (priority, what) = if i % 4 == 0 {
            (Priority::High, "admin")
        } else {
            (Priority::Sheddable, "check-in")
        };
        let event = event(i, what);
        tasks.push(tokio::spawn(async move {
            store
                .write(priority, move |tx| {
                    let event = event.clone();
                    Box::pin(async move {
                        let at = Timestamp::from_unix_ms(1_000 + i64::from(i));
                        let write = CheckInWrite {
                            id: device,
                            facts: None,
                            compliance: None,
                            now: at,
                        };
                        let written = tx.record_check_ins(&[write]).await?.pop().flatten();
                        tx.audit(event, at);
                        Ok::<_, ward_controller::store::StoreError>(written.is_some())
                    })
                })
                .await
        }));
    }
    let mut answered = std::collections::BTreeSet::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(active) => {
                assert!(active, "{}: the device is active", b.name);
                answered.insert(format!("t{i}"));
            }
            Err(ward_controller::store::StoreError::Overloaded) if i % 4 != 0 => {}
            Err(e) => panic!("{}: write {i}: {e:?}", b.name),
        }
    }
    assert!(
        answered.len() >= 40,
        "{}: every admin change and most check-ins",
        b.name
    );
    let entries = b.store.list_audit(&AuditFilter::default()).await.unwrap();
    let head = b.store.audit_head().await.unwrap();
    let v = verify(&entries, &head, |_| true);
    assert!(v.ok, "{}: {v:?}", b.name);
    let audited: std::collections::BTreeSet<String> =
        entries.iter().skip(1).map(|e| e.target.clone()).collect();
    assert_eq!(
        audited, answered,
        "{}: exactly the answered writes are in the chain",
        b.name
    );
    for (i, device) in devices.iter().enumerate() {
        let seen = b
            .store
            .get_device(*device)
            .await
            .unwrap()
            .unwrap()
            .last_seen;
        assert!(seen.is_some(), "{}: device {i} has its check-ins", b.name);
    }
}

/// `serve --write-lanes` takes 1 to 16 lanes, and each lane keeps a connection of the pool
/// for as long as it writes. With the most lanes, reads (and the export's lease) must still
/// get a connection: the lanes may not take the whole pool (attack review: with 16 lanes,
/// after one check-in on each, every read waited 30 s for a connection and failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(ward_postgres),
    ignore = "needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test"
)]
async fn the_most_writer_lanes_leave_connections_for_reads() {
    use ward_controller::store::writer::MAX_LANES as MAX_WRITER_LANES;
    use ward_controller::store::{Priority, SYSLOG_EXPORT, StoreError};
    let db = fresh_database_async().await;
    let sql = SqlStore::connect_postgres_with_lanes(&db.url, MAX_WRITER_LANES)
        .await
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(sql.clone());
    assert_eq!(store.writer().lanes(), MAX_WRITER_LANES);
    let device = enrolled(&store, 1).await;
    // Check-ins are spread over the lanes in turn: one each, so every lane has written.
    for _ in 0..MAX_WRITER_LANES {
        store
            .write(Priority::Sheddable, move |tx| {
                Box::pin(async move { tx.device(device).await.map(|d| d.is_some()) })
            })
            .await
            .map_err(|e: StoreError| e)
            .unwrap();
    }
    let patience = std::time::Duration::from_secs(10);
    let read = tokio::time::timeout(patience, store.get_device(device)).await;
    assert!(
        matches!(read, Ok(Ok(Some(_)))),
        "a read while every lane holds its connection: {read:?}"
    );
    let lease = tokio::time::timeout(patience, sql.try_export_lease(SYSLOG_EXPORT)).await;
    assert!(
        matches!(lease, Ok(Ok(Some(_)))),
        "the export's lease while every lane holds its connection"
    );
    drop(lease);
    sql.close().await;
}

/// Attacker's review (someone holding the SQLite file): the last audit row's `hash` written as
/// bytes that are not UTF-8. The writer reads that row before every audited commit; the read
/// failed (Corrupt), so every audited write failed (admin wipes, results, enrollments,
/// offboardings) until the row was repaired by hand. It is damage like the same row edited to
/// other text: an `audit.break` entry, and the write goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_row_edited_to_another_type_does_not_stop_audited_writes() {
    use ward_controller::store::Priority;
    for (edit, what) in [
        (
            "UPDATE audit_log SET hash = 'not-a-hash' WHERE seq = (SELECT MAX(seq) FROM audit_log)",
            "other text",
        ),
        (
            "UPDATE audit_log SET hash = CAST(x'ff' AS TEXT) WHERE seq = (SELECT MAX(seq) FROM audit_log)",
            "bytes that are not UTF-8",
        ),
    ] {
        let b = sqlite().await;
        b.store.keep_audit_with(Arc::new(TestKeeper));
        b.store
            .append_audit(
                &genesis_event("sha256:test", &[1; 16], GenesisOrigin::Init),
                Timestamp::from_unix_ms(0),
                &|_: &[u8]| Ok(vec![1]),
                &|_: &[u8], _: &[u8]| true,
            )
            .await
            .unwrap();
        let event = |target: &str| AuditEvent {
            actor: "ward://admin/root".into(),
            action: "command.create".into(),
            target: target.into(),
            details: serde_json::json!({ "kind": "wipe" }),
        };
        let audited = |target: &'static str| {
            let store = b.store.clone();
            let event = event(target);
            async move {
                store
                    .write(Priority::High, move |tx| {
                        tx.audit(event.clone(), Timestamp::from_unix_ms(5));
                        Box::pin(async { Ok::<_, ward_controller::store::StoreError>(()) })
                    })
                    .await
            }
        };
        audited("before").await.unwrap();
        let path = b._dir.as_ref().unwrap().path().join("ward.db");
        tokio::task::spawn_blocking(move || {
            let db = rusqlite::Connection::open(path).unwrap();
            db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            db.execute(edit, []).unwrap();
        })
        .await
        .unwrap();
        let after = audited("a wipe after the edit").await;
        assert!(
            after.is_ok(),
            "{what}: an audited write after the edit: {after:?}"
        );
        let path = b._dir.as_ref().unwrap().path().join("ward.db");
        let breaks: i64 = tokio::task::spawn_blocking(move || {
            rusqlite::Connection::open(path)
                .unwrap()
                .query_row(
                    "SELECT COUNT(*) FROM audit_log WHERE action = 'audit.break'",
                    [],
                    |row| row.get(0),
                )
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(breaks, 1, "{what}: the damage is recorded as a break");
    }
}
