//! Keeping replicas in step: the revocation list, announcements to and from the other
//! controller replicas, and the background work that applies them and covers lost ones.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{App, AppError};
use crate::store::Announcement;

/// How often the revocation list is re-read from the store, in case an announcement from
/// another replica was lost.
pub(super) const REVOCATION_REFRESH: Duration = Duration::from_secs(30);

impl App {
    /// Loads the revocation list from the store (call before serving), and cuts the open
    /// connections of certificates it revokes.
    pub async fn load_revocations(&self) -> Result<usize, AppError> {
        // Revocations this replica inserts while the store is read are kept (it does not hear
        // its own announcements, so nothing else would put them back until the next reload).
        let mark = self.revoked.mark();
        let serials = self.store.revoked_serials(self.now()).await?;
        let count = serials.len();
        self.revoked.replace_since(mark, serials);
        // Connections with a certificate a renewal replaced stay open: every call on them is
        // refused. A call there is how a copy of a device certificate shows itself (a
        // suspected clone; its command stream ends, `server/agent.rs`), and an admin renewing
        // their own certificate is answered on one (the periodic reload may run before that
        // answer is sent; this replica does not act on its own announcements).
        let kept: std::collections::HashSet<String> = self
            .store
            .replaced_serials(self.now())
            .await?
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let cut = self.connections.cut_revoked_except(&self.revoked, &kept);
        if cut > 0 {
            info!(connections = cut, "connections of revoked certificates cut");
        }
        Ok(count)
    }
    /// Acts on `event` here and tells the other replicas.
    pub async fn signal(&self, event: Announcement) {
        self.apply(event).await;
        self.announce(event).await;
    }

    /// Tells the other replicas, in the background with whatever else is queued
    /// (`announcer.rs`). A lost announcement only delays them (they also refresh periodically).
    pub(super) async fn announce(&self, event: Announcement) {
        self.announcer.send(event);
    }

    /// Acts on an event from this or another replica.
    async fn apply(&self, event: Announcement) {
        self.apply_all(&[event]).await;
    }

    /// Acts on events from this or another replica; the revocation list is read again at
    /// most once however many revocations arrived together.
    pub(super) async fn apply_all(&self, events: &[Announcement]) {
        let mut reload = false;
        for event in events {
            match *event {
                Announcement::DeviceWork(id) => {
                    self.reads.device_work(id);
                    self.hub.wake(id);
                }
                Announcement::Revoked(id) => {
                    self.reads.device_changed(id);
                    reload = true;
                }
                Announcement::RevocationsChanged => reload = true,
                Announcement::PolicyChanged => {
                    self.reads.policy_changed();
                    self.hub.wake_all();
                }
            }
        }
        if reload && let Err(e) = self.load_revocations().await {
            warn!(error = %e, "cannot reload the revocation list");
        }
        for event in events {
            if let Announcement::Revoked(id) = *event {
                self.hub.wake(id);
            }
        }
    }

    /// Background work: applying other replicas' announcements, and the periodic refresh of
    /// the revocation list that covers announcements lost on the way.
    pub async fn start_background(self: &Arc<Self>) -> Result<(), AppError> {
        let upgraded = self.upgrade_policy_overrides().await?;
        if upgraded > 0 {
            info!(
                upgraded,
                "user policy overrides now keep only the fields they change"
            );
        }
        if let Some(mut announcements) = self.store.listen().await? {
            let app = Arc::clone(self);
            self.background.spawn(async move {
                while let Some(first) = announcements.recv().await {
                    // Everything that arrived meanwhile, applied together.
                    let mut events = vec![first];
                    while let Ok(more) = announcements.try_recv() {
                        events.push(more);
                    }
                    app.apply_all(&events).await;
                }
            });
        }
        let app = Arc::clone(self);
        self.background.spawn(async move {
            let mut tick = tokio::time::interval(REVOCATION_REFRESH);
            tick.tick().await;
            loop {
                tick.tick().await;
                // Policies a lost announcement left stale are read again. (A lost revocation
                // is covered by the list reloaded below, which every cached certificate is
                // checked against at every call, and which cuts the revoked connections.)
                app.reads.policy_changed();
                if let Err(e) = app.load_revocations().await {
                    warn!(error = %e, "cannot refresh the revocation list");
                }
                // Commands whose time-to-live ran out while their device stayed away.
                if let Err(e) = app.expire_due_commands().await {
                    warn!(error = %e, "cannot expire the commands past their time-to-live");
                }
            }
        });
        Ok(())
    }
}
