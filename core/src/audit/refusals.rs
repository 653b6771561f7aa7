//! Bounding what refusals write to the audit log. Every refusal is worth an auditor's
//! attention, but one entry per refused call lets a caller grow the log without limit. Per
//! source and minute the first [`RECORDED_PER_WINDOW`] refusals are recorded one by one; the
//! rest are counted and recorded as one summary entry when the window is over.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::AuditEvent;
use crate::Timestamp;

/// How long a window lasts.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Refusals recorded one by one per source and window.
pub const RECORDED_PER_WINDOW: u32 = 10;

/// Sources tracked at once; beyond it, ended windows are summarized and forgotten early.
pub const MAX_SOURCES: usize = 10_000;

/// Whose refusals are counted together: the refused identity (or client address), and what
/// kind of refusal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// The audit actor of the refusals.
    pub actor: String,
    /// Their audit action (`denied`, `enroll.refused`).
    pub action: String,
    /// Where they came from, when the actor does not say (a client address); may be empty.
    pub origin: String,
}

/// Refusals of one source that were counted but not recorded one by one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppressed {
    pub source: Source,
    pub count: u64,
    pub from: Timestamp,
    pub until: Timestamp,
}

impl Suppressed {
    /// The summary entry: `<action>.suppressed`, by the same actor.
    pub fn event(&self) -> AuditEvent {
        AuditEvent {
            actor: self.source.actor.clone(),
            action: format!("{}.suppressed", self.source.action),
            target: if self.source.origin.is_empty() {
                "refusals".into()
            } else {
                self.source.origin.clone()
            },
            details: json!({
                "suppressed": self.count,
                "from": self.from.rfc3339(),
                "until": self.until.rfc3339(),
                "recorded_one_by_one": RECORDED_PER_WINDOW,
            }),
        }
    }
}

/// What to do with one refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Record it, after the summary of the source's previous window if it had suppressions.
    Record(Option<Suppressed>),
    /// Count it only.
    Suppress,
}

#[derive(Debug)]
struct Window {
    started: Timestamp,
    recorded: u32,
    suppressed: u64,
}

/// The windows of the sources seen recently. Time is passed in.
#[derive(Debug, Default)]
pub struct RefusalLimiter {
    windows: HashMap<Source, Window>,
}

impl RefusalLimiter {
    pub fn admit(&mut self, source: &Source, now: Timestamp) -> Admit {
        if let Some(w) = self.windows.get_mut(source) {
            if now < w.started.saturating_add(WINDOW) {
                if w.recorded < RECORDED_PER_WINDOW {
                    w.recorded += 1;
                    return Admit::Record(None);
                }
                w.suppressed += 1;
                return Admit::Suppress;
            }
            let summary = summary(source, w, now);
            *w = Window {
                started: now,
                recorded: 1,
                suppressed: 0,
            };
            return Admit::Record(summary);
        }
        self.windows.insert(
            source.clone(),
            Window {
                started: now,
                recorded: 1,
                suppressed: 0,
            },
        );
        Admit::Record(None)
    }

    /// Ends the windows that are over at `now`: their summaries (where something was
    /// suppressed), and they are forgotten. Run about once a window, and at shutdown with
    /// `force` to end every window.
    pub fn flush(&mut self, now: Timestamp, force: bool) -> Vec<Suppressed> {
        let mut out = Vec::new();
        self.windows.retain(|source, w| {
            let over = force || now >= w.started.saturating_add(WINDOW);
            if over && let Some(s) = summary(source, w, now) {
                out.push(s);
            }
            !over
        });
        out
    }

    /// Whether it is time to flush early to keep the table small.
    pub fn is_full(&self) -> bool {
        self.windows.len() > MAX_SOURCES
    }
}

fn summary(source: &Source, w: &Window, now: Timestamp) -> Option<Suppressed> {
    (w.suppressed > 0).then(|| Suppressed {
        source: source.clone(),
        count: w.suppressed,
        from: w.started,
        until: now.min(w.started.saturating_add(WINDOW)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(actor: &str) -> Source {
        Source {
            actor: actor.into(),
            action: "denied".into(),
            origin: String::new(),
        }
    }

    #[test]
    fn a_flood_records_a_few_then_one_summary_per_window() {
        let mut limiter = RefusalLimiter::default();
        let t0 = Timestamp::from_unix_ms(1_000_000);
        let a = source("ward://admin/a");
        let recorded = (0..500)
            .filter(|_| limiter.admit(&a, t0) != Admit::Suppress)
            .count();
        assert_eq!(recorded, RECORDED_PER_WINDOW as usize);
        // Another source is counted apart.
        assert_eq!(
            limiter.admit(&source("ward://admin/b"), t0),
            Admit::Record(None)
        );
        let later = t0.saturating_add(WINDOW);
        match limiter.admit(&a, later) {
            Admit::Record(Some(s)) => {
                assert_eq!(s.count, 490);
                assert_eq!(s.event().action, "denied.suppressed");
                assert_eq!(s.event().details["suppressed"], 490);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flush_summarizes_ended_windows_and_forgets_them() {
        let mut limiter = RefusalLimiter::default();
        let t0 = Timestamp::from_unix_ms(0);
        let a = source("a");
        for _ in 0..12 {
            limiter.admit(&a, t0);
        }
        assert!(
            limiter.flush(t0, false).is_empty(),
            "the window is not over"
        );
        let flushed = limiter.flush(t0.saturating_add(WINDOW), false);
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].count, 2);
        assert!(
            limiter
                .flush(t0.saturating_add(WINDOW * 2), true)
                .is_empty()
        );
        assert_eq!(limiter.admit(&a, t0), Admit::Record(None), "forgotten");
    }
}
