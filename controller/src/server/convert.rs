//! Wire ↔ domain conversion and error mapping, at the edge only.

use tonic::{Request, Status};
use tracing::error;
use ward_proto::v1;

use crate::app::AppError;
use crate::core::{Admin, AdminRole, Device, DeviceFacts, DeviceState};

impl From<AppError> for Status {
    fn from(e: AppError) -> Self {
        match e {
            AppError::InvalidArgument(m) => Status::invalid_argument(m),
            AppError::NotFound(m) => Status::not_found(m),
            AppError::Unauthenticated(m) => Status::unauthenticated(m),
            AppError::PermissionDenied(m) => Status::permission_denied(m),
            AppError::FailedPrecondition(m) => Status::failed_precondition(m),
            AppError::AlreadyExists(m) => Status::already_exists(m),
            AppError::Internal(m) => {
                error!(error = %m, "internal error");
                Status::internal("internal error in the controller; its log has the details")
            }
        }
    }
}

/// The DER of the client's leaf certificate, if it presented one.
pub fn peer_leaf<T>(request: &Request<T>) -> Option<Vec<u8>> {
    request
        .peer_certs()
        .and_then(|chain| chain.first().map(|c| c.as_ref().to_vec()))
}

pub fn facts_from_wire(facts: Option<v1::DeviceFacts>) -> DeviceFacts {
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

pub fn facts_to_wire(f: &DeviceFacts) -> v1::DeviceFacts {
    v1::DeviceFacts {
        hostname: f.hostname.clone(),
        os_name: f.os_name.clone(),
        os_version: f.os_version.clone(),
        kernel_version: f.kernel_version.clone(),
        arch: f.arch.clone(),
        agent_version: f.agent_version.clone(),
    }
}

pub fn device_to_wire(d: &Device) -> v1::Device {
    v1::Device {
        id: d.id.to_string(),
        user: d.user.to_string(),
        state: match d.state {
            DeviceState::Active => v1::DeviceState::Active,
        } as i32,
        facts: Some(facts_to_wire(&d.facts)),
        enrolled_at_unix_ms: d.enrolled_at.unix_ms(),
        last_seen_unix_ms: d.last_seen.map_or(0, |t| t.unix_ms()),
        certificate_serial: d.certificate_serial.clone(),
        certificate_expires_at_unix_ms: d.certificate_expires_at.unix_ms(),
    }
}

pub fn role_from_wire(role: i32) -> Result<AdminRole, Status> {
    match v1::AdminRole::try_from(role) {
        Ok(v1::AdminRole::Admin) => Ok(AdminRole::Admin),
        Ok(v1::AdminRole::Helpdesk) => Ok(AdminRole::Helpdesk),
        Ok(v1::AdminRole::Offboarding) => Ok(AdminRole::Offboarding),
        Ok(v1::AdminRole::Unspecified) | Err(_) => Err(Status::invalid_argument(
            "role is missing or unknown: use admin, helpdesk or offboarding",
        )),
    }
}

pub fn role_to_wire(role: AdminRole) -> v1::AdminRole {
    match role {
        AdminRole::Admin => v1::AdminRole::Admin,
        AdminRole::Helpdesk => v1::AdminRole::Helpdesk,
        AdminRole::Offboarding => v1::AdminRole::Offboarding,
    }
}

pub fn admin_to_wire(a: &Admin) -> v1::Admin {
    v1::Admin {
        name: a.name.to_string(),
        role: role_to_wire(a.role) as i32,
        created_at_unix_ms: a.created_at.unix_ms(),
        created_by: a.created_by.clone(),
    }
}

/// A wire duration in seconds, where 0 means "the default".
pub fn optional_seconds(seconds: u64) -> Option<std::time::Duration> {
    (seconds > 0).then(|| std::time::Duration::from_secs(seconds))
}
