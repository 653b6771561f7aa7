//! Admin identities: issue, renew, revoke, list, and the second admin's approval that issuing
//! (or renewing someone else's) `admin`-role identity needs under `serve --require-approval`.

use std::time::Duration;

use tracing::{info, warn};
use ward_certs::{AdminName, Identity, IssuedCertificate, VerifiedCsr};

use super::audit::admin_actor;
use super::{App, AppError, certificate_record, check_cert_lifetime};
use crate::core::admins::{
    AdminRequest, BREAK_GLASS_LIFETIME, CA_ROTATION_REQUEST, RequestKind, RevokeOutcome,
    is_ca_rotation_request_name, is_reserved_name,
};
use crate::core::command::MAX_TEXT_LEN;
use crate::core::roles::approval_refusal;
use crate::core::{Admin, AdminRole, Permission};
use crate::store::Announcement;

/// What an `issue` or `renew` came to.
#[derive(Debug)]
pub enum AdminIssued {
    Issued {
        admin: Admin,
        certificate: IssuedCertificate,
    },
    /// A second admin must approve it first (`wardctl admin approve NAME`); the same call
    /// made again afterwards issues it.
    AwaitingApproval(AdminRequest),
}

impl App {
    /// Registers a new admin and issues its certificate for a CSR made on the issuer's machine.
    pub async fn issue_admin(
        &self,
        actor: &Admin,
        name: AdminName,
        role: AdminRole,
        csr: &VerifiedCsr,
        lifetime: Option<Duration>,
    ) -> Result<AdminIssued, AppError> {
        if is_reserved_name(name.as_str()) {
            return Err(AppError::InvalidArgument(format!(
                "the name {name} is reserved (controller, init, enrollment-token and system are actors in the audit log; names starting with {CA_ROTATION_REQUEST} are forced CA rotation steps waiting for approval); choose another"
            )));
        }
        let lifetime = lifetime.unwrap_or(self.config.admin_cert_lifetime);
        check_cert_lifetime(lifetime)?;
        match self.store.get_admin(&name).await? {
            Some(existing) if !existing.is_active() => {
                return Err(AppError::AlreadyExists(format!(
                    "admin {name} was revoked; a revoked name is not given out again, so the audit log stays unambiguous: choose another name"
                )));
            }
            Some(_) => {
                return Err(AppError::AlreadyExists(format!(
                    "admin {name} already exists; choose another name (`wardctl admin renew {name}` gives it a new certificate)"
                )));
            }
            None => {}
        }
        let approved_by = match self
            .second_admin(actor, RequestKind::Issue, &name, role)
            .await?
        {
            Ok(approved_by) => approved_by,
            Err(request) => return Ok(AdminIssued::AwaitingApproval(request)),
        };
        let now = self.now();
        let (certificate, record) = self.certify(csr, &name, lifetime)?;
        let mut admin = Admin::new(name, role, now, actor.name.as_str());
        admin.approved_by = approved_by;
        self.store.insert_admin(&admin, &record).await?;
        info!(admin = %admin.name, role = %admin.role, created_by = %actor.name, approved_by = ?admin.approved_by, "admin issued");
        self.audit(
            &admin_actor(actor),
            "admin.issue",
            admin.name.as_str(),
            serde_json::json!({
                "role": admin.role.as_str(),
                "certificate_serial": record.serial,
                "not_after": record.not_after.rfc3339(),
                "approved_by": admin.approved_by,
            }),
        )
        .await?;
        let admin = self.store.get_admin(&admin.name).await?.unwrap_or(admin);
        Ok(AdminIssued::Issued { admin, certificate })
    }

    /// A new certificate for an admin identity, for a CSR made where its new key will live;
    /// the identity's other certificates are revoked in the same step. Any admin may renew
    /// their own; renewing another's needs the admin role (and, for an `admin`-role identity
    /// under `--require-approval`, a second admin's approval).
    pub async fn renew_admin(
        &self,
        actor: &Admin,
        name: &AdminName,
        csr: &VerifiedCsr,
        lifetime: Option<Duration>,
    ) -> Result<AdminIssued, AppError> {
        let own = *name == actor.name;
        if !own {
            self.authorize(actor, Permission::Admins, name.as_str())
                .await?;
        }
        let target = self.store.get_admin(name).await?.ok_or_else(|| {
            AppError::NotFound(format!(
                "no admin {name}; `wardctl admin list` shows the registered ones"
            ))
        })?;
        if let Some(revoked) = &target.revoked {
            return Err(AppError::FailedPrecondition(format!(
                "admin {name} was revoked on {} by {}: a revoked identity is not renewed; issue a new admin under another name",
                revoked.at, revoked.by
            )));
        }
        let default = if target.break_glass {
            BREAK_GLASS_LIFETIME
        } else {
            self.config.admin_cert_lifetime
        };
        let lifetime = lifetime.unwrap_or(default);
        check_cert_lifetime(lifetime)?;
        let approved_by = if own {
            None
        } else {
            match self
                .second_admin(actor, RequestKind::Renew, name, target.role)
                .await?
            {
                Ok(approved_by) => approved_by,
                Err(request) => return Ok(AdminIssued::AwaitingApproval(request)),
            }
        };
        let (certificate, record) = self.certify(csr, name, lifetime)?;
        let certificate_by = (!own).then(|| actor.name.as_str());
        let revoked = self
            .store
            .renew_admin(name, &record, certificate_by, self.now())
            .await?
            .ok_or_else(|| {
                AppError::FailedPrecondition(format!("admin {name} was revoked meanwhile"))
            })?;
        // The old certificates are refused at the next handshake and call. A connection open
        // with them is not cut: the renewing admin's own answer travels on one.
        for serial in &revoked {
            self.revoked.insert(serial);
        }
        self.announce(Announcement::RevocationsChanged).await;
        info!(admin = %name, renewed_by = %actor.name, serial = %certificate.serial, "admin certificate renewed");
        self.audit(
            &admin_actor(actor),
            "admin.renew",
            name.as_str(),
            serde_json::json!({
                "certificate_serial": record.serial,
                "not_after": record.not_after.rfc3339(),
                "revoked_certificates": revoked,
                "approved_by": approved_by,
            }),
        )
        .await?;
        let admin = self
            .store
            .get_admin(name)
            .await?
            .ok_or_else(|| AppError::Internal(format!("admin {name} vanished")))?;
        Ok(AdminIssued::Issued { admin, certificate })
    }

    /// A certificate for admin `name` and the record the store keeps of it.
    fn certify(
        &self,
        csr: &VerifiedCsr,
        name: &AdminName,
        lifetime: Duration,
    ) -> Result<(IssuedCertificate, crate::core::CertificateRecord), AppError> {
        let now = self.now();
        let identity = Identity::Admin(name.clone());
        let certificate = self
            .ca()
            .issue_client(csr, &identity, now.to_datetime(), lifetime)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        let record = certificate_record(&certificate, &identity, now);
        Ok((certificate, record))
    }

    /// Under the two-person rule: `Ok(approver)` when the call may go ahead (`None`: no
    /// approval is needed), `Err(request)` while the request waits for its approval.
    ///
    /// An `admin`-role identity needs one unless the requester is the break-glass identity,
    /// whose custody (an offline safe, a passphrase kept apart) is the two people already:
    /// without that exception a controller whose other admins are gone could never get one
    /// back.
    async fn second_admin(
        &self,
        actor: &Admin,
        kind: RequestKind,
        name: &AdminName,
        role: AdminRole,
    ) -> Result<Result<Option<String>, AdminRequest>, AppError> {
        if self.config.approval_threshold.is_none() || role != AdminRole::Admin || actor.break_glass
        {
            return Ok(Ok(None));
        }
        let now = self.now();
        let wanted = AdminRequest::new(kind, name.clone(), role, actor.name.as_str(), now);
        let open = self.store.open_admin_request(&wanted, now).await?;
        if !open.asks_for(kind, role, actor.name.as_str()) {
            return Err(AppError::FailedPrecondition(format!(
                "admin {} asked to {} {name} with role {} and that request waits for approval until {}: it must be approved and used, or expire, first",
                open.requested_by, open.kind, open.role, open.expires_at
            )));
        }
        if open.id == wanted.id {
            info!(admin = %name, requested_by = %actor.name, kind = %kind, "admin identity awaits a second admin");
            self.audit(
                &admin_actor(actor),
                "admin.request",
                name.as_str(),
                serde_json::json!({
                    "request": open.id,
                    "kind": kind.as_str(),
                    "role": role.as_str(),
                    "expires_at": open.expires_at.rfc3339(),
                }),
            )
            .await?;
        }
        let Some(approver) = open.approved_by.clone() else {
            return Ok(Err(open));
        };
        if !self.store.use_admin_request(&open.id, now).await? {
            return Err(AppError::FailedPrecondition(format!(
                "the approval of the request for admin {name} was used or expired meanwhile; run the command again to ask anew"
            )));
        }
        Ok(Ok(Some(approver)))
    }

    /// A second admin approves the request waiting for admin `name` (or, named
    /// `ca-rotation-<12 hex>`, for a forced CA rotation step on the CA of that hash).
    pub async fn approve_admin(
        &self,
        approver: &Admin,
        name: &AdminName,
    ) -> Result<AdminRequest, AppError> {
        let now = self.now();
        let request = self
            .store
            .admin_request(name, now)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(if is_ca_rotation_request_name(name.as_str()) {
                    format!("no forced CA rotation step named {name} awaits approval: a request is named after the CA its step concerns, and a cancel or any other rotation step withdraws it (`wardctl admin list --requests` shows the waiting ones)")
                } else {
                    format!(
                        "no request for admin {name} awaits approval (`wardctl admin list` shows the waiting ones)"
                    )
                })
            })?;
        let what = request_subject(&request);
        if let Some(by) = &request.approved_by {
            return Err(AppError::FailedPrecondition(format!(
                "the request for {what} is already approved (by {by}); {} runs the same command again to use it",
                request.requested_by
            )));
        }
        let requester = match request.requested_by.parse::<AdminName>() {
            Ok(requester) => self.store.get_admin(&requester).await?,
            Err(_) => None,
        }
        .ok_or_else(|| {
            AppError::FailedPrecondition(format!(
                "the request for {what} came from {}, who is not a registered admin",
                request.requested_by
            ))
        })?;
        if let Some(why) = approval_refusal(&requester, approver) {
            return Err(self.refuse_approval(approver, name.as_str(), why).await?);
        }
        if !self
            .store
            .approve_admin_request(&request.id, approver.name.as_str(), now)
            .await?
        {
            return Err(AppError::FailedPrecondition(format!(
                "the request for {what} was approved, used or expired meanwhile"
            )));
        }
        info!(admin = %name, approved_by = %approver.name, requested_by = %request.requested_by, "admin request approved");
        self.audit(
            &admin_actor(approver),
            "admin.approve",
            name.as_str(),
            serde_json::json!({
                "request": request.id,
                "kind": request.kind.as_str(),
                "role": request.role.as_str(),
                "requested_by": request.requested_by,
            }),
        )
        .await?;
        Ok(AdminRequest {
            approved_by: Some(approver.name.to_string()),
            approved_at: Some(now),
            ..request
        })
    }

    /// Refuses an approval by someone who is not a second person, with an audit entry.
    pub(super) async fn refuse_approval(
        &self,
        approver: &Admin,
        target: &str,
        why: String,
    ) -> Result<AppError, AppError> {
        self.metrics.denied_calls.inc();
        warn!(admin = %approver.name, target, why = %why, "approval refused");
        self.audit(
            &admin_actor(approver),
            "denied",
            "approve",
            serde_json::json!({ "target": target, "why": why }),
        )
        .await?;
        Ok(AppError::PermissionDenied(why))
    }

    /// Revokes admin `name`: its certificates are refused at every handshake and call from
    /// now on, on every replica, and its open connections are cut. The last active
    /// `admin`-role identity is never revoked.
    pub async fn revoke_admin(
        &self,
        actor: &Admin,
        name: &AdminName,
        reason: &str,
        caller_serial: Option<&str>,
    ) -> Result<Admin, AppError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AppError::InvalidArgument(
                "revoking an admin needs a reason (--reason TEXT); it is kept for the audit".into(),
            ));
        }
        if reason.len() > MAX_TEXT_LEN || reason.chars().any(crate::core::text::is_unsafe) {
            return Err(AppError::InvalidArgument(format!(
                "the reason must be at most {MAX_TEXT_LEN} bytes without control characters"
            )));
        }
        let now = self.now();
        let serials = match self
            .store
            .revoke_admin(name, actor.name.as_str(), reason, now)
            .await?
        {
            RevokeOutcome::Revoked(serials) => serials,
            RevokeOutcome::NotFound => {
                return Err(AppError::NotFound(format!(
                    "no admin {name}; `wardctl admin list` shows the registered ones"
                )));
            }
            RevokeOutcome::AlreadyRevoked(r) => {
                return Err(AppError::FailedPrecondition(format!(
                    "admin {name} was already revoked on {} by {}",
                    r.at, r.by
                )));
            }
            RevokeOutcome::LastAdmin => {
                return Err(AppError::FailedPrecondition(format!(
                    "admin {name} is the last active identity with role admin: revoking it would leave nobody able to manage Ward. Issue another admin first (wardctl admin issue NAME --role admin --out FILE), or renew the break-glass identity if it has expired, then revoke {name}"
                )));
            }
        };
        let mut cut = 0;
        for serial in &serials {
            self.revoked.insert(serial);
            // The caller's own connection carries this answer: it closes when the caller is
            // done, and every further call on it is refused.
            if Some(serial.as_str()) != caller_serial {
                cut += self.connections.cut(serial);
            }
        }
        self.announce(Announcement::RevocationsChanged).await;
        warn!(admin = %name, revoked_by = %actor.name, certificates = serials.len(), connections_cut = cut, "admin revoked");
        self.audit(
            &admin_actor(actor),
            "admin.revoke",
            name.as_str(),
            serde_json::json!({ "reason": reason, "certificates": serials, "connections_cut": cut }),
        )
        .await?;
        self.store
            .get_admin(name)
            .await?
            .ok_or_else(|| AppError::Internal(format!("admin {name} vanished")))
    }

    /// Registered admins (revoked ones included), and the requests awaiting a second admin.
    pub async fn list_admins(&self) -> Result<(Vec<Admin>, Vec<AdminRequest>), AppError> {
        let admins = self.store.list_admins().await?;
        let requests = self.store.list_admin_requests(self.now()).await?;
        Ok((admins, requests))
    }
}

/// What a request asks for, as messages name it.
fn request_subject(request: &AdminRequest) -> String {
    match request.kind {
        RequestKind::CaActivate => format!("the forced activation of the CA {}", ca_of(request)),
        RequestKind::CaRetire => format!("the forced retirement of the CA {}", ca_of(request)),
        RequestKind::Issue | RequestKind::Renew => format!("admin {}", request.name),
    }
}

/// The CA a forced rotation step's request concerns, as its name gives it (`sha256:<12 hex>…`).
fn ca_of(request: &AdminRequest) -> String {
    let name = request.name.as_str();
    match name
        .strip_prefix(CA_ROTATION_REQUEST)
        .and_then(|rest| rest.strip_prefix('-'))
    {
        Some(hex) => format!("sha256:{hex}…"),
        None => format!("({name})"),
    }
}
