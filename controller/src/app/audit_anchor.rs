//! Anchoring the audit chain outside its database: the signed genesis of a new store, signed
//! checkpoints of the head written to the log stream and to the operator's directory, and the
//! check at start (and at each checkpoint) that the log still holds what earlier checkpoints
//! say. Damage found is recorded as an `audit.break` entry and reported; nothing stops.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use tracing::{error, info, warn};

use super::{App, AppError};
use crate::checkpoint_dir;
use crate::core::audit::refusals::WINDOW;
use crate::core::audit::{ChainBreak, Checkpoint, GenesisOrigin, genesis_event};
use crate::store::{AuditFilter, StoreError};

/// Checkpoints this process remembers to check the log against (its own, newest last).
const REMEMBERED: usize = 64;

/// When and where checkpoints go (`serve --audit-checkpoints DIR …`).
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// The operator's directory; without one, checkpoints go to the log stream only.
    pub dir: Option<PathBuf>,
    /// A checkpoint after this many entries appended here…
    pub every_entries: u64,
    /// …and at least this often while entries are appended (and at start and shutdown).
    pub interval: Duration,
}

pub const CHECKPOINT_EVERY_DEFAULT: u64 = 1000;
pub const CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(600);

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            dir: None,
            every_entries: CHECKPOINT_EVERY_DEFAULT,
            interval: CHECKPOINT_INTERVAL_DEFAULT,
        }
    }
}

impl App {
    pub(super) fn count_for_checkpoint(&self, appended: u64) {
        super::audit::count_for_checkpoint(
            &self.audit_state,
            self.config.audit_checkpoints.every_entries,
            appended,
        );
    }

    /// Before serving: a new store's empty log gets its signed genesis; an emptied one is
    /// reported (its next entry records the break); the checkpoint directory is prepared and
    /// the log checked against the newest checkpoints in it; then a first checkpoint.
    pub async fn open_audit(&self) -> Result<(), AppError> {
        let head = self.store.audit_head().await?;
        let first = self.first_entry().await?;
        if head.is_blank() && first.is_none() {
            if self.store.list_admins().await?.is_empty() {
                self.start_chain(GenesisOrigin::FirstStart).await?;
            } else {
                // init always audits the first admin: a store with admins had a log.
                error!(
                    "audit chain broken: the audit log is empty but the store has admins, so it was emptied; the next entry records the break"
                );
                self.metrics.audit_chain_ok.set(0);
            }
        }
        if let Some(dir) = &self.config.audit_checkpoints.dir {
            ward_files::prepare_private_dir(dir)
                .map_err(|e| AppError::InvalidArgument(format!("--audit-checkpoints: {e}")))?;
            let read = checkpoint_dir::read(dir).map_err(|e| {
                AppError::InvalidArgument(format!(
                    "--audit-checkpoints: cannot read {}: {e}",
                    dir.display()
                ))
            })?;
            for bad in &read.bad {
                warn!(error = %bad, "not an audit checkpoint; ignored");
            }
            let mut mine: Vec<Checkpoint> = read
                .checkpoints
                .into_iter()
                .filter(|c| self.checkpoint_signed(c))
                .collect();
            mine.sort_by_key(|c| (c.at, c.seq));
            let keep_from = mine.len().saturating_sub(REMEMBERED);
            *self.remembered() = mine.split_off(keep_from);
        }
        self.checkpoint_now().await?;
        Ok(())
    }

    /// Starts a new chain with its signed genesis. Another replica starting first is fine.
    pub async fn start_chain(&self, origin: GenesisOrigin) -> Result<(), AppError> {
        let nonce: [u8; 16] = rand::random();
        let event = genesis_event(&self.ca().hash().to_string(), &nonce, origin);
        match self.append_audit(&event).await {
            Ok(_) => {
                info!(origin = ?origin, "audit chain started with a signed genesis");
                Ok(())
            }
            Err(_) if self.first_entry().await?.is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn first_entry(&self) -> Result<Option<crate::core::audit::AuditEntry>, StoreError> {
        Ok(self
            .store
            .list_audit(&AuditFilter {
                limit: Some(1),
                ..AuditFilter::default()
            })
            .await?
            .pop())
    }

    /// Whether the log still holds `checkpoint`'s entry, in the same chain.
    async fn log_holds(&self, checkpoint: &Checkpoint) -> Result<bool, AppError> {
        if self.first_entry().await?.map(|e| e.hash) != Some(checkpoint.chain.clone()) {
            return Ok(false);
        }
        let at = self
            .store
            .list_audit(&AuditFilter {
                after_seq: Some(checkpoint.seq - 1),
                limit: Some(1),
                ..AuditFilter::default()
            })
            .await?;
        Ok(at
            .first()
            .is_some_and(|e| e.seq == checkpoint.seq && e.hash == checkpoint.hash))
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, Vec<Checkpoint>> {
        self.audit_state
            .remembered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Records a break when the log no longer holds the newest remembered checkpoint (it was
    /// cut back, or a backup with an older signed head was put in its place).
    async fn check_against_checkpoints(&self) -> Result<(), AppError> {
        let remembered = self.remembered().clone();
        let Some(newest) = remembered.last() else {
            return Ok(());
        };
        if self.log_holds(newest).await? {
            return Ok(());
        }
        let mut older: Vec<&Checkpoint> =
            remembered.iter().filter(|c| c.seq < newest.seq).collect();
        older.sort_by_key(|c| std::cmp::Reverse(c.seq));
        let mut good = 0;
        for c in older {
            if self.log_holds(c).await? {
                good = c.seq;
                break;
            }
        }
        let found = ChainBreak {
            first_bad_seq: good + 1,
            problem: format!(
                "the log no longer holds the controller's signed checkpoint at entry {} ({}): it was cut back or rolled back to an older state; the last checkpoint it still holds is at entry {good}",
                newest.seq, newest.at
            ),
        };
        let appended = self
            .append_audit(&found.event(json!({ "checkpoint": newest.to_string() })))
            .await?;
        self.chain_broken(&found, appended.entry.seq);
        Ok(())
    }

    /// Signs a checkpoint of the current head, unless nothing was appended since the last one:
    /// to the log stream (info) and to the checkpoint directory. First checks the log against
    /// the checkpoints already made.
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>, AppError> {
        self.check_against_checkpoints().await?;
        self.audit_state
            .since_checkpoint
            .store(0, Ordering::Relaxed);
        let head = self.store.audit_head().await?;
        if head.is_blank() {
            return Ok(None);
        }
        if !self.head_signed(&head) {
            error!(
                seq = head.seq,
                "audit chain broken: the stored head is not signed by the controller; no checkpoint until the next entry records the break"
            );
            self.metrics.audit_chain_ok.set(0);
            return Ok(None);
        }
        if self
            .remembered()
            .last()
            .is_some_and(|c| c.seq == head.seq && c.hash == head.hash)
        {
            return Ok(None);
        }
        let Some(first) = self.first_entry().await? else {
            return Ok(None);
        };
        let signing = self.ca();
        let checkpoint = Checkpoint::sign(
            &first.hash,
            head.seq,
            &head.hash,
            self.now(),
            &signing.hash().to_string(),
            |message| ward_certs::sign::sign(signing.key(), message),
        )
        .map_err(|e| AppError::Internal(format!("cannot sign an audit checkpoint: {e}")))?;
        info!(checkpoint = %checkpoint, seq = checkpoint.seq, "audit checkpoint");
        if let Some(dir) = &self.config.audit_checkpoints.dir {
            let (dir, written) = (dir.clone(), checkpoint.clone());
            let result = tokio::task::spawn_blocking(move || checkpoint_dir::write(&dir, &written))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r);
            if let Err(e) = result {
                error!(error = %e, seq = checkpoint.seq, "cannot write the audit checkpoint to its directory (it is in this log)");
                self.metrics.audit_checkpoint_failures.inc();
            }
        }
        self.metrics
            .audit_checkpoint_seq
            .set(i64::try_from(checkpoint.seq).unwrap_or(i64::MAX));
        let mut remembered = self.remembered();
        remembered.push(checkpoint.clone());
        let excess = remembered.len().saturating_sub(REMEMBERED);
        remembered.drain(..excess);
        Ok(Some(checkpoint))
    }

    /// Background work of the audit log while serving: checkpoints every N entries or T,
    /// refusal summaries once a minute, and one verification of the whole chain (for the
    /// `ward_audit_chain_ok` metric).
    pub fn start_audit_tasks(self: &Arc<Self>) {
        let app = Arc::clone(self);
        self.background.spawn(async move {
            let mut tick = tokio::time::interval(app.config.audit_checkpoints.interval);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = app.audit_state.checkpoint_due.notified() => {}
                }
                if let Err(e) = app.checkpoint_now().await {
                    error!(error = %e, "cannot make an audit checkpoint");
                    app.metrics.audit_checkpoint_failures.inc();
                }
            }
        });
        let app = Arc::clone(self);
        self.background.spawn(async move {
            let mut tick = tokio::time::interval(WINDOW);
            loop {
                tick.tick().await;
                if let Err(e) = app.flush_refusal_summaries(false).await {
                    warn!(error = %e, "cannot record the summary of suppressed refusals");
                }
            }
        });
        let app = Arc::clone(self);
        self.background.spawn(async move {
            match app.audit_verify(&[]).await {
                Ok(v) if v.ok => info!(entries = v.entries, "audit chain verified"),
                Ok(v) => error!(
                    first_bad_seq = v.first_bad_seq,
                    problem = v.problem.as_deref().unwrap_or_default(),
                    "audit chain broken: run wardctl audit verify --checkpoints DIR"
                ),
                Err(e) => warn!(error = %e, "cannot verify the audit chain"),
            }
        });
    }

    /// At shutdown, after the last call: the refusal summaries, and a final checkpoint.
    pub async fn close_audit(&self) -> Result<(), AppError> {
        self.flush_refusal_summaries(true).await?;
        self.checkpoint_now().await.map(|_| ())
    }

    /// Closes the store (its writer's queue finished, its connections closed) at shutdown,
    /// after the audit log's last word. Background tasks still holding the app get errors.
    pub async fn close_store(&self) {
        self.store.close().await;
    }
}
