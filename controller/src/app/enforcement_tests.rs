//! Posture enforcement on the in-memory store: a device whose required check keeps failing
//! past the policy's grace gets the policy's action, once per failure, whichever replica it
//! checks in with and however often; block and report never issue a command.

use std::collections::BTreeMap;
use std::time::Duration;

use super::test_fixture::{
    Fixture, TestDevice, admin, enroll_current, fixture, fixture_with, replica,
};
use super::{App, CheckInReport, ComplianceReport};
use crate::core::{
    Check, CheckStatus, Command, CommandKind, CommandState, ComplianceCheck, DeviceState,
    EnforcementAction, PolicyChanges, WipeScope,
};
use crate::store::Store;

const HOUR: Duration = Duration::from_secs(3600);

/// The default policy: the firewall required, with `action` when it fails (a wipe after an
/// hour's grace); its revision.
async fn firewall_policy(app: &App, action: EnforcementAction) -> u64 {
    app.set_policy(
        &admin(),
        None,
        &PolicyChanges {
            require_firewall: Some(true),
            check_actions: BTreeMap::from([(Check::Firewall, action)]),
            wipe_grace_seconds: Some(3600),
            ..PolicyChanges::default()
        },
    )
    .await
    .unwrap()
    .revision
}

fn firewall(revision: u64, status: CheckStatus) -> CheckInReport {
    CheckInReport {
        compliance: Some(ComplianceReport {
            checks: vec![ComplianceCheck {
                name: Check::Firewall.as_str().into(),
                status,
                detail: "nftables has no rules".into(),
            }],
            policy_revision: revision,
        }),
        ..CheckInReport::default()
    }
}

async fn check_in(app: &App, device: &TestDevice, report: CheckInReport) -> Vec<Command> {
    app.agent_check_in(&device.device, report)
        .await
        .unwrap()
        .pending
}

async fn commands(f: &Fixture, device: &TestDevice) -> Vec<Command> {
    f.store
        .list_commands(Some(device.device.id), None)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_check_failing_past_the_grace_gets_one_wipe_whatever_the_replica_or_the_retry() {
    let f = fixture();
    let other = replica(&f.store, &f.ca, &f.clock);
    let revision = firewall_policy(&f.app, EnforcementAction::Wipe).await;
    let ivy = enroll_current(&f.app, "ivy@hospital.example", "ivy-laptop").await;
    let failing = || firewall(revision, CheckStatus::Fail);

    check_in(&f.app, &ivy, failing()).await;
    f.clock.advance(HOUR - Duration::from_millis(1));
    assert!(check_in(&other, &ivy, failing()).await.is_empty());
    assert!(commands(&f, &ivy).await.is_empty(), "within the grace");

    // The grace is over: the device checks in on both replicas at once (a retry after a lost
    // answer, a reconnect).
    f.clock.advance(Duration::from_millis(1));
    let (here, there) = tokio::join!(
        f.app.agent_check_in(&ivy.device, failing()),
        other.agent_check_in(&ivy.device, failing()),
    );
    let (here, there) = (here.unwrap().pending, there.unwrap().pending);
    let issued = commands(&f, &ivy).await;
    let [wipe] = issued.as_slice() else {
        panic!("not one wipe: {issued:?}");
    };
    assert_eq!(
        (
            wipe.kind.clone(),
            wipe.created_by.as_str(),
            wipe.revoke_after
        ),
        (
            CommandKind::Wipe {
                scope: WipeScope::Messaging
            },
            "controller",
            false
        )
    );
    assert!(
        here.iter().chain(&there).all(|c| c.id == wipe.id),
        "{here:?} {there:?}"
    );
    let record = f.app.device(ivy.device.id).await.unwrap();
    assert_eq!(
        record.enforcement[0].wipe_command,
        Some(wipe.id.to_string())
    );

    // An admin cancels it: the same failure never brings another.
    f.app.cancel_command(&admin(), wipe.id).await.unwrap();
    f.clock.advance(2 * HOUR);
    assert!(check_in(&f.app, &ivy, failing()).await.is_empty());
    assert!(check_in(&other, &ivy, failing()).await.is_empty());
    assert_eq!(commands(&f, &ivy).await.len(), 1);

    // Passing ends the failure; the next one is a new failure with its own grace and wipe.
    check_in(&f.app, &ivy, firewall(revision, CheckStatus::Pass)).await;
    check_in(&f.app, &ivy, failing()).await;
    f.clock.advance(HOUR);
    let handed = check_in(&other, &ivy, failing()).await;
    let issued = commands(&f, &ivy).await;
    assert_eq!(issued.len(), 2, "{issued:?}");
    let second = issued.iter().find(|c| c.id != wipe.id).unwrap();
    assert_eq!(handed.iter().map(|c| c.id).collect::<Vec<_>>(), [second.id]);

    // Its success wipes the data and leaves the device enrolled.
    assert_eq!(ivy.run(&f.app, second, true).await, CommandState::Succeeded);
    assert_eq!(
        f.app.device(ivy.device.id).await.unwrap().state,
        DeviceState::Active
    );
}

#[tokio::test]
async fn block_and_report_never_issue_a_command_and_an_action_changed_to_wipe_gets_its_grace() {
    let f = fixture();
    let revision = firewall_policy(&f.app, EnforcementAction::Block).await;
    let jan = enroll_current(&f.app, "jan@hospital.example", "jan-laptop").await;
    check_in(&f.app, &jan, firewall(revision, CheckStatus::Fail)).await;
    f.clock.advance(48 * HOUR);
    assert!(
        check_in(&f.app, &jan, firewall(revision, CheckStatus::Fail))
            .await
            .is_empty()
    );
    let revision = firewall_policy(&f.app, EnforcementAction::Report).await;
    f.clock.advance(48 * HOUR);
    check_in(&f.app, &jan, firewall(revision, CheckStatus::Fail)).await;
    assert!(commands(&f, &jan).await.is_empty());
    let record = f.app.device(jan.device.id).await.unwrap();
    assert_eq!(record.enforcement[0].action, EnforcementAction::Report);

    // Switched to wipe after days of failing: the whole grace still counts from the switch.
    let revision = firewall_policy(&f.app, EnforcementAction::Wipe).await;
    check_in(&f.app, &jan, firewall(revision, CheckStatus::Fail)).await;
    f.clock.advance(HOUR - Duration::from_millis(1));
    check_in(&f.app, &jan, firewall(revision, CheckStatus::Fail)).await;
    assert!(commands(&f, &jan).await.is_empty());
    f.clock.advance(Duration::from_millis(1));
    let handed = check_in(&f.app, &jan, firewall(revision, CheckStatus::Fail)).await;
    assert_eq!(handed.len(), 1);
    assert_eq!(commands(&f, &jan).await.len(), 1);
}

#[tokio::test]
async fn a_compliance_wipe_does_not_wait_for_a_second_admin() {
    let f = fixture_with(|config| config.approval_threshold = Some(2));
    let revision = firewall_policy(&f.app, EnforcementAction::Wipe).await;
    let kim = enroll_current(&f.app, "kim@hospital.example", "kim-laptop").await;
    check_in(&f.app, &kim, firewall(revision, CheckStatus::Fail)).await;
    f.clock.advance(HOUR);
    let handed = check_in(&f.app, &kim, firewall(revision, CheckStatus::Fail)).await;
    let [wipe] = handed.as_slice() else {
        panic!("{handed:?}");
    };
    assert_eq!(wipe.state, CommandState::Delivered);
    assert_eq!(wipe.approved_by, None);
}
