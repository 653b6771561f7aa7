//! Devices as admins name them (by id or host name) and list them, and a device's
//! revocation: its certificates refused from then on, its open stream closed.

use tracing::info;

use super::{App, AppError, audit, commands, lifecycle};
use crate::core::audit::AuditEvent;
use crate::core::refs::{DeviceRef, HostName};
use crate::core::{Admin, Device, DeviceId, DeviceState, Timestamp, UserEmail};
use crate::store::tx::Tx;
use crate::store::{Announcement, StoreError};

impl App {
    pub async fn list_devices(&self, user: Option<&UserEmail>) -> Result<Vec<Device>, AppError> {
        Ok(self.store.list_devices(user).await?)
    }

    /// A device by its id or, for admins at a keyboard, by its host name: the one device of
    /// that name that is not retired, so a retired device's name is free for the machine's
    /// next enrollment. Several matches are refused: host names come from the devices, and a
    /// wipe must not land on the wrong one.
    pub async fn get_device(&self, device: &DeviceRef) -> Result<Device, AppError> {
        match device {
            DeviceRef::Id(id) => self.device(*id).await,
            DeviceRef::HostName(name) => self.device_by_name(name).await,
        }
    }

    /// A device by its id.
    pub async fn device(&self, id: DeviceId) -> Result<Device, AppError> {
        self.store.get_device(id).await?.ok_or_else(|| {
            AppError::NotFound(format!(
                "no device {id}; `wardctl device list` shows the enrolled ones"
            ))
        })
    }

    async fn device_by_name(&self, name: &HostName) -> Result<Device, AppError> {
        let (not_an_id, name) = (name.not_an_id(), name.as_str());
        let mut named: Vec<Device> = self
            .store
            .list_devices(None)
            .await?
            .into_iter()
            .filter(|d| {
                d.state != crate::core::DeviceState::Retired
                    && d.facts.hostname.eq_ignore_ascii_case(name)
            })
            .collect();
        match named.len() {
            1 => Ok(named.remove(0)),
            0 => Err(AppError::NotFound(format!(
                "{not_an_id}; no device that is not retired has the host name {name:?}"
            ))),
            _ => Err(AppError::InvalidArgument(format!(
                "{} devices have the host name {name:?} ({}): name one by its id",
                named.len(),
                named
                    .iter()
                    .map(|d| format!("{} {}", d.id, d.state.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Revokes a device: certificates refused from now on, open stream closed.
    /// `reason` is required, as for every lifecycle action; the audit entry keeps it.
    pub async fn revoke_device(
        &self,
        actor: &Admin,
        device: &DeviceRef,
        reason: &str,
    ) -> Result<Device, AppError> {
        let reason = lifecycle::require_reason("revoking a device", reason)?;
        let id = self.get_device(device).await?.id;
        self.revoke(id, &audit::admin_actor(actor), "by an admin", Some(&reason))
            .await?;
        self.device(id).await
    }

    /// Revokes `id` on behalf of `actor` (an admin, or the controller after a wipe); `why`
    /// says what led to it, `reason` is the admin's own words (kept as the audit entry's
    /// `reason`, as every lifecycle action keeps its reason).
    pub(crate) async fn revoke(
        &self,
        id: DeviceId,
        actor: &str,
        why: &str,
        reason: Option<&str>,
    ) -> Result<(), AppError> {
        // The revocation and its audit entry commit together.
        let now = self.now();
        let (actor_owned, why_owned) = (actor.to_owned(), why.to_owned());
        let reason = reason.map(commands::sanitize);
        let revoked = self
            .store
            .write(crate::store::Priority::High, move |tx| {
                let (actor, why) = (actor_owned.clone(), why_owned.clone());
                let reason = reason.clone();
                Box::pin(
                    async move { revoke_in(tx, id, &actor, &why, reason.as_deref(), now).await },
                )
            })
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no device {id}")))?;
        self.device_revoked(&revoked).await;
        Ok(())
    }

    /// What follows the commit of a revocation ([`revoke_in`]) on this replica.
    pub(super) async fn device_revoked(&self, revoked: &Revoked) {
        let id = revoked.device;
        for serial in &revoked.serials {
            self.revoked.insert(serial);
        }
        if revoked.serials.is_empty() {
            self.reads.device_changed(id);
        } else {
            // Certificates still in use were revoked, so the device was not retired (a
            // retirement revokes them all first): it is revoked now. A job that goes on to
            // retire it says so after this (`device_changed`), and the cache forgets it.
            self.reads.device_now(id, DeviceState::Revoked);
        }
        info!(device_id = %id, actor = revoked.actor, why = revoked.why, certificates = revoked.serials.len(), "device revoked");
        // Its open stream re-checks the device and closes. This replica's list already holds
        // the serials (reloading the whole list per revocation made a mass offboarding
        // quadratic); the other replicas reload theirs when they hear of it.
        self.hub.wake(id);
        self.announce(Announcement::Revoked(id)).await;
    }
}

/// A revocation written in a job, for what follows its commit ([`App::device_revoked`]).
#[derive(Clone, Debug)]
pub(super) struct Revoked {
    pub device: DeviceId,
    /// The certificate serials it revoked.
    pub serials: Vec<String>,
    pub actor: String,
    pub why: String,
}

/// Revokes device `id` inside the caller's job: the device marked revoked, its certificates
/// revoked, and the audit entry that says so. `None` (and nothing written) when there is no
/// such device. `reason` was cleaned ([`commands::sanitize`]) before the job.
pub(super) async fn revoke_in(
    tx: &mut dyn Tx,
    id: DeviceId,
    actor: &str,
    why: &str,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<Option<Revoked>, StoreError> {
    let Some(serials) = tx.revoke_device(id, now).await? else {
        return Ok(None);
    };
    Ok(Some(revoked_in(tx, id, serials, actor, why, reason, now)))
}

/// The audit entry of device `id`'s revocation, written in the caller's job after the store
/// revoked it and the `serials` of its certificates, and the revocation for what follows the
/// commit.
pub(super) fn revoked_in(
    tx: &mut dyn Tx,
    id: DeviceId,
    serials: Vec<String>,
    actor: &str,
    why: &str,
    reason: Option<&str>,
    now: Timestamp,
) -> Revoked {
    tx.audit(
        AuditEvent {
            actor: actor.to_owned(),
            action: "device.revoke".into(),
            target: id.to_string(),
            details: match reason {
                Some(reason) => serde_json::json!({
                    "certificates": serials, "why": why, "reason": reason,
                }),
                None => serde_json::json!({ "certificates": serials, "why": why }),
            },
        },
        now,
    );
    Revoked {
        device: id,
        serials,
        actor: actor.to_owned(),
        why: why.to_owned(),
    }
}
