//! Text a device chooses (a receipt's command id and other fields, a result's failure reason)
//! reaches the admin's terminal through `wardctl command show`. It is cleaned (no control
//! characters: no terminal escape sequences) and bounded when the controller takes it, and
//! again when `wardctl` displays it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ward_certs::receipt::WipeReceiptBody;
use ward_controller::core::CommandState as DomainState;
use ward_controller::store::Store;
use ward_e2e::inprocess::{EnrolledDevice, TestController};
use ward_e2e::process::{stderr, wardctl};
use ward_proto::v1::issue_command_request::Action;
use ward_proto::v1::*;

/// OSC (set the window title), clear screen, a C1 CSI and a bidi override.
const NASTY: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}";

async fn acknowledged_wipe(
    controller: &TestController,
    device: &EnrolledDevice,
    key: &str,
) -> Command {
    let command = controller
        .admin()
        .await
        .issue_command(IssueCommandRequest {
            device_id: device.device_id.clone(),
            action: Some(Action::Wipe(WipeAction {
                scope: WipeScope::Messaging as i32,
            })),
            reason: "lost".into(),
            idempotency_key: key.into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner();
    controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap()
        .acknowledge(AcknowledgeRequest {
            command_id: command.id.clone(),
        })
        .await
        .unwrap();
    command
}

fn body(command_id: String, device: &EnrolledDevice) -> WipeReceiptBody {
    WipeReceiptBody {
        command_id,
        device_id: device.device_id.clone(),
        completed_at: format!("2026-11-24T00:00:00Z{NASTY}"),
        scope: ward_certs::receipt::WipeScope::Messaging,
        key_destroyed: true,
        files_removed: 1,
        bytes_removed: 10,
        verified_empty: true,
        full_erase: Some(format!("hook{NASTY}")),
        key_protection: None,
        sanitization: None,
    }
}

async fn report(
    controller: &TestController,
    device: &EnrolledDevice,
    id: &str,
    body: &WipeReceiptBody,
) {
    let signed = body.sign(&device.key).unwrap();
    let state = controller
        .agent_with(&device.certificate_der, &device.key)
        .await
        .unwrap()
        .report_result(ReportResultRequest {
            command_id: id.into(),
            succeeded: true,
            failure_reason: String::new(),
            receipt: Some(WipeReceipt {
                body: signed.body,
                signature: signed.signature,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .state;
    assert_eq!(state, CommandState::Failed as i32);
}

fn clean(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{what} holds control characters: {:?}…",
        text.chars().take(200).collect::<String>()
    );
}

fn assert_shown_clean(table: &str, json: &serde_json::Value) {
    for line in table.lines() {
        clean("a line of `command show`", line);
    }
    let mut strings = Vec::new();
    collect_strings(json, &mut strings);
    for s in strings {
        clean("a string in `command show --output json`", &s);
    }
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            collect_strings(v, out);
        }),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_a_command_id_with_escape_codes_is_shown_cleaned_and_bounded() {
    let controller = TestController::start().await;
    let device = controller.enroll("eve@hospital.org").await;
    let command = acknowledged_wipe(&controller, &device, "w1").await;
    // Signed by the device's own key, for a command id that is not this command's.
    let forged_id = format!("{NASTY}{}", "A".repeat(3000));
    report(&controller, &device, &command.id, &body(forged_id, &device)).await;

    let shown = controller
        .admin()
        .await
        .get_command(GetCommandRequest {
            command_id: command.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let receipt = shown.receipt.clone().unwrap();
    assert!(!receipt.verified);
    clean("the failure reason", &shown.failure_reason);
    clean(
        "the receipt's verification error",
        &receipt.verification_error,
    );
    assert!(
        shown.failure_reason.len() <= 1000,
        "{}",
        shown.failure_reason.len()
    );
    assert!(receipt.verification_error.len() <= 1000);
    assert!(
        receipt
            .verification_error
            .contains("receipt is for command"),
        "{}",
        receipt.verification_error
    );

    let (table, json) = tokio::task::spawn_blocking({
        let id = command.id.clone();
        let controller_url = controller.url.clone();
        let bundle = controller.data.admin_bundle();
        move || show_at(&controller_url.to_string(), &bundle, &id)
    })
    .await
    .unwrap();
    assert_shown_clean(&table, &json);
    // Displayed fields are bounded: no line of the table is anywhere near the 3,000 'A's.
    assert!(table.lines().all(|l| l.chars().count() <= 1200), "{table}");
    // The exact signed bytes stay available for independent checking.
    assert!(json["receipt"]["body_base64"].as_str().unwrap().len() > 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_receipt_is_not_kept() {
    let controller = TestController::start().await;
    let device = controller.enroll("eve@hospital.org").await;
    let command = acknowledged_wipe(&controller, &device, "w1").await;
    let mut big = body(command.id.clone(), &device);
    big.full_erase = Some("x".repeat(200_000));
    report(&controller, &device, &command.id, &big).await;
    let shown = controller
        .admin()
        .await
        .get_command(GetCommandRequest {
            command_id: command.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let receipt = shown.receipt.unwrap();
    assert!(!receipt.verified);
    assert!(
        receipt.body.len() <= 16 * 1024,
        "{} bytes kept",
        receipt.body.len()
    );
    assert!(
        receipt.verification_error.contains("larger than"),
        "{}",
        receipt.verification_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_stored_before_cleaning_is_cleaned_on_display() {
    let controller = TestController::start().await;
    let device = controller.enroll("eve@hospital.org").await;
    let command = acknowledged_wipe(&controller, &device, "w1").await;
    // As an older controller might have stored it.
    let id: ward_controller::core::CommandId = command.id.parse().unwrap();
    let stored = controller.store.get_command(id).await.unwrap().unwrap();
    let mut raw = stored.clone();
    raw.state = DomainState::Failed;
    raw.failure_reason = Some(format!("{NASTY}{}", "B".repeat(50_000)));
    raw.receipt = Some(ward_controller::core::Receipt {
        body: serde_json::to_vec(&body(format!("id{NASTY}"), &device)).unwrap(),
        signature: vec![1, 2, 3],
        verified: false,
        error: Some(format!("receipt is for command id{NASTY}")),
    });
    assert!(
        controller
            .store
            .update_command(stored.version(), &raw)
            .await
            .unwrap()
    );
    let (table, json) = tokio::task::spawn_blocking({
        let id = command.id.clone();
        let controller_url = controller.url.clone();
        let bundle = controller.data.admin_bundle();
        move || show_at(&controller_url.to_string(), &bundle, &id)
    })
    .await
    .unwrap();
    assert_shown_clean(&table, &json);
    assert!(table.lines().all(|l| l.chars().count() <= 1200), "{table}");
    assert!(json["failure_reason"].as_str().unwrap().len() <= 1000);
}

fn show_at(url: &str, bundle: &std::path::Path, id: &str) -> (String, serde_json::Value) {
    let run = |format: &str| {
        let out = wardctl(&[
            "command",
            "show",
            id,
            "--server",
            url,
            "--admin-cert",
            &bundle.display().to_string(),
            "--output",
            format,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = run("table");
    let json = serde_json::from_str(&run("json")).unwrap();
    (table, json)
}
