//! Announcements to the other replicas, sent in the background and gathered: everything queued
//! while the last one was on its way goes out together (`Store::announce_all`, a few hundred
//! events per PostgreSQL notification). Sent one at a time and awaited, ten thousand
//! revocations at the end of a mass offboarding were ten thousand notifications, each its own
//! commit, through two connections; and each one this replica heard back made it reload the
//! revocation list.
//!
//! An announcement is a hint, never a promise: a lost one only delays the other replicas,
//! which also refresh on a timer. The order of announcements is kept.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::warn;

use crate::store::{Announcement, Store};

/// The most events one call to the store takes.
const MAX_BATCH: usize = 5000;

#[derive(Clone, Debug)]
pub(super) struct Announcer {
    queue: mpsc::UnboundedSender<Announcement>,
}

impl Announcer {
    pub(super) fn start(store: Arc<dyn Store>) -> Self {
        let (queue, mut events) = mpsc::unbounded_channel::<Announcement>();
        tokio::spawn(async move {
            while let Some(first) = events.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match events.try_recv() {
                        Ok(more) => batch.push(more),
                        Err(_) => break,
                    }
                }
                if let Err(e) = store.announce_all(&batch).await {
                    warn!(error = %e, events = batch.len(), "cannot notify the other controller replicas");
                }
            }
        });
        Self { queue }
    }

    /// Queues `event`; it goes out with whatever else is queued.
    pub(super) fn send(&self, event: Announcement) {
        // The task ends only with the runtime: then there is no one left to tell.
        let _ = self.queue.send(event);
    }
}
