//! Fuzz check: bytes from a device, decoded as each agent-facing request and turned into
//! domain values the way the services do before anything reaches the store.

use std::sync::OnceLock;

use prost::Message;
use tonic::Code;
use ward_certs::PrivateKeyDer;
use ward_certs::receipt::{SignedReceipt, WipeReceiptBody, verify_receipt};
use ward_proto::v1;

use crate::grpc::convert::{checks_from_wire, compliance_to_wire, facts_from_wire, facts_to_wire};
use ward_controller::app::{OFFLINE_TIMER, check_report, sanitize};
use ward_core::command::MAX_TEXT_LEN;
use ward_core::model::MAX_FACT_LEN;
use ward_core::policy::MAX_CHECKS;
use ward_core::{CheckStatus, CommandId, Compliance, EnrollmentToken, Policy, Timestamp};

/// The device the checks act for.
const DEVICE_ID: &str = "6f1c0000-4000-8000-0000-000000000003";

/// The input is decoded as `CheckInRequest`, `AcknowledgeRequest`, `ReportResultRequest`,
/// `EnrollRequest` and `RenewRequest` in turn; whatever decodes is converted.
///
/// Invariants: nothing panics; a conversion either fails with `invalid_argument` or yields
/// values that pass their own rules (facts and check texts bounded and free of control
/// characters, ids canonical, a reason sanitized); a judged report is compliant exactly when
/// every required check passed; a receipt verifies only with the device's signature and then
/// states what it must.
pub fn agent_message(data: &[u8]) {
    if let Ok(request) = v1::CheckInRequest::decode(data) {
        facts(request.facts);
        if let Some(report) = &request.compliance {
            compliance(report);
        }
        if let Some(receipt) = request.offline_wipe {
            wipe_receipt(receipt, OFFLINE_TIMER);
        }
        if let Some(wire) = request.inventory {
            inventory(wire);
        }
    }
    if let Ok(request) = v1::AcknowledgeRequest::decode(data) {
        command_id(&request.command_id);
    }
    if let Ok(request) = v1::ReportResultRequest::decode(data) {
        let reason = sanitize(&request.failure_reason);
        assert!(
            reason.len() <= MAX_TEXT_LEN,
            "a sanitized reason is bounded"
        );
        assert!(
            !reason.chars().any(char::is_control),
            "a sanitized reason is clean"
        );
        if let (Some(id), Some(receipt)) = (command_id(&request.command_id), request.receipt) {
            wipe_receipt(receipt, &id.to_string());
        }
    }
    if let Ok(request) = v1::EnrollRequest::decode(data) {
        if let Ok(token) = request.token.parse::<EnrollmentToken>() {
            assert_eq!(token.expose(), request.token.trim());
            assert!(token.expose().starts_with("ward_"));
        }
        ward_certs::fuzzing::csr(&request.csr_der);
        facts(request.facts);
    }
    if let Ok(request) = v1::RenewRequest::decode(data) {
        ward_certs::fuzzing::csr(&request.csr_der);
    }
}

/// An accepted inventory passes its own rules and survives the round trip to admins.
fn inventory(wire: v1::Inventory) {
    use crate::grpc::convert_posture::{inventory_from_wire, inventory_to_wire};
    if let Ok(inventory) = inventory_from_wire(wire) {
        assert!(
            inventory.validate().is_ok(),
            "an accepted inventory is valid"
        );
        let again = inventory_from_wire(inventory_to_wire(&inventory));
        assert_eq!(
            again.ok().as_ref(),
            Some(&inventory),
            "inventory round trip"
        );
    }
}

fn facts(wire: Option<v1::DeviceFacts>) {
    let sent = wire.clone().unwrap_or_default();
    let facts = facts_from_wire(wire);
    assert_eq!(facts_to_wire(&facts), sent, "facts convert without loss");
    if facts.validate().is_ok() {
        for value in [&facts.hostname, &facts.os_name, &facts.os_version] {
            assert!(value.len() <= MAX_FACT_LEN && !value.chars().any(char::is_control));
        }
        for value in [&facts.kernel_version, &facts.arch, &facts.agent_version] {
            assert!(value.len() <= MAX_FACT_LEN && !value.chars().any(char::is_control));
        }
    }
}

fn compliance(report: &v1::ComplianceReport) {
    let checks = match checks_from_wire(report) {
        Ok(checks) => checks,
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument);
            return;
        }
    };
    assert_eq!(checks.len(), report.checks.len());
    if check_report(&checks).is_err() {
        return;
    }
    assert!(checks.len() <= MAX_CHECKS);
    assert!(checks.iter().all(|c| !c.name.is_empty()));
    let policy = Policy {
        password_min_length: 12,
        auto_lock_seconds: 300,
        require_disk_encryption: true,
        ..Policy::default()
    };
    let expected = policy.required_checks().iter().all(|check| {
        checks
            .iter()
            .find(|c| c.name == check.as_str())
            .is_some_and(|c| c.status == CheckStatus::Pass)
    });
    let judged = Compliance::judge(
        &policy,
        checks,
        Timestamp::from_unix_ms(0),
        report.policy_revision,
    );
    assert_eq!(judged.compliant, judged.reasons.is_empty());
    assert_eq!(
        judged.compliant, expected,
        "compliant iff every required check passed"
    );
    assert_eq!(
        compliance_to_wire(Some(&judged)).checks,
        report.checks,
        "checks are shown as reported"
    );
}

fn command_id(text: &str) -> Option<CommandId> {
    let id: CommandId = text.parse().ok()?;
    assert_eq!(
        id.to_string().parse::<CommandId>(),
        Ok(id),
        "one id, one text"
    );
    Some(id)
}

struct DeviceKey {
    key: PrivateKeyDer,
    spki: Vec<u8>,
}

/// The device's key: generated per process, never stored.
fn device_key() -> &'static DeviceKey {
    static KEY: OnceLock<DeviceKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let made = PrivateKeyDer::generate()
            .and_then(|key| ward_certs::csr::make_csr(&key, "device").map(|csr| (key, csr)));
        let (key, csr) = match made {
            Ok(made) => made,
            Err(e) => panic!("cannot make the fuzzing device key: {e}"),
        };
        let spki = match ward_certs::VerifiedCsr::from_der(&csr) {
            Ok(csr) => csr.public_key_der().to_vec(),
            Err(e) => panic!("cannot read the fuzzing device key: {e}"),
        };
        DeviceKey { key, spki }
    })
}

/// The receipt as sent must not verify (no one but this process holds the key); the same
/// body honestly signed exercises the body rules.
fn wipe_receipt(wire: v1::WipeReceipt, command: &str) {
    let device = device_key();
    let sent = SignedReceipt {
        body: wire.body,
        signature: wire.signature,
    };
    assert!(
        verify_receipt(&sent, &device.spki, command, DEVICE_ID).is_err(),
        "a receipt the device did not sign was accepted"
    );
    let signature = match ward_certs::sign::sign(&device.key, &sent.body) {
        Ok(signature) => signature,
        Err(e) => panic!("cannot sign with the fuzzing device key: {e}"),
    };
    let signed = SignedReceipt {
        body: sent.body,
        signature,
    };
    if let Ok(body) = verify_receipt(&signed, &device.spki, command, DEVICE_ID) {
        assert_eq!(body.command_id, command);
        assert_eq!(body.device_id, DEVICE_ID);
        assert!(body.key_destroyed && body.verified_empty);
    }
}

/// Seeds: each request as a well-behaved agent sends it, and a few as a hostile one would.
pub fn agent_message_seeds() -> Vec<(String, Vec<u8>)> {
    let command = "6f1c0000-4000-8000-0000-0000000000c1";
    let facts = v1::DeviceFacts {
        hostname: "ward-laptop-17".into(),
        os_name: "Debian GNU/Linux".into(),
        os_version: "12".into(),
        kernel_version: "6.1.0-18-amd64".into(),
        arch: "x86_64".into(),
        agent_version: "0.1.0".into(),
    };
    let check = |name: &str, status: v1::CheckStatus| v1::ComplianceCheck {
        name: name.into(),
        status: status as i32,
        detail: "seed".into(),
    };
    let receipt = |command_id: &str| {
        let body = WipeReceiptBody {
            command_id: command_id.into(),
            device_id: DEVICE_ID.into(),
            completed_at: "2026-01-01T00:00:00Z".into(),
            scope: ward_certs::receipt::WipeScope::Messaging,
            key_destroyed: true,
            files_removed: 3,
            bytes_removed: 4096,
            verified_empty: true,
            full_erase: None,
            key_protection: None,
            sanitization: None,
        };
        v1::WipeReceipt {
            body: serde_json::to_vec(&body).unwrap_or_default(),
            signature: vec![0x30, 0x44, 0x02, 0x20],
        }
    };
    let check_in = v1::CheckInRequest {
        facts: Some(facts.clone()),
        compliance: Some(v1::ComplianceReport {
            policy_revision: 3,
            checks: vec![
                check("disk_encryption", v1::CheckStatus::Pass),
                check("password_rules", v1::CheckStatus::Fail),
                check("auto_lock", v1::CheckStatus::Unsupported),
            ],
        }),
        offline_wipe: Some(receipt(OFFLINE_TIMER)),
        inventory: Some(v1::Inventory {
            hardware_vendor: "LENOVO".into(),
            hardware_model: "ThinkPad T14".into(),
            cpu_model: "Intel(R) Core(TM) i7".into(),
            cpu_count: 8,
            memory_bytes: 16 << 30,
            packages: vec![v1::PackageCount {
                manager: "dpkg".into(),
                count: 1834,
            }],
            filesystems: vec![v1::Filesystem {
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                source: "/dev/mapper/root".into(),
                encryption: "encrypted".into(),
            }],
            firewall: "active: nftables".into(),
        }),
        trusted_ca_hashes: vec![format!("sha256:{}", "ab".repeat(32))],
    };
    let hostile = v1::CheckInRequest {
        facts: Some(v1::DeviceFacts {
            hostname: "evil\u{1b}[2J".into(),
            ..facts.clone()
        }),
        compliance: Some(v1::ComplianceReport {
            policy_revision: u64::MAX,
            checks: vec![v1::ComplianceCheck {
                name: String::new(),
                status: 99,
                detail: "x".repeat(1001),
            }],
        }),
        offline_wipe: None,
        inventory: Some(v1::Inventory {
            cpu_model: "evil\u{1b}[2J".into(),
            filesystems: vec![v1::Filesystem {
                encryption: "probably".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        trusted_ca_hashes: vec!["sha256:not-hex".into(), "md5:00".into()],
    };
    let key = PrivateKeyDer::generate();
    let csr = key
        .and_then(|key| ward_certs::csr::make_csr(&key, "laptop"))
        .unwrap_or_default();
    vec![
        ("check-in".into(), check_in.encode_to_vec()),
        ("check-in-hostile".into(), hostile.encode_to_vec()),
        (
            "acknowledge".into(),
            v1::AcknowledgeRequest {
                command_id: command.into(),
            }
            .encode_to_vec(),
        ),
        (
            "report-result".into(),
            v1::ReportResultRequest {
                command_id: command.into(),
                succeeded: true,
                failure_reason: "disk\nfull\u{7}".into(),
                receipt: Some(receipt(command)),
            }
            .encode_to_vec(),
        ),
        (
            "enroll".into(),
            v1::EnrollRequest {
                token: "ward_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
                csr_der: csr.clone(),
                facts: Some(facts),
            }
            .encode_to_vec(),
        ),
        (
            "renew".into(),
            v1::RenewRequest { csr_der: csr }.encode_to_vec(),
        ),
    ]
}
