//! A command the controller holds (pushed to a stream, delivered, read for an approval) and
//! the row it stands for must be the same instruction: the same device and the same action.
//! Only a hand edit of the database makes them differ; then nothing the controller decided
//! on the one is written to the other. Here the copy differs from the store, as it would
//! after such an edit.

use super::test_fixture::{admin, command_key, enroll_as, facts, fixture};
use crate::core::{Command, CommandKind, CommandState, WipeScope};

const ALICE: &str = "alice@hospital.example";
const BOB: &str = "bob@hospital.example";

async fn issued(app: &super::App, to: crate::core::DeviceId, kind: CommandKind) -> Command {
    app.issue_command(
        &admin(),
        &to.into(),
        kind,
        "stolen",
        &command_key("k-1"),
        None,
    )
    .await
    .unwrap()
    .0
}

fn wipe() -> CommandKind {
    CommandKind::Wipe {
        scope: WipeScope::Messaging,
    }
}

#[tokio::test]
async fn a_push_of_a_command_now_another_devices_is_not_delivered() {
    let f = fixture();
    let app = &f.app;
    let alice = enroll_as(app, ALICE, facts("alice-phone")).await;
    let bob = enroll_as(app, BOB, facts("bob-phone")).await;
    let stored = issued(app, bob.device.id, wipe()).await;
    // What Alice's stream holds: the command as pushed to her, since moved to Bob.
    let pushed = Command {
        device_id: alice.device.id,
        ..stored.clone()
    };

    assert_eq!(app.deliver_pushed(&pushed).await.unwrap(), None);
    assert_eq!(
        app.get_command(stored.id).await.unwrap(),
        stored,
        "Bob's command was marked delivered by Alice's stream"
    );
}

#[tokio::test]
async fn a_push_of_a_command_now_another_action_is_not_delivered() {
    let f = fixture();
    let app = &f.app;
    let alice = enroll_as(app, ALICE, facts("alice-phone")).await;
    let stored = issued(app, alice.device.id, wipe()).await;
    // Pushed as a lock; the row says wipe.
    let pushed = Command {
        kind: CommandKind::Lock {
            message: "call IT".into(),
        },
        ..stored.clone()
    };

    assert_eq!(app.deliver_pushed(&pushed).await.unwrap(), None);
    let now = app.get_command(stored.id).await.unwrap();
    assert_eq!(now.state, CommandState::Queued, "{now:?}");
    // The row as it stands is still delivered as itself.
    let delivered = app.deliver_pushed(&stored).await.unwrap().unwrap();
    assert_eq!(delivered.state, CommandState::Delivered);
    assert_eq!(delivered.kind, wipe());
}
