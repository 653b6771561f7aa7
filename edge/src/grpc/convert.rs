//! Wire ↔ domain conversion and error mapping, at the edge only.

use tonic::{Request, Status};
use tracing::error;
use ward_proto::v1;

use ward_controller::app::AppError;
use ward_core::{
    Admin, AdminRole, CheckStatus, Command, CommandKind, CommandState, Compliance, ComplianceCheck,
    Device, DeviceFacts, DeviceState, Named, PolicyChanges, StoredPolicy, WipeScope,
};

/// How long a shed caller is told to wait before it tries again.
const RETRY_PUSHBACK_MS: u32 = 2000;

/// The one place an [`AppError`] becomes a gRPC status (an internal error is logged here and
/// told to the caller only as such).
pub(crate) fn status(e: AppError) -> Status {
    match e {
        AppError::InvalidArgument(m) => Status::invalid_argument(m),
        AppError::NotFound(m) => Status::not_found(m),
        AppError::Unauthenticated(m) => Status::unauthenticated(m),
        AppError::PermissionDenied(m) => Status::permission_denied(m),
        AppError::FailedPrecondition(m) => Status::failed_precondition(m),
        AppError::AlreadyExists(m) => Status::already_exists(m),
        AppError::Unavailable(m) => {
            let mut status = Status::unavailable(m);
            // gRPC's retry pushback: clients that honour it wait this long.
            status
                .metadata_mut()
                .insert("grpc-retry-pushback-ms", RETRY_PUSHBACK_MS.into());
            status
        }
        AppError::Internal(m) => {
            error!(error = %m, "internal error");
            Status::internal("internal error in the controller; its log has the details")
        }
    }
}

/// The DER of the client's leaf certificate, if it presented one.
pub(crate) fn peer_leaf<T>(request: &Request<T>) -> Option<Vec<u8>> {
    request
        .peer_certs()
        .and_then(|chain| chain.first().map(|c| c.as_ref().to_vec()))
}

pub(crate) fn facts_from_wire(facts: Option<v1::DeviceFacts>) -> DeviceFacts {
    let f = facts.unwrap_or_default();
    DeviceFacts {
        hostname: f.hostname,
        os_name: f.os_name,
        os_version: f.os_version,
        kernel_version: f.kernel_version,
        arch: f.arch,
        agent_version: f.agent_version,
    }
}

pub(crate) fn facts_to_wire(f: &DeviceFacts) -> v1::DeviceFacts {
    v1::DeviceFacts {
        hostname: f.hostname.clone(),
        os_name: f.os_name.clone(),
        os_version: f.os_version.clone(),
        kernel_version: f.kernel_version.clone(),
        arch: f.arch.clone(),
        agent_version: f.agent_version.clone(),
    }
}

pub(crate) fn device_to_wire(d: &Device) -> v1::Device {
    let mut device = v1::Device {
        id: d.id.to_string(),
        user: d.user.to_string(),
        state: match d.state {
            DeviceState::Active => v1::DeviceState::Active,
            DeviceState::Revoked => v1::DeviceState::Revoked,
            DeviceState::Retired => v1::DeviceState::Retired,
        } as i32,
        facts: Some(facts_to_wire(&d.facts)),
        enrolled_at_unix_ms: d.enrolled_at.unix_ms(),
        last_seen_unix_ms: d.last_seen.map_or(0, |t| t.unix_ms()),
        certificate_serial: d.certificate_serial.clone(),
        certificate_expires_at_unix_ms: d.certificate_expires_at.unix_ms(),
        compliance: Some(compliance_to_wire(d.compliance.as_ref())),
        offline_wipe_at_unix_ms: d.offline_wipe.as_ref().map_or(0, |w| w.at.unix_ms()),
        offline_wipe_receipt_verified: d.offline_wipe.as_ref().is_some_and(|w| w.verified),
        renewal_conflict: d.renewal_conflict.as_ref().map(|c| v1::RenewalConflict {
            at_unix_ms: c.at,
            serial: c.serial.clone(),
            detail: c.detail.clone(),
        }),
        ..Default::default()
    };
    super::convert_posture::posture_to_wire(d, &mut device);
    device
}

/// A device's newest proven messaging wipe (`core::service::messaging_wipe`).
pub(crate) fn messaging_wipe_to_wire(w: &ward_core::service::MessagingWipe) -> v1::MessagingWipe {
    v1::MessagingWipe {
        at_unix_ms: w.at.unix_ms(),
        by: w.by.to_owned(),
        command_id: w.command_id.clone().unwrap_or_default(),
    }
}

/// A device's key history as `device show` lists it.
pub(crate) fn keys_to_wire(keys: &[ward_core::DeviceKey]) -> Vec<v1::DeviceKey> {
    keys.iter()
        .map(|k| v1::DeviceKey {
            certificate_serial: k.serial.clone(),
            issued_at_unix_ms: k.issued_at.unix_ms(),
            in_use_at_unix_ms: k.in_use_at.map_or(0, |t| t.unix_ms()),
            replaced_at_unix_ms: k.replaced_at.map_or(0, |t| t.unix_ms()),
        })
        .collect()
}

pub(crate) fn role_from_wire(role: i32) -> Result<AdminRole, Status> {
    match v1::AdminRole::try_from(role) {
        Ok(v1::AdminRole::Admin) => Ok(AdminRole::Admin),
        Ok(v1::AdminRole::Helpdesk) => Ok(AdminRole::Helpdesk),
        Ok(v1::AdminRole::Offboarding) => Ok(AdminRole::Offboarding),
        Ok(v1::AdminRole::Unspecified) | Err(_) => Err(Status::invalid_argument(format!(
            "role is missing or unknown: use {}",
            AdminRole::choices()
        ))),
    }
}

pub fn role_to_wire(role: AdminRole) -> v1::AdminRole {
    match role {
        AdminRole::Admin => v1::AdminRole::Admin,
        AdminRole::Helpdesk => v1::AdminRole::Helpdesk,
        AdminRole::Offboarding => v1::AdminRole::Offboarding,
    }
}

pub(crate) fn admin_to_wire(a: &Admin) -> v1::Admin {
    let revoked = a.revoked.as_ref();
    v1::Admin {
        name: a.name.to_string(),
        role: role_to_wire(a.role) as i32,
        created_at_unix_ms: a.created_at.unix_ms(),
        created_by: a.created_by.clone(),
        approved_by: a.approved_by.clone().unwrap_or_default(),
        state: if revoked.is_some() {
            "revoked"
        } else {
            "active"
        }
        .into(),
        expires_at_unix_ms: a.expires_at.map_or(0, |t| t.unix_ms()),
        break_glass: a.break_glass,
        revoked_at_unix_ms: revoked.map_or(0, |r| r.at.unix_ms()),
        revoked_by: revoked.map(|r| r.by.clone()).unwrap_or_default(),
        revoke_reason: revoked.map(|r| r.reason.clone()).unwrap_or_default(),
        certificate_by: a.certificate_by.clone().unwrap_or_default(),
        not_before_unix_ms: a.not_before.map_or(0, |t| t.unix_ms()),
    }
}

pub(crate) fn admin_request_to_wire(r: &ward_core::admins::AdminRequest) -> v1::AdminRequest {
    v1::AdminRequest {
        id: r.id.clone(),
        kind: r.kind.as_str().into(),
        name: r.name.to_string(),
        role: role_to_wire(r.role) as i32,
        requested_by: r.requested_by.clone(),
        requested_at_unix_ms: r.requested_at.unix_ms(),
        expires_at_unix_ms: r.expires_at.unix_ms(),
        approved_by: r.approved_by.clone().unwrap_or_default(),
        approved_at_unix_ms: r.approved_at.map_or(0, |t| t.unix_ms()),
    }
}

/// A wire duration in seconds, where 0 means "the default".
pub(crate) fn optional_seconds(seconds: u64) -> Option<std::time::Duration> {
    (seconds > 0).then(|| std::time::Duration::from_secs(seconds))
}

pub fn command_state_to_wire(state: CommandState) -> v1::CommandState {
    match state {
        CommandState::AwaitingApproval => v1::CommandState::AwaitingApproval,
        CommandState::Queued => v1::CommandState::Queued,
        CommandState::Delivered => v1::CommandState::Delivered,
        CommandState::Acknowledged => v1::CommandState::Acknowledged,
        CommandState::Succeeded => v1::CommandState::Succeeded,
        CommandState::Failed => v1::CommandState::Failed,
        CommandState::Cancelled => v1::CommandState::Cancelled,
        CommandState::Expired => v1::CommandState::Expired,
        CommandState::Superseded => v1::CommandState::Superseded,
    }
}

/// `None` for "unspecified" (no filter); an error for values this controller does not know.
pub(crate) fn command_state_from_wire(state: i32) -> Result<Option<CommandState>, Status> {
    Ok(Some(match v1::CommandState::try_from(state) {
        Ok(v1::CommandState::Unspecified) => return Ok(None),
        Ok(v1::CommandState::AwaitingApproval) => CommandState::AwaitingApproval,
        Ok(v1::CommandState::Queued) => CommandState::Queued,
        Ok(v1::CommandState::Delivered) => CommandState::Delivered,
        Ok(v1::CommandState::Acknowledged) => CommandState::Acknowledged,
        Ok(v1::CommandState::Succeeded) => CommandState::Succeeded,
        Ok(v1::CommandState::Failed) => CommandState::Failed,
        Ok(v1::CommandState::Cancelled) => CommandState::Cancelled,
        Ok(v1::CommandState::Expired) => CommandState::Expired,
        Ok(v1::CommandState::Superseded) => CommandState::Superseded,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown command state {state}"
            )));
        }
    }))
}

pub(crate) fn action_from_issue(
    action: Option<v1::issue_command_request::Action>,
) -> Result<CommandKind, Status> {
    use v1::issue_command_request::Action;
    match action {
        Some(Action::Lock(lock)) => Ok(CommandKind::Lock {
            message: lock.message,
        }),
        Some(Action::Unlock(_)) => Ok(CommandKind::Unlock),
        Some(Action::Wipe(wipe)) => ward_proto::vocab::wipe_scope(wipe.scope)
            .map(|scope| CommandKind::Wipe { scope })
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "wipe scope is missing or unknown: use {}",
                    WipeScope::choices()
                ))
            }),
        None => Err(Status::invalid_argument(
            "the command has no action: use lock, unlock or wipe",
        )),
    }
}

/// A command as the device receives it.
pub(crate) fn command_to_device(c: &Command) -> v1::DeviceCommand {
    use v1::device_command::Action;
    let action = match &c.kind {
        CommandKind::Lock { message } => Action::Lock(v1::LockAction {
            message: message.clone(),
        }),
        CommandKind::Unlock => Action::Unlock(v1::UnlockAction {}),
        CommandKind::Wipe { scope } => Action::Wipe(v1::WipeAction {
            scope: v1::WipeScope::from(*scope) as i32,
        }),
        CommandKind::Disable => Action::Disable(v1::DisableAction {
            reason: c.reason.clone(),
        }),
        CommandKind::Enable => Action::Enable(v1::EnableAction {}),
        CommandKind::Retire => Action::Retire(v1::RetireAction {}),
    };
    v1::DeviceCommand {
        id: c.id.to_string(),
        action: Some(action),
        created_at_unix_ms: c.created_at.unix_ms(),
    }
}

/// A command as admins see it.
pub(crate) fn command_to_wire(c: &Command) -> v1::Command {
    let ms = |t: Option<ward_core::Timestamp>| t.map_or(0, |t| t.unix_ms());
    v1::Command {
        id: c.id.to_string(),
        device_id: c.device_id.to_string(),
        kind: c.kind.name().to_owned(),
        scope: match &c.kind {
            CommandKind::Wipe { scope } => scope.as_str().to_owned(),
            CommandKind::Retire => WipeScope::Messaging.as_str().to_owned(),
            _ => String::new(),
        },
        lock_message: match &c.kind {
            CommandKind::Lock { message } => message.clone(),
            _ => String::new(),
        },
        state: command_state_to_wire(c.state) as i32,
        reason: c.reason.clone(),
        failure_reason: c.failure_reason.clone().unwrap_or_default(),
        created_by: c.created_by.clone(),
        created_at_unix_ms: c.created_at.unix_ms(),
        delivered_at_unix_ms: ms(c.delivered_at),
        acknowledged_at_unix_ms: ms(c.acknowledged_at),
        finished_at_unix_ms: ms(c.finished_at),
        deliveries: c.deliveries,
        receipt: c.receipt.as_ref().map(|r| v1::StoredReceipt {
            verified: r.verified,
            body: r.body.clone(),
            signature: r.signature.clone(),
            verification_error: r.error.clone().unwrap_or_default(),
        }),
        approved_by: c.approved_by.clone().unwrap_or_default(),
        expires_at_unix_ms: c.deadline.map_or(0, |t| t.unix_ms()),
    }
}

pub(crate) fn policy_to_wire(p: &StoredPolicy) -> v1::Policy {
    v1::Policy {
        revision: p.revision,
        scope: p.scope.to_string(),
        overridden: p.overridden.iter().map(|f| (*f).to_owned()).collect(),
        ..v1::Policy::from(&p.policy)
    }
}

pub(crate) fn policy_changes_from_wire(r: &v1::SetPolicyRequest) -> Result<PolicyChanges, Status> {
    Ok(PolicyChanges {
        password_min_length: r.password_min_length,
        password_min_classes: r.password_min_classes,
        password_max_age_days: r.password_max_age_days,
        password_history: r.password_history,
        max_failed_attempts: r.max_failed_attempts,
        auto_lock_seconds: r.auto_lock_seconds,
        require_disk_encryption: r.require_disk_encryption,
        offline_wipe_after_seconds: r.offline_wipe_after_seconds,
        enforce: r.enforce,
        require_firewall: r.require_firewall,
        forbidden_packages: r.forbidden_packages.as_ref().map(|l| l.names.clone()),
        os_updates_max_age_days: r.os_updates_max_age_days,
        min_agent_version: r.min_agent_version.clone(),
        check_actions: super::convert_posture::check_actions_from_wire(&r.check_actions)?,
        wipe_grace_seconds: r.wipe_grace_seconds,
        max_uptime_days: r.max_uptime_days,
    })
}

fn check_status_to_wire(s: CheckStatus) -> v1::CheckStatus {
    match s {
        CheckStatus::Pass => v1::CheckStatus::Pass,
        CheckStatus::Fail => v1::CheckStatus::Fail,
        CheckStatus::Unsupported => v1::CheckStatus::Unsupported,
        CheckStatus::Error => v1::CheckStatus::Error,
    }
}

pub(crate) fn checks_from_wire(
    report: &v1::ComplianceReport,
) -> Result<Vec<ComplianceCheck>, Status> {
    report
        .checks
        .iter()
        .map(|c| {
            let status = match v1::CheckStatus::try_from(c.status) {
                Ok(v1::CheckStatus::Pass) => CheckStatus::Pass,
                Ok(v1::CheckStatus::Fail) => CheckStatus::Fail,
                Ok(v1::CheckStatus::Unsupported) => CheckStatus::Unsupported,
                Ok(v1::CheckStatus::Error) => CheckStatus::Error,
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "check {:?} has an unknown status {}",
                        c.name, c.status
                    )));
                }
            };
            Ok(ComplianceCheck {
                name: c.name.clone(),
                status,
                detail: c.detail.clone(),
            })
        })
        .collect()
}

pub(crate) fn compliance_to_wire(c: Option<&Compliance>) -> v1::Compliance {
    match c {
        None => v1::Compliance::default(),
        Some(c) => v1::Compliance {
            state: if c.compliant {
                v1::ComplianceState::Compliant
            } else {
                v1::ComplianceState::Noncompliant
            } as i32,
            reasons: c.reasons.clone(),
            checks: c
                .checks
                .iter()
                .map(|k| v1::ComplianceCheck {
                    name: k.name.clone(),
                    status: check_status_to_wire(k.status) as i32,
                    detail: k.detail.clone(),
                })
                .collect(),
            reported_at_unix_ms: c.reported_at.unix_ms(),
            policy_revision: c.policy_revision,
        },
    }
}

pub(crate) fn offboard_report_to_wire(
    r: &ward_controller::app::offboard::OffboardReport,
) -> v1::OffboardReport {
    v1::OffboardReport {
        user: r.user.to_string(),
        complete: r.complete(),
        tokens_invalidated: u32::try_from(r.tokens_invalidated).unwrap_or(u32::MAX),
        devices: r
            .devices
            .iter()
            .map(|d| v1::OffboardDevice {
                device_id: d.device.id.to_string(),
                hostname: d.device.hostname.clone(),
                command_id: d
                    .command
                    .as_ref()
                    .map(|c| c.id.to_string())
                    .unwrap_or_default(),
                state: d
                    .command
                    .as_ref()
                    .map_or(v1::CommandState::Unspecified, |c| {
                        command_state_to_wire(c.state)
                    }) as i32,
                receipt_verified: d.succeeded(),
                key_protection: d
                    .command
                    .as_ref()
                    .and_then(|c| c.receipt.as_ref())
                    .and_then(ward_core::Receipt::key_protection)
                    .map(|k| k.as_str().to_owned())
                    .unwrap_or_default(),
                revoked: d.device.state != DeviceState::Active,
                created_at_unix_ms: d.command.as_ref().map_or(0, |c| c.created_at.unix_ms()),
                finished_at_unix_ms: d
                    .command
                    .as_ref()
                    .and_then(|c| c.finished_at)
                    .map_or(0, |t| t.unix_ms()),
                failure_reason: d
                    .command
                    .as_ref()
                    .and_then(|c| c.failure_reason.clone())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}
