//! `BulkWipe`: a selection of devices wiped in one commit, under one key, with one approval;
//! a dry run that changes nothing; bad selections refused with nothing issued.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tonic::Code;
use tonic::transport::Channel;
use ward_controller::core::{Compliance, DeviceId, Timestamp};
use ward_controller::store::Store;
use ward_e2e::inprocess::TestController;
use ward_e2e::seed::{report_compliance, seed_devices};
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::*;

fn store(controller: &TestController) -> Arc<dyn Store> {
    Arc::new(controller.store.clone())
}

fn by_user(user: &str, key: &str) -> BulkWipeRequest {
    BulkWipeRequest {
        user: user.into(),
        scope: WipeScope::Messaging as i32,
        reason: "ransomware on the ward".into(),
        idempotency_key: key.into(),
        ..BulkWipeRequest::default()
    }
}

async fn commands(admin: &mut AdminServiceClient<Channel>) -> Vec<Command> {
    admin
        .list_commands(ListCommandsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .commands
}

async fn audit(admin: &mut AdminServiceClient<Channel>) -> Vec<AuditEntry> {
    admin
        .list_audit(ListAuditRequest {
            limit: 10_000,
            ..ListAuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

fn outcomes(report: &BulkWipeReport) -> Vec<(String, String)> {
    let mut v: Vec<_> = report
        .devices
        .iter()
        .map(|d| (d.device_id.clone(), d.outcome.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_users_devices_are_wiped_in_one_commit_once_and_a_dry_run_changes_nothing() {
    let controller = TestController::start().await;
    let ids = seed_devices(store(&controller), "ann@hospital.org", "ann", 3).await;
    seed_devices(store(&controller), "bea@hospital.org", "bea", 2).await;
    let mut admin = controller.admin().await;
    admin
        .revoke_device(RevokeDeviceRequest {
            device_id: ids[2].to_string(),
            reason: "test".into(),
        })
        .await
        .unwrap();

    // The dry run lists the selection and issues nothing.
    let dry = admin
        .bulk_wipe(BulkWipeRequest {
            dry_run: true,
            ..by_user("ann@hospital.org", "ann-1")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.dry_run && !dry.needs_approval && dry.issued == 0);
    let mut expected = vec![
        (ids[0].to_string(), "would-issue".to_owned()),
        (ids[1].to_string(), "would-issue".to_owned()),
        (ids[2].to_string(), "skipped".to_owned()),
    ];
    expected.sort();
    assert_eq!(outcomes(&dry), expected);
    assert!(
        commands(&mut admin).await.is_empty(),
        "a dry run issues nothing"
    );

    // The wipe: both active devices, each command with its own audit entry, all in a row
    // after the batch's entry (one job: nothing of another caller in between).
    let before = audit(&mut admin).await.len();
    let report = admin
        .bulk_wipe(by_user("ann@hospital.org", "ann-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.batch, "admin:ann-1");
    assert_eq!(report.issued, 2);
    let issued: Vec<_> = report
        .devices
        .iter()
        .filter(|d| d.outcome == "issued")
        .collect();
    assert_eq!(issued.len(), 2);
    assert!(
        issued
            .iter()
            .all(|d| d.state == CommandState::Queued as i32 && !d.command_id.is_empty())
    );
    let entries = audit(&mut admin).await;
    let new = &entries[before..];
    let start = new
        .iter()
        .position(|e| e.action == "device.bulk_wipe")
        .expect("the batch is audited");
    assert_eq!(new[start].target, "admin:ann-1");
    let issues: Vec<&str> = new[start + 1..start + 3]
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(issues, ["command.issue", "command.issue"]);

    // Again with the same key: nothing new, the same commands.
    let again = admin
        .bulk_wipe(by_user("ann@hospital.org", "ann-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.issued, 0);
    assert_eq!(
        again
            .devices
            .iter()
            .filter(|d| d.outcome == "already-issued")
            .count(),
        2
    );
    assert_eq!(commands(&mut admin).await.len(), 2);

    // The same key for another scope is a conflict: refused, nothing issued.
    let err = admin
        .bulk_wipe(BulkWipeRequest {
            scope: WipeScope::Full as i32,
            ..by_user("ann@hospital.org", "ann-1")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("idempotency key"),
        "{}",
        err.message()
    );
    assert_eq!(commands(&mut admin).await.len(), 2);

    // The batch can be followed without changing anything.
    let status = admin
        .get_bulk_wipe(GetBulkWipeRequest {
            batch: "admin:ann-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.devices.len(), 2);
    assert!(!status.complete);
    let v = admin
        .verify_audit(VerifyAuditRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "{v:?}");
}

#[tokio::test]
async fn a_list_with_an_unknown_device_an_empty_list_or_too_many_devices_issues_nothing() {
    let controller = TestController::start().await;
    let ids = seed_devices(store(&controller), "cy@hospital.org", "cy", 3).await;
    let mut admin = controller.admin().await;
    let listed = |devices: Vec<String>| BulkWipeRequest {
        devices,
        scope: WipeScope::Messaging as i32,
        reason: "stolen cart".into(),
        idempotency_key: "cart-7".into(),
        ..BulkWipeRequest::default()
    };
    let before = audit(&mut admin).await.len();

    let unknown = DeviceId::new_random().to_string();
    let err = admin
        .bulk_wipe(listed(vec![ids[0].to_string(), unknown.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains(&unknown), "{}", err.message());
    let err = admin
        .bulk_wipe(listed(vec!["no-such-host".into(), "bad entry!".into()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("no-such-host") && err.message().contains("bad entry!"),
        "{}",
        err.message()
    );
    let err = admin.bulk_wipe(listed(vec![" ".into()])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let too_many: Vec<String> = (0..10_001)
        .map(|_| DeviceId::new_random().to_string())
        .collect();
    let err = admin.bulk_wipe(listed(too_many)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("10000"), "{}", err.message());
    // Host names past the limit are counted, not read: the list is refused with its length.
    let err = admin
        .bulk_wipe(listed(vec!["x".into(); 200_000]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("200000"), "{}", err.message());
    // No selection, two selections, no reason.
    for bad in [
        BulkWipeRequest {
            user: String::new(),
            ..by_user("", "k")
        },
        BulkWipeRequest {
            noncompliant: true,
            ..by_user("cy@hospital.org", "k")
        },
        BulkWipeRequest {
            reason: " ".into(),
            ..by_user("cy@hospital.org", "k")
        },
        BulkWipeRequest {
            idempotency_key: "a:b".into(),
            ..by_user("cy@hospital.org", "k")
        },
    ] {
        let err = admin.bulk_wipe(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    assert!(commands(&mut admin).await.is_empty());
    let changes: Vec<String> = audit(&mut admin).await[before..]
        .iter()
        .map(|e| e.action.clone())
        .filter(|a| a != "read" && a != "denied")
        .collect();
    assert!(changes.is_empty(), "nothing was changed: {changes:?}");

    // Host names and ids together, a device named twice counted once.
    let report = admin
        .bulk_wipe(listed(vec![
            "cy-00000".into(),
            ids[0].to_string(),
            ids[1].to_string(),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.issued, 2);
}

fn failing(check: &str) -> Compliance {
    Compliance {
        compliant: false,
        reasons: vec![format!("{check}: failed")],
        checks: Vec::new(),
        reported_at: Timestamp::from_unix_ms(1),
        policy_revision: 1,
    }
}

#[tokio::test]
async fn the_noncompliant_selection_can_be_narrowed_to_one_failing_check() {
    let controller = TestController::start().await;
    let ids = seed_devices(store(&controller), "di@hospital.org", "di", 3).await;
    report_compliance(store(&controller), ids[0], failing("disk_encryption")).await;
    report_compliance(store(&controller), ids[1], failing("firewall")).await;
    let mut admin = controller.admin().await;
    let request = |check: &str| BulkWipeRequest {
        noncompliant: true,
        failing_check: check.into(),
        scope: WipeScope::Messaging as i32,
        reason: "unencrypted".into(),
        idempotency_key: "enc".into(),
        dry_run: true,
        ..BulkWipeRequest::default()
    };
    let all = admin.bulk_wipe(request("")).await.unwrap().into_inner();
    assert_eq!(all.devices.len(), 2);
    let disk = admin
        .bulk_wipe(request("disk_encryption"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disk.devices.len(), 1);
    assert_eq!(disk.devices[0].device_id, ids[0].to_string());
    let err = admin.bulk_wipe(request("os_updates")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = admin.bulk_wipe(request("no_such_check")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_selection_above_the_threshold_waits_whole_for_one_second_admin() {
    let controller = TestController::start_with(|c| c.approval_threshold = Some(2)).await;
    seed_devices(store(&controller), "ed@hospital.org", "ed", 3).await;
    seed_devices(store(&controller), "flo@hospital.org", "flo", 2).await;
    let mut admin = controller.admin().await;

    // Two devices: at the threshold, no approval.
    let small = admin
        .bulk_wipe(by_user("flo@hospital.org", "flo"))
        .await
        .unwrap()
        .into_inner();
    assert!(!small.needs_approval);
    assert!(
        small
            .devices
            .iter()
            .all(|d| d.state == CommandState::Queued as i32)
    );

    // Three: the dry run says so, and the wipe waits, every command of it.
    let dry = admin
        .bulk_wipe(BulkWipeRequest {
            dry_run: true,
            ..by_user("ed@hospital.org", "ed")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(dry.needs_approval);
    let big = admin
        .bulk_wipe(by_user("ed@hospital.org", "ed"))
        .await
        .unwrap()
        .into_inner();
    assert!(big.needs_approval);
    assert_eq!(big.devices.len(), 3);
    assert!(
        big.devices
            .iter()
            .all(|d| d.state == CommandState::AwaitingApproval as i32)
    );

    // The issuer may not release it.
    let err = admin
        .approve_bulk_wipe(GetBulkWipeRequest {
            batch: big.batch.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // A second admin releases the whole selection in one call.
    let mut second = controller.break_glass().await;
    let approved = second
        .approve_bulk_wipe(GetBulkWipeRequest {
            batch: big.batch.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.devices.len(), 3);
    assert!(
        approved
            .devices
            .iter()
            .all(|d| d.state == CommandState::Queued as i32)
    );
    let cmds = commands(&mut admin).await;
    assert!(
        cmds.iter()
            .filter(|c| c.state == CommandState::Queued as i32)
            .all(|c| c.approved_by == "break-glass" || c.created_by == "admin")
    );
    // Nothing is left to approve.
    let err = second
        .approve_bulk_wipe(GetBulkWipeRequest { batch: big.batch })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // A full wipe under --require-approval waits whatever the size.
    let full = admin
        .bulk_wipe(BulkWipeRequest {
            scope: WipeScope::Full as i32,
            ..by_user("flo@hospital.org", "flo-full")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(full.needs_approval);
}

#[tokio::test]
async fn a_role_without_the_wipe_permission_is_refused_and_nothing_is_issued() {
    let controller = TestController::start().await;
    seed_devices(store(&controller), "gus@hospital.org", "gus", 2).await;
    let mut desk = controller
        .admin_with_role("desk", AdminRole::Helpdesk)
        .await;
    let err = desk
        .bulk_wipe(by_user("gus@hospital.org", "g"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut hr = controller
        .admin_with_role("hr", AdminRole::Offboarding)
        .await;
    let err = hr
        .bulk_wipe(BulkWipeRequest {
            scope: WipeScope::Full as i32,
            ..by_user("gus@hospital.org", "g")
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut admin = controller.admin().await;
    assert!(commands(&mut admin).await.is_empty());
    // The offboarding role may wipe messaging data in bulk.
    let report = hr
        .bulk_wipe(by_user("gus@hospital.org", "g"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.batch, "hr:g");
    assert_eq!(report.issued, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bulk_wipe_sent_four_times_at_once_issues_each_wipe_once() {
    let controller = TestController::start().await;
    seed_devices(store(&controller), "hu@hospital.org", "hu", 50).await;
    let admin = controller.admin().await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let mut admin = admin.clone();
            tokio::spawn(async move {
                admin
                    .bulk_wipe(by_user("hu@hospital.org", "retry"))
                    .await
                    .unwrap()
                    .into_inner()
            })
        })
        .collect();
    let mut issued = 0;
    for call in calls {
        let report = call.await.unwrap();
        assert_eq!(report.devices.len(), 50);
        assert!(report.devices.iter().all(|d| !d.command_id.is_empty()));
        issued += report.issued;
    }
    assert_eq!(
        issued, 50,
        "each wipe is reported as issued by one call only"
    );
    let mut admin = admin;
    let cmds = commands(&mut admin).await;
    assert_eq!(cmds.len(), 50);
    let entries = audit(&mut admin).await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "device.bulk_wipe" && e.target == "admin:retry")
            .count(),
        1,
        "one batch entry, by the call that issued the wipes"
    );
    for c in &cmds {
        assert_eq!(
            entries
                .iter()
                .filter(|e| e.action == "command.issue" && e.target == c.id)
                .count(),
            1
        );
    }
}
