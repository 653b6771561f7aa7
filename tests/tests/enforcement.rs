//! Graded enforcement on the controller, with an in-process controller whose clock the test
//! moves: a required check whose action is wipe and that keeps failing past the policy's grace
//! period gets the device's messaging data wiped, once per failure episode, by an ordinary
//! wipe command the controller issues; report and block never wipe.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use ward_controller::core::Clock;
use ward_e2e::inprocess::TestController;
use ward_proto::v1::agent_service_client::AgentServiceClient;
use ward_proto::v1::*;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn action(check: &str, action: EnforcementAction) -> CheckAction {
    CheckAction {
        check: check.into(),
        action: action as i32,
    }
}

/// A compliance report in which each of `checks` passes or fails.
fn report(revision: u64, checks: &[(&str, bool)]) -> CheckInRequest {
    CheckInRequest {
        compliance: Some(ComplianceReport {
            policy_revision: revision,
            checks: checks
                .iter()
                .map(|(name, passes)| ComplianceCheck {
                    name: (*name).into(),
                    status: if *passes {
                        CheckStatus::Pass
                    } else {
                        CheckStatus::Fail
                    } as i32,
                    detail: if *passes {
                        "fine".into()
                    } else {
                        format!("{name} is off")
                    },
                })
                .collect(),
        }),
        ..CheckInRequest::default()
    }
}

struct Setup {
    controller: TestController,
    device_id: String,
    agent: AgentServiceClient<Channel>,
    revision: u64,
}

/// A controller with `policy` set, and one enrolled device speaking for itself.
async fn setup(policy: SetPolicyRequest) -> Setup {
    let controller = TestController::start().await;
    let policy = controller
        .admin()
        .await
        .set_policy(policy)
        .await
        .unwrap()
        .into_inner();
    let device = controller.enroll("eve@hospital.org").await;
    let agent = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap();
    Setup {
        controller,
        device_id: device.device_id,
        agent,
        revision: policy.revision,
    }
}

impl Setup {
    fn now_ms(&self) -> i64 {
        self.controller.clock.now().unix_ms()
    }

    /// Checks in with a report; returns the commands handed out with the answer.
    async fn check_in(&mut self, checks: &[(&str, bool)]) -> Vec<DeviceCommand> {
        self.agent
            .check_in(report(self.revision, checks))
            .await
            .unwrap()
            .into_inner()
            .pending_commands
    }

    async fn device(&self) -> Device {
        self.controller
            .admin()
            .await
            .get_device(GetDeviceRequest {
                device_id: self.device_id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn commands(&self) -> Vec<Command> {
        self.controller
            .admin()
            .await
            .list_commands(ListCommandsRequest {
                device_id: self.device_id.clone(),
                ..ListCommandsRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .commands
    }

    /// The device's `device.enforcement` audit entries: (step, check, action).
    async fn enforcement_audit(&self) -> Vec<(String, String, Option<String>)> {
        self.controller
            .admin()
            .await
            .list_audit(ListAuditRequest {
                target: self.device_id.clone(),
                ..ListAuditRequest::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .filter(|e| e.action == "device.enforcement")
            .map(|e| {
                assert_eq!(e.actor, "controller");
                let d: serde_json::Value = serde_json::from_str(&e.details_json).unwrap();
                (
                    d["step"].as_str().unwrap().to_owned(),
                    d["check"].as_str().unwrap().to_owned(),
                    d["action"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }
}

fn step(step: &str, check: &str, action: Option<&str>) -> (String, String, Option<String>) {
    (step.into(), check.into(), action.map(str::to_owned))
}

fn is_wipe(command: &DeviceCommand) -> bool {
    matches!(
        &command.action,
        Some(device_command::Action::Wipe(w)) if w.scope == WipeScope::Messaging as i32
    )
}

fn wipe_policy() -> SetPolicyRequest {
    SetPolicyRequest {
        require_firewall: Some(true),
        check_actions: vec![action("firewall", EnforcementAction::Wipe)],
        wipe_grace_seconds: Some(3600),
        ..SetPolicyRequest::default()
    }
}

#[tokio::test]
async fn a_check_failing_past_the_wipe_grace_gets_the_data_wiped_once() {
    let mut s = setup(wipe_policy()).await;
    let failing = [("firewall", false)];

    // First failing report: the episode starts, the wipe is scheduled, nothing is issued.
    let t0 = s.now_ms();
    assert!(s.check_in(&failing).await.is_empty());
    let device = s.device().await;
    assert_eq!(
        device.compliance.as_ref().unwrap().state,
        ComplianceState::Noncompliant as i32
    );
    let started = Enforcement {
        check: "firewall".into(),
        action: EnforcementAction::Wipe as i32,
        failing_since_unix_ms: t0,
        action_since_unix_ms: t0,
        wipe_due_unix_ms: t0 + 3_600_000,
        wipe_command_id: String::new(),
    };
    assert_eq!(device.enforcement, std::slice::from_ref(&started));
    assert!(s.commands().await.is_empty());
    assert_eq!(
        s.enforcement_audit().await,
        [step("failing", "firewall", Some("wipe"))]
    );

    // Within the grace period, down to the last millisecond: still no wipe, same start.
    s.controller.clock.advance(30 * MINUTE);
    assert!(s.check_in(&failing).await.is_empty());
    s.controller
        .clock
        .advance(30 * MINUTE - Duration::from_millis(1));
    assert!(s.check_in(&failing).await.is_empty());
    assert_eq!(s.device().await.enforcement, std::slice::from_ref(&started));
    assert!(s.commands().await.is_empty());

    // Grace over: one messaging wipe, by the controller, handed out with this very answer.
    s.controller.clock.advance(Duration::from_millis(1));
    let handed = s.check_in(&failing).await;
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert!(is_wipe(&handed[0]), "{handed:?}");
    let commands = s.commands().await;
    assert_eq!(commands.len(), 1, "{commands:?}");
    let wipe = &commands[0];
    assert_eq!(wipe.id, handed[0].id);
    assert_eq!(wipe.kind, "wipe");
    assert_eq!(wipe.scope, "messaging");
    assert_eq!(wipe.created_by, "controller");
    assert!(
        wipe.reason
            .starts_with("compliance: firewall has failed since"),
        "{}",
        wipe.reason
    );
    assert_eq!(
        s.device().await.enforcement,
        [Enforcement {
            wipe_command_id: wipe.id.clone(),
            ..started.clone()
        }]
    );

    // Later reports of the same failure issue nothing more.
    s.controller.clock.advance(10 * MINUTE);
    let again = s.check_in(&failing).await;
    assert!(again.iter().all(|c| c.id == wipe.id), "{again:?}");
    s.controller.clock.advance(2 * HOUR);
    s.check_in(&failing).await;
    assert_eq!(s.commands().await.len(), 1);

    // Passing again ends the episode.
    s.check_in(&[("firewall", true)]).await;
    let device = s.device().await;
    assert!(device.enforcement.is_empty(), "{:?}", device.enforcement);
    assert_eq!(
        device.compliance.as_ref().unwrap().state,
        ComplianceState::Compliant as i32
    );
    assert_eq!(
        s.enforcement_audit().await,
        [
            step("failing", "firewall", Some("wipe")),
            step("cleared", "firewall", None),
        ]
    );

    // A new failure is a new episode: its own start, its own grace, its own wipe.
    s.controller.clock.advance(MINUTE);
    let t1 = s.now_ms();
    // (The first wipe, never reported by this device, is handed out again; nothing new.)
    let handed = s.check_in(&failing).await;
    assert!(handed.iter().all(|c| c.id == wipe.id), "{handed:?}");
    let device = s.device().await;
    assert_eq!(device.enforcement[0].failing_since_unix_ms, t1);
    assert_eq!(device.enforcement[0].wipe_command_id, "");
    s.controller.clock.advance(HOUR);
    let handed = s.check_in(&failing).await;
    let commands = s.commands().await;
    assert_eq!(commands.len(), 2, "{commands:?}");
    let second = commands.iter().find(|c| c.id != wipe.id).unwrap();
    assert!(handed.iter().any(|c| c.id == second.id));
    assert_eq!(second.created_by, "controller");
}

#[tokio::test]
async fn report_and_block_never_wipe() {
    let mut s = setup(SetPolicyRequest {
        require_firewall: Some(true),
        forbidden_packages: Some(PackageList {
            names: vec!["telegram-desktop".into()],
        }),
        check_actions: vec![
            action("firewall", EnforcementAction::Report),
            action("forbidden_packages", EnforcementAction::Block),
        ],
        wipe_grace_seconds: Some(3600),
        ..SetPolicyRequest::default()
    })
    .await;
    let failing = [("firewall", false), ("forbidden_packages", false)];
    let t0 = s.now_ms();
    assert!(s.check_in(&failing).await.is_empty());
    // Days pass (within the device certificate's week).
    for _ in 0..3 {
        s.controller.clock.advance(36 * HOUR);
        assert!(s.check_in(&failing).await.is_empty());
    }
    assert!(s.commands().await.is_empty());
    let mut enforcement = s.device().await.enforcement;
    enforcement.sort_by(|a, b| a.check.cmp(&b.check));
    assert_eq!(
        enforcement,
        [
            Enforcement {
                check: "firewall".into(),
                action: EnforcementAction::Report as i32,
                failing_since_unix_ms: t0,
                action_since_unix_ms: t0,
                wipe_due_unix_ms: 0,
                wipe_command_id: String::new(),
            },
            Enforcement {
                check: "forbidden_packages".into(),
                action: EnforcementAction::Block as i32,
                failing_since_unix_ms: t0,
                action_since_unix_ms: t0,
                wipe_due_unix_ms: 0,
                wipe_command_id: String::new(),
            },
        ]
    );
    let mut audit = s.enforcement_audit().await;
    audit.sort();
    assert_eq!(
        audit,
        [
            step("failing", "firewall", Some("report")),
            step("failing", "forbidden_packages", Some("block")),
        ]
    );
}

#[tokio::test]
async fn a_wipe_action_without_a_valid_grace_is_refused_and_changes_nothing() {
    let controller = TestController::start().await;
    let mut admin = controller.admin().await;
    let before = admin
        .set_policy(SetPolicyRequest {
            require_firewall: Some(true),
            ..SetPolicyRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    for grace in [None, Some(0), Some(1800), Some(366 * 24 * 3600)] {
        let err = admin
            .set_policy(SetPolicyRequest {
                check_actions: vec![action("firewall", EnforcementAction::Wipe)],
                wipe_grace_seconds: grace,
                ..SetPolicyRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "grace {grace:?}: {err:?}"
        );
        // Named by the flag an admin passes, not the stored field.
        assert!(err.message().contains("--wipe-grace"), "{}", err.message());
    }
    let unknown_check = admin
        .set_policy(SetPolicyRequest {
            check_actions: vec![action("bluetooth", EnforcementAction::Block)],
            ..SetPolicyRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_check.code(), Code::InvalidArgument);
    let now = admin
        .get_policy(GetPolicyRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now, before, "a refused change left a trace");

    // With a grace in range it is accepted.
    let accepted = admin
        .set_policy(SetPolicyRequest {
            check_actions: vec![action("firewall", EnforcementAction::Wipe)],
            wipe_grace_seconds: Some(24 * 3600),
            ..SetPolicyRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.revision, before.revision + 1);
    assert_eq!(accepted.wipe_grace_seconds, 24 * 3600);
    assert!(
        accepted
            .check_actions
            .contains(&action("firewall", EnforcementAction::Wipe))
    );
}

#[tokio::test]
async fn only_a_definite_failure_against_the_policy_in_force_wipes() {
    let mut s = setup(wipe_policy()).await;
    // "unsupported", then nothing at all, for two grace periods: blocked, never wiped.
    let mut unsupported = report(s.revision, &[("firewall", false)]);
    unsupported.compliance.as_mut().unwrap().checks[0].status = CheckStatus::Unsupported as i32;
    s.agent.check_in(unsupported.clone()).await.unwrap();
    s.controller.clock.advance(2 * HOUR);
    let handed = s.agent.check_in(unsupported).await.unwrap().into_inner();
    assert!(handed.pending_commands.is_empty());
    s.agent.check_in(report(s.revision, &[])).await.unwrap();
    assert!(s.commands().await.is_empty(), "no wipe on a non-answer");
    // Shown as what it does (blocks), with no wipe date: `device show` never promises a wipe
    // that cannot come.
    let unsure = &s.device().await.enforcement[0];
    assert_eq!(unsure.action, EnforcementAction::Block as i32, "{unsure:?}");
    assert_eq!(unsure.wipe_due_unix_ms, 0, "{unsure:?}");

    // A definite failure, but judged against an older policy: still no wipe.
    let stale = report(s.revision - 1, &[("firewall", false)]);
    s.agent.check_in(stale).await.unwrap();
    assert!(s.commands().await.is_empty(), "no wipe on a stale report");
    // The grace counts from the first definite failure.
    let definite = &s.device().await.enforcement[0];
    assert_eq!(definite.action, EnforcementAction::Wipe as i32);
    assert_eq!(definite.wipe_due_unix_ms, s.now_ms() + 3_600_000);
    s.controller.clock.advance(HOUR);

    // The same failure reported against the policy in force, past the grace: the wipe.
    let wipes = s.check_in(&[("firewall", false)]).await;
    assert_eq!(wipes.iter().filter(|c| is_wipe(c)).count(), 1);
}
