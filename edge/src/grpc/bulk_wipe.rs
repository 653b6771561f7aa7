//! `BulkWipe`, `GetBulkWipe`, `ApproveBulkWipe`: the wire at the edge, typed values inside.

use tonic::Status;
use ward_proto::v1;

use super::convert::{command_state_to_wire, status};
use super::request::parse;
use ward_controller::app::bulk_select::Selection;
use ward_controller::app::bulk_wipe::{BulkWipeReport, BulkWipeRequest};
use ward_core::{Check, DeviceState, Named, WipeScope};

/// The request as the app takes it (the permission it needs is
/// [`Permission::to_wipe`](ward_core::Permission::to_wipe) of its scope), and its idempotency
/// key as sent: the handler reads that once the scope's permission is checked, into the
/// refused read a dry run records.
pub(super) fn request_from_wire(
    r: v1::BulkWipeRequest,
) -> Result<(BulkWipeRequest, String), Status> {
    let forms = [!r.user.is_empty(), r.noncompliant, !r.devices.is_empty()]
        .iter()
        .filter(|set| **set)
        .count();
    if forms != 1 {
        return Err(Status::invalid_argument(
            "select the devices in exactly one way: a user, noncompliant, or a list of devices \
             (an empty list selects nothing)",
        ));
    }
    if !r.failing_check.is_empty() && !r.noncompliant {
        return Err(Status::invalid_argument(
            "a failing check narrows the noncompliant selection only (wardctl: --noncompliant --check CHECK)",
        ));
    }
    let selection = if !r.user.is_empty() {
        Selection::User(parse(&r.user).map_err(status)?)
    } else if r.noncompliant {
        let check = (!r.failing_check.is_empty())
            .then(|| r.failing_check.parse::<Check>())
            .transpose()
            .map_err(Status::invalid_argument)?;
        Selection::Noncompliant { check }
    } else {
        Selection::Devices(r.devices.iter().collect())
    };
    let scope = ward_proto::vocab::wipe_scope(r.scope).ok_or_else(|| {
        Status::invalid_argument(format!("the wipe scope must be {}", WipeScope::choices()))
    })?;
    let request = BulkWipeRequest {
        selection,
        scope,
        reason: r.reason,
        dry_run: r.dry_run,
    };
    Ok((request, r.idempotency_key))
}

pub(super) fn report_to_wire(r: &BulkWipeReport) -> v1::BulkWipeReport {
    v1::BulkWipeReport {
        batch: r.batch.clone(),
        scope: v1::WipeScope::from(r.scope) as i32,
        dry_run: r.dry_run,
        needs_approval: r.needs_approval,
        issued: u32::try_from(r.issued).unwrap_or(u32::MAX),
        complete: r.complete(),
        devices: r
            .devices
            .iter()
            .map(|d| {
                let c = d.command.as_ref();
                v1::BulkWipeDevice {
                    device_id: d.device.id.to_string(),
                    hostname: d.device.facts.hostname.clone(),
                    user: d.device.user.to_string(),
                    command_id: c.map(|c| c.id.to_string()).unwrap_or_default(),
                    state: c.map_or(v1::CommandState::Unspecified, |c| {
                        command_state_to_wire(c.state)
                    }) as i32,
                    receipt_verified: c
                        .and_then(|c| c.receipt.as_ref())
                        .is_some_and(|r| r.verified),
                    failure_reason: c.and_then(|c| c.failure_reason.clone()).unwrap_or_default(),
                    outcome: d.outcome.as_str().to_owned(),
                    device_state: match d.device.state {
                        DeviceState::Active => v1::DeviceState::Active,
                        DeviceState::Revoked => v1::DeviceState::Revoked,
                        DeviceState::Retired => v1::DeviceState::Retired,
                    } as i32,
                }
            })
            .collect(),
    }
}
