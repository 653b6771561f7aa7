//! A lock's or unlock's time-to-live: past it, a command the device has not taken ends
//! `expired` (swept, or at the device's next check-in) and is never delivered; wipes never
//! expire.

use std::time::Duration;

use super::test_fixture::{admin, command_key, enroll, fixture};
use super::{AppError, CheckInReport};
use crate::core::{CommandKind, CommandState, WipeScope};

const HOUR: Duration = Duration::from_secs(3600);

fn lock() -> CommandKind {
    CommandKind::Lock {
        message: String::new(),
    }
}

#[tokio::test]
async fn a_lock_past_its_time_to_live_expires_at_the_check_in_and_is_never_delivered() {
    let f = fixture();
    let (device, _) = enroll(&f.app, "ann@hospital.org").await;
    let id = crate::core::DeviceRef::from(device.id);
    let (lock, _) = f
        .app
        .issue_command(&admin(), &id, lock(), "", &command_key("k-1"), Some(HOUR))
        .await
        .unwrap();
    assert!(lock.deadline.is_some());

    f.clock.advance(2 * HOUR);
    // The device comes back: the lock that waited too long is not handed to it.
    let answer = f
        .app
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    assert!(answer.pending.is_empty(), "{:?}", answer.pending);
    let shown = f.app.get_command(lock.id).await.unwrap();
    assert_eq!(shown.state, CommandState::Expired);
    assert_eq!(f.app.expire_due_commands().await.unwrap(), 0, "once");
}

#[tokio::test]
async fn a_lock_past_its_time_to_live_is_swept_while_its_device_stays_away() {
    let f = fixture();
    let (device, _) = enroll(&f.app, "al@hospital.org").await;
    let id = crate::core::DeviceRef::from(device.id);
    let (unlock, _) = f
        .app
        .issue_command(
            &admin(),
            &id,
            CommandKind::Unlock,
            "",
            &command_key("k-2"),
            Some(HOUR),
        )
        .await
        .unwrap();
    let (waits, _) = f
        .app
        .issue_command(&admin(), &id, lock(), "", &command_key("k-5"), None)
        .await
        .unwrap();
    assert_eq!(f.app.expire_due_commands().await.unwrap(), 0, "not yet");
    f.clock.advance(2 * HOUR);
    assert_eq!(f.app.expire_due_commands().await.unwrap(), 1);
    let shown = f.app.get_command(unlock.id).await.unwrap();
    assert_eq!(shown.state, CommandState::Expired);
    // Without a time-to-live it waits for ever.
    let shown = f.app.get_command(waits.id).await.unwrap();
    assert_eq!(shown.state, CommandState::Queued);
}

#[tokio::test]
async fn a_wipe_never_expires_and_a_time_to_live_out_of_range_is_refused() {
    let f = fixture();
    let (device, _) = enroll(&f.app, "bo@hospital.org").await;
    let id = crate::core::DeviceRef::from(device.id);
    let wipe = CommandKind::Wipe {
        scope: WipeScope::Messaging,
    };
    let err = f
        .app
        .issue_command(
            &admin(),
            &id,
            wipe,
            "stolen",
            &command_key("k-3"),
            Some(HOUR),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppError::InvalidArgument(m) if m.contains("never expires")),
        "{err}"
    );
    for ttl in [Duration::from_secs(1), 31 * 24 * HOUR] {
        let err = f
            .app
            .issue_command(&admin(), &id, lock(), "", &command_key("k-4"), Some(ttl))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AppError::InvalidArgument(m) if m.contains("1m to 30d")),
            "{err}"
        );
    }
    let listed = f.app.list_commands(Some(device.id), None).await.unwrap();
    assert!(
        listed.is_empty(),
        "a refused command was stored: {listed:?}"
    );
}

/// A short-lived lock issued over the lost-mode lock does not replace it: once it expires,
/// the device still gets the lock (review finding: it superseded the lost-mode lock, then
/// expired, and the device was never locked).
#[tokio::test]
async fn a_lock_with_a_time_to_live_does_not_replace_one_that_waits_longer() {
    let f = fixture();
    let (device, _) = enroll(&f.app, "cy@hospital.org").await;
    let id = crate::core::DeviceRef::from(device.id);
    let (lost, _) = f
        .app
        .issue_command(&admin(), &id, lock(), "", &command_key("k-lost"), None)
        .await
        .unwrap();
    f.app
        .issue_command(
            &admin(),
            &id,
            lock(),
            "",
            &command_key("k-short"),
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let shown = f.app.get_command(lost.id).await.unwrap();
    assert_eq!(
        shown.state,
        CommandState::Queued,
        "replaced by a shorter-lived lock"
    );

    f.clock.advance(2 * Duration::from_secs(60));
    assert_eq!(f.app.expire_due_commands().await.unwrap(), 1);
    let answer = f
        .app
        .agent_check_in(&device, CheckInReport::default())
        .await
        .unwrap();
    let ids: Vec<_> = answer.pending.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![lost.id], "the device still gets the lock");
}
