//! An agent's check-in: validate the report, record it, enforce the policy, hand out the
//! device's unfinished commands and the CAs to trust. The gRPC edge turns the wire message
//! into a [`CheckInReport`], calls [`App::agent_check_in`] and turns the [`CheckedIn`] into
//! its answer; the domain rules (judging, graded enforcement, the command state machine) stay
//! in `core`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::warn;
use ward_certs::receipt::SignedReceipt;

use super::audit::CONTROLLER;
use super::commands::{Issuer, issue_event, new_command, transition_event};
use super::in_flight::Turn;
use super::offline_wipe::{OfflineWipeEntry, check_offline_wipe};
use super::{App, AppError};
use crate::core::audit::AuditEvent;
use crate::core::posture::{self, Step, next_enforcement, wipes_due};
use crate::core::{
    Command, CommandId, CommandKind, CommandState, CommandVersion, Compliance, ComplianceCheck,
    Device, DeviceFacts, DeviceId, Event, Inventory, StoredPolicy, Timestamp, UserEmail, WipeScope,
};
use crate::store::PostureField;
use crate::store::tx::Tx;

/// A check-in as the agent sent it, converted to domain values at the edge.
#[derive(Clone, Debug, Default)]
pub struct CheckInReport {
    /// `None` keeps the facts on record.
    pub facts: Option<DeviceFacts>,
    pub inventory: Option<Inventory>,
    pub compliance: Option<ComplianceReport>,
    /// A wipe the agent's offline timer made while it could not reach us.
    pub offline_wipe: Option<SignedReceipt>,
    /// The CAs the agent trusts (sorted `sha256:<hex>`); `None` when it does not say.
    pub trusted_cas: Option<Vec<String>>,
}

#[derive(Clone, Debug)]
pub struct ComplianceReport {
    pub checks: Vec<ComplianceCheck>,
    /// The policy revision the agent judged itself against.
    pub policy_revision: u64,
}

/// The authenticated, active device behind a call: what the agent API needs of its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveDevice {
    pub id: crate::core::DeviceId,
    pub user: UserEmail,
    /// The serial of the device's current certificate (a renewed one becomes current at its
    /// first call).
    pub certificate_serial: String,
}

/// What a check-in answers.
#[derive(Debug)]
pub struct CheckedIn {
    pub policy: StoredPolicy,
    /// The device's unfinished commands, recorded as delivered.
    pub pending: Vec<Command>,
    /// The CAs the agent is to trust from now on (DER, the one that signs first), when they
    /// differ from those it reported; empty otherwise ([`crate::ca_set::CaSet::bundle_for`]).
    pub trust_bundle: Vec<Vec<u8>>,
    /// The controller's time when it answered, for the agent's clock check.
    pub server_time: Timestamp,
}

impl CheckInReport {
    /// Every part is checked before anything is stored: a check-in refused for a malformed
    /// report leaves no trace, not even a new last-seen time.
    pub fn validate(&self) -> Result<(), AppError> {
        if let Some(facts) = &self.facts {
            facts
                .validate()
                .map_err(|e| AppError::InvalidArgument(e.to_string()))?;
        }
        if let Some(inventory) = &self.inventory {
            inventory
                .validate()
                .map_err(|e| AppError::InvalidArgument(e.to_string()))?;
        }
        if let Some(report) = &self.compliance {
            super::check_report(&report.checks)?;
        }
        Ok(())
    }
}

impl App {
    /// Records a check-in and answers it with the policy and the pending commands.
    ///
    /// Everything the check-in changes — facts and last-seen time, inventory, an offline
    /// wipe, the judged report, the enforcement state with its audit entries, a compliance
    /// wipe that fell due with its own, and the delivery of the pending commands — is written
    /// in one transaction, all of it or none of it, together with the other check-ins that
    /// arrived meanwhile ([`super::checkin_batch`]: one job of the store's writer and a few
    /// statements for the whole batch). The device and its policy come from the in-memory
    /// cache ([`super::reads`]); the job writes the device row only while it is active and
    /// reads it back, so the enforcement it writes follows the row as committed (another
    /// replica's check-in, an admin's disable), and reads the device's unfinished commands
    /// there too (a read of its own through the pool cost a connection and a round trip per
    /// check-in: on PostgreSQL at 5,000 check-ins a second, BENCHMARKS.md, the difference
    /// between a p99 of 31 ms and of 170-330 ms with calls shed).
    pub async fn agent_check_in(
        &self,
        device: &ActiveDevice,
        report: CheckInReport,
    ) -> Result<CheckedIn, AppError> {
        report.validate()?;
        let turn = self.check_ins.take(device.id).ok_or_else(|| {
            self.metrics.shed_checkins.inc();
            AppError::Unavailable(
                "another check-in of this device is still being handled; retry in a few seconds"
                    .into(),
            )
        })?;
        // Admission: a check-in that would wait longer than the agents' patience for its
        // batch to start is refused at once, before any work (the agent backs off and
        // retries), so the controller never works on calls nobody waits for.
        let shed_after = self.store.writer().settings().shed_after;
        if self.check_in_batches.wait().is_some_and(|w| w > shed_after) {
            self.metrics.shed_checkins.inc();
            return Err(crate::store::StoreError::Overloaded.into());
        }
        let now = self.now();
        let policy = self.agent_policy(&device.user).await?;
        // Rare: a receipt is checked against the key on record outside the writer.
        let offline_wipe = match &report.offline_wipe {
            Some(receipt) => {
                let record = self.offline_wipe_device(device.id).await?;
                let keys = self.keys_of(&record).await?;
                Some(check_offline_wipe(&record, &keys, receipt, now))
            }
            None => None,
        };
        let compliance = report
            .compliance
            .map(|c| Compliance::judge(&policy.policy, c.checks, now, c.policy_revision));
        let reported_cas = report.trusted_cas.clone();
        let plan = Arc::new(Plan {
            device: device.id,
            now,
            facts: report.facts,
            inventory: report.inventory,
            compliance,
            policy: policy.clone(),
            offline_wipe,
            trusted_cas: report.trusted_cas,
            _turn: turn,
        });
        let written = self
            .check_in_batches
            .run(plan)
            .await
            .and_then(std::convert::identity);
        let written = match written {
            Err(AppError::Unavailable(why)) => {
                self.metrics.shed_checkins.inc();
                return Err(AppError::Unavailable(why));
            }
            other => other?,
        };
        self.metrics.checkins.inc();
        for (was, command) in &written.delivered {
            self.delivered.written(command);
            if *was == CommandState::Queued {
                let age = (now.unix_ms() - command.created_at.unix_ms()).max(0) as f64 / 1000.0;
                self.metrics.delivery_seconds.observe(age);
            }
        }
        for wipe in &written.wipes {
            warn!(device_id = %device.id, command_id = %wipe.id, "compliance wipe issued");
        }
        // Streams of the device (here or on another replica) hear of a new wipe too.
        self.publish(&written.wipes).await;
        Ok(CheckedIn {
            policy,
            pending: written.delivered.into_iter().map(|(_, c)| c).collect(),
            trust_bundle: reported_cas
                .map(|reported| self.cas.bundle_for(&reported))
                .unwrap_or_default(),
            server_time: self.now(),
        })
    }
}

/// Everything a check-in writes, decided before its job runs (the job may run more than once).
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) device: DeviceId,
    pub(super) now: Timestamp,
    pub(super) facts: Option<DeviceFacts>,
    inventory: Option<Inventory>,
    pub(super) compliance: Option<Compliance>,
    policy: StoredPolicy,
    offline_wipe: Option<OfflineWipeEntry>,
    trusted_cas: Option<Vec<String>>,
    /// Held until the writer drops the job ([`Turn`]).
    _turn: Turn,
}

/// What the job wrote for one check-in.
#[derive(Debug)]
pub(super) struct Written {
    /// Commands handed out, with the state each left.
    pub(super) delivered: Vec<(CommandState, Command)>,
    /// Compliance wipes issued.
    pub(super) wipes: Vec<Command>,
}

impl Plan {
    /// Why a check-in whose device row was not written is refused: the device is not
    /// enrolled, or no longer active.
    pub(super) async fn refusal(&self, tx: &mut dyn Tx) -> Result<AppError, AppError> {
        let id = self.device;
        Ok(match tx.device(id).await? {
            None => AppError::Unauthenticated(format!("device {id} is not enrolled")),
            Some(record) => AppError::Unauthenticated(format!(
                "device {id} has been {}; enroll it again to use it",
                record.state.as_str()
            )),
        })
    }

    /// What the check-in writes after its device row (`record`, as written): the inventory
    /// and trusted CAs when they changed, an offline wipe, and the enforcement of a judged
    /// report; the compliance wipes it issued.
    pub(super) async fn write_posture(
        &self,
        tx: &mut dyn Tx,
        record: &Device,
    ) -> Result<Vec<Command>, AppError> {
        let id = self.device;
        // Written only when it changed: most check-ins repeat the last inventory.
        if let Some(inventory) = self
            .inventory
            .as_ref()
            .filter(|i| record.inventory.as_ref() != Some(*i))
        {
            tx.set_device_posture(id, PostureField::Inventory, Some(&json(inventory)?))
                .await?;
        }
        // Written only when it changed: a CA rotation is when it does.
        if let Some(trusted) = self
            .trusted_cas
            .as_ref()
            .filter(|t| **t != record.trusted_cas)
        {
            tx.set_device_posture(id, PostureField::TrustedCas, Some(&json(trusted)?))
                .await?;
        }
        if let Some(entry) = &self.offline_wipe {
            // A receipt that does not verify is audited but never replaces one that did.
            let verified_on_record = record.offline_wipe.as_ref().is_some_and(|w| w.verified);
            if entry.wipe.verified || !verified_on_record {
                tx.record_offline_wipe(id, &entry.wipe, &entry.receipt)
                    .await?;
            }
            tx.audit(entry.event.clone(), self.now);
        }
        match &self.compliance {
            Some(compliance) => self.enforce(tx, record, compliance).await,
            None => Ok(Vec::new()),
        }
    }

    /// Updates the device's enforcement after a judged report: each failing check keeps the
    /// time it first failed, each change is audited, and a wipe whose grace period is over is
    /// issued (once per failure: its idempotency key names the failure's start). Report and
    /// block are the agent's to act on (it holds the policy); a wipe is the controller's,
    /// issued as an ordinary messaging-wipe command so it carries a receipt and is audited.
    async fn enforce(
        &self,
        tx: &mut dyn Tx,
        record: &Device,
        compliance: &Compliance,
    ) -> Result<Vec<Command>, AppError> {
        let (id, now, policy) = (record.id, self.now, &self.policy);
        let (mut next, steps) =
            next_enforcement(&record.enforcement, compliance, &policy.policy, now);
        for step in &steps {
            tx.audit(enforcement_event(id, step, policy.revision), now);
        }
        let due: Vec<_> = wipes_due(&next, compliance, policy.revision, now)
            .cloned()
            .collect();
        let mut issued = Vec::new();
        for failure in due {
            let reason = format!(
                "compliance: {} has failed since {} and the policy wipes after {}",
                failure.check,
                Timestamp::from_unix_ms(failure.failing_since).rfc3339(),
                crate::core::duration::format(std::time::Duration::from_secs(
                    policy.policy.wipe_grace_seconds
                )),
            );
            let kind = CommandKind::Wipe {
                scope: WipeScope::Messaging,
            };
            let command = new_command(
                &Issuer::controller(),
                id,
                kind.clone(),
                &reason,
                &posture::wipe_key(id, &failure),
                false,
                false,
                now,
            )?;
            let (stored, created) = tx.insert_command(&command).await?;
            if stored.device_id != id || stored.kind != kind {
                // The key names another command: the wipe stays due, for an admin to see.
                warn!(device_id = %id, check = %failure.check, command_id = %stored.id, "the compliance wipe's key is taken by another command");
                continue;
            }
            if created {
                tx.audit(issue_event(CONTROLLER, &stored), now);
                issued.push(stored.clone());
            }
            posture::mark_wipe_issued(&mut next, &failure.check, stored.id);
        }
        if next != record.enforcement {
            let value = if next.is_empty() {
                None
            } else {
                Some(json(&next)?)
            };
            tx.set_device_posture(id, PostureField::Enforcement, value.as_deref())
                .await?;
        }
        Ok(issued)
    }
}

/// Records `commands` as delivered (again), each at its device's check-in time (`times`),
/// with a compare-and-set and its audit entry; a command changed since it was read is read
/// again once. Those the state machine does not let be delivered (finished, awaiting
/// approval) and those of a device not in `times` are left out.
pub(super) async fn deliver(
    tx: &mut dyn Tx,
    mut commands: Vec<Command>,
    times: &HashMap<DeviceId, Timestamp>,
) -> Result<Vec<(CommandState, Command)>, AppError> {
    let mut delivered = Vec::new();
    for attempt in 0..2 {
        let (deliveries, expiries) = delivery_plan(&commands, times);
        let mut missed = Vec::new();
        for (changes, keep) in [(expiries, false), (deliveries, true)] {
            if changes.is_empty() {
                continue;
            }
            let written: HashSet<CommandId> =
                tx.update_commands(&changes).await?.into_iter().collect();
            for (was, next) in changes {
                if !written.contains(&next.id) {
                    missed.push(next.id);
                    continue;
                }
                if next.state != was.state {
                    // Planned only for the devices in `times` (delivery_plan).
                    let now = times.get(&next.device_id).ok_or_else(|| {
                        AppError::Internal("a command of no device in the batch changed".into())
                    })?;
                    tx.audit(transition_event(CONTROLLER, &next), *now);
                }
                if keep {
                    delivered.push((was.state, next));
                }
            }
        }
        // Changed by another writer meanwhile (on PostgreSQL, another replica cancelled,
        // superseded or delivered it after the read above): read again, once. One that is no
        // longer the same instruction (moved to another device or given another action, by a
        // hand edit of the database) is not this device's to receive.
        if missed.is_empty() || attempt == 1 {
            break;
        }
        let asked: HashMap<CommandId, Command> = commands.into_iter().map(|c| (c.id, c)).collect();
        commands = tx.commands(&missed).await?;
        let read = commands.len();
        commands.retain(|c| asked.get(&c.id).is_some_and(|a| a.is_same_instruction(c)));
        if commands.len() < read {
            tracing::warn!(
                refused = read - commands.len(),
                "commands' device or action changed in the database since they were read; not delivered"
            );
        }
    }
    Ok(delivered)
}

/// A command's version before (what the compare-and-set compares), and the command after.
type Transition = (CommandVersion, Command);

/// Each queued command's transition, computed once: delivered, or expired when its
/// time-to-live ran out while the device was away (never sent). Commands in no state to be
/// delivered are left out.
fn delivery_plan(
    commands: &[Command],
    times: &HashMap<DeviceId, Timestamp>,
) -> (Vec<Transition>, Vec<Transition>) {
    use crate::core::command::TransitionError;
    let (mut deliveries, mut expiries) = (Vec::new(), Vec::new());
    for command in commands {
        let Some(&now) = times.get(&command.device_id) else {
            continue;
        };
        match command.apply(&Event::Delivered, now) {
            Ok(next) => deliveries.push((command.version(), next)),
            Err(TransitionError::PastDeadline) => {
                if let Ok(next) = command.apply(&Event::Expired, now) {
                    expiries.push((command.version(), next));
                }
            }
            Err(_) => {}
        }
    }
    (deliveries, expiries)
}

fn enforcement_event(device: DeviceId, step: &Step, revision: u64) -> AuditEvent {
    let (what, check, action) = match step {
        Step::Failing { check, action } => ("failing", check, Some(*action)),
        Step::ActionChanged { check, action } => ("action_changed", check, Some(*action)),
        Step::Cleared { check } => ("cleared", check, None),
    };
    AuditEvent {
        actor: CONTROLLER.to_owned(),
        action: "device.enforcement".into(),
        target: device.to_string(),
        details: serde_json::json!({
            "step": what,
            "check": check,
            "action": action.map(|a| a.as_str()),
            "policy_revision": revision,
        }),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value)
        .map_err(|e| AppError::Internal(format!("cannot encode the device's posture: {e}")))
}
