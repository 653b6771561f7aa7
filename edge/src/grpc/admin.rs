//! `AdminService`: mutual TLS with a registered admin's certificate.
//!
//! Every call authenticates first (a certificate from our CA, recorded, not revoked, of an
//! admin that is registered and not revoked: [`App::authenticate_admin`]), then checks that
//! the admin's role holds the permission the call needs ([`Permission`], [`App::authorize`]);
//! a refusal names the role needed and is audited. Where the permission depends on what is
//! asked (a command's kind, a bulk wipe's scope, a CA rotation step), the request is read
//! only after the admin holds one of the candidates, and the one needed is checked then.
//! Renewing one's own certificate needs no permission beyond being that admin. Reads are
//! audited here (`AdminApi::read`); changes record their own entries in `App`.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use ward_proto::v1::{self, *};

use super::convert::{
    action_from_issue, admin_request_to_wire, admin_to_wire, command_state_from_wire,
    command_to_wire, device_to_wire, messaging_wipe_to_wire, optional_seconds, peer_leaf,
    policy_changes_from_wire, policy_to_wire, role_from_wire, status,
};
use super::request::{command_id, csr, device_ref, events, optional_user, parse, webhook_id};
use serde_json::{Value, json};

use ward_controller::app::audit::admin_actor;
use ward_controller::app::tokens::TokenSelection;
use ward_controller::app::{AdminIssued, App, AppError, audit_target};
use ward_core::audit::Checkpoint;
use ward_core::audit::checkpoint::MAX_PER_VERIFICATION;
use ward_core::ca_rotation::RotationStep;
use ward_core::refs::ScimClientName;
use ward_core::{Admin, CommandDecision, DeviceChange, Permission};

pub(super) struct AdminApi {
    app: Arc<App>,
}

impl AdminApi {
    pub(super) fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// One device as an admin sees it, with its newest proven messaging wipe.
    async fn shown(&self, device: &ward_core::Device) -> Result<Device, Status> {
        let mut shown = device_to_wire(device);
        shown.messaging_wipe = self
            .app
            .messaging_wipes(std::slice::from_ref(device))
            .await
            .map_err(status)?
            .remove(&device.id)
            .as_ref()
            .map(messaging_wipe_to_wire);
        Ok(shown)
    }

    /// The registered admin behind the request, if their role grants `permission` on
    /// `target` (what the call is about; a refusal is audited with it).
    async fn admin<T>(
        &self,
        request: &Request<T>,
        permission: Permission,
        target: &str,
    ) -> Result<Admin, Status> {
        let admin = self
            .app
            .authenticate_admin(peer_leaf(request).as_deref(), target)
            .await
            .map_err(status)?;
        self.app
            .authorize(&admin, permission, target)
            .await
            .map_err(status)?;
        Ok(admin)
    }

    /// Cancels or approves the command a call names, once its caller is authenticated with
    /// the permission that needs.
    async fn decide_command<T>(
        &self,
        request: &Request<T>,
        decision: CommandDecision,
        id: &str,
    ) -> Result<Response<Command>, Status> {
        let actor = self
            .admin(request, Permission::to_decide(decision), id)
            .await?;
        let id = command_id(id).map_err(status)?;
        let command = match decision {
            CommandDecision::Cancel => self.app.cancel_command(&actor, id).await,
            CommandDecision::Approve => self.app.approve_command(&actor, id).await,
        };
        Ok(Response::new(command_to_wire(&command.map_err(status)?)))
    }

    /// Disables, enables, returns or retires the device a call names, once its caller is
    /// authenticated with the permission the change needs.
    async fn change_device<T>(
        &self,
        request: &Request<T>,
        change: DeviceChange,
        device: &str,
        reason: &str,
    ) -> Result<Response<DeviceCommandResponse>, Status> {
        let actor = self
            .admin(request, Permission::to_change(change), device)
            .await?;
        let device = &device_ref(device).map_err(status)?;
        let app = &self.app;
        let done = match change {
            DeviceChange::Disable => app.disable_device(&actor, device, reason).await,
            DeviceChange::Enable => app.enable_device(&actor, device, reason).await,
            DeviceChange::Return => app.return_device(&actor, device, reason).await,
            DeviceChange::Retire => app.retire_device(&actor, device, reason).await,
        };
        Ok(Response::new(device_command(done.map_err(status)?)))
    }

    /// The registered admin behind the request, if their role grants at least one of
    /// `permissions`: for calls whose permission depends on what they ask, which is read only
    /// after this (then [`App::authorize`] checks the one it needs). A refusal names the first.
    async fn admin_for_any<T>(
        &self,
        request: &Request<T>,
        permissions: &[Permission],
        target: &str,
    ) -> Result<Admin, Status> {
        let admin = self
            .app
            .authenticate_admin(peer_leaf(request).as_deref(), target)
            .await
            .map_err(status)?;
        if admin.role.allows_any(permissions).is_none()
            && let Some(first) = permissions.first()
        {
            self.app
                .authorize(&admin, *first, target)
                .await
                .map_err(status)?;
        }
        Ok(admin)
    }

    fn issued(&self, issued: AdminIssued) -> IssueAdminResponse {
        match issued {
            AdminIssued::Issued { admin, certificate } => IssueAdminResponse {
                admin: Some(admin_to_wire(&admin)),
                certificate_der: certificate.der,
                ca_certificates_der: self.app.cas().trusted_ders(),
                awaiting_approval: false,
                request: None,
            },
            AdminIssued::AwaitingApproval(request) => IssueAdminResponse {
                awaiting_approval: true,
                request: Some(admin_request_to_wire(&request)),
                ..IssueAdminResponse::default()
            },
        }
    }

    /// Records a read in the audit log: who read what (`target`: the device, command or user
    /// read, or the scope of a list) through which call, also when it failed (then with the
    /// target as asked). Changes record their own entries; refusals are recorded by `admin`.
    async fn read<R>(
        &self,
        admin: &Admin,
        call: &str,
        asked: &str,
        result: Result<R, AppError>,
        about: impl FnOnce(&R) -> (String, Value),
    ) -> Result<R, Status> {
        let (target, mut details) = match &result {
            Ok(read) => about(read),
            Err(e) => (
                audit_target(asked, call),
                json!({ "refused": e.to_string() }),
            ),
        };
        if let Some(fields) = details.as_object_mut() {
            fields.insert("call".into(), call.into());
        }
        self.app
            .audit(&admin_actor(admin), "read", &target, details)
            .await
            .map_err(status)?;
        result.map_err(status)
    }
}

#[tonic::async_trait]
impl v1::admin_service_server::AdminService for AdminApi {
    async fn create_enrollment_token(
        &self,
        request: Request<CreateEnrollmentTokenRequest>,
    ) -> Result<Response<CreateEnrollmentTokenResponse>, Status> {
        let user = request.get_ref().user.clone();
        let actor = self.admin(&request, Permission::Enroll, &user).await?;
        let ttl = optional_seconds(request.get_ref().ttl_seconds);
        let created = self
            .app
            .create_token(&actor, parse(&user).map_err(status)?, ttl)
            .await
            .map_err(status)?;
        Ok(Response::new(CreateEnrollmentTokenResponse {
            token: created.token.expose().to_owned(),
            user: created.record.user.to_string(),
            expires_at_unix_ms: created.record.expires_at.unix_ms(),
            ca_hash: self.app.ca().hash().to_string(),
            server_url: self.app.config().public_url.clone(),
        }))
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let req = request.get_ref().clone();
        let scope = asked_or(&req.user, "devices");
        let admin = self.admin(&request, Permission::Read, &scope).await?;
        let listed = async {
            let user = optional_user(&req.user)?;
            self.app.list_devices(user.as_ref()).await
        };
        let result = match listed.await {
            Ok(mut devices) if req.noncompliant_only => {
                devices.retain(|d| d.compliance.as_ref().is_some_and(|c| !c.compliant));
                if !req.failing_check.is_empty() {
                    devices.retain(|d| {
                        d.compliance
                            .as_ref()
                            .is_some_and(|c| c.failing().any(|f| f.as_str() == req.failing_check))
                    });
                }
                Ok(devices)
            }
            Ok(_) if !req.failing_check.is_empty() => Err(AppError::InvalidArgument(
                "filtering by failing check needs noncompliant_only (wardctl: add --noncompliant)"
                    .into(),
            )),
            other => other,
        };
        let devices = self
            .read(&admin, "list_devices", &scope, result, |devices| {
                (
                    scope.clone(),
                    json!({
                        "noncompliant_only": req.noncompliant_only,
                        "failing_check": (!req.failing_check.is_empty()).then_some(&req.failing_check),
                        "devices": devices.len(),
                    }),
                )
            })
            .await?;
        let mut wipes = self.app.messaging_wipes(&devices).await.map_err(status)?;
        Ok(Response::new(ListDevicesResponse {
            devices: devices
                .iter()
                .map(|d| {
                    let mut shown = device_to_wire(d);
                    shown.messaging_wipe = wipes.remove(&d.id).as_ref().map(messaging_wipe_to_wire);
                    shown
                })
                .collect(),
        }))
    }

    async fn get_device(
        &self,
        request: Request<GetDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let asked = request.get_ref().device_id.clone();
        let admin = self.admin(&request, Permission::Read, &asked).await?;
        let result = async { self.app.get_device(&device_ref(&asked)?).await }.await;
        let device = self
            .read(&admin, "get_device", &asked, result, |d| {
                (d.id.to_string(), json!({ "user": d.user.as_str() }))
            })
            .await?;
        let mut shown = self.shown(&device).await?;
        shown.keys =
            super::convert::keys_to_wire(&self.app.device_keys(device.id).await.map_err(status)?);
        Ok(Response::new(shown))
    }

    async fn issue_admin(
        &self,
        request: Request<IssueAdminRequest>,
    ) -> Result<Response<IssueAdminResponse>, Status> {
        let name = request.get_ref().name.clone();
        let actor = self.admin(&request, Permission::Admins, &name).await?;
        let req = request.into_inner();
        let role = role_from_wire(req.role)?;
        let name = parse(&req.name).map_err(status)?;
        let csr = csr(&req.csr_der).map_err(status)?;
        let issued = self
            .app
            .issue_admin(
                &actor,
                name,
                role,
                &csr,
                optional_seconds(req.lifetime_seconds),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(self.issued(issued)))
    }

    async fn renew_admin(
        &self,
        request: Request<RenewAdminRequest>,
    ) -> Result<Response<IssueAdminResponse>, Status> {
        // Any admin may renew their own certificate; another's needs the admins permission,
        // checked before the CSR is read (renew_admin checks it too, and the rest).
        let asked = request.get_ref().name.clone();
        let actor = self
            .app
            .authenticate_admin(peer_leaf(&request).as_deref(), &asked)
            .await
            .map_err(status)?;
        let name: ward_certs::AdminName = parse(&asked).map_err(status)?;
        if name != actor.name {
            self.app
                .authorize(&actor, Permission::Admins, name.as_str())
                .await
                .map_err(status)?;
        }
        let req = request.into_inner();
        let csr = csr(&req.csr_der).map_err(status)?;
        let issued = self
            .app
            .renew_admin(&actor, &name, &csr, optional_seconds(req.lifetime_seconds))
            .await
            .map_err(status)?;
        Ok(Response::new(self.issued(issued)))
    }

    async fn revoke_admin(
        &self,
        request: Request<RevokeAdminRequest>,
    ) -> Result<Response<v1::Admin>, Status> {
        let name = request.get_ref().name.clone();
        let actor = self.admin(&request, Permission::Admins, &name).await?;
        let caller = peer_leaf(&request)
            .as_deref()
            .and_then(ward_certs::tls::serial_of);
        let req = request.into_inner();
        let admin = self
            .app
            .revoke_admin(
                &actor,
                &parse(&req.name).map_err(status)?,
                &req.reason,
                caller.as_deref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(admin_to_wire(&admin)))
    }

    async fn approve_admin(
        &self,
        request: Request<ApproveAdminRequest>,
    ) -> Result<Response<v1::AdminRequest>, Status> {
        let name = request.get_ref().name.clone();
        let actor = self.admin(&request, Permission::Approve, &name).await?;
        let approved = self
            .app
            .approve_admin(&actor, &parse(&name).map_err(status)?)
            .await
            .map_err(status)?;
        Ok(Response::new(admin_request_to_wire(&approved)))
    }

    async fn list_admins(
        &self,
        request: Request<ListAdminsRequest>,
    ) -> Result<Response<ListAdminsResponse>, Status> {
        let admin = self.admin(&request, Permission::Read, "admins").await?;
        let result = self.app.list_admins().await;
        let (admins, requests) = self
            .read(
                &admin,
                "list_admins",
                "admins",
                result,
                |(admins, requests)| {
                    (
                        "admins".into(),
                        json!({ "admins": admins.len(), "requests": requests.len() }),
                    )
                },
            )
            .await?;
        Ok(Response::new(ListAdminsResponse {
            admins: admins.iter().map(admin_to_wire).collect(),
            requests: requests.iter().map(admin_request_to_wire).collect(),
        }))
    }

    async fn issue_command(
        &self,
        request: Request<IssueCommandRequest>,
    ) -> Result<Response<Command>, Status> {
        let device = request.get_ref().device_id.clone();
        let actor = self
            .admin_for_any(&request, &Permission::ISSUE_COMMAND, &device)
            .await?;
        let req = request.into_inner();
        let kind = action_from_issue(req.action)?;
        self.app
            .authorize(&actor, Permission::to_issue(&kind), &device)
            .await
            .map_err(status)?;
        let device = device_ref(&req.device_id).map_err(status)?;
        let key = parse(&req.idempotency_key).map_err(status)?;
        let (command, _) = self
            .app
            .issue_command(
                &actor,
                &device,
                kind,
                &req.reason,
                &key,
                (req.ttl_seconds > 0).then(|| std::time::Duration::from_secs(req.ttl_seconds)),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(command_to_wire(&command)))
    }

    async fn list_commands(
        &self,
        request: Request<ListCommandsRequest>,
    ) -> Result<Response<ListCommandsResponse>, Status> {
        let req = request.get_ref().clone();
        let scope = asked_or(&req.device_id, "commands");
        let admin = self.admin(&request, Permission::Read, &scope).await?;
        let state = command_state_from_wire(req.state)?;
        let limit = list_limit(req.limit)?;
        let result = async {
            let device = if req.device_id.is_empty() {
                None
            } else {
                Some(self.app.get_device(&device_ref(&req.device_id)?).await?.id)
            };
            let commands = self.app.list_commands(device, state).await?;
            Ok((device, commands))
        }
        .await;
        let (_, mut commands) = self
            .read(&admin, "list_commands", &scope, result, |(device, commands)| {
                (
                    device.map_or_else(|| "commands".to_owned(), |d| d.to_string()),
                    json!({ "state": state.map(|s| s.to_string()), "commands": commands.len().min(limit) }),
                )
            })
            .await?;
        let truncated = commands.len() > limit;
        commands.truncate(limit);
        Ok(Response::new(ListCommandsResponse {
            commands: commands.iter().map(command_to_wire).collect(),
            truncated,
        }))
    }

    async fn get_command(
        &self,
        request: Request<GetCommandRequest>,
    ) -> Result<Response<Command>, Status> {
        let asked = request.get_ref().command_id.clone();
        let admin = self.admin(&request, Permission::Read, &asked).await?;
        let result = async { self.app.get_command(command_id(&asked)?).await }.await;
        let command = self
            .read(&admin, "get_command", &asked, result, |c| {
                (
                    c.id.to_string(),
                    json!({ "device": c.device_id.to_string() }),
                )
            })
            .await?;
        Ok(Response::new(command_to_wire(&command)))
    }

    async fn attest_wipe(
        &self,
        request: Request<GetCommandRequest>,
    ) -> Result<Response<WipeAttestation>, Status> {
        let asked = request.get_ref().command_id.clone();
        let admin = self.admin(&request, Permission::Read, &asked).await?;
        let result = async { self.app.attest_wipe(command_id(&asked)?).await }.await;
        let (body, signature) = self
            .read(&admin, "attest_wipe", &asked, result, |_| {
                (asked.clone(), json!({}))
            })
            .await?;
        Ok(Response::new(WipeAttestation { body, signature }))
    }

    async fn cancel_command(
        &self,
        request: Request<CancelCommandRequest>,
    ) -> Result<Response<Command>, Status> {
        let CancelCommandRequest { command_id } = request.get_ref();
        self.decide_command(&request, CommandDecision::Cancel, command_id)
            .await
    }

    async fn approve_command(
        &self,
        request: Request<ApproveCommandRequest>,
    ) -> Result<Response<Command>, Status> {
        let ApproveCommandRequest { command_id } = request.get_ref();
        self.decide_command(&request, CommandDecision::Approve, command_id)
            .await
    }

    async fn get_policy(
        &self,
        request: Request<GetPolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        let user = request.get_ref().user.clone();
        let scope = asked_or(&user, "default policy");
        let admin = self.admin(&request, Permission::Read, &scope).await?;
        let result = async { self.app.get_policy(optional_user(&user)?.as_ref()).await }.await;
        let policy = self
            .read(&admin, "get_policy", &scope, result, |p| {
                (
                    scope.clone(),
                    json!({ "scope": p.scope.to_string(), "revision": p.revision }),
                )
            })
            .await?;
        Ok(Response::new(policy_to_wire(&policy)))
    }

    async fn set_policy(
        &self,
        request: Request<SetPolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        let scope = asked_or(&request.get_ref().user, "default policy");
        let actor = self.admin(&request, Permission::Policy, &scope).await?;
        let req = request.into_inner();
        let changes = policy_changes_from_wire(&req)?;
        let user = optional_user(&req.user).map_err(status)?;
        let policy = self
            .app
            .set_policy(&actor, user.as_ref(), &changes)
            .await
            .map_err(status)?;
        Ok(Response::new(policy_to_wire(&policy)))
    }

    async fn reset_policy(
        &self,
        request: Request<GetPolicyRequest>,
    ) -> Result<Response<Policy>, Status> {
        let user = request.get_ref().user.clone();
        let actor = self.admin(&request, Permission::Policy, &user).await?;
        let policy = self
            .app
            .reset_policy(&actor, &parse(&user).map_err(status)?)
            .await
            .map_err(status)?;
        Ok(Response::new(policy_to_wire(&policy)))
    }

    async fn revoke_device(
        &self,
        request: Request<RevokeDeviceRequest>,
    ) -> Result<Response<Device>, Status> {
        let device = request.get_ref().device_id.clone();
        let actor = self.admin(&request, Permission::Revoke, &device).await?;
        let device = self
            .app
            .revoke_device(
                &actor,
                &device_ref(&device).map_err(status)?,
                &request.get_ref().reason,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(self.shown(&device).await?))
    }

    async fn return_device(
        &self,
        request: Request<ReturnDeviceRequest>,
    ) -> Result<Response<DeviceCommandResponse>, Status> {
        let ReturnDeviceRequest { device_id, reason } = request.get_ref();
        self.change_device(&request, DeviceChange::Return, device_id, reason)
            .await
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let req = request.get_ref().clone();
        let scope = asked_or(&req.device, "audit log");
        let admin = self.admin(&request, Permission::Read, &scope).await?;
        let limit = list_limit(req.limit)?;
        let timestamp = |ms: i64| (ms != 0).then(|| ward_core::Timestamp::from_unix_ms(ms));
        let result = async {
            let device = if req.device.is_empty() {
                None
            } else {
                Some(self.app.get_device(&device_ref(&req.device)?).await?.id)
            };
            let filter = ward_controller::store::AuditFilter {
                since: timestamp(req.since_unix_ms),
                until: timestamp(req.until_unix_ms),
                actor: (!req.actor.is_empty()).then(|| req.actor.clone()),
                target: (!req.target.is_empty()).then(|| req.target.clone()),
                device,
                after_seq: Some(req.after_seq),
                // One more than asked, to tell whether more follow.
                limit: Some(u32::try_from(limit + 1).unwrap_or(u32::MAX)),
            };
            Ok((device, self.app.audit_list(&filter).await?))
        }
        .await;
        let (_, mut entries) = self
            .read(&admin, "list_audit", &scope, result, |(device, entries)| {
                (
                    device.map_or_else(|| "audit log".to_owned(), |d| d.to_string()),
                    json!({
                        "since": timestamp(req.since_unix_ms).map(|t| t.rfc3339()),
                        "until": timestamp(req.until_unix_ms).map(|t| t.rfc3339()),
                        "actor": (!req.actor.is_empty()).then_some(&req.actor),
                        "after_seq": req.after_seq,
                        "entries": entries.len().min(limit),
                    }),
                )
            })
            .await?;
        let truncated = entries.len() > limit;
        entries.truncate(limit);
        Ok(Response::new(ListAuditResponse {
            truncated,
            entries: entries
                .into_iter()
                .map(|e| AuditEntry {
                    seq: e.seq,
                    at_unix_ms: e.at.unix_ms(),
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    details_json: e.details,
                    prev_hash: e.prev_hash,
                    hash: e.hash,
                })
                .collect(),
        }))
    }

    async fn verify_audit(
        &self,
        request: Request<VerifyAuditRequest>,
    ) -> Result<Response<VerifyAuditResponse>, Status> {
        let admin = self.admin(&request, Permission::Read, "audit log").await?;
        let texts = &request.get_ref().checkpoints;
        if texts.len() > MAX_PER_VERIFICATION {
            return Err(Status::invalid_argument(format!(
                "{} checkpoints in one verification: send at most {MAX_PER_VERIFICATION} (wardctl picks the newest and a spread of the older ones)",
                texts.len()
            )));
        }
        let checkpoints = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse::<Checkpoint>()
                    .map_err(|e| Status::invalid_argument(format!("checkpoint {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let result = self.app.audit_verify(&checkpoints).await;
        let v = self
            .read(&admin, "verify_audit", "audit log", result, |v| {
                (
                    "audit log".into(),
                    json!({ "checkpoints": checkpoints.len(), "ok": v.ok }),
                )
            })
            .await?;
        Ok(Response::new(VerifyAuditResponse {
            ok: v.ok,
            entries: v.entries,
            first_bad_seq: v.first_bad_seq.unwrap_or(0),
            problem: v.problem.unwrap_or_default(),
            problems: v
                .problems
                .into_iter()
                .map(|p| AuditProblem {
                    seq: p.seq.unwrap_or(0),
                    text: p.text,
                })
                .collect(),
            checkpoints: v.checkpoints,
            chain: v.chain.unwrap_or_default(),
        }))
    }

    async fn offboard_user(
        &self,
        request: Request<OffboardUserRequest>,
    ) -> Result<Response<OffboardReport>, Status> {
        let user = request.get_ref().user.clone();
        let actor = self.admin(&request, Permission::Offboard, &user).await?;
        let report = self
            .app
            .offboard_user(
                &actor,
                &parse(&user).map_err(status)?,
                &request.get_ref().reason,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(super::convert::offboard_report_to_wire(
            &report,
        )))
    }

    async fn get_offboard_report(
        &self,
        request: Request<GetOffboardReportRequest>,
    ) -> Result<Response<OffboardReport>, Status> {
        let user = request.get_ref().user.clone();
        let admin = self.admin(&request, Permission::Read, &user).await?;
        let result = async { self.app.offboard_report(&parse(&user)?).await }.await;
        let report = self
            .read(&admin, "get_offboard_report", &user, result, |r| {
                (
                    r.user.to_string(),
                    json!({ "devices": r.devices.len(), "complete": r.complete() }),
                )
            })
            .await?;
        Ok(Response::new(super::convert::offboard_report_to_wire(
            &report,
        )))
    }

    async fn bulk_wipe(
        &self,
        request: Request<BulkWipeRequest>,
    ) -> Result<Response<BulkWipeReport>, Status> {
        let target = format!("bulk-wipe:{}", request.get_ref().idempotency_key);
        let actor = self
            .admin_for_any(&request, &Permission::BULK_WIPE, &target)
            .await?;
        let (wanted, key) = super::bulk_wipe::request_from_wire(request.into_inner())?;
        self.app
            .authorize(&actor, Permission::to_wipe(wanted.scope), &target)
            .await
            .map_err(status)?;
        let dry_run = wanted.dry_run;
        let result = async { self.app.bulk_wipe(&actor, &parse(&key)?, wanted).await }.await;
        let report = if dry_run {
            // A dry run changes nothing: it is recorded as a read.
            self.read(&actor, "bulk_wipe_dry_run", &target, result, |r| {
                (r.batch.clone(), json!({ "devices": r.devices.len() }))
            })
            .await?
        } else {
            result.map_err(status)?
        };
        Ok(Response::new(super::bulk_wipe::report_to_wire(&report)))
    }

    async fn get_bulk_wipe(
        &self,
        request: Request<GetBulkWipeRequest>,
    ) -> Result<Response<BulkWipeReport>, Status> {
        let batch = request.get_ref().batch.clone();
        let admin = self.admin(&request, Permission::Read, &batch).await?;
        let result = async { self.app.bulk_wipe_report(&parse(&batch)?).await }.await;
        let report = self
            .read(&admin, "get_bulk_wipe", &batch, result, |r| {
                (
                    r.batch.clone(),
                    json!({ "devices": r.devices.len(), "complete": r.complete() }),
                )
            })
            .await?;
        Ok(Response::new(super::bulk_wipe::report_to_wire(&report)))
    }

    async fn approve_bulk_wipe(
        &self,
        request: Request<GetBulkWipeRequest>,
    ) -> Result<Response<BulkWipeReport>, Status> {
        let batch = request.get_ref().batch.clone();
        let actor = self.admin(&request, Permission::Approve, &batch).await?;
        let report = self
            .app
            .approve_bulk_wipe(&actor, &parse(&batch).map_err(status)?)
            .await
            .map_err(status)?;
        Ok(Response::new(super::bulk_wipe::report_to_wire(&report)))
    }

    async fn mark_lost(
        &self,
        request: Request<MarkLostRequest>,
    ) -> Result<Response<MarkLostResponse>, Status> {
        let device = request.get_ref().device_id.clone();
        let actor = self.admin(&request, Permission::Revoke, &device).await?;
        let req = request.into_inner();
        let (lock, wipe) = self
            .app
            .mark_lost(
                &actor,
                &device_ref(&req.device_id).map_err(status)?,
                &req.reason,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(MarkLostResponse {
            lock: Some(command_to_wire(&lock)),
            wipe: Some(command_to_wire(&wipe)),
        }))
    }

    async fn disable_device(
        &self,
        request: Request<DisableDeviceRequest>,
    ) -> Result<Response<DeviceCommandResponse>, Status> {
        let DisableDeviceRequest { device_id, reason } = request.get_ref();
        self.change_device(&request, DeviceChange::Disable, device_id, reason)
            .await
    }

    async fn enable_device(
        &self,
        request: Request<EnableDeviceRequest>,
    ) -> Result<Response<DeviceCommandResponse>, Status> {
        let EnableDeviceRequest { device_id, reason } = request.get_ref();
        self.change_device(&request, DeviceChange::Enable, device_id, reason)
            .await
    }

    async fn retire_device(
        &self,
        request: Request<RetireDeviceRequest>,
    ) -> Result<Response<DeviceCommandResponse>, Status> {
        let RetireDeviceRequest { device_id, reason } = request.get_ref();
        self.change_device(&request, DeviceChange::Retire, device_id, reason)
            .await
    }

    async fn list_enrollment_tokens(
        &self,
        request: Request<ListEnrollmentTokensRequest>,
    ) -> Result<Response<ListEnrollmentTokensResponse>, Status> {
        let user = request.get_ref().user.clone();
        let scope = asked_or(&user, "tokens");
        let admin = self.admin(&request, Permission::Read, &scope).await?;
        let result = async { self.app.list_tokens(optional_user(&user)?.as_ref()).await }.await;
        let tokens = self
            .read(&admin, "list_enrollment_tokens", &scope, result, |tokens| {
                (scope.clone(), json!({ "tokens": tokens.len() }))
            })
            .await?;
        Ok(Response::new(ListEnrollmentTokensResponse {
            tokens: tokens.iter().map(token_to_wire).collect(),
        }))
    }

    async fn revoke_enrollment_tokens(
        &self,
        request: Request<RevokeEnrollmentTokensRequest>,
    ) -> Result<Response<RevokeEnrollmentTokensResponse>, Status> {
        let target = {
            let req = request.get_ref();
            if req.token_id.is_empty() {
                req.user.clone()
            } else {
                "enrollment token".to_owned()
            }
        };
        let actor = self.admin(&request, Permission::Enroll, &target).await?;
        let req = request.into_inner();
        let (id, user);
        let selection = match (req.token_id.is_empty(), req.user.is_empty()) {
            (false, true) => {
                id = parse(&req.token_id).map_err(status)?;
                TokenSelection::Id(&id)
            }
            (true, false) => {
                user = parse(&req.user).map_err(status)?;
                TokenSelection::User(&user)
            }
            _ => {
                return Err(Status::invalid_argument(
                    "name either one token (its id) or a user, not both and not neither",
                ));
            }
        };
        let revoked = self
            .app
            .withdraw_tokens(&actor, selection, &req.reason)
            .await
            .map_err(status)?;
        Ok(Response::new(RevokeEnrollmentTokensResponse {
            revoked: revoked.iter().map(token_to_wire).collect(),
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let admin = self.admin(&request, Permission::Read, "self").await?;
        let me = admin.clone();
        let admin = self
            .read(&me, "who_am_i", "self", Ok::<_, AppError>(admin), |a| {
                (format!("admin {}", a.name), json!({}))
            })
            .await?;
        Ok(Response::new(WhoAmIResponse {
            name: admin.name.to_string(),
            role: super::convert::role_to_wire(admin.role) as i32,
            permissions: Permission::ALL
                .iter()
                .filter(|p| admin.role.allows(**p))
                .map(|p| p.name().to_owned())
                .collect(),
        }))
    }

    async fn rotate_ca(
        &self,
        request: Request<RotateCaRequest>,
    ) -> Result<Response<RotateCaResponse>, Status> {
        let admin = self
            .admin_for_any(&request, &Permission::ROTATE_CA, "ca")
            .await?;
        let step: RotationStep = request
            .get_ref()
            .step
            .parse()
            .map_err(Status::invalid_argument)?;
        self.app
            .authorize(&admin, Permission::to_rotate(step), "ca")
            .await
            .map_err(status)?;
        let force = request.get_ref().force;
        let report = if step == RotationStep::Status {
            let me = admin.clone();
            let result = self.app.rotate_ca(&me, step, false).await;
            self.read(&admin, "rotate_ca", "ca", result, |_| {
                ("ca".into(), json!({}))
            })
            .await?
        } else {
            self.app
                .rotate_ca(&admin, step, force)
                .await
                .map_err(status)?
        };
        Ok(Response::new(RotateCaResponse {
            cas: report
                .cas
                .iter()
                .map(|ca| CaInfo {
                    ca_hash: ca.hash.clone(),
                    state: ca.state.as_str().to_owned(),
                    not_after_unix_ms: ca.not_after.map_or(0, |t| t.unix_ms()),
                    certificate_der: ca.der.clone(),
                    live_device_certificates: ca.live_device_certificates,
                    live_admin_certificates: ca.live_admin_certificates,
                })
                .collect(),
            active_devices: report.active_devices,
            devices_trusting_all: report.devices_trusting_all,
            devices_behind: report
                .devices_behind
                .iter()
                .map(ToString::to_string)
                .collect(),
            done: report.done,
            next_step: report.next_step,
        }))
    }

    async fn add_webhook(
        &self,
        request: Request<AddWebhookRequest>,
    ) -> Result<Response<AddWebhookResponse>, Status> {
        let actor = self
            .admin(&request, Permission::Integrations, "webhooks")
            .await?;
        let req = request.into_inner();
        let url = parse(&req.url).map_err(status)?;
        let events = events(&req.events).map_err(status)?;
        let ca = (!req.ca_pem.is_empty()).then_some(req.ca_pem);
        let hook = self
            .app
            .add_webhook(&actor, &url, events, ca)
            .await
            .map_err(status)?;
        Ok(Response::new(AddWebhookResponse {
            webhook: Some(super::webhooks::webhook_to_wire(&hook)),
            secret: hook.secret.expose().to_owned(),
        }))
    }

    async fn list_webhooks(
        &self,
        request: Request<ListWebhooksRequest>,
    ) -> Result<Response<ListWebhooksResponse>, Status> {
        let admin = self
            .admin(&request, Permission::Integrations, "webhooks")
            .await?;
        let result = self.app.list_webhooks().await;
        let hooks = self
            .read(&admin, "list_webhooks", "webhooks", result, |h| {
                ("webhooks".into(), json!({ "count": h.len() }))
            })
            .await?;
        Ok(Response::new(ListWebhooksResponse {
            webhooks: hooks.iter().map(super::webhooks::webhook_to_wire).collect(),
        }))
    }

    async fn remove_webhook(
        &self,
        request: Request<RemoveWebhookRequest>,
    ) -> Result<Response<Webhook>, Status> {
        let target = format!("webhook/{}", request.get_ref().id);
        let actor = self
            .admin(&request, Permission::Integrations, &target)
            .await?;
        let id = webhook_id(&request.get_ref().id).map_err(status)?;
        let hook = self.app.remove_webhook(&actor, &id).await.map_err(status)?;
        Ok(Response::new(super::webhooks::webhook_to_wire(&hook)))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<ListWebhookDeliveriesRequest>,
    ) -> Result<Response<ListWebhookDeliveriesResponse>, Status> {
        let req = request.get_ref().clone();
        let target = if req.webhook_id.is_empty() {
            "webhooks".to_owned()
        } else {
            format!("webhook/{}", req.webhook_id)
        };
        let admin = self
            .admin(&request, Permission::Integrations, &target)
            .await?;
        let limit = if req.limit == 0 { 100 } else { req.limit };
        if limit > ward_controller::app::webhooks::MAX_DELIVERIES_LISTED {
            return Err(Status::invalid_argument(format!(
                "limit {limit} is too large: ask for at most {}",
                ward_controller::app::webhooks::MAX_DELIVERIES_LISTED
            )));
        }
        let result = async {
            let id = (!req.webhook_id.is_empty())
                .then(|| webhook_id(&req.webhook_id))
                .transpose()?;
            self.app.webhook_deliveries(id.as_ref(), limit).await
        }
        .await;
        let deliveries = self
            .read(&admin, "list_webhook_deliveries", &target, result, |d| {
                (target.clone(), json!({ "count": d.len() }))
            })
            .await?;
        Ok(Response::new(ListWebhookDeliveriesResponse {
            deliveries: deliveries
                .iter()
                .map(super::webhooks::delivery_to_wire)
                .collect(),
        }))
    }

    async fn create_scim_token(
        &self,
        request: Request<CreateScimTokenRequest>,
    ) -> Result<Response<CreateScimTokenResponse>, Status> {
        let name = request.get_ref().name.clone();
        let admin = self
            .admin(&request, Permission::Admins, &format!("scim client {name}"))
            .await?;
        let (client, secret) = self
            .app
            .create_scim_client(&admin, &parse(&name).map_err(status)?)
            .await
            .map_err(status)?;
        Ok(Response::new(CreateScimTokenResponse {
            client: Some(scim_client_to_wire(&client)),
            token: secret.expose().to_owned(),
        }))
    }

    async fn list_scim_tokens(
        &self,
        request: Request<ListScimTokensRequest>,
    ) -> Result<Response<ListScimTokensResponse>, Status> {
        let admin = self
            .admin(&request, Permission::Admins, "scim clients")
            .await?;
        let result = self.app.list_scim_clients().await;
        let clients = self
            .read(&admin, "list_scim_tokens", "scim clients", result, |c| {
                ("scim clients".into(), json!({ "clients": c.len() }))
            })
            .await?;
        Ok(Response::new(ListScimTokensResponse {
            clients: clients.iter().map(scim_client_to_wire).collect(),
        }))
    }

    async fn revoke_scim_token(
        &self,
        request: Request<RevokeScimTokenRequest>,
    ) -> Result<Response<ScimTokenInfo>, Status> {
        let name = request.get_ref().name.clone();
        let admin = self
            .admin(&request, Permission::Admins, &format!("scim client {name}"))
            .await?;
        // A name no client could have is simply not there.
        let name: ScimClientName = name
            .parse()
            .map_err(|_| Status::not_found(format!("there is no SCIM client named {name:?}")))?;
        let client = self
            .app
            .revoke_scim_client(&admin, &name)
            .await
            .map_err(status)?;
        Ok(Response::new(scim_client_to_wire(&client)))
    }

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        let admin = self.admin(&request, Permission::Read, "users").await?;
        let result = self.app.list_users().await;
        let users = self
            .read(&admin, "list_users", "users", result, |u| {
                ("users".into(), json!({ "users": u.len() }))
            })
            .await?;
        Ok(Response::new(ListUsersResponse {
            users: users.iter().map(user_to_wire).collect(),
        }))
    }
}

fn token_to_wire(t: &ward_core::TokenRecord) -> EnrollmentTokenInfo {
    EnrollmentTokenInfo {
        id: t.hash.id(),
        user: t.user.to_string(),
        created_at_unix_ms: t.created_at.unix_ms(),
        expires_at_unix_ms: t.expires_at.unix_ms(),
        created_by: t.created_by.clone(),
    }
}

/// Entries a list call returns when it does not say: enough for a screen or a script, small
/// enough for one message.
pub(super) const LIST_DEFAULT: usize = 1000;
/// The most one list call returns (about 5 MB of commands with receipts).
pub(super) const LIST_MAX: usize = 10_000;

fn list_limit(asked: u32) -> Result<usize, Status> {
    match usize::try_from(asked) {
        Ok(0) => Ok(LIST_DEFAULT),
        Ok(n) if n <= LIST_MAX => Ok(n),
        _ => Err(Status::invalid_argument(format!(
            "limit {asked} is too large: ask for at most {LIST_MAX} and page (or narrow the filter)"
        ))),
    }
}

/// What a list or policy call is about, for authorization and the audit: the user or
/// device asked for, or `everything` (what the call covers) when none was.
fn asked_or(asked: &str, everything: &str) -> String {
    if asked.is_empty() {
        everything.to_owned()
    } else {
        asked.to_owned()
    }
}

fn device_command(
    (device, command): (ward_core::Device, ward_core::Command),
) -> DeviceCommandResponse {
    DeviceCommandResponse {
        device: Some(device_to_wire(&device)),
        command: Some(command_to_wire(&command)),
    }
}

fn scim_client_to_wire(c: &ward_core::directory::ScimClient) -> ScimTokenInfo {
    ScimTokenInfo {
        name: c.name.to_string(),
        actor: c.actor(),
        created_at_unix_ms: c.created_at.unix_ms(),
        created_by: c.created_by.clone(),
        revoked_at_unix_ms: c.revoked_at.map_or(0, |t| t.unix_ms()),
        revoked_by: c.revoked_by.clone().unwrap_or_default(),
    }
}

fn user_to_wire(u: &ward_controller::app::directory::UserSummary) -> UserInfo {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    UserInfo {
        user: u.user.to_string(),
        devices: count(u.devices),
        active_devices: count(u.active_devices),
        usable_tokens: count(u.usable_tokens),
        directory: u.directory.as_ref().map(|d| DirectoryEntry {
            id: d.id.to_string(),
            external_id: d.external_id.clone().unwrap_or_default(),
            state: d.state().to_owned(),
            updated_by: d.updated_by.clone(),
            updated_at_unix_ms: d.updated_at.unix_ms(),
            deactivated_at_unix_ms: d.deactivated_at.map_or(0, |t| t.unix_ms()),
            user_name: d.user_name.clone(),
        }),
    }
}
