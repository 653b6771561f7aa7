//! Command operations: issue, list, cancel; hand out to devices; acknowledge; results.

use tracing::{info, warn};
use ward_certs::receipt::SignedReceipt;

use super::audit::{CONTROLLER, admin_actor, device_actor};
use super::{App, AppError, transitions};
use crate::core::audit::AuditEvent;
use crate::core::command::MAX_TEXT_LEN;
use crate::core::refs::{CommandKey, DeviceRef};
use crate::core::text::printable_within;
use crate::core::{
    Admin, Command, CommandId, CommandKind, CommandState, Device, DeviceId, DeviceState, Event,
    IdempotencyKey, Receipt, Timestamp, WipeScope,
};
use crate::store::{Announcement, Priority, StoreError};

/// Who issues a command: an admin, or the controller itself (a compliance wipe).
pub(crate) struct Issuer {
    /// Recorded as the command's `created_by`.
    pub name: String,
    /// The audit actor.
    pub actor: String,
}

impl Issuer {
    pub(super) fn admin(admin: &Admin) -> Self {
        Self {
            name: admin.name.to_string(),
            actor: admin_actor(admin),
        }
    }

    pub(super) fn controller() -> Self {
        Self {
            name: CONTROLLER.to_owned(),
            actor: CONTROLLER.to_owned(),
        }
    }
}

/// How often a compare-and-set on a command is retried before giving up.
pub(super) const CAS_ATTEMPTS: usize = 8;

/// What the device is told when it asks to execute a command.
#[derive(Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub proceed: bool,
    pub state: CommandState,
}

/// A result as the device reports it.
#[derive(Debug)]
pub struct DeviceResult {
    pub succeeded: bool,
    pub failure_reason: String,
    pub receipt: Option<SignedReceipt>,
}

/// Text an admin gives with a command (a reason, a lock message): the rule devices' text is
/// kept by ([`printable_within`]), at most [`MAX_TEXT_LEN`] bytes.
fn check_text(what: &str, text: &str) -> Result<(), AppError> {
    printable_within(text, MAX_TEXT_LEN)
        .map_err(|why| AppError::InvalidArgument(format!("{what} is not accepted: {why}")))
}

/// Text from a device or another party, made safe to keep and to show: control characters
/// and bidirectional overrides become spaces, and it is cut to [`MAX_TEXT_LEN`] bytes.
pub fn sanitize(text: &str) -> String {
    crate::core::text::clean(text, MAX_TEXT_LEN)
}

/// The largest wipe receipt kept (a real one is a few hundred bytes): a larger one is refused,
/// with nothing of it stored.
pub(super) const MAX_RECEIPT_BYTES: usize = 16 * 1024;

/// Why a command for a revoked or retired device is refused, and what to do instead: such a
/// device is refused at every handshake, so a queued command could never reach it (and an
/// admin told "queued" would wait for a wipe that never comes).
pub(super) fn unreachable_device(device: &Device, kind: &CommandKind) -> AppError {
    let id = device.id;
    let what = kind.name();
    AppError::FailedPrecondition(match device.state {
        DeviceState::Retired => format!(
            "device {id} is retired: its messaging data was wiped with a verified receipt and \
             its agent destroyed its own identity, so a {what} can never reach it; nothing was \
             queued. To use the machine again, enroll it anew (`wardctl token create --user {}`)",
            device.user
        ),
        _ => format!(
            "device {id} is revoked: its certificate is refused at every handshake, so a {what} \
             can never reach it; nothing was queued. If the device is back in your hands, enroll \
             it again (`wardctl token create --user {}`, then `ward-agent enroll` on it) and \
             wipe it then; to lock, wipe and revoke a device in the right order, use \
             `wardctl device lost {id} --reason TEXT`",
            device.user
        ),
    })
}

impl App {
    /// Commits a command and wakes the device's stream. The same idempotency key returns the
    /// command it first created.
    pub async fn issue_command(
        &self,
        actor: &Admin,
        device: &DeviceRef,
        kind: CommandKind,
        reason: &str,
        idempotency_key: &CommandKey,
        ttl: Option<std::time::Duration>,
    ) -> Result<(Command, bool), AppError> {
        match ttl {
            None => {}
            Some(_) if kind.is_destructive() => {
                return Err(AppError::InvalidArgument(
                    "a wipe never expires: it stays pending until the device runs it or an admin cancels it; issue it without a time-to-live".into(),
                ));
            }
            Some(ttl) => crate::core::command::TTL
                .check("the time-to-live", ttl)
                .map_err(AppError::InvalidArgument)?,
        }
        let full = matches!(
            kind,
            CommandKind::Wipe {
                scope: WipeScope::Full
            }
        );
        let approval = full && self.config.approval_threshold.is_some();
        let key = IdempotencyKey::Admin {
            admin: actor.name.to_string(),
            key: idempotency_key.as_str().to_owned(),
        };
        let device = self.get_device(device).await?.id;
        self.issue_command_with(
            &Issuer::admin(actor),
            device,
            kind,
            reason,
            &key,
            approval,
            false,
            ttl,
        )
        .await
    }

    /// [`App::issue_command`], with whether a second admin must approve it first and whether
    /// the device is revoked once it is finished.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn issue_command_with(
        &self,
        issuer: &Issuer,
        device_id: DeviceId,
        kind: CommandKind,
        reason: &str,
        idempotency_key: &IdempotencyKey,
        needs_approval: bool,
        revoke_after: bool,
        ttl: Option<std::time::Duration>,
    ) -> Result<(Command, bool), AppError> {
        let now = self.now();
        let mut command = new_command(
            issuer,
            device_id,
            kind.clone(),
            reason,
            idempotency_key,
            needs_approval,
            revoke_after,
            now,
        )?;
        // Non-destructive commands only (checked by the caller): past it, a command the
        // device has not taken ends `expired`.
        command.deadline = ttl.map(|ttl| now.saturating_add(ttl));
        // The command and its audit entry commit together, or neither does.
        let actor = issuer.actor.clone();
        let (stored, created) = self
            .store
            .write(Priority::High, move |tx| {
                let (command, actor) = (command.clone(), actor.clone());
                Box::pin(async move {
                    // A retry finds the command its key already names, whatever became of the
                    // device since; a new command needs a device that can still receive it,
                    // checked in the job that inserts it.
                    if let Some(stored) = tx.command_by_key(&command.idempotency_key).await? {
                        return Ok(Ok((stored, false)));
                    }
                    match tx.device(command.device_id).await? {
                        Some(device) if device.state != DeviceState::Active => {
                            return Ok(Err(unreachable_device(&device, &command.kind)));
                        }
                        _ => {}
                    }
                    let (stored, created) = tx.insert_command(&command).await?;
                    if created {
                        tx.audit(issue_event(&actor, &stored), now);
                        supersede_older(tx, &stored, &actor, now).await?;
                    }
                    Ok::<_, StoreError>(Ok((stored, created)))
                })
            })
            .await??;
        if !created {
            if stored.device_id != device_id || stored.kind != kind {
                return Err(AppError::InvalidArgument(format!(
                    "you already used this idempotency key for command {} ({} on device {}); use a new key for a different request",
                    stored.id,
                    stored.kind.name(),
                    stored.device_id
                )));
            }
            return Ok((stored, false));
        }
        info!(command_id = %stored.id, device_id = %device_id, kind = stored.kind.name(), created_by = %issuer.name, "command queued");
        self.publish(std::slice::from_ref(&stored)).await;
        Ok((stored, true))
    }

    /// A second admin releases a command that awaits approval.
    pub async fn approve_command(&self, actor: &Admin, id: CommandId) -> Result<Command, AppError> {
        let command = self.get_command(id).await?;
        if command.state != CommandState::AwaitingApproval {
            return Err(AppError::FailedPrecondition(format!(
                "command {} is {}; only commands awaiting approval can be approved",
                command.id, command.state
            )));
        }
        if command.created_by == actor.name.as_str() {
            return Err(AppError::PermissionDenied(format!(
                "admin {} issued command {}: a second admin must approve it",
                actor.name, command.id
            )));
        }
        // Nor an identity the issuer made (or that made the issuer's): one person with two
        // bundles is not two people.
        let requester = match command.created_by.parse::<ward_certs::AdminName>() {
            Ok(name) => self.store.get_admin(&name).await?,
            Err(_) => None,
        };
        if let Some(why) = requester.and_then(|r| crate::core::roles::approval_refusal(&r, actor)) {
            return Err(self
                .refuse_approval(actor, &command.id.to_string(), why)
                .await?);
        }
        // From the command the checks above read: one changed since is read again, and
        // must still be the same instruction.
        let approved = self
            .transition_from(
                command.id,
                Some(command.clone()),
                &Event::Approved {
                    by: actor.name.to_string(),
                },
                None,
                &admin_actor(actor),
                None,
            )
            .await?;
        info!(command_id = %approved.id, approved_by = %actor.name, "command approved");
        self.publish(std::slice::from_ref(&approved)).await;
        Ok(approved)
    }

    pub async fn get_command(&self, id: CommandId) -> Result<Command, AppError> {
        self.store.get_command(id).await?.ok_or_else(|| {
            AppError::NotFound(format!(
                "no command {id}; `wardctl command list` shows them"
            ))
        })
    }

    /// Ends `expired` every queued command whose time-to-live ran out before its device took
    /// it (wipes have none); how many. The check-in of a device that comes back does the same
    /// for its own commands at once.
    pub async fn expire_due_commands(&self) -> Result<usize, AppError> {
        let now = self.now();
        let due: Vec<CommandId> = self
            .store
            .commands_past_deadline(now)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        let mut expired = 0;
        for id in due {
            match self.transition(id, &Event::Expired, CONTROLLER).await {
                Ok(_) => expired += 1,
                // Delivered, cancelled or superseded meanwhile.
                Err(AppError::FailedPrecondition(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if expired > 0 {
            info!(
                expired,
                "commands expired: their time-to-live ran out before the device took them"
            );
        }
        Ok(expired)
    }

    /// The controller's attestation of a wipe whose receipt it verified
    /// (`core::attestation`): the exact signed bytes and their signature by the CA's key.
    pub async fn attest_wipe(&self, id: CommandId) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        let command = self.get_command(id).await?;
        let keys = self.store.device_keys(command.device_id).await?;
        // Checked again, as when it arrived, rather than trusting the stored flag: a receipt
        // copied onto another command in the database is not that command's.
        let scope = match &command.kind {
            CommandKind::Wipe { scope } => *scope,
            CommandKind::Retire => WipeScope::Messaging,
            other => {
                return Err(AppError::FailedPrecondition(format!(
                    "command {id} is a {}, not a wipe: there is nothing to attest",
                    other.name()
                )));
            }
        };
        if command.state == CommandState::Succeeded
            && let Some(stored) = &command.receipt
        {
            let signed = SignedReceipt {
                body: stored.body.clone(),
                signature: stored.signature.clone(),
            };
            verify_command_receipt(&keys, &command, scope, &signed).map_err(|why| {
                AppError::FailedPrecondition(format!(
                    "command {id}'s receipt does not verify as this command's ({}); nothing is attested",
                    sanitize(&why)
                ))
            })?;
        } else {
            return Err(AppError::FailedPrecondition(format!(
                "command {id} did not succeed with a verified receipt; nothing is attested"
            )));
        }
        let mut kept = std::collections::BTreeMap::new();
        for key in &keys {
            if let Some(der) = self
                .store
                .get_certificate(&key.serial)
                .await?
                .and_then(|c| c.der)
            {
                kept.insert(key.serial.clone(), der);
            }
        }
        let attestation = crate::core::attestation::attest(
            &command,
            &keys,
            &kept,
            &self.cas.known_ders(),
            self.now(),
        )
        .map_err(|e| AppError::FailedPrecondition(format!("{e}; nothing is attested")))?;
        let body = attestation
            .to_bytes()
            .map_err(|e| AppError::Internal(format!("cannot encode the attestation: {e}")))?;
        let signature = ward_certs::sign::sign(self.ca().key(), &body)
            .map_err(|e| AppError::Internal(format!("cannot sign the attestation: {e}")))?;
        Ok((body, signature))
    }

    /// Commands per state, across every replica.
    pub async fn count_commands(&self) -> Result<Vec<(crate::core::CommandState, u64)>, AppError> {
        Ok(self.store.count_commands().await?)
    }

    pub async fn list_commands(
        &self,
        device: Option<DeviceId>,
        state: Option<CommandState>,
    ) -> Result<Vec<Command>, AppError> {
        Ok(self.store.list_commands(device, state).await?)
    }

    pub async fn cancel_command(&self, actor: &Admin, id: CommandId) -> Result<Command, AppError> {
        let command = self.get_command(id).await?;
        if command.state.is_terminal() {
            return Err(AppError::FailedPrecondition(format!(
                "command {} is already {}: there is nothing left to cancel",
                command.id, command.state
            )));
        }
        if command.state == CommandState::Acknowledged {
            return Err(AppError::FailedPrecondition(format!(
                "command {} was acknowledged: the device is running it, so it can no longer be \
                 cancelled; `wardctl command show {}` follows it",
                command.id, command.id
            )));
        }
        let cancelled = self
            .finish_command(&command, &Event::Cancelled, None, &admin_actor(actor))
            .await
            .map_err(|e| match e {
                AppError::FailedPrecondition(m) => AppError::FailedPrecondition(format!(
                    "{m}: only queued or delivered commands can be cancelled (the device has \
                     already started it or it is finished)"
                )),
                other => other,
            })?;
        info!(command_id = %cancelled.id, cancelled_by = %actor.name, "command cancelled");
        Ok(cancelled)
    }

    /// Hands newly committed commands to their devices' open streams on this replica (the
    /// command itself, so the stream needs no read), and tells the other replicas, whose
    /// streams read the store, in the background and in as few messages as possible.
    pub(super) async fn publish(&self, commands: &[Command]) {
        for command in commands.iter().filter(|c| c.state == CommandState::Queued) {
            self.hub.push(command);
            self.announce(Announcement::DeviceWork(command.device_id))
                .await;
        }
    }

    /// A command pushed to a stream, recorded as delivered. `None` when it was finished,
    /// cancelled or handed out meanwhile, or edited in the database into another device's or
    /// another action (the stream then sends nothing).
    pub async fn deliver_pushed(&self, pushed: &Command) -> Result<Option<Command>, AppError> {
        match self
            .transition_from(
                pushed.id,
                Some(pushed.clone()),
                &Event::Delivered,
                None,
                CONTROLLER,
                Some(pushed.device_id),
            )
            .await
        {
            Ok(delivered) => Ok(Some(delivered)),
            // Or no longer this device's, or this instruction (edited in the database).
            Err(AppError::FailedPrecondition(_) | AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The device's unfinished commands, each recorded as delivered (again), for a check-in
    /// answer or a stream. `skip` holds ids this stream already sent.
    pub async fn deliver_unfinished(
        &self,
        device: DeviceId,
        skip: &std::collections::HashSet<CommandId>,
    ) -> Result<Vec<Command>, AppError> {
        let mut out = Vec::new();
        for command in self.store.unfinished_commands(device).await? {
            if skip.contains(&command.id) {
                continue;
            }
            let id = command.id;
            match self
                .transition_from(
                    id,
                    Some(command),
                    &Event::Delivered,
                    None,
                    CONTROLLER,
                    Some(device),
                )
                .await
            {
                Ok(delivered) => out.push(delivered),
                // Finished or cancelled meanwhile, or edited in the database to another
                // device or action: nothing to deliver.
                Err(AppError::FailedPrecondition(_) | AppError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The device asks to execute a command. It may only if this returns `proceed`.
    pub async fn acknowledge(
        &self,
        device: DeviceId,
        id: CommandId,
    ) -> Result<Acknowledgement, AppError> {
        // The command as this replica delivered it, if it did: the compare-and-set starts
        // from it. Otherwise it is read inside the transitions' job, one statement for the
        // many devices that acknowledge at once (ten thousand after an offboarding), and must
        // be this device's.
        let delivered = self.delivered.of(device, id);
        match self
            .transition_from(
                id,
                delivered,
                &Event::Acknowledged,
                None,
                &device_actor(device),
                Some(device),
            )
            .await
        {
            Ok(acked) => Ok(Acknowledgement {
                proceed: true,
                state: acked.state,
            }),
            Err(AppError::FailedPrecondition(_)) => {
                // Acknowledged already (a retry after the agent lost our answer), or finished
                // or cancelled: it proceeds only in the first case.
                let now = self.device_command(device, id).await?.state;
                Ok(Acknowledgement {
                    proceed: now == CommandState::Acknowledged,
                    state: now,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Records the device's result. A wipe succeeds only with a receipt that verifies against
    /// the device's key; otherwise it is recorded as failed, with why.
    pub async fn report_result(
        &self,
        device: DeviceId,
        id: CommandId,
        result: DeviceResult,
    ) -> Result<CommandState, AppError> {
        // The command as this replica last wrote it, if it delivered it: no read. A refusal
        // from that copy may come from its being stale (the command changed elsewhere), so
        // the store's decides then; nothing was written.
        let copy = self.delivered.of(device, id);
        if let Some(copy) = &copy {
            match self.report_result_on(device, copy.clone(), &result).await {
                Err(AppError::FailedPrecondition(_)) => self.delivered.forget(id),
                other => return other,
            }
        }
        let command = self.device_command(device, id).await?;
        // The device ran what it was sent: a row since edited into another action (by hand,
        // in the database) is not finished by a result that was about the command sent.
        if copy.is_some_and(|sent| !sent.is_same_instruction(&command)) {
            warn!(command_id = %id, device_id = %device, "a command's action was changed in the database after it was sent; the device's result is refused");
            return Err(AppError::FailedPrecondition(format!(
                "command {id} was changed in the database after it was sent to this device; \
                 its result is not recorded"
            )));
        }
        self.report_result_on(device, command, &result).await
    }

    /// [`App::report_result`] on `command`, the device's as read or as last written here.
    async fn report_result_on(
        &self,
        device: DeviceId,
        command: Command,
        result: &DeviceResult,
    ) -> Result<CommandState, AppError> {
        if command.state.is_terminal() {
            // A repeated report: answer with what is recorded, change nothing.
            return Ok(command.state);
        }
        if command.state != CommandState::Acknowledged {
            return Err(AppError::FailedPrecondition(format!(
                "command {} is {}; a result is accepted only after the device acknowledged it",
                command.id, command.state
            )));
        }
        // A device's words are bounded and cleaned, never a reason to refuse its result: a
        // refused result would leave the command unfinished forever.
        let failure_reason = sanitize(&result.failure_reason);
        let mut receipt = None;
        // A retirement is a messaging wipe on the device, with the same receipt.
        let wipe_scope = match &command.kind {
            CommandKind::Wipe { scope } => Some(*scope),
            CommandKind::Retire => Some(WipeScope::Messaging),
            _ => None,
        };
        let event = if let (true, Some(scope)) = (result.succeeded, wipe_scope) {
            match self
                .check_receipt(&command, scope, result.receipt.as_ref())
                .await?
            {
                Ok(verified) => {
                    receipt = Some(verified);
                    Event::Succeeded
                }
                Err((stored, why)) => {
                    warn!(command_id = %command.id, device_id = %device, reason = %why, "wipe receipt rejected");
                    receipt = stored;
                    Event::Failed {
                        reason: sanitize(&format!(
                            "the device reported success but its receipt was not accepted: {why}"
                        )),
                    }
                }
            }
        } else if result.succeeded {
            Event::Succeeded
        } else {
            let reason = failure_reason.trim();
            Event::Failed {
                reason: if reason.is_empty() {
                    "the device reported a failure without a reason".into()
                } else {
                    reason.to_owned()
                },
            }
        };
        let finished = self
            .finish_command(&command, &event, receipt, &device_actor(device))
            .await?;
        info!(command_id = %finished.id, device_id = %device, state = %finished.state, "command finished");
        Ok(finished.state)
    }

    /// `Ok(receipt)` when it verifies; `Err((receipt to keep, why))` otherwise.
    async fn check_receipt(
        &self,
        command: &Command,
        scope: WipeScope,
        receipt: Option<&SignedReceipt>,
    ) -> Result<Result<Receipt, (Option<Receipt>, String)>, AppError> {
        let Some(signed) = receipt else {
            return Ok(Err((None, "no receipt was sent".into())));
        };
        let size = signed.body.len() + signed.signature.len();
        if size > MAX_RECEIPT_BYTES {
            let why = format!(
                "the receipt is {size} bytes, larger than the {MAX_RECEIPT_BYTES} bytes a receipt may have; it was not kept"
            );
            let stored = Receipt {
                body: Vec::new(),
                signature: Vec::new(),
                verified: false,
                error: Some(why.clone()),
            };
            return Ok(Err((Some(stored), why)));
        }
        let keys = self.keys_of_id(command.device_id).await?;
        let outcome = verify_command_receipt(&keys, command, scope, signed);
        let mut stored = Receipt {
            body: signed.body.clone(),
            signature: signed.signature.clone(),
            verified: false,
            error: None,
        };
        Ok(match outcome {
            Ok(_) => {
                stored.verified = true;
                Ok(stored)
            }
            Err(why) => {
                // The device's words (a command id it chose) are in it: cleaned and bounded.
                let why = sanitize(&why);
                stored.error = Some(why.clone());
                Err((Some(stored), why))
            }
        })
    }

    async fn device_command(&self, device: DeviceId, id: CommandId) -> Result<Command, AppError> {
        match self.store.get_command(id).await? {
            Some(c) if c.device_id == device => Ok(c),
            // Another device's command is reported as unknown: devices learn nothing of others.
            _ => Err(AppError::NotFound(format!(
                "no command {id} for this device"
            ))),
        }
    }

    pub(super) async fn transition(
        &self,
        id: CommandId,
        event: &Event,
        actor: &str,
    ) -> Result<Command, AppError> {
        self.transition_with(id, event, None, actor).await
    }

    /// Applies `event` through the state machine and writes it with a compare-and-set, with
    /// its audit entry, in one job of the store's writer (one transaction). A concurrent
    /// change from another replica makes the compare-and-set miss: then it reads again.
    pub(super) async fn transition_with(
        &self,
        id: CommandId,
        event: &Event,
        receipt: Option<Receipt>,
        actor: &str,
    ) -> Result<Command, AppError> {
        self.transition_from(id, None, event, receipt, actor, None)
            .await
    }

    /// [`App::transition_with`], trying first from `known` (the command as the caller holds
    /// it, which spares a read when it is still current), by `actor` and, when a device asks,
    /// only on that device's command. A command read again after `known` missed must still
    /// be `known`'s instruction ([`Command::is_same_instruction`]).
    pub(super) async fn transition_from(
        &self,
        id: CommandId,
        known: Option<Command>,
        event: &Event,
        receipt: Option<Receipt>,
        actor: &str,
        device: Option<DeviceId>,
    ) -> Result<Command, AppError> {
        for attempt in 0..CAS_ATTEMPTS {
            let request = transitions::Request {
                id,
                read_again: attempt > 0 || known.is_none(),
                known: known.clone(),
                event: event.clone(),
                receipt: receipt.clone(),
                actor: actor.to_owned(),
                device,
            };
            let (was, next) = match self.transitions.run(request).await? {
                transitions::Outcome::Done { was, next } => (was, *next),
                transitions::Outcome::Changed => continue,
                transitions::Outcome::Refused(e) => return Err(e),
            };
            let since =
                |t: Timestamp| (t.unix_ms() - next.created_at.unix_ms()).max(0) as f64 / 1000.0;
            match (was, next.state) {
                (CommandState::Queued, CommandState::Delivered) => {
                    self.metrics.delivery_seconds.observe(since(self.now()));
                }
                (_, CommandState::Acknowledged) if was != CommandState::Acknowledged => {
                    self.metrics.ack_seconds.observe(since(self.now()));
                }
                _ => {}
            }
            self.delivered.written(&next);
            return Ok(next);
        }
        Err(AppError::Internal(format!(
            "command {id} kept changing under concurrent updates"
        )))
    }
}

/// A command's text, checked (the trimmed reason back): reason and lock message are bounded
/// text without control characters, and what destroys data or takes a device out of service
/// names its reason. Bulk operations check it once before their job.
pub(super) fn check_command_text<'a>(
    kind: &CommandKind,
    reason: &'a str,
) -> Result<&'a str, AppError> {
    let reason = reason.trim();
    check_text("the reason", reason)?;
    if matches!(
        kind,
        CommandKind::Wipe { .. } | CommandKind::Retire | CommandKind::Disable
    ) && reason.is_empty()
    {
        return Err(AppError::InvalidArgument(format!(
            "a {} needs a reason (--reason TEXT); it is kept with the command for the audit",
            kind.name()
        )));
    }
    if let CommandKind::Lock { message } = kind {
        check_text("the lock message", message)?;
    }
    Ok(reason)
}

/// A new command, checked: reason and lock message are bounded text without control
/// characters, and what destroys data or takes a device out of service names its reason.
/// Whether `signed` is the receipt of `command` (its id, its device, its scope; a full wipe's
/// states that the full erase ran), signed with the key of its time: one the device held when
/// the command was issued (a receipt signed before a renewal may arrive after it).
fn verify_command_receipt(
    keys: &[crate::core::DeviceKey],
    command: &Command,
    scope: WipeScope,
    signed: &SignedReceipt,
) -> Result<ward_certs::receipt::WipeReceiptBody, String> {
    super::renewal::verify_with_history(
        keys,
        signed,
        &command.id.to_string(),
        &command.device_id.to_string(),
        |key, _| key.covers_command(command.created_at),
    )
    .and_then(|body| {
        if scope == WipeScope::Full && body.full_erase.is_none() {
            Err("a full wipe's receipt does not state that the full erase ran".to_owned())
        } else if body.scope == scope {
            Ok(body)
        } else {
            Err(format!(
                "receipt scope {} does not match the command's {scope}",
                body.scope
            ))
        }
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn new_command(
    issuer: &Issuer,
    device_id: DeviceId,
    kind: CommandKind,
    reason: &str,
    idempotency_key: &IdempotencyKey,
    needs_approval: bool,
    revoke_after: bool,
    now: Timestamp,
) -> Result<Command, AppError> {
    let reason = check_command_text(&kind, reason)?;
    Ok(Command {
        id: CommandId::new_random(),
        device_id,
        kind,
        state: if needs_approval {
            CommandState::AwaitingApproval
        } else {
            CommandState::Queued
        },
        reason: reason.to_owned(),
        failure_reason: None,
        idempotency_key: idempotency_key.stored(),
        created_by: issuer.name.clone(),
        created_at: now,
        deadline: None,
        delivered_at: None,
        acknowledged_at: None,
        finished_at: None,
        deliveries: 0,
        receipt: None,
        approved_by: None,
        revoke_after,
    })
}

/// The audit entry of a new command.
pub(super) fn issue_event(actor: &str, command: &Command) -> AuditEvent {
    AuditEvent {
        actor: actor.to_owned(),
        action: "command.issue".into(),
        target: command.id.to_string(),
        details: serde_json::json!({
            "device": command.device_id.to_string(),
            "kind": command.kind.name(),
            "scope": match &command.kind { CommandKind::Wipe { scope } => Some(scope.as_str()), _ => None },
            "reason": command.reason,
        }),
    }
}

/// A new lock or unlock ends the queued ones of the same kind for its device that the device
/// has not started (`superseded`, each with its audit entry naming the newer command), in the
/// job that inserts it. Wipes are never superseded.
async fn supersede_older(
    tx: &mut dyn crate::store::tx::Tx,
    newer: &Command,
    actor: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    if !newer.kind.supersedes_its_kind() || newer.state != CommandState::Queued {
        return Ok(());
    }
    for older in tx.unfinished_commands(newer.device_id).await? {
        if older.id == newer.id || !newer.supersedes(&older) {
            continue;
        }
        let Ok(next) = older.apply(&Event::Superseded, now) else {
            continue;
        };
        if tx.update_command(older.version(), &next).await? {
            let mut entry = transition_event(actor, &next);
            entry.details["superseded_by"] = serde_json::json!(newer.id.to_string());
            tx.audit(entry, now);
        }
    }
    Ok(())
}

/// The audit entry of a command's change of state.
pub(super) fn transition_event(actor: &str, next: &Command) -> AuditEvent {
    AuditEvent {
        actor: actor.to_owned(),
        action: format!("command.{}", next.state),
        target: next.id.to_string(),
        details: serde_json::json!({
            "device": next.device_id.to_string(),
            "failure_reason": next.failure_reason,
            "receipt_verified": next.receipt.as_ref().map(|r| r.verified),
        }),
    }
}
