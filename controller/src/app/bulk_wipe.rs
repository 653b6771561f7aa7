//! A bulk wipe: one selection of devices, every wipe and its audit entry in one writer job
//! (one commit, one audit entry per command), under one idempotency key, and — above the
//! approval threshold — released as a whole by one second admin.

use std::collections::HashMap;

use tracing::info;

use super::audit::admin_actor;
use super::bulk_select::Selection;
use super::commands::{Issuer, issue_event, new_command};
use super::{App, AppError};
use crate::core::audit::AuditEvent;
use crate::core::refs::{BULK_WIPE_KEYS, BulkWipeKey, BulkWipeName};
use crate::core::{
    Admin, Command, CommandKind, CommandState, Device, DeviceId, DeviceState, Event,
    IdempotencyKey, WipeScope,
};
use crate::store::Priority;

/// What a call asks for (under the client's key: the batch is `<admin>:<key>`).
#[derive(Clone, Debug)]
pub struct BulkWipeRequest {
    pub selection: Selection,
    pub scope: WipeScope,
    pub reason: String,
    pub dry_run: bool,
}

/// What happened to one selected device in this call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Issued,
    AlreadyIssued,
    WouldIssue,
    /// Revoked or retired: it can receive no wipe.
    Skipped,
    /// Reported by a read of the batch.
    Recorded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::AlreadyIssued => "already-issued",
            Outcome::WouldIssue => "would-issue",
            Outcome::Skipped => "skipped",
            Outcome::Recorded => "",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BulkWipeDevice {
    pub device: Device,
    pub command: Option<Command>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug)]
pub struct BulkWipeReport {
    /// `<admin>:<key>`.
    pub batch: String,
    pub scope: WipeScope,
    pub dry_run: bool,
    pub needs_approval: bool,
    pub issued: usize,
    pub devices: Vec<BulkWipeDevice>,
}

impl BulkWipeReport {
    pub fn complete(&self) -> bool {
        !self.dry_run
            && self
                .devices
                .iter()
                .all(|d| d.command.as_ref().is_none_or(|c| c.state.is_terminal()))
    }
}

/// A batch's name and the stored prefix of its commands' keys (the admin namespace, as a
/// single command's key; the device id ends each key, so a rerun finds each command).
struct Batch {
    admin: String,
    key: BulkWipeKey,
}

impl Batch {
    fn named(name: &BulkWipeName) -> Self {
        Self {
            admin: name.admin.to_string(),
            key: name.key.clone(),
        }
    }

    fn name(&self) -> String {
        format!("{}:{}", self.admin, self.key)
    }

    fn command_key(&self, device: DeviceId) -> IdempotencyKey {
        IdempotencyKey::Admin {
            admin: self.admin.clone(),
            key: format!("{BULK_WIPE_KEYS}{}:{device}", self.key),
        }
    }

    fn prefix(&self) -> String {
        IdempotencyKey::Admin {
            admin: self.admin.clone(),
            key: format!("{BULK_WIPE_KEYS}{}:", self.key),
        }
        .stored()
    }
}

impl App {
    /// Wipes the selected devices (or, for a dry run, says which it would), issuing nothing
    /// twice for the same key.
    pub async fn bulk_wipe(
        &self,
        actor: &Admin,
        key: &BulkWipeKey,
        request: BulkWipeRequest,
    ) -> Result<BulkWipeReport, AppError> {
        let reason = request.reason.trim().to_owned();
        if reason.is_empty() {
            return Err(AppError::InvalidArgument(
                "a bulk wipe needs a reason (--reason TEXT); it is kept with every command".into(),
            ));
        }
        let batch = Batch {
            admin: actor.name.to_string(),
            key: key.clone(),
        };
        let selected = self.select_devices(&request.selection).await?;
        let kind = CommandKind::Wipe {
            scope: request.scope,
        };
        let mut earlier = self.batch_commands(&batch).await?;
        if let Some(other) = earlier.values().find(|c| c.kind != kind) {
            return Err(AppError::InvalidArgument(format!(
                "you already used this idempotency key for a {} wipe (command {}); use a new key for a different request",
                match &other.kind {
                    CommandKind::Wipe { scope } => scope.as_str(),
                    _ => other.kind.name(),
                },
                other.id
            )));
        }
        // The approval rule covers the whole selection: a full wipe under --require-approval
        // always, and any selection larger than the threshold.
        let needs_approval = self
            .config
            .approval_threshold
            .is_some_and(|limit| request.scope == WipeScope::Full || selected.len() > limit);
        let now = self.now();
        let issuer = Issuer::admin(actor);
        let mut planned = Vec::new();
        let mut devices = Vec::with_capacity(selected.len());
        for device in selected {
            let (command, outcome) = match earlier.remove(&device.id) {
                Some(c) => (Some(c), Outcome::AlreadyIssued),
                None if device.state != DeviceState::Active => (None, Outcome::Skipped),
                None if request.dry_run => (None, Outcome::WouldIssue),
                None => {
                    planned.push(new_command(
                        &issuer,
                        device.id,
                        kind.clone(),
                        &reason,
                        &batch.command_key(device.id),
                        needs_approval,
                        false,
                        now,
                    )?);
                    (None, Outcome::Issued)
                }
            };
            devices.push(BulkWipeDevice {
                device,
                command,
                outcome,
            });
        }
        if !request.dry_run && planned.is_empty() && devices.iter().all(|d| d.command.is_none()) {
            return Err(AppError::FailedPrecondition(
                "no selected device is active (all are revoked or retired): nothing to wipe".into(),
            ));
        }
        let mut report = BulkWipeReport {
            batch: batch.name(),
            scope: request.scope,
            dry_run: request.dry_run,
            needs_approval,
            issued: 0,
            devices,
        };
        if request.dry_run || planned.is_empty() {
            return Ok(report);
        }
        let summary = AuditEvent {
            actor: issuer.actor.clone(),
            action: "device.bulk_wipe".into(),
            target: batch.name(),
            details: serde_json::json!({
                "selection": request.selection.describe(),
                "scope": request.scope.as_str(),
                "reason": reason,
                "devices": report.devices.len(),
                "issued": planned.len(),
                "needs_approval": needs_approval,
            }),
        };
        let stored = self
            .commit_bulk_wipe(issuer.actor, summary, planned)
            .await?;
        let mut by_device: HashMap<DeviceId, (Command, bool)> = stored
            .iter()
            .map(|(c, created)| (c.device_id, (c.clone(), *created)))
            .collect();
        for d in report.devices.iter_mut() {
            if d.outcome == Outcome::Issued
                && let Some((command, created)) = by_device.remove(&d.device.id)
            {
                d.command = Some(command);
                if !created {
                    d.outcome = Outcome::AlreadyIssued;
                }
            }
        }
        let stored: Vec<Command> = stored
            .into_iter()
            .filter_map(|(c, created)| created.then_some(c))
            .collect();
        report.issued = stored.len();
        info!(batch = %report.batch, issued = stored.len(), needs_approval, "bulk wipe issued");
        self.publish(&stored).await;
        Ok(report)
    }

    /// One job: the commands, then the batch's audit entry and one entry per command this
    /// job created; each command with whether this job created it. A key taken meanwhile by
    /// another request (an idempotency-key conflict) refuses the whole job: nothing commits.
    async fn commit_bulk_wipe(
        &self,
        actor: String,
        summary: AuditEvent,
        planned: Vec<Command>,
    ) -> Result<Vec<(Command, bool)>, AppError> {
        let now = self.now();
        self.store
            .write(Priority::High, move |tx| {
                let (actor, summary, planned) = (actor.clone(), summary.clone(), planned.clone());
                Box::pin(async move {
                    let mut stored = Vec::with_capacity(planned.len());
                    // Many rows a statement.
                    let inserted = tx.insert_commands(&planned).await?;
                    for ((found, created), command) in inserted.into_iter().zip(&planned) {
                        if !created
                            && (found.device_id != command.device_id || found.kind != command.kind)
                        {
                            return Err(AppError::InvalidArgument(format!(
                                "idempotency key {} already names command {}: nothing was wiped; use a new key",
                                command.idempotency_key, found.id
                            )));
                        }
                        // Not created: a concurrent identical call issued it first.
                        stored.push((found, created));
                    }
                    // The batch's entry says what this job issued, then one entry a command.
                    let mut summary = summary.clone();
                    let issued = stored.iter().filter(|(_, created)| *created).count();
                    if issued > 0 {
                        summary.details["issued"] = issued.into();
                        tx.audit(summary, now);
                    }
                    for (command, _) in stored.iter().filter(|(_, created)| *created) {
                        tx.audit(issue_event(&actor, command), now);
                    }
                    Ok::<_, AppError>(stored)
                })
            })
            .await
    }

    /// The commands of a batch, by device.
    async fn batch_commands(&self, batch: &Batch) -> Result<HashMap<DeviceId, Command>, AppError> {
        Ok(self
            .store
            .commands_by_key_prefix(&batch.prefix())
            .await?
            .into_iter()
            .filter(|c| c.idempotency_key == batch.command_key(c.device_id).stored())
            .map(|c| (c.device_id, c))
            .collect())
    }

    /// Where a bulk wipe stands: two reads, however many devices.
    pub async fn bulk_wipe_report(&self, name: &BulkWipeName) -> Result<BulkWipeReport, AppError> {
        let batch = Batch::named(name);
        let mut commands = self.batch_commands(&batch).await?;
        let Some(any) = commands.values().next() else {
            return Err(AppError::NotFound(format!(
                "no bulk wipe {}; it is named <admin>:<key>, as the wipe reported",
                batch.name()
            )));
        };
        let scope = match any.kind {
            CommandKind::Wipe { scope } => scope,
            _ => WipeScope::Messaging,
        };
        let needs_approval = commands
            .values()
            .any(|c| c.state == CommandState::AwaitingApproval);
        let devices = self
            .store
            .list_devices(None)
            .await?
            .into_iter()
            .filter_map(|device| {
                commands.remove(&device.id).map(|c| BulkWipeDevice {
                    device,
                    command: Some(c),
                    outcome: Outcome::Recorded,
                })
            })
            .collect();
        Ok(BulkWipeReport {
            batch: batch.name(),
            scope,
            dry_run: false,
            needs_approval,
            issued: 0,
            devices,
        })
    }

    /// A second admin releases every command of the batch that awaits approval. The same
    /// two-person rule as for one command: not the issuer, nor an identity related to them.
    pub async fn approve_bulk_wipe(
        &self,
        actor: &Admin,
        name: &BulkWipeName,
    ) -> Result<BulkWipeReport, AppError> {
        let parsed = Batch::named(name);
        let waiting: Vec<Command> = self
            .batch_commands(&parsed)
            .await?
            .into_values()
            .filter(|c| c.state == CommandState::AwaitingApproval)
            .collect();
        if waiting.is_empty() {
            // Either no such batch (NOT_FOUND) or nothing left to approve.
            self.bulk_wipe_report(name).await?;
            return Err(AppError::FailedPrecondition(format!(
                "no command of bulk wipe {} awaits approval",
                parsed.name()
            )));
        }
        if parsed.admin == actor.name.as_str() {
            return Err(AppError::PermissionDenied(format!(
                "admin {} issued bulk wipe {}: a second admin must approve it",
                actor.name,
                parsed.name()
            )));
        }
        let requester = match parsed.admin.parse::<ward_certs::AdminName>() {
            Ok(name) => self.store.get_admin(&name).await?,
            Err(_) => None,
        };
        if let Some(why) = requester.and_then(|r| crate::core::roles::approval_refusal(&r, actor)) {
            return Err(self.refuse_approval(actor, &parsed.name(), why).await?);
        }
        // Concurrent transitions share the writer's jobs (a few thousand a job), each with its
        // own audit entry.
        let event = Event::Approved {
            by: actor.name.to_string(),
        };
        let who = admin_actor(actor);
        // Each from the command read for the checks above: one edited in the database since
        // to another device or action is not approved.
        let results = futures::future::join_all(
            waiting
                .iter()
                .map(|c| self.transition_from(c.id, Some(c.clone()), &event, None, &who, None)),
        )
        .await;
        let mut approved = Vec::with_capacity(results.len());
        for result in results {
            match result {
                Ok(c) => approved.push(c),
                // Cancelled (or approved) meanwhile: nothing to release.
                Err(AppError::FailedPrecondition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        info!(batch = %parsed.name(), approved = approved.len(), approved_by = %actor.name, "bulk wipe approved");
        self.publish(&approved).await;
        self.bulk_wipe_report(name).await
    }
}
