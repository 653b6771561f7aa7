//! The offline timer (dead-man switch): when the agent has not completed an authenticated
//! check-in for longer than the policy's `offline_wipe_after`, it wipes the messaging data by
//! itself, signs a receipt, and sends it when it next reaches the controller.
//!
//! The timer is the first thing `ward-agent run` starts and it runs until the agent stops,
//! whatever happens to the connection: an expired or revoked device certificate, a server
//! certificate the agent cannot verify, an unreachable controller, a session that fails and
//! is retried. Only a completed, authenticated check-in moves the deadline.
//!
//! # How time is counted
//!
//! Offline time is measured on the timer's own clock, kept in `STATE/offline-timer.slots`
//! together with the last check-in (and, for people and tools, a readable copy in
//! `STATE/offline-timer.json`):
//!
//! - at every start it resumes from the furthest point written down, or from the wall clock
//!   if that is later;
//! - while the agent runs it advances at least as fast as the monotonic clock, and jumps
//!   forward with the wall clock whenever the wall clock is ahead of it;
//! - it never goes back.
//!
//! So setting the clock back undoes nothing already counted and does not slow the count;
//! setting it forward brings the wipe forward (the safe direction). Time while the machine is
//! off or suspended is counted as far as the wall clock shows it at the next reading; if the
//! wall clock was also set back, that time is lost to the timer (running time never is).
//!
//! # How the count is written down, and when it cannot be
//!
//! The count is written at least every minute, at every check-in and at a clean stop, in
//! place into a file made whole once ([`crate::timer_file`]: two slots, `pwrite` and
//! `fdatasync` into bytes that already exist), so a full disk does not stop it where the
//! filesystem overwrites in place (ext4 and tmpfs, tested). A file replaced at every write
//! did stop, and a thief who filled the disk, set the clock back and cut the power could hold
//! the deadline off for ever (attack review M2). Each write records the point a restart
//! resumes from (`counted_to`) 70 seconds ahead of the count, past the next write: a power
//! cut costs the device up to that much early, never a second late.
//!
//! Writing can still fail: an I/O error, a filesystem gone read-only, a full copy-on-write
//! filesystem (btrfs, ZFS allocate even to overwrite), a slots file that cannot be made in
//! the first place. The timer then keeps counting in memory, tries again at every tick, and
//! from the moment its count runs past what is written down the local API withholds the
//! messaging key ([`Withhold::Unsaved`], state `withheld`, with the reason) until a write
//! succeeds. The rule a security officer can rely on: **the key is handed out only in time
//! the timer has written down**, so restarts can lose the device counted time only while the
//! key was not handed out, and between two check-ins the key is handed out over no more
//! counted time, in all, than the policy's offline limit. The timer's wipe does not depend
//! on the record: it runs on the count in memory, and a wipe that cannot write its journal
//! destroys the key first (`vault.rs`).
//!
//! The deadline is the last check-in plus `offline_wipe_after` from the last policy received
//! (`STATE/policy.json`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{error, info, warn};
use ward_files::replace_file;
use ward_proto::v1::WipeReceipt;

use crate::clock::SharedClock;
use crate::device_key::DeviceKeyStore;
use crate::policy::AgentPolicy;
use crate::timer_file;
use crate::vault::{Vault, WipeJournal, WipeStep};
use crate::vault_slot::VaultSlot;
use ward_vocab::policy::Policy;

/// The cause recorded in the wipe journal and the receipt's command id.
pub const CAUSE: &str = "offline-timer";

/// How often the timer looks at the time.
const TICK: Duration = Duration::from_secs(5);
/// How far the timer's clock may run ahead of what is written down.
const PERSIST_EVERY: time::Duration = time::Duration::minutes(1);
/// How far ahead of the count each write puts the point a restart resumes from: past the
/// next write (a minute, and two ticks of slack). A power cut counts up to this much too
/// much, never too little; while writes fail, the key is withheld once the count passes it.
const LEASE: time::Duration = time::Duration::seconds(70);
/// After a failed wipe, the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// True when the policy has a timer and `now - last_checkin` has reached it.
pub fn due(policy: &AgentPolicy, last_checkin: OffsetDateTime, now: OffsetDateTime) -> bool {
    deadline(policy, last_checkin).is_some_and(|deadline| now >= deadline)
}

/// When the timer wipes, if the policy has one.
pub fn deadline(policy: &AgentPolicy, last_checkin: OffsetDateTime) -> Option<OffsetDateTime> {
    (policy.offline_wipe_after_seconds > 0).then(|| {
        let limit = i64::try_from(policy.offline_wipe_after_seconds).unwrap_or(i64::MAX);
        last_checkin.saturating_add(time::Duration::seconds(limit))
    })
}

/// What became of the receipt of a wipe the timer made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    /// Signed, waiting in `STATE/offline-wipe.json` to reach the controller.
    Pending,
    /// The controller has it.
    Reported,
    /// The device key was unavailable: the data is wiped, but there is no signed receipt.
    Unsigned,
}

/// `STATE/offline-timer.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerRecord {
    /// The device this timer belongs to (a record left by an earlier enrollment is ignored).
    pub device_id: String,
    /// The last completed, authenticated check-in, on the timer's clock (RFC 3339).
    pub last_checkin: String,
    /// The furthest the timer's clock had reached when this was written.
    pub reached: String,
    /// Where a restart resumes the count at the earliest: `reached` plus the time until the
    /// next write is due ([`LEASE`]), so that neither a power cut nor writes that fail lose
    /// time the agent ran (absent in records written before this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_to: Option<String>,
    /// When the timer wiped the messaging data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wiped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptState>,
    /// The policy's `offline_wipe_after_seconds` when `policy.json` was last read: the limit
    /// still counts after a restart that finds `policy.json` damaged or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_wipe_after_seconds: Option<u64>,
}

impl TimerRecord {
    /// The readable copy (`STATE/offline-timer.json`); the timer resumes from
    /// `STATE/offline-timer.slots` ([`crate::timer_file`]) where that is intact.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("offline-timer.json")
    }

    /// The record, `Ok(None)` if there is none yet, `Err` if it is unreadable or damaged: the
    /// newest intact slot of `offline-timer.slots`, counted as far as the readable copy if
    /// that went further; the copy alone where there are no slots (an agent from before
    /// them, or slots damaged).
    pub fn load(state_dir: &Path) -> Result<Option<Self>, String> {
        let slots_path = timer_file::path(state_dir);
        let slots = match timer_file::read(&slots_path) {
            Ok(Some((_, bytes))) => serde_json::from_slice::<Self>(&bytes)
                .map(Some)
                .map_err(|e| format!("{} is damaged: {e}", slots_path.display())),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("{} is damaged: {e}", slots_path.display())),
        };
        let copy = Self::load_copy(state_dir);
        match (slots, copy) {
            (Ok(Some(mut record)), copy) => {
                if let Ok(Some(copy)) = copy
                    && copy.device_id == record.device_id
                {
                    record.reached = latest(&record.reached, &copy.reached);
                    record.counted_to = match (&record.counted_to, &copy.counted_to) {
                        (Some(a), Some(b)) => Some(latest(a, b)),
                        (a, b) => a.clone().or_else(|| b.clone()),
                    };
                }
                Ok(Some(record))
            }
            (Ok(None), copy) => copy,
            (Err(e), Ok(Some(copy))) => {
                warn!(error = %e, "offline timer: resuming from its readable copy");
                Ok(Some(copy))
            }
            (Err(e), _) => Err(e),
        }
    }

    fn load_copy(state_dir: &Path) -> Result<Option<Self>, String> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{} is damaged: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the record as number `seq` into the slots file, in place.
    fn save(&self, state_dir: &Path, seq: u64) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        timer_file::write(&timer_file::path(state_dir), seq, &bytes)
    }

    /// Writes the readable copy (a new file, then a rename: needs free space).
    fn save_copy(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        replace_file(&Self::path(state_dir), &bytes, 0o600)
    }

    pub fn last_checkin_time(&self) -> Option<OffsetDateTime> {
        crate::parse_rfc3339(&self.last_checkin)
    }

    pub fn reached_time(&self) -> Option<OffsetDateTime> {
        crate::parse_rfc3339(&self.reached)
    }

    /// Where a restart resumes the count at the earliest: `counted_to`, or `reached` in
    /// records written before that field.
    pub fn resume_time(&self) -> Option<OffsetDateTime> {
        let counted_to = self.counted_to.as_deref().and_then(crate::parse_rfc3339);
        self.reached_time().max(counted_to)
    }
}

/// The later of two RFC 3339 times (the first if either is unreadable).
fn latest(a: &str, b: &str) -> String {
    match (crate::parse_rfc3339(a), crate::parse_rfc3339(b)) {
        (Some(ta), Some(tb)) if tb > ta => b.to_owned(),
        _ => a.to_owned(),
    }
}

/// The timer's clock (see the module documentation): never back, at least monotonic speed,
/// forward with the wall clock.
#[derive(Debug)]
pub struct TimerClock {
    clock: SharedClock,
    reached: OffsetDateTime,
    at: Duration,
}

impl TimerClock {
    /// Resumes from `reached_before` (what was written down), or the wall clock if later.
    pub fn resume(clock: SharedClock, reached_before: Option<OffsetDateTime>) -> Self {
        let wall = clock.now();
        let reached = reached_before.map_or(wall, |before| before.max(wall));
        let at = clock.monotonic();
        Self { clock, reached, at }
    }

    pub fn now(&mut self) -> OffsetDateTime {
        let at = self.clock.monotonic();
        let ran = at.saturating_sub(self.at);
        self.reached = (self.reached + ran).max(self.clock.now());
        self.at = at;
        self.reached
    }
}

#[derive(Debug)]
struct Core {
    clock: TimerClock,
    record: TimerRecord,
    last_checkin: OffsetDateTime,
    /// When the count was last written down.
    written: OffsetDateTime,
    /// The number of the newest slot in the slots file.
    seq: u64,
    /// Where a restart would resume the count from, by what is written down; `None` while
    /// nothing is.
    durable: Option<OffsetDateTime>,
    /// Why the count cannot be written down, while it cannot.
    unsaved: Option<String>,
    /// The readable copy could not be written at the last try.
    copy_failing: bool,
}

/// Why the timer withholds the messaging key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Withhold {
    /// The deadline has passed: no check-in for longer than the policy allows.
    Overdue { deadline: OffsetDateTime },
    /// The count cannot be written down and has run past what is: a restart would lose the
    /// time since, so the key is not handed out in that time.
    Unsaved {
        written_to: Option<OffsetDateTime>,
        why: String,
    },
}

impl std::fmt::Display for Withhold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Overdue { deadline } => write!(
                f,
                "no check-in with the controller for longer than the policy allows (deadline {}): the messaging data is being wiped",
                crate::rfc3339(*deadline)
            ),
            Self::Unsaved { written_to, why } => write!(
                f,
                "the offline timer cannot write down how long this device has been offline ({why}; written down up to {}): the key is withheld until it can, so that a restart cannot undo the count. Free space in the agent's state directory or repair its filesystem",
                written_to.map_or_else(|| "nothing".to_owned(), crate::rfc3339)
            ),
        }
    }
}

/// The timer's state, shared by the timer task and the check-in loop (which reports
/// check-ins and delivered receipts).
#[derive(Debug)]
pub struct OfflineTimer {
    state_dir: PathBuf,
    core: Mutex<Core>,
    /// The last policy read: kept while `policy.json` cannot be read (an I/O error, no file
    /// descriptor left), so a failing read never lifts the deadline.
    policy: Mutex<Option<AgentPolicy>>,
}

impl OfflineTimer {
    /// Resumes the timer from `STATE/offline-timer.slots` (or its readable copy). Without a
    /// record (a new enrollment, or a state directory from an agent before the timer kept one)
    /// or with a damaged one, it starts from `fallback_checkin`: `state.json`'s last check-in,
    /// or the enrollment.
    pub fn load(
        state_dir: &Path,
        device_id: &str,
        clock: SharedClock,
        fallback_checkin: OffsetDateTime,
    ) -> Self {
        let stored = match TimerRecord::load(state_dir) {
            Ok(record) => record.filter(|r| r.device_id == device_id),
            Err(e) => {
                warn!(error = %e, "offline timer: starting again from the last check-in in state.json");
                None
            }
        };
        // Whoever's record it holds, slots are written after its newest.
        let seq = timer_file::read(&timer_file::path(state_dir))
            .ok()
            .flatten()
            .map_or(0, |(seq, _)| seq);
        let last_checkin = stored
            .as_ref()
            .and_then(TimerRecord::last_checkin_time)
            .unwrap_or(fallback_checkin);
        let durable = stored.as_ref().and_then(TimerRecord::resume_time);
        let reached_before = durable.map_or(last_checkin, |r| r.max(last_checkin));
        let mut clock = TimerClock::resume(clock, Some(reached_before));
        let now = clock.now();
        let record = TimerRecord {
            device_id: device_id.to_owned(),
            last_checkin: crate::rfc3339(last_checkin),
            reached: crate::rfc3339(now),
            counted_to: None,
            wiped_at: stored.as_ref().and_then(|r| r.wiped_at.clone()),
            receipt: stored.as_ref().and_then(|r| r.receipt),
            offline_wipe_after_seconds: stored.as_ref().and_then(|r| r.offline_wipe_after_seconds),
        };
        let timer = Self {
            policy: Mutex::new(None),
            state_dir: state_dir.to_path_buf(),
            core: Mutex::new(Core {
                clock,
                record,
                last_checkin,
                written: now,
                seq,
                durable,
                unsaved: None,
                copy_failing: false,
            }),
        };
        timer.update(|_| {});
        timer
    }

    /// Applies `change` and writes the count down, with a restart resuming [`LEASE`] ahead.
    fn update(&self, change: impl FnOnce(&mut Core)) {
        self.write(change, LEASE);
    }

    fn write(&self, change: impl FnOnce(&mut Core), ahead: time::Duration) {
        let mut core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut core);
        let now = core.clock.now();
        let counted_to = now + ahead;
        core.record.reached = crate::rfc3339(now);
        core.record.counted_to = Some(crate::rfc3339(counted_to));
        let seq = core.seq + 1;
        match core.record.save(&self.state_dir, seq) {
            Ok(()) => {
                core.seq = seq;
                core.written = now;
                core.durable = Some(counted_to);
                if core.unsaved.take().is_some() {
                    info!("offline timer: its count is written down again");
                }
            }
            Err(e) => {
                let why = e.to_string();
                if core.unsaved.as_deref() != Some(why.as_str()) {
                    error!(
                        error = %why,
                        written_to = %core.durable.map_or_else(|| "nothing".to_owned(), crate::rfc3339),
                        "offline timer: cannot write its count down; trying again every few seconds, and the messaging app gets no key once the count runs past what is written down"
                    );
                }
                core.unsaved = Some(why);
            }
        }
        // The readable copy, for people and tools; the timer never depends on it.
        match core.record.save_copy(&self.state_dir) {
            Ok(()) => core.copy_failing = false,
            Err(e) => {
                if !core.copy_failing {
                    warn!(error = %e, "offline timer: cannot write its readable copy (the count itself is kept in offline-timer.slots)");
                }
                core.copy_failing = true;
            }
        }
    }

    /// A check-in completed: the deadline starts again from now.
    pub fn checked_in(&self) {
        self.update(|core| {
            let now = core.clock.now();
            core.last_checkin = now;
            core.record.last_checkin = crate::rfc3339(now);
        });
    }

    /// The timer's time and the last check-in; writes the timer down if a minute has passed
    /// since it last was (at every tick while writing fails).
    fn tick(&self) -> (OffsetDateTime, OffsetDateTime) {
        let (now, last_checkin, stale) = {
            let mut core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
            let now = core.clock.now();
            (
                now,
                core.last_checkin,
                now - core.written >= PERSIST_EVERY || core.unsaved.is_some(),
            )
        };
        if stale {
            self.update(|_| {});
        }
        (now, last_checkin)
    }

    /// Writes the timer down at a clean stop: a restart resumes exactly where it stopped.
    pub fn stop(&self) {
        self.write(|_| {}, time::Duration::ZERO);
    }

    pub fn record(&self) -> TimerRecord {
        self.core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record
            .clone()
    }

    /// Records the wipe, and puts its signed receipt (if any) where the check-in loop sends it
    /// from. Both happen under the timer's lock, which [`Self::receipt_reported`] takes too:
    /// the controller's acknowledgement can never come before the wipe is recorded, and so is
    /// never overwritten by "pending".
    fn wiped(&self, at: OffsetDateTime, report: Option<&PendingReport>) -> ReceiptState {
        let mut receipt = ReceiptState::Unsigned;
        self.update(|core| {
            if let Some(report) = report {
                receipt = match report.save(&self.state_dir) {
                    Ok(()) => ReceiptState::Pending,
                    Err(e) => {
                        error!(error = %e, "cannot record the offline-wipe receipt");
                        ReceiptState::Unsigned
                    }
                };
                fail::fail_point!("offline-receipt-written");
            }
            core.record.wiped_at = Some(crate::rfc3339(at));
            core.record.receipt = Some(receipt);
        });
        receipt
    }

    /// The deadline, if it has passed: no check-in for longer than the policy in
    /// `STATE/policy.json` allows. The messaging app gets no key from then on, whether or not
    /// the wipe could run yet.
    pub fn overdue(&self) -> Option<OffsetDateTime> {
        match self.withhold() {
            Some(Withhold::Overdue { deadline }) => Some(deadline),
            _ => None,
        }
    }

    /// The policy the timer counts against: `policy.json`, or, when it cannot be read, the
    /// last one read (fail closed: an unreadable file never lifts the deadline), or after a
    /// restart the limit kept in the timer's record. None read ever and none on disk: no timer.
    pub fn policy(&self) -> AgentPolicy {
        let mut last = self.policy.lock().unwrap_or_else(PoisonError::into_inner);
        match AgentPolicy::load(&self.state_dir) {
            Some(read) => {
                let limit = Some(read.offline_wipe_after_seconds);
                if self.record().offline_wipe_after_seconds != limit {
                    self.update(|core| core.record.offline_wipe_after_seconds = limit);
                }
                *last = Some(read.clone());
                read
            }
            None => {
                if last.is_none() {
                    *last = self.record().offline_wipe_after_seconds.map(|limit| {
                        AgentPolicy::from(Policy {
                            offline_wipe_after_seconds: limit,
                            ..Policy::default()
                        })
                    });
                }
                if last.is_some()
                    && self
                        .state_dir
                        .join("policy.json")
                        .symlink_metadata()
                        .is_ok()
                {
                    warn!(
                        "offline timer: policy.json cannot be read; counting against the last policy read"
                    );
                }
                last.clone().unwrap_or_default()
            }
        }
    }

    /// Whether the messaging app must go without its key, by the timer: past the deadline
    /// ([`Self::overdue`]), or while the count runs past what is written down (writing it
    /// fails: a full disk on a copy-on-write filesystem, an I/O error), so that no time in
    /// which the key was handed out can be lost to a restart. Never without a policy timer.
    pub fn withhold(&self) -> Option<Withhold> {
        let (now, last_checkin) = self.tick();
        let policy = self.policy();
        let deadline = deadline(&policy, last_checkin)?;
        if now >= deadline {
            return Some(Withhold::Overdue { deadline });
        }
        let core = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        if core.durable.is_some_and(|written_to| now <= written_to) {
            return None;
        }
        Some(Withhold::Unsaved {
            written_to: core.durable,
            why: core
                .unsaved
                .clone()
                .unwrap_or_else(|| "not written yet".into()),
        })
    }

    /// The controller has the receipt: it is no longer kept.
    pub fn receipt_reported(&self) {
        self.update(|core| {
            if let Err(e) = std::fs::remove_file(report_path(&self.state_dir))
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!(error = %e, "cannot clear the offline-wipe report");
            }
            core.record.receipt = Some(ReceiptState::Reported);
        });
    }
}

/// What the timer needs to wipe and sign.
#[derive(Debug)]
pub struct Wiper {
    pub vault: Arc<VaultSlot>,
    /// Held by every wipe, commanded or not, so they never overlap.
    pub wipe_lock: Arc<tokio::sync::Mutex<()>>,
    pub key_store: DeviceKeyStore,
    pub device_id: String,
    pub state_dir: PathBuf,
}

/// The timer task: runs until the agent stops.
pub async fn run(timer: Arc<OfflineTimer>, wiper: Wiper) {
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut said_nothing_to_wipe = false;
    let mut said_out_of_reach: Option<String> = None;
    loop {
        let (now, last_checkin) = timer.tick();
        let policy = timer.policy();
        let waiting = retry_at.is_some_and(|at| tokio::time::Instant::now() < at);
        // A wipe the timer began is finished (and reported) even if a check-in has moved the
        // deadline since.
        let unfinished = wiper.vault.if_open().is_some_and(|vault| {
            matches!(vault.journal(), Ok(Some(j)) if j.cause == CAUSE && j.step != WipeStep::Done)
        });
        if (unfinished || due(&policy, last_checkin, now)) && !waiting {
            match wiper.vault.get().await {
                Ok(Some(vault)) => {
                    said_out_of_reach = None;
                    retry_at = match wipe(&timer, &wiper, &vault, &policy, now, last_checkin).await
                    {
                        Ok(()) => None,
                        Err(()) => Some(tokio::time::Instant::now() + RETRY_AFTER),
                    }
                }
                Ok(None) if !said_nothing_to_wipe => {
                    warn!(
                        "no check-in for longer than the policy allows, but no messaging directory is managed (--messaging-dir): nothing to wipe"
                    );
                    said_nothing_to_wipe = true;
                }
                Ok(None) => {}
                // Tried again at every tick: the wipe follows the moment the key is reachable.
                Err(e) => {
                    let why = e.to_string();
                    if said_out_of_reach.as_deref() != Some(why.as_str()) {
                        error!(
                            error = %why,
                            "no check-in for longer than the policy allows, but the offline timer cannot reach the messaging key to destroy it; trying again every few seconds (the messaging app gets no key meanwhile)"
                        );
                        said_out_of_reach = Some(why);
                    }
                }
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Wipes unless the data is already wiped, and leaves a signed receipt to report.
async fn wipe(
    timer: &OfflineTimer,
    wiper: &Wiper,
    vault: &Vault,
    policy: &AgentPolicy,
    now: OffsetDateTime,
    last_checkin: OffsetDateTime,
) -> Result<(), ()> {
    let _one_wipe_at_a_time = wiper.wipe_lock.lock().await;
    match vault.journal() {
        Ok(Some(j)) if j.step == WipeStep::Done => {
            // Wiped by a command (nothing left to protect), or by the timer already; a timer
            // wipe that a crash kept from its receipt, or whose receipt could not be signed
            // (the device key out of reach), still gets one.
            let receipt = timer.record().receipt;
            if j.cause != CAUSE || !matches!(receipt, None | Some(ReceiptState::Unsigned)) {
                return Ok(());
            }
        }
        Ok(_) => warn!(
            offline_for_s = (now - last_checkin).whole_seconds(),
            limit_s = policy.offline_wipe_after_seconds,
            last_checkin = %crate::rfc3339(last_checkin),
            "no check-in for longer than the policy allows: wiping the messaging data"
        ),
        Err(e) => {
            error!(error = %e, "offline timer: cannot read the wipe journal");
            return Err(());
        }
    }
    let journal = match vault.wipe(CAUSE).await {
        Ok(j) => j,
        Err(e) => {
            error!(error = %e, "offline wipe failed; trying again in a minute");
            return Err(());
        }
    };
    let key_destroyed = vault.key_present().await.is_ok_and(|present| !present);
    let at = journal
        .completed_at
        .as_deref()
        .and_then(crate::parse_rfc3339)
        .unwrap_or(now);
    let report = sign(wiper, vault, &journal, key_destroyed, at).await;
    let receipt = timer.wiped(at, report.as_ref());
    match receipt {
        ReceiptState::Unsigned => {
            error!(
                "the offline timer wiped the messaging data, but no receipt could be signed (see above); trying again in a minute"
            );
            Err(())
        }
        _ => {
            warn!(
                "the offline timer wiped the messaging data; the signed receipt goes to the controller at the next contact"
            );
            Ok(())
        }
    }
}

/// The receipt of the wipe, signed by the device key; `None` (said in the log) when it cannot
/// be signed.
async fn sign(
    wiper: &Wiper,
    vault: &Vault,
    journal: &WipeJournal,
    key_destroyed: bool,
    at: OffsetDateTime,
) -> Option<PendingReport> {
    let key = match wiper.key_store.load().await {
        Ok(key) => key,
        Err(e) => {
            error!(error = %e, "the data is wiped but the device key, which signs the receipt, is unavailable");
            return None;
        }
    };
    let wiped = crate::receipt::Wiped {
        command_id: CAUSE.into(),
        device_id: wiper.device_id.clone(),
        completed_at: crate::rfc3339(at),
        scope: ward_certs::receipt::WipeScope::Messaging,
        full_erase: None,
        key_destroyed,
    };
    match crate::receipt::sign(vault, journal, wiped, &key) {
        Ok(signed) => {
            info!("offline-wipe receipt signed");
            Some(PendingReport {
                body: STANDARD.encode(&signed.body),
                signature: STANDARD.encode(&signed.signature),
            })
        }
        Err(e) => {
            error!(error = %e, "the data is wiped but the receipt could not be signed");
            None
        }
    }
}

/// The signed receipt waiting to be reported (`STATE/offline-wipe.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReport {
    pub body: String,
    pub signature: String,
}

impl PendingReport {
    fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        replace_file(&report_path(state_dir), &bytes, 0o600)
    }
}

fn report_path(state_dir: &Path) -> PathBuf {
    state_dir.join("offline-wipe.json")
}

pub fn pending(state_dir: &Path) -> Option<WipeReceipt> {
    let bytes = std::fs::read(report_path(state_dir)).ok()?;
    let report: PendingReport = serde_json::from_slice(&bytes).ok()?;
    Some(WipeReceipt {
        body: STANDARD.decode(report.body).ok()?,
        signature: STANDARD.decode(report.signature).ok()?,
    })
}

#[cfg(test)]
#[path = "offline_tests.rs"]
mod tests;
