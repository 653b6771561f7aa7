//! Offboarding on the in-memory store: all or nothing.

use super::AppError;
use super::test_fixture::{admin, email, enroll, fixture};
use crate::store::{AuditFilter, Store};

const ALICE: &str = "alice@hospital.example";

#[tokio::test]
async fn an_offboarding_refused_part_way_changes_nothing() {
    let fixture = fixture();
    let (store, app) = (&fixture.store, &fixture.app);
    // Alice has an enrolled device and an unused token.
    enroll(app, ALICE).await;
    app.create_token(&admin(), email(ALICE), None)
        .await
        .unwrap();
    let entries = store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .len();

    // A reason the wipe command refuses (a control character): refused as a whole.
    let refused = app
        .offboard_user(&admin(), &email(ALICE), "left\u{7}today")
        .await;
    assert!(
        matches!(&refused, Err(AppError::InvalidArgument(m))
            if m.contains("the reason") && m.contains("control characters")),
        "{refused:?}"
    );
    assert_eq!(
        app.list_tokens(Some(&email(ALICE))).await.unwrap().len(),
        1,
        "the unused token was withdrawn by a refused offboarding"
    );
    let after = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        after.len(),
        entries,
        "a refused offboarding left entries: {:?}",
        &after[entries..]
    );
}

/// The controller itself refuses a revocation or a return to service without a reason (a
/// client other than wardctl may send none), and a return while lost mode's wipe is pending
/// (it revokes the device whatever happens): nothing changes, no audit entry.
#[tokio::test]
async fn revoke_and_return_need_a_reason_and_return_waits_for_lost_mode_to_end() {
    let fixture = fixture();
    let (store, app) = (&fixture.store, &fixture.app);
    let (device, _) = enroll(app, ALICE).await;
    let id = crate::core::DeviceRef::from(device.id);
    let entries = || async {
        store
            .list_audit(&AuditFilter::default())
            .await
            .unwrap()
            .len()
    };
    let before = entries().await;
    for reason in ["", "  \t"] {
        let refused = app.revoke_device(&admin(), &id, reason).await;
        assert!(
            matches!(&refused, Err(AppError::InvalidArgument(m)) if m.contains("reason")),
            "{refused:?}"
        );
        let refused = app.return_device(&admin(), &id, reason).await;
        assert!(
            matches!(&refused, Err(AppError::InvalidArgument(m)) if m.contains("reason")),
            "{refused:?}"
        );
    }
    assert_eq!(entries().await, before);
    assert_eq!(
        app.get_device(&id).await.unwrap().state,
        crate::core::DeviceState::Active
    );

    app.mark_lost(&admin(), &id, "left in a taxi")
        .await
        .unwrap();
    let before = entries().await;
    let commands = store.list_commands(Some(device.id), None).await.unwrap();
    let refused = app.return_device(&admin(), &id, "found it").await;
    assert!(
        matches!(&refused, Err(AppError::FailedPrecondition(m)) if m.contains("lost mode")),
        "{refused:?}"
    );
    assert_eq!(entries().await, before);
    assert_eq!(
        store.list_commands(Some(device.id), None).await.unwrap(),
        commands
    );

    app.revoke_device(&admin(), &id, "stolen, certificate copied")
        .await
        .unwrap();
    let revoke = store
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .rfind(|e| e.action == "device.revoke")
        .unwrap();
    let details: serde_json::Value = serde_json::from_str(&revoke.details).unwrap();
    assert_eq!(details["reason"], "stolen, certificate copied");
    assert_eq!(details["why"], "by an admin");
}

/// An offboarding's wipes reach the devices' open streams as the commands themselves: a
/// stream hands each on without reading the store (ten thousand devices of one user were ten
/// thousand reads of their unfinished commands, and of each device and policy, whose cached
/// copies a "go look" wake-up dropped).
#[tokio::test]
async fn an_offboarding_pushes_its_wipes_to_the_open_streams() {
    let fixture = fixture();
    let app = &fixture.app;
    let (device, _) = enroll(app, ALICE).await;
    let stream = app.hub().subscribe(device.id);

    let report = app
        .offboard_user(&admin(), &email(ALICE), "left the hospital")
        .await
        .unwrap();
    let wipe = report.devices[0].command.clone().unwrap();

    let mail = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("the offboarding reached the device's stream");
    let pushed: Vec<_> = mail.commands.iter().map(|c| c.id).collect();
    assert_eq!(pushed, vec![wipe.id], "the wipe itself is pushed");
    assert!(
        !mail.read_again,
        "the stream is told to read the store again, as if the wipe were another replica's"
    );
}
