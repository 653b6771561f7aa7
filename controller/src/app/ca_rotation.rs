//! CA rotation (`wardctl ca rotate`): the steps an admin takes, and every replica following
//! the recorded steps. The rules of which step may come next are in
//! [`crate::core::ca_rotation`]; the CAs themselves in [`crate::ca_set`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tracing::{error, warn};
use ward_certs::{AdminName, CaHash};

use super::audit::admin_actor;
use super::{App, AppError};
use crate::ca_set::Applied;
use crate::core::admins::{AdminRequest, RequestKind, ca_rotation_request_name};
use crate::core::ca_rotation::{CaState, RotationStep};
use crate::core::{Admin, AdminRole, DeviceId, DeviceState, Timestamp};
use crate::store::Priority;

/// How often a replica reads the recorded steps by default (a step also applies at once on
/// the replica that took it).
pub const FOLLOW_DEFAULT: Duration = Duration::from_secs(30);

/// At most this many devices are named as not trusting every CA yet.
const BEHIND_SHOWN: usize = 20;

/// One CA as a rotation report shows it.
#[derive(Clone, Debug)]
pub struct CaView {
    pub hash: String,
    pub state: CaState,
    pub not_after: Option<Timestamp>,
    pub der: Vec<u8>,
    /// Certificates issued by it that are neither expired, revoked nor replaced.
    pub live_device_certificates: u64,
    pub live_admin_certificates: u64,
}

/// Where a rotation stands, and what a step did.
#[derive(Clone, Debug)]
pub struct RotationReport {
    pub cas: Vec<CaView>,
    pub active_devices: u64,
    pub devices_trusting_all: u64,
    pub devices_behind: Vec<DeviceId>,
    pub done: String,
    pub next_step: String,
}

impl App {
    /// Reads the recorded rotation steps and follows them: which CA signs, which are trusted.
    /// When another CA signs, the listener's certificate is issued again under it.
    pub async fn follow_ca_rotation(&self) -> Result<Applied, AppError> {
        let records = self.store.ca_records().await?;
        let applied = self
            .cas
            .apply(&records)
            .map_err(|e| AppError::Internal(e.to_string()))?;
        if applied.trust_changed {
            // Every certificate is checked in full again at its next call, and connections
            // made with one the CAs trusted now did not issue are cut (a retired CA's, on a
            // connection opened before the retirement).
            self.reads.forget_peers();
            self.cut_untrusted_connections().await?;
        }
        if applied.signing_changed {
            self.renew_server_certificate_if_due().await?;
        }
        Ok(applied)
    }

    async fn cut_untrusted_connections(&self) -> Result<(), AppError> {
        let trusted = self.cas.trusted_ders();
        let mut cut = 0;
        for cert in self.store.live_certificates(self.now()).await? {
            let Some(der) = &cert.der else { continue };
            if self.connections.open_with(&cert.serial) > 0
                && !trusted
                    .iter()
                    .any(|ca| ward_certs::validate::issued_by(der, ca))
            {
                cut += self.connections.cut(&cert.serial);
            }
        }
        if cut > 0 {
            tracing::warn!(
                connections = cut,
                "connections made with a certificate of a CA no longer trusted were cut"
            );
        }
        Ok(())
    }

    /// Follows the recorded steps every `every` (another replica may take one).
    pub fn start_following_ca_rotation(self: &Arc<Self>, every: Duration) {
        let app = Arc::clone(self);
        self.background.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = app.follow_ca_rotation().await {
                    error!(error = %e, "cannot follow the CA rotation; trying again at the next check");
                }
            }
        });
    }

    /// Takes one rotation step (or reports, for `Status`). A step refused changes nothing;
    /// a step taken is recorded with its audit entry in one commit.
    pub async fn rotate_ca(
        &self,
        admin: &Admin,
        step: RotationStep,
        force: bool,
    ) -> Result<RotationReport, AppError> {
        self.follow_ca_rotation().await?;
        if step == RotationStep::Status {
            return self.rotation_report(String::new()).await;
        }
        // What the step is planned on; the write checks nothing changed meanwhile (another
        // admin's step on another replica).
        let planned_on = record_states(&self.store.ca_records().await?);
        let standing = self.cas.standing();
        let mut changes = standing.plan(step).map_err(AppError::FailedPrecondition)?;
        let now = self.now();
        let mut details = json!({ "forced": force });
        let mut introduced_files: Option<Vec<std::path::PathBuf>> = None;
        // A forced step's second admin (`--require-approval`), used in the step's commit.
        let mut approval: Option<AdminRequest> = None;
        let done = match step {
            RotationStep::Status => String::new(),
            RotationStep::Introduce => {
                let ca = self
                    .cas
                    .create_next(now)
                    .map_err(|e| AppError::FailedPrecondition(e.to_string()))?;
                let hash = ca.hash().to_string();
                let files = self.cas.files_of(&ca.hash()).unwrap_or_default();
                let names: Vec<String> = files
                    .iter()
                    .filter_map(|f| f.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect();
                details["files"] = json!(names);
                introduced_files = Some(files);
                changes.push((hash.clone(), CaState::Introduced));
                format!(
                    "introduced the CA {hash}: agents trust it from their next check-in; copy {} from this replica's data directory into every other replica's",
                    names.join(" and ")
                )
            }
            RotationStep::Activate => {
                let new = changes
                    .iter()
                    .find(|(_, s)| *s == CaState::Active)
                    .map(|(h, _)| h.clone())
                    .unwrap_or_default();
                let behind = self.devices_not_trusting(&new).await?;
                if !behind.is_empty() && !force {
                    return Err(AppError::FailedPrecondition(format!(
                        "{} active device(s) do not trust the new CA yet (e.g. {}): they would lose the controller until enrolled again. Nothing was changed. Wait for their next check-in (`wardctl ca rotate status`), or add --force to leave them behind",
                        behind.len(),
                        behind
                            .iter()
                            .take(3)
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                if force {
                    approval = self
                        .forced_step_approval(admin, step, &new, behind.len() as u64, || {
                            format!(
                                "{} active device(s) that do not trust the new CA yet would lose the controller",
                                behind.len()
                            )
                        })
                        .await?;
                }
                details["devices_left_behind"] = json!(behind.len());
                format!(
                    "the CA {new} signs from now on; the former CA stays trusted until `wardctl ca rotate retire`"
                )
            }
            RotationStep::Retire => {
                let former = changes.first().map(|(h, _)| h.clone()).unwrap_or_default();
                let (devices, admins) = self.live_certificates_of(&former).await?;
                if devices + admins > 0 && !force {
                    return Err(AppError::FailedPrecondition(format!(
                        "{devices} device and {admins} admin certificate(s) issued by the former CA are still valid: they would stop working. Nothing was changed. Devices renew under the new CA by themselves (about two thirds into their certificate's lifetime) and admins with `wardctl admin renew`; or add --force"
                    )));
                }
                if force {
                    approval = self
                        .forced_step_approval(admin, step, &former, devices + admins, || {
                            format!(
                                "{devices} device and {admins} admin certificate(s) issued by the former CA would stop working"
                            )
                        })
                        .await?;
                }
                details["live_certificates_left"] = json!(devices + admins);
                format!(
                    "the former CA {former} is trusted no more; agents drop it at their next check-in"
                )
            }
            RotationStep::Cancel => {
                let new = changes.first().map(|(h, _)| h.clone()).unwrap_or_default();
                format!(
                    "the rotation is cancelled: the introduced CA {new} is trusted no more (nothing was signed with it) and agents drop it at their next check-in; a new rotation may start"
                )
            }
        };
        let actor = admin_actor(admin);
        let action = format!("ca.{}", step.as_str());
        let target = changes
            .iter()
            .map(|(h, _)| h.clone())
            .collect::<Vec<_>>()
            .join(" ");
        let event_details = {
            let mut d = details;
            if let Some(request) = &approval {
                d["approved_by"] = json!(request.approved_by);
                d["request"] = json!(request.id);
            }
            d["states"] = json!(
                changes
                    .iter()
                    .map(|(h, s)| json!({ "ca_hash": h, "state": s.as_str() }))
                    .collect::<Vec<_>>()
            );
            d
        };
        let event = crate::core::audit::AuditEvent {
            actor,
            action,
            target,
            details: event_details,
        };
        // States that leave a CA first: at most one CA holds each state but retired.
        changes.sort_by_key(|(_, state)| matches!(state, CaState::Active | CaState::Introduced));
        let changes = Arc::new(changes);
        let planned_on = Arc::new(planned_on);
        let approval_id = approval.map(|request| request.id);
        let written = self
            .store
            .write(Priority::High, move |tx| {
                let (changes, event) = (Arc::clone(&changes), event.clone());
                let planned_on = Arc::clone(&planned_on);
                let approval_id = approval_id.clone();
                Box::pin(async move {
                    if record_states(&tx.ca_records().await?) != *planned_on {
                        return Err(AppError::FailedPrecondition(
                            "another CA rotation step was taken meanwhile (by another admin or replica); nothing was changed: run `wardctl ca rotate status` and decide again".into(),
                        ));
                    }
                    // The approval is used by the commit that takes the step, once.
                    if let Some(id) = &approval_id
                        && !tx.use_admin_request(id, now).await?
                    {
                        return Err(AppError::FailedPrecondition(
                            "the second admin's approval of this forced step was used or expired meanwhile; nothing was changed: run the command again to ask anew".into(),
                        ));
                    }
                    // Any other forced step's request, approved or not, was asked on the
                    // standing this step changes: it is withdrawn with it (a cancel, or a step
                    // taken unforced, leaves no approval open to serve a later forced step).
                    let withdrawn = tx.withdraw_ca_rotation_requests(now).await?;
                    let mut event = event;
                    if !withdrawn.is_empty() {
                        event.details["withdrawn_requests"] = json!(withdrawn);
                    }
                    for (hash, state) in changes.iter() {
                        tx.set_ca_state(hash, *state, now).await?;
                    }
                    tx.audit(event, now);
                    Ok::<_, AppError>(())
                })
            })
            .await;
        if let Err(e) = written {
            if let Some(files) = &introduced_files {
                for file in files {
                    let _ = std::fs::remove_file(file);
                }
            }
            return Err(match e {
                AppError::AlreadyExists(_) => {
                    AppError::FailedPrecondition(
                        "another CA rotation step was taken meanwhile (by another admin or replica); nothing was changed: run `wardctl ca rotate status` and decide again".into(),
                    )
                }
                other => other,
            });
        }
        // The step is taken (recorded and audited): a failure to follow it here is logged and
        // retried every 30 s, never reported as the step failing.
        if let Err(e) = self.follow_ca_rotation().await {
            error!(error = %e, "the CA rotation step is recorded, but this replica could not follow it yet; it tries again within 30 s");
        }
        self.rotation_report(done).await
    }

    /// Under `serve --require-approval`, a forced `activate` or `retire` that cuts off more
    /// than the approval threshold (active devices left behind, or valid certificates of the
    /// former CA) waits for a second admin, as a full wipe or the issue of an `admin` does:
    /// the first call records a request (audited `admin.request`, named `ca-rotation-<12 hex>`
    /// after the hash of `ca`, the CA the step activates or retires) and changes nothing;
    /// another admin runs `wardctl admin approve ca-rotation-<12 hex>` (audited
    /// `admin.approve`, with the same rule of who may approve); the requester's same call
    /// again then takes the step, using the approval in the step's commit. The request
    /// serves no step on another CA, and any rotation step taken withdraws it.
    ///
    /// `Ok(None)`: no approval needed; `Ok(Some(request))`: approved, to be used.
    /// The break-glass identity needs none (its custody is the two people already).
    async fn forced_step_approval(
        &self,
        actor: &Admin,
        step: RotationStep,
        ca: &str,
        cut_off: u64,
        what: impl FnOnce() -> String,
    ) -> Result<Option<AdminRequest>, AppError> {
        let Some(threshold) = self.config.approval_threshold else {
            return Ok(None);
        };
        if cut_off <= threshold as u64 || actor.break_glass {
            return Ok(None);
        }
        let kind = match step {
            RotationStep::Activate => RequestKind::CaActivate,
            RotationStep::Retire => RequestKind::CaRetire,
            _ => return Ok(None),
        };
        let name: AdminName = ca_rotation_request_name(ca).map_err(AppError::Internal)?;
        let now = self.now();
        let wanted = AdminRequest::new(
            kind,
            name.clone(),
            AdminRole::Admin,
            actor.name.as_str(),
            now,
        );
        let open = self.store.open_admin_request(&wanted, now).await?;
        if !open.asks_for(kind, AdminRole::Admin, actor.name.as_str()) {
            return Err(AppError::FailedPrecondition(format!(
                "admin {} asked for a forced `ca rotate {}` and that request waits until {}: it must be approved and used, or expire, first. Nothing was changed",
                open.requested_by,
                match open.kind {
                    RequestKind::CaActivate => "activate",
                    RequestKind::CaRetire => "retire",
                    other => other.as_str(),
                },
                open.expires_at
            )));
        }
        if open.id == wanted.id {
            warn!(requested_by = %actor.name, kind = %kind, cut_off, "a forced CA rotation step awaits a second admin");
            self.audit(
                &admin_actor(actor),
                "admin.request",
                name.as_str(),
                json!({
                    "request": open.id,
                    "kind": kind.as_str(),
                    "role": AdminRole::Admin.as_str(),
                    "expires_at": open.expires_at.rfc3339(),
                    "cut_off": cut_off,
                    "ca_hash": ca,
                }),
            )
            .await?;
        }
        if open.approved_by.is_none() {
            return Err(AppError::FailedPrecondition(format!(
                "{}: more than the approval threshold ({threshold}) of --require-approval, so a second admin must approve this forced step. Nothing was changed. Ask another admin (not one you created or approved) to run `wardctl admin approve {name}` (the request for this step on the CA {ca}), then run `wardctl ca rotate {} --force` again before {}",
                what(),
                step.as_str(),
                open.expires_at
            )));
        }
        Ok(Some(open))
    }

    /// Active devices whose agent has not reported trusting `hash`.
    async fn devices_not_trusting(&self, hash: &str) -> Result<Vec<DeviceId>, AppError> {
        Ok(self
            .store
            .list_devices(None)
            .await?
            .into_iter()
            .filter(|d| d.state == DeviceState::Active && !d.trusted_cas.iter().any(|t| t == hash))
            .map(|d| d.id)
            .collect())
    }

    /// Device and admin certificates issued by the CA `hash` that are still valid: neither
    /// expired, revoked nor replaced by a renewal. A certificate kept without its DER (issued
    /// before Ward kept them) counts for the CA `init` made.
    async fn live_certificates_of(&self, hash: &str) -> Result<(u64, u64), AppError> {
        let now = self.now();
        let replaced: std::collections::HashSet<String> = self
            .store
            .replaced_serials(now)
            .await?
            .into_iter()
            .collect();
        let known = self.cas.known_ders();
        // `ca.pem`'s CA comes first.
        let original_hash = known
            .first()
            .map(|der| CaHash::of_certificate(der).to_string())
            .unwrap_or_default();
        let (mut devices, mut admins) = (0, 0);
        for cert in self.store.live_certificates(now).await? {
            if replaced.contains(&cert.serial) {
                continue;
            }
            let issuer = match &cert.der {
                Some(der) => known
                    .iter()
                    .find(|ca| ward_certs::validate::issued_by(der, ca))
                    .map(|ca| CaHash::of_certificate(ca).to_string()),
                None => Some(original_hash.clone()),
            };
            if issuer.as_deref() != Some(hash) {
                continue;
            }
            if cert.subject.starts_with("ward://device/") {
                devices += 1;
            } else if cert.subject.starts_with("ward://admin/") {
                admins += 1;
            }
        }
        Ok((devices, admins))
    }

    async fn rotation_report(&self, done: String) -> Result<RotationReport, AppError> {
        let standing = self.cas.standing();
        let trusted = self.cas.trusted_hashes();
        let devices = self.store.list_devices(None).await?;
        let active: Vec<_> = devices
            .iter()
            .filter(|d| d.state == DeviceState::Active)
            .collect();
        let behind: Vec<DeviceId> = active
            .iter()
            .filter(|d| !trusted.iter().all(|t| d.trusted_cas.contains(t)))
            .map(|d| d.id)
            .collect();
        let mut cas = Vec::new();
        for (hash, state) in &standing.cas {
            let Some(ca) = self.cas.held(hash) else {
                continue;
            };
            let (live_devices, live_admins) = self.live_certificates_of(hash).await?;
            cas.push(CaView {
                hash: hash.clone(),
                state: *state,
                not_after: ward_certs::live::Validity::of(ca.cert_der())
                    .map(|v| Timestamp::from_datetime(v.not_after)),
                der: ca.cert_der().to_vec(),
                live_device_certificates: live_devices,
                live_admin_certificates: live_admins,
            });
        }
        let next_step = if !standing.missing.is_empty() {
            format!(
                "this replica lacks the CA {}: copy its ca-*.pem and ca-*.key into its data directory",
                standing.missing.join(", ")
            )
        } else if standing.introduced().is_some() {
            if behind.is_empty() {
                "every active device trusts the new CA: run `wardctl ca rotate activate`".into()
            } else {
                format!(
                    "wait until every active device has checked in and trusts the new CA ({} of {} do), then run `wardctl ca rotate activate`",
                    active.len() - behind.len(),
                    active.len()
                )
            }
        } else if let Some(former) = standing.former() {
            let (d, a) = cas.iter().find(|c| c.hash == former).map_or((0, 0), |c| {
                (c.live_device_certificates, c.live_admin_certificates)
            });
            if d + a == 0 {
                "nothing valid was issued by the former CA any more: run `wardctl ca rotate retire`"
                    .into()
            } else {
                format!(
                    "wait until the {d} device and {a} admin certificate(s) of the former CA are renewed (devices do it by themselves; admins run `wardctl admin renew`), then run `wardctl ca rotate retire`"
                )
            }
        } else {
            "no rotation under way; `wardctl ca rotate introduce` starts one".into()
        };
        Ok(RotationReport {
            cas,
            active_devices: active.len() as u64,
            devices_trusting_all: (active.len() - behind.len()) as u64,
            devices_behind: behind.into_iter().take(BEHIND_SHOWN).collect(),
            done,
            next_step,
        })
    }
}

/// Records as (hash, state) pairs in a stable order, to tell whether they changed.
fn record_states(records: &[crate::core::ca_rotation::CaRecord]) -> Vec<(String, CaState)> {
    let mut states: Vec<(String, CaState)> =
        records.iter().map(|r| (r.hash.clone(), r.state)).collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    states
}
