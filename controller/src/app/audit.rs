//! Recording to and reading from the audit log. The chain's rules live in `core::audit`; here
//! the controller's key signs, damage it finds is reported loudly (an error log, the
//! `ward_audit_chain_ok` metric) without ever stopping an action, and refusals are bounded.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use serde_json::Value;
use tracing::error;
use ward_certs::Identity;

use super::{App, AppError};
use crate::core::audit::refusals::{Admit, RefusalLimiter, Source};
use crate::core::audit::{
    Appended, AuditEntry, AuditEvent, AuditHead, ChainBreak, Checkpoint, Verification,
    head_message, verify_with_checkpoints,
};
use crate::core::{Admin, DeviceId, TokenHash, TokenStatus, UserEmail};
use crate::store::{AuditFilter, AuditKeeper, HeadKey, StoreError};

// The controller's own actor names are the domain's (the CLI reads them back from the log).
pub use crate::core::audit::{CONTROLLER, ENROLLMENT};

/// The actor string of an admin.
pub fn admin_actor(admin: &Admin) -> String {
    Identity::Admin(admin.name.clone()).to_uri()
}

/// The actor string of a device.
pub fn device_actor(device: DeviceId) -> String {
    Identity::Device(device.0).to_uri()
}

/// What the audit log keeps of a token: the first 12 hex digits of its SHA-256, enough to
/// match it with `token create`'s entry, useless for enrolling.
pub fn token_hash_prefix(token: &TokenHash) -> String {
    token.to_hex()[..12].to_owned()
}

/// Whose refusals are counted together (see `core::audit::refusals`).
pub fn refusal_source(actor: &str, action: &str, origin: &str) -> Source {
    Source {
        actor: actor.to_owned(),
        action: action.to_owned(),
        origin: origin.to_owned(),
    }
}

/// The audit log's state in this process.
#[derive(Debug, Default)]
pub struct AuditState {
    pub(super) refusals: Mutex<RefusalLimiter>,
    /// Entries appended here since the last checkpoint.
    pub(super) since_checkpoint: AtomicU64,
    pub(super) checkpoint_due: tokio::sync::Notify,
    /// The newest checkpoints signed by this controller (from its directory at start, then
    /// its own), oldest first: the log must still hold them.
    pub(super) remembered: Mutex<Vec<Checkpoint>>,
}

/// The writer's side of the audit log: it signs the head of each batch with the CA key and
/// reports what the batch appended (damage found; entries towards the next checkpoint).
#[derive(Debug)]
pub(super) struct Keeper {
    pub cas: std::sync::Arc<crate::ca_set::CaSet>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub state: std::sync::Arc<AuditState>,
    pub checkpoint_every: u64,
}

impl HeadKey for Keeper {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, StoreError> {
        ward_certs::sign::sign(self.cas.signing().key(), message)
            .map_err(|e| StoreError::Database(format!("cannot sign the audit head: {e}")))
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.cas.verify(message, signature)
    }
}

impl AuditKeeper for Keeper {
    fn appended(&self, entries: u64, chain_break: Option<(&ChainBreak, u64)>) {
        if let Some((found, recorded_at)) = chain_break {
            report_break(&self.metrics, found, recorded_at);
        }
        count_for_checkpoint(&self.state, self.checkpoint_every, entries);
    }
}

/// Logs damage that was just recorded as entry `recorded_at`, and exports it.
fn report_break(metrics: &crate::metrics::Metrics, found: &ChainBreak, recorded_at: u64) {
    error!(
        first_bad_seq = found.first_bad_seq,
        recorded_at,
        problem = %found.problem,
        "audit chain broken: the damage is recorded as an audit.break entry and entries continue after it; run wardctl audit verify --checkpoints DIR"
    );
    metrics.audit_chain_ok.set(0);
    metrics.audit_chain_breaks.inc();
}

/// Counts appended entries towards the next checkpoint and wakes its task when one is due.
pub(super) fn count_for_checkpoint(state: &AuditState, every: u64, appended: u64) {
    let since = state
        .since_checkpoint
        .fetch_add(appended, std::sync::atomic::Ordering::Relaxed)
        + appended;
    if since >= every {
        state.checkpoint_due.notify_one();
    }
}

/// Why an enrollment was refused, as its audit entry says.
#[derive(Clone, Copy, Debug)]
pub(super) enum EnrollmentRefused {
    /// No token has this hash.
    UnknownToken,
    /// The token as it stands after the claim (usable: another replica took it first).
    Token(TokenStatus),
    /// The claim was refused and the token could not be read to say why.
    TokenUnread,
}

impl App {
    /// Appends an entry. A failure is an error for the caller: an action that cannot be
    /// audited must not look like it went through unrecorded. Damage found in the chain does
    /// not fail it: the entry goes after a recorded break (see `core::audit::plan_append`).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: Value,
    ) -> Result<(), AppError> {
        let event = AuditEvent {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            details,
        };
        // Through the store's writer: batched with other entries, the head signed once.
        self.store.audit(&event, self.now()).await.map_err(|e| {
            error!(error = %e, action = %event.action, target = %event.target, "cannot write the audit log");
            AppError::Internal(format!(
                "the action could not be recorded in the audit log: {e}"
            ))
        })
    }

    pub(super) async fn append_audit(&self, event: &AuditEvent) -> Result<Appended, AppError> {
        let ca = self.cas.signing();
        let sign = move |message: &[u8]| {
            ward_certs::sign::sign(ca.key(), message).map_err(|e| e.to_string())
        };
        let cas = self.cas.clone();
        let verify_head = move |message: &[u8], signature: &[u8]| cas.verify(message, signature);
        let appended = self
            .store
            .append_audit(event, self.now(), &sign, &verify_head)
            .await
            .map_err(|e| {
                error!(error = %e, action = %event.action, target = %event.target, "cannot write the audit log");
                AppError::Internal(format!(
                    "the action could not be recorded in the audit log: {e}"
                ))
            })?;
        if let Some((found, entry)) = &appended.chain_break {
            self.chain_broken(found, entry.seq);
        }
        self.count_for_checkpoint(1 + u64::from(appended.chain_break.is_some()));
        Ok(appended)
    }

    /// Reports damage that was just recorded as entry `recorded_at`.
    pub(super) fn chain_broken(&self, found: &ChainBreak, recorded_at: u64) {
        report_break(&self.metrics, found, recorded_at);
    }

    /// Records a refusal, at most a few per source and minute; the rest are counted and
    /// recorded as one `<action>.suppressed` entry when the source's minute is over.
    pub(super) async fn audit_refusal(
        &self,
        source: Source,
        target: &str,
        details: Value,
    ) -> Result<(), AppError> {
        let now = self.now();
        let (admit, ended) = {
            let mut limiter = self
                .audit_state
                .refusals
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let admit = limiter.admit(&source, now);
            let ended = if limiter.is_full() {
                limiter.flush(now, false)
            } else {
                Vec::new()
            };
            (admit, ended)
        };
        for summary in ended {
            self.append_audit(&summary.event()).await?;
        }
        match admit {
            Admit::Suppress => {
                self.metrics.audit_refusals_suppressed.inc();
                Ok(())
            }
            Admit::Record(summary) => {
                if let Some(summary) = summary {
                    self.append_audit(&summary.event()).await?;
                }
                self.audit(&source.actor, &source.action, target, details)
                    .await
            }
        }
    }

    /// Records a refused enrollment: why, the token's user when the token is known, a prefix
    /// of the token's hash (never the token) and the client's address.
    pub(super) async fn audit_enrollment_refusal(
        &self,
        token: &TokenHash,
        user: Option<&UserEmail>,
        refused: EnrollmentRefused,
        client: Option<IpAddr>,
    ) -> Result<(), AppError> {
        let why = match refused {
            EnrollmentRefused::UnknownToken => "unknown",
            EnrollmentRefused::Token(TokenStatus::AlreadyUsed) => "already used",
            EnrollmentRefused::Token(TokenStatus::Expired) => "expired",
            EnrollmentRefused::Token(TokenStatus::Withdrawn) => {
                "withdrawn (its user was offboarded, or an admin withdrew it)"
            }
            EnrollmentRefused::Token(TokenStatus::Usable) => "refused",
            EnrollmentRefused::TokenUnread => {
                "refused (the token could not be read: reason unknown)"
            }
        };
        let client = client.map(|ip| ip.to_string()).unwrap_or_default();
        tracing::warn!(why, client = %client, token = ?token, "enrollment refused");
        let prefix = token_hash_prefix(token);
        // Made-up tokens share their address's few entries a minute; a token that exists has
        // its own (and tokens that could not be read one more), so a flood of made-up tokens
        // cannot push a leaked token's replay out of the log. Only tokens an admin created
        // count apart, so the entries stay bounded.
        let origin = match refused {
            EnrollmentRefused::UnknownToken => client.clone(),
            EnrollmentRefused::Token(_) => format!("{client} token {prefix}"),
            EnrollmentRefused::TokenUnread => format!("{client} token not read"),
        };
        self.audit_refusal(
            refusal_source(ENROLLMENT, "enroll.refused", &origin),
            match (user, refused) {
                (Some(user), _) => user.as_str(),
                // Perhaps a known token: whose, the hash prefix lets an auditor find.
                (None, EnrollmentRefused::TokenUnread) => "token not read",
                (None, _) => "unknown token",
            },
            serde_json::json!({
                "why": why,
                "token_hash_prefix": prefix,
                "client": (!client.is_empty()).then_some(client.as_str()),
            }),
        )
        .await
    }

    /// Writes the summaries of refusal windows that are over (all of them with `force`, at
    /// shutdown).
    pub async fn flush_refusal_summaries(&self, force: bool) -> Result<(), AppError> {
        let ended = self
            .audit_state
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush(self.now(), force);
        for summary in ended {
            self.append_audit(&summary.event()).await?;
        }
        Ok(())
    }

    pub async fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, AppError> {
        Ok(self.store.list_audit(filter).await?)
    }

    /// Checks the whole chain and the signed head, and that each checkpoint signed by this
    /// controller matches the log. Sets `ward_audit_chain_ok`.
    pub async fn audit_verify(&self, checkpoints: &[Checkpoint]) -> Result<Verification, AppError> {
        let entries = self.store.list_audit(&AuditFilter::default()).await?;
        let head = self.store.audit_head().await?;
        let v = verify_with_checkpoints(
            &entries,
            &head,
            |h| self.head_signed(h),
            checkpoints,
            |c| self.checkpoint_signed(c),
        );
        self.metrics
            .audit_chain_ok
            .set(i64::from(v.first_bad_seq.is_none()));
        Ok(v)
    }

    pub(super) fn head_signed(&self, head: &AuditHead) -> bool {
        self.cas
            .verify(&head_message(head.seq, &head.hash), &head.signature)
    }

    /// Whether `checkpoint` was signed by the CA it names, one of this controller's (the
    /// former CA's, after a rotation, for checkpoints made before its retirement).
    pub fn checkpoint_signed(&self, checkpoint: &Checkpoint) -> bool {
        checkpoint.verifies(|message, signature| {
            self.cas
                .verify_by(&checkpoint.signer, message, signature, checkpoint.at)
        })
    }
}
