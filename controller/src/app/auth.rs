//! Who is calling: the client certificate checked against the store, the device or admin
//! behind it, and whether an admin's role allows what they ask. Refusals worth an auditor's
//! attention are audited.

use sha2::{Digest, Sha256};
use tracing::warn;
use ward_certs::{Identity, validate::DEFAULT_SKEW, validate::validate_client_certificate_by_any};

use super::reads::KnownDevice;
use super::{ActiveDevice, App, AppError, audit, reads, sanitize};
use crate::core::{Admin, Device, DeviceId, DeviceState, Permission};

impl App {
    /// Checks a presented client certificate (our CA, validity, one `ward://` URI) and that
    /// the store knows it for the same subject and has not revoked it.
    async fn authenticate(&self, leaf: Option<&[u8]>) -> Result<(Identity, String), AppError> {
        if let Some(why) = self.cas.out_of_step() {
            return Err(AppError::Unavailable(why));
        }
        let leaf = leaf.ok_or_else(|| {
            AppError::Unauthenticated(
                "this call needs a client certificate issued by this controller".into(),
            )
        })?;
        let now = self.now();
        // A certificate seen before (the connection's earlier calls) is not parsed and looked
        // up again; its revocation and expiry are checked at every call all the same.
        let hash: reads::CertHash = Sha256::digest(leaf).into();
        if self.reads.refused(&hash) {
            return Err(revoked_certificate());
        }
        if let Some(peer) = self.reads.peer(&hash) {
            if !self.revoked.contains(&peer.serial)
                && now.to_datetime() - DEFAULT_SKEW <= peer.not_after
            {
                return Ok((peer.identity, peer.serial));
            }
            // A revoked device's certificate, its device known here to be out of service:
            // nothing to look up (the use of a certificate a renewal replaced is reported
            // only while its device is active).
            if let Identity::Device(uuid) = peer.identity
                && self.revoked.contains(&peer.serial)
                && matches!(
                    self.reads.device(DeviceId(uuid)),
                    Some(KnownDevice::Refused(_))
                )
            {
                self.reads.remember_refused(hash);
                return Err(revoked_certificate());
            }
            self.reads.forget_peer(&hash);
        }
        let since = self.reads.peer_generation();
        let peer = validate_client_certificate_by_any(
            leaf,
            &self.cas.trusted_ders(),
            now.to_datetime(),
            DEFAULT_SKEW,
        )
        .map_err(|e| AppError::Unauthenticated(format!("client certificate refused: {e}")))?;
        let record = self.store.get_certificate(&peer.serial).await?;
        match record {
            Some(r) if r.subject == peer.identity.to_uri() && r.revoked_at.is_none() => {
                let serial = peer.serial.clone();
                self.reads.remember_peer(
                    since,
                    hash,
                    reads::Peer {
                        identity: peer.identity.clone(),
                        serial: serial.clone(),
                        not_after: peer.not_after,
                    },
                );
                Ok((peer.identity, serial))
            }
            Some(r) if r.revoked_at.is_some() => {
                // A device certificate a renewal replaced, still calling on a connection made
                // before: someone other than the device may hold it.
                if let Identity::Device(uuid) = peer.identity {
                    self.superseded_certificate_used(DeviceId(uuid), &peer.serial)
                        .await?;
                    // Reported (once per certificate) if it was a replaced one: the same
                    // answer from now on, without reading the store again.
                    self.reads.remember_refused(hash);
                }
                // A revoked admin still calling (on a connection opened before the revocation,
                // whose own answer it was) is worth an auditor's attention.
                if matches!(peer.identity, Identity::Admin(_)) {
                    self.metrics.denied_calls.inc();
                    warn!(identity = %peer.identity, serial = %peer.serial, "admin API refused: revoked certificate");
                    self.audit(
                        &peer.identity.to_uri(),
                        "denied",
                        "admin API",
                        serde_json::json!({ "why": "certificate revoked", "certificate_serial": peer.serial }),
                    )
                    .await?;
                }
                Err(revoked_certificate())
            }
            _ => Err(AppError::Unauthenticated(
                "client certificate refused: this controller has no record of issuing it".into(),
            )),
        }
    }

    /// The enrolled device behind a client certificate. Admin certificates are refused.
    pub async fn authenticate_device(&self, leaf: Option<&[u8]>) -> Result<ActiveDevice, AppError> {
        Ok(self.authenticate_device_certificate(leaf).await?.0)
    }

    /// [`App::authenticate_device`], with the serial of the certificate presented. The first
    /// call with a renewed certificate makes it the device's one and revokes the previous.
    pub async fn authenticate_device_certificate(
        &self,
        leaf: Option<&[u8]>,
    ) -> Result<(ActiveDevice, String), AppError> {
        match self.authenticate(leaf).await? {
            (Identity::Device(uuid), serial) => {
                let device = self.active_device(DeviceId(uuid)).await?;
                if device.certificate_serial == serial {
                    return Ok((device, serial));
                }
                // The first call with a renewed certificate: read the record afresh, switch.
                let record = self.check_device_active(DeviceId(uuid)).await?;
                let record = self.certificate_in_use(record, &serial).await?;
                self.reads.device_changed(record.id);
                Ok((
                    ActiveDevice {
                        id: record.id,
                        user: record.user,
                        certificate_serial: record.certificate_serial,
                    },
                    serial,
                ))
            }
            (other, _) => Err(AppError::PermissionDenied(format!(
                "{other} is not a device identity; the agent API is for enrolled devices only"
            ))),
        }
    }

    /// The device's id and user, unless it is not enrolled or has been revoked (or retired).
    /// From the cache, which a revocation or retirement (here or announced) empties.
    pub async fn active_device(&self, id: DeviceId) -> Result<ActiveDevice, AppError> {
        match self.reads.device(id) {
            Some(KnownDevice::Active(device)) => return Ok(device),
            Some(KnownDevice::Refused(state)) => return Err(not_active(id, state)),
            None => {}
        }
        let since = self.reads.device_generation();
        let record = self
            .store
            .get_device(id)
            .await?
            .ok_or_else(|| not_enrolled(id))?;
        if record.state != DeviceState::Active {
            self.reads
                .remember_device(since, id, KnownDevice::Refused(record.state));
            return Err(not_active(id, record.state));
        }
        let device = ActiveDevice {
            id: record.id,
            user: record.user,
            certificate_serial: record.certificate_serial,
        };
        self.reads
            .remember_device(since, id, KnownDevice::Active(device.clone()));
        Ok(device)
    }

    /// The device, unless it is not enrolled or has been revoked (or retired).
    pub async fn check_device_active(&self, id: DeviceId) -> Result<Device, AppError> {
        match self.store.get_device(id).await? {
            None => Err(not_enrolled(id)),
            Some(d) if d.state != DeviceState::Active => Err(not_active(id, d.state)),
            Some(d) => Ok(d),
        }
    }

    /// The registered admin behind a client certificate. Device certificates are refused;
    /// the refusal is audited with the call's `target` (bounded per identity and minute).
    pub async fn authenticate_admin(
        &self,
        leaf: Option<&[u8]>,
        target: &str,
    ) -> Result<Admin, AppError> {
        let (identity, _) = self.authenticate(leaf).await?;
        let refusal = match &identity {
            Identity::Admin(name) => match self.store.get_admin(name).await? {
                Some(admin) if admin.is_active() => {
                    if admin.break_glass {
                        warn!(admin = %admin.name, "the break-glass identity is in use");
                    }
                    return Ok(admin);
                }
                Some(_) => format!("admin {name} has been revoked"),
                None => format!("admin {name} is not registered with this controller"),
            },
            other => format!(
                "{other} is not an admin identity; the admin API needs an admin certificate (wardctl admin issue)"
            ),
        };
        // A certificate from our own CA knocking on the admin API without being an admin (a
        // device's key, or a removed admin's) is worth an auditor's attention.
        self.metrics.denied_calls.inc();
        warn!(identity = %identity, target, "admin API refused: not a registered admin");
        self.audit_refusal(
            audit::refusal_source(&identity.to_string(), "denied", ""),
            &audit_target(target, "admin API"),
            serde_json::json!({ "why": refusal, "api": "admin" }),
        )
        .await?;
        Err(AppError::PermissionDenied(refusal))
    }

    /// Refuses, with the roles that would be allowed, an admin whose role lacks `permission`
    /// for `target` (what the call is about: a device, command, user…). The refusal is
    /// audited with its target (bounded per admin and minute).
    pub async fn authorize(
        &self,
        admin: &Admin,
        permission: Permission,
        target: &str,
    ) -> Result<(), AppError> {
        if admin.role.allows(permission) {
            return Ok(());
        }
        self.metrics.denied_calls.inc();
        let needed: Vec<&str> = permission.roles().iter().map(|r| r.as_str()).collect();
        self.audit_refusal(
            audit::refusal_source(&audit::admin_actor(admin), "denied", ""),
            &audit_target(target, permission.describe()),
            serde_json::json!({ "permission": permission.describe(), "role": admin.role.as_str(), "needs": needed }),
        )
        .await?;
        warn!(admin = %admin.name, role = %admin.role, permission = permission.describe(), target, "permission denied");
        Err(AppError::PermissionDenied(format!(
            "admin {} has role {}, which may not {}: that needs role {}",
            admin.name,
            admin.role,
            permission.describe(),
            needed.join(" or ")
        )))
    }
}

/// A caller-supplied target as recorded in the audit log: cleaned and bounded, or `otherwise`
/// when the call named none.
pub fn audit_target(target: &str, otherwise: &str) -> String {
    let target = sanitize(target.trim());
    if target.is_empty() {
        otherwise.to_owned()
    } else {
        target
    }
}

fn not_enrolled(id: DeviceId) -> AppError {
    AppError::Unauthenticated(format!("device {id} is not enrolled"))
}

fn not_active(id: DeviceId, state: DeviceState) -> AppError {
    AppError::Unauthenticated(format!(
        "device {id} has been {}; enroll it again to use it",
        state.as_str()
    ))
}

fn revoked_certificate() -> AppError {
    AppError::Unauthenticated("client certificate refused: it has been revoked".into())
}
