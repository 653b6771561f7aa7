//! A device as `wardctl device list/show` print it: facts, compliance, inventory, posture.

use serde::Serialize;
use ward_proto::v1;

use super::error::CliError;
use super::output::{OutputFormat, print_fields, print_json};
use ward_core::{Inventory, Timestamp};

/// One device, as scripts see it. `compliant` is null until the device has sent a
/// compliance report.
#[derive(Serialize)]
pub(super) struct DeviceView {
    /// The device's id (README, "JSON output": the canonical name).
    pub device_id: String,
    /// Deprecated alias of `device_id`, kept for existing scripts.
    pub id: String,
    pub user: String,
    pub hostname: String,
    pub os: String,
    /// Deprecated alias of `last_seen_at`, kept for existing scripts.
    pub last_seen: Option<String>,
    /// The device's last check-in (null: never).
    pub last_seen_at: Option<String>,
    pub compliant: Option<bool>,
    /// The device's state: active, revoked or retired (canonical name).
    pub device_state: &'static str,
    /// Deprecated alias of `device_state`, kept for existing scripts.
    pub state: &'static str,
    os_name: String,
    os_version: String,
    kernel_version: String,
    arch: String,
    agent_version: String,
    enrolled_at: String,
    certificate_serial: String,
    certificate_expires_at: String,
    /// Why the device is not compliant, one line per failing required check.
    compliance_reasons: Vec<String>,
    compliance_checks: Vec<CheckView>,
    compliance_reported_at: Option<String>,
    compliance_policy_revision: u64,
    /// When the agent's offline timer wiped the messaging data by itself (null: never).
    offline_wipe_at: Option<String>,
    offline_wipe_receipt_verified: bool,
    /// Set while an admin has disabled the device (its messaging key withheld).
    disabled: Option<DisabledView>,
    /// For each required check that fails: its action and when each step happened.
    enforcement: Vec<EnforcementView>,
    /// The last inventory the agent reported (null until it reports one).
    inventory: Option<InventoryView>,
    /// A suspected clone: a second party renewed this device or called with a certificate a
    /// renewal replaced (null: none seen).
    renewal_conflict: Option<RenewalConflictView>,
    /// `device show`: every certificate the device had, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<KeyView>,
    /// The newest wipe of the messaging data the controller holds proof of (null: never
    /// wiped). After it the agent hands out no data key again, so the device is out of
    /// service even while its state is "active" (`device return` says what can be done).
    pub messaging_wipe: Option<super::device_wipes::MessagingWipeView>,
    /// For a retired device (`device show`): the retire command, with its verified receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retirement: Option<super::commands::CommandView>,
}

#[derive(Serialize)]
struct RenewalConflictView {
    at: Option<String>,
    certificate_serial: String,
    detail: String,
}

#[derive(Serialize)]
struct KeyView {
    serial: String,
    issued_at: Option<String>,
    /// The device's first call with it (null: never used).
    in_use_at: Option<String>,
    /// When a newer certificate came into use and this one was revoked (null: not replaced).
    replaced_at: Option<String>,
}

#[derive(Serialize)]
struct DisabledView {
    reason: String,
    at: Option<String>,
    by: String,
    command_id: String,
}

#[derive(Serialize)]
struct EnforcementView {
    check: String,
    action: &'static str,
    failing_since: Option<String>,
    /// When the current action took effect (a wipe's grace counts from here).
    action_since: Option<String>,
    wipe_due: Option<String>,
    wipe_command_id: Option<String>,
}

/// The inventory as the agent reported it, and the sum of its package counts.
#[derive(Serialize)]
struct InventoryView {
    #[serde(flatten)]
    reported: Inventory,
    packages_installed: u64,
}

impl From<v1::Inventory> for InventoryView {
    fn from(i: v1::Inventory) -> Self {
        let reported = Inventory::from(i);
        Self {
            packages_installed: reported.packages.iter().map(|p| u64::from(p.count)).sum(),
            reported,
        }
    }
}

#[derive(Serialize)]
struct CheckView {
    name: String,
    status: &'static str,
    detail: String,
}

fn check_status(status: i32) -> &'static str {
    match v1::CheckStatus::try_from(status) {
        Ok(v1::CheckStatus::Pass) => "pass",
        Ok(v1::CheckStatus::Fail) => "fail",
        Ok(v1::CheckStatus::Unsupported) => "unsupported",
        Ok(v1::CheckStatus::Error) => "error",
        _ => "unknown",
    }
}

impl DeviceView {
    /// The state column of `device list`: "disabled" stands out for an active device.
    /// The state for people: "disabled" for an active device an admin disabled, and
    /// ", messaging wiped" once its messaging data was wiped.
    pub(super) fn state_text(&self) -> String {
        let state = match (&self.disabled, self.state) {
            (Some(_), "active") => "disabled",
            (_, state) => state,
        };
        match &self.messaging_wipe {
            Some(_) => format!("{state}, messaging wiped"),
            None => state.to_owned(),
        }
    }

    pub(super) fn compliance_text(&self) -> String {
        match self.compliant {
            None => "unknown".into(),
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
        }
    }
}

fn optional_time(ms: i64) -> Option<String> {
    (ms != 0).then(|| Timestamp::from_unix_ms(ms).rfc3339())
}

impl From<v1::Device> for DeviceView {
    fn from(d: v1::Device) -> Self {
        let facts = d.facts.unwrap_or_default();
        let os = match (facts.os_name.is_empty(), facts.os_version.is_empty()) {
            (true, _) => String::new(),
            (false, true) => facts.os_name.clone(),
            (false, false) => format!("{} {}", facts.os_name, facts.os_version),
        };
        let compliance = d.compliance.unwrap_or_default();
        let state = match v1::DeviceState::try_from(d.state) {
            Ok(v1::DeviceState::Active) => "active",
            Ok(v1::DeviceState::Revoked) => "revoked",
            Ok(v1::DeviceState::Retired) => "retired",
            _ => "unknown",
        };
        let last_seen = optional_time(d.last_seen_unix_ms);
        Self {
            compliant: match v1::ComplianceState::try_from(compliance.state) {
                Ok(v1::ComplianceState::Compliant) => Some(true),
                Ok(v1::ComplianceState::Noncompliant) => Some(false),
                _ => None,
            },
            compliance_reasons: compliance.reasons,
            compliance_checks: compliance
                .checks
                .into_iter()
                .map(|c| CheckView {
                    name: c.name,
                    status: check_status(c.status),
                    detail: c.detail,
                })
                .collect(),
            compliance_reported_at: optional_time(compliance.reported_at_unix_ms),
            compliance_policy_revision: compliance.policy_revision,
            offline_wipe_at: optional_time(d.offline_wipe_at_unix_ms),
            offline_wipe_receipt_verified: d.offline_wipe_receipt_verified,
            device_state: state,
            state,
            disabled: d.disabled.map(|x| DisabledView {
                reason: x.reason,
                at: optional_time(x.at_unix_ms),
                by: x.by,
                command_id: x.command_id,
            }),
            enforcement: d
                .enforcement
                .into_iter()
                .map(|e| EnforcementView {
                    action: ward_proto::names::enforcement_action(e.action),
                    failing_since: optional_time(e.failing_since_unix_ms),
                    action_since: optional_time(e.action_since_unix_ms),
                    wipe_due: optional_time(e.wipe_due_unix_ms),
                    wipe_command_id: (!e.wipe_command_id.is_empty()).then_some(e.wipe_command_id),
                    check: e.check,
                })
                .collect(),
            inventory: d.inventory.map(InventoryView::from),
            renewal_conflict: d.renewal_conflict.map(|c| RenewalConflictView {
                at: optional_time(c.at_unix_ms),
                certificate_serial: c.serial,
                detail: c.detail,
            }),
            certificates: d
                .keys
                .into_iter()
                .map(|k| KeyView {
                    serial: k.certificate_serial,
                    issued_at: optional_time(k.issued_at_unix_ms),
                    in_use_at: optional_time(k.in_use_at_unix_ms),
                    replaced_at: optional_time(k.replaced_at_unix_ms),
                })
                .collect(),
            retirement: None,
            messaging_wipe: super::device_wipes::MessagingWipeView::from_wire(d.messaging_wipe),
            device_id: d.id.clone(),
            id: d.id,
            user: d.user,
            hostname: facts.hostname,
            os,
            last_seen_at: last_seen.clone(),
            last_seen,
            os_name: facts.os_name,
            os_version: facts.os_version,
            kernel_version: facts.kernel_version,
            arch: facts.arch,
            agent_version: facts.agent_version,
            enrolled_at: Timestamp::from_unix_ms(d.enrolled_at_unix_ms).rfc3339(),
            certificate_serial: d.certificate_serial,
            certificate_expires_at: Timestamp::from_unix_ms(d.certificate_expires_at_unix_ms)
                .rfc3339(),
        }
    }
}

pub(super) fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.to_owned()
    }
}

pub(super) fn print_device(d: &DeviceView, output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => print_json(&d),
        OutputFormat::Table => {
            let mut fields = vec![
                ("id", d.id.clone()),
                ("user", d.user.clone()),
                ("state", d.state_text()),
                ("hostname", or_dash(&d.hostname)),
                ("os", or_dash(&d.os)),
                ("kernel", or_dash(&d.kernel_version)),
                ("arch", or_dash(&d.arch)),
                ("agent version", or_dash(&d.agent_version)),
                ("enrolled", d.enrolled_at.clone()),
                (
                    "last seen",
                    d.last_seen.clone().unwrap_or_else(|| "never".into()),
                ),
                ("certificate serial", d.certificate_serial.clone()),
                ("certificate expires", d.certificate_expires_at.clone()),
            ];
            match (&d.compliant, &d.compliance_reported_at) {
                (None, _) | (_, None) => {
                    fields.push(("compliant", "unknown (no compliance report yet)".into()));
                }
                (Some(ok), Some(at)) => {
                    let verdict = if *ok { "yes" } else { "NO" };
                    fields.push((
                        "compliant",
                        format!(
                            "{verdict} (reported {at}, policy revision {})",
                            d.compliance_policy_revision
                        ),
                    ));
                }
            }
            for reason in &d.compliance_reasons {
                fields.push(("  why not", reason.clone()));
            }
            if let Some(at) = &d.offline_wipe_at {
                let verified = if d.offline_wipe_receipt_verified {
                    "receipt verified"
                } else {
                    "receipt NOT verified"
                };
                fields.push((
                    "offline wipe",
                    format!("{at} by the agent's offline timer ({verified})"),
                ));
            }
            if let Some(w) = &d.messaging_wipe {
                let by = match (&w.command_id, w.by.as_str()) {
                    (Some(id), by) => format!("{by} command {id}"),
                    (None, _) => "the agent's offline timer".to_owned(),
                };
                fields.push((
                    "messaging data",
                    format!(
                        "wiped {} by {by}; the agent hands out no data key again \
                         (`wardctl device return` says how to put it back into service)",
                        w.at
                    ),
                ));
            }
            for check in &d.compliance_checks {
                fields.push((
                    "  check",
                    format!("{} {}: {}", check.name, check.status, check.detail),
                ));
            }
            posture_fields(d, &mut fields);
            renewal_fields(d, &mut fields);
            if let Some(r) = &d.retirement {
                fields.push((
                    "retired",
                    format!(
                        "{} by {} (command {}): {}; receipt {}",
                        r.finished_at.as_deref().unwrap_or("?"),
                        r.created_by,
                        r.id,
                        r.reason,
                        match &r.receipt {
                            Some(receipt) if receipt.verified => "verified",
                            Some(_) => "NOT verified",
                            None => "missing",
                        }
                    ),
                ));
            }
            print_fields(&fields);
            Ok(())
        }
    }
}

/// The suspected-clone warning and the certificate history of `device show`.
fn renewal_fields(d: &DeviceView, fields: &mut Vec<(&'static str, String)>) {
    if let Some(c) = &d.renewal_conflict {
        fields.push((
            "RENEWAL CONFLICT",
            format!(
                "{}: {} (see `wardctl audit list --target {}`)",
                c.at.as_deref().unwrap_or("?"),
                c.detail,
                d.id
            ),
        ));
    }
    for k in &d.certificates {
        let state = match (&k.in_use_at, &k.replaced_at) {
            (_, Some(at)) => format!("replaced and revoked {at}"),
            (Some(at), None) => format!("in use since {at}"),
            (None, None) => "renewed, not used yet".into(),
        };
        fields.push((
            "  certificate",
            format!(
                "{} issued {}: {state}",
                k.serial,
                k.issued_at.as_deref().unwrap_or("?")
            ),
        ));
    }
}

/// Disable, enforcement and inventory lines of `device show`.
fn posture_fields(d: &DeviceView, fields: &mut Vec<(&'static str, String)>) {
    if let Some(x) = &d.disabled {
        fields.push((
            "disabled",
            format!(
                "since {} by {}: {} (command {})",
                x.at.as_deref().unwrap_or("?"),
                x.by,
                x.reason,
                x.command_id
            ),
        ));
    }
    for e in &d.enforcement {
        let mut line = format!(
            "{} failing since {}: {}",
            e.check,
            e.failing_since.as_deref().unwrap_or("?"),
            match e.action {
                "report" => "action report (flagged only)",
                "block" => "action block (the agent withholds the messaging key)",
                "wipe" => "action wipe (key withheld; messaging data wiped after the grace)",
                other => other,
            }
        );
        if let Some(due) = &e.wipe_due {
            line.push_str(&format!("; wipe due {due}"));
        }
        if let Some(id) = &e.wipe_command_id {
            line.push_str(&format!("; wipe issued as command {id}"));
        }
        fields.push(("enforcement", line));
    }
    let Some(view) = &d.inventory else {
        fields.push(("inventory", "none reported yet".into()));
        return;
    };
    let inv = &view.reported;
    let hardware = [inv.hardware_vendor.as_str(), inv.hardware_model.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    fields.push(("hardware", or_dash(&hardware)));
    fields.push((
        "cpu",
        if inv.cpu_model.is_empty() {
            format!("{} cores", inv.cpu_count)
        } else {
            format!("{} ({} cores)", inv.cpu_model, inv.cpu_count)
        },
    ));
    fields.push((
        "memory",
        if inv.memory_bytes == 0 {
            "-".into()
        } else {
            format!("{:.1} GiB", inv.memory_bytes as f64 / f64::from(1u32 << 30))
        },
    ));
    let per_manager = inv
        .packages
        .iter()
        .map(|p| format!("{} {}", p.manager, p.count))
        .collect::<Vec<_>>()
        .join(", ");
    fields.push((
        "packages",
        if inv.packages.is_empty() {
            "no package database found".into()
        } else {
            format!("{} installed ({per_manager})", view.packages_installed)
        },
    ));
    fields.push(("firewall", or_dash(&inv.firewall)));
    for f in &inv.filesystems {
        fields.push((
            "filesystem",
            format!(
                "{} {} on {}: {}",
                f.mount_point, f.fs_type, f.source, f.encryption
            ),
        ));
    }
}
