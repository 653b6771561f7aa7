//! What reaches a device's open command streams on this replica. A committed command is
//! pushed to them as it is ([`Hub::push`]), so a stream hands it on without reading the store;
//! anything else that may concern the device (a policy change, a revocation, another
//! replica's command) is a wake-up ([`Hub::wake`]) after which the stream reads the store
//! again. Neither is a promise: a stream also reads the store when it opens and periodically,
//! so a lost push or wake-up only delays delivery; the store is the source of truth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{Notify, watch};

use crate::core::{Command, DeviceId};

#[derive(Debug)]
pub struct Hub {
    devices: Mutex<HashMap<DeviceId, Vec<Weak<Inbox>>>>,
    /// Set when the controller shuts down: every open stream ends, so shutdown never waits
    /// on agents that would otherwise keep their streams forever.
    stopping: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            devices: Mutex::default(),
            stopping: watch::channel(false).0,
        }
    }
}

/// One open stream's mailbox.
#[derive(Debug, Default)]
struct Inbox {
    notify: Notify,
    mail: Mutex<Mail>,
}

/// What arrived since the stream last looked.
#[derive(Debug, Default)]
pub struct Mail {
    /// Commands committed for the device, in the order they were pushed.
    pub commands: Vec<Command>,
    /// Something else may have changed: read the store again.
    pub read_again: bool,
}

/// A stream's subscription; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription(Arc<Inbox>);

impl Subscription {
    /// Waits until something arrived, then takes it.
    pub async fn next(&self) -> Mail {
        loop {
            let mail = self.take();
            if !mail.commands.is_empty() || mail.read_again {
                return mail;
            }
            self.0.notify.notified().await;
        }
    }

    fn take(&self) -> Mail {
        std::mem::take(&mut *self.0.mail.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Hub {
    /// A mailbox for one of `device`'s streams.
    pub fn subscribe(&self, device: DeviceId) -> Subscription {
        let inbox = Arc::new(Inbox::default());
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let inboxes = devices.entry(device).or_default();
        inboxes.retain(|i| i.strong_count() > 0);
        inboxes.push(Arc::downgrade(&inbox));
        Subscription(inbox)
    }

    /// Hands a committed command to every open stream of its device here.
    pub fn push(&self, command: &Command) {
        self.deliver(command.device_id, |mail| {
            mail.commands.push(command.clone())
        });
    }

    /// Tells every open stream of `device` here to read the store again.
    pub fn wake(&self, device: DeviceId) {
        self.deliver(device, |mail| mail.read_again = true);
    }

    /// Wakes every open stream (e.g. after a policy change elsewhere).
    pub fn wake_all(&self) {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        for inbox in devices.values().flatten().filter_map(Weak::upgrade) {
            inbox
                .mail
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .read_again = true;
            inbox.notify.notify_one();
        }
    }

    fn deliver(&self, device: DeviceId, put: impl Fn(&mut Mail)) {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(inboxes) = devices.get_mut(&device) else {
            return;
        };
        inboxes.retain(|i| i.strong_count() > 0);
        if inboxes.is_empty() {
            // Nobody listens any more: forget the device rather than grow forever.
            devices.remove(&device);
            return;
        }
        for inbox in inboxes.iter().filter_map(Weak::upgrade) {
            put(&mut inbox.mail.lock().unwrap_or_else(PoisonError::into_inner));
            // A permit is kept when the stream is busy: nothing is missed.
            inbox.notify.notify_one();
        }
    }

    /// A receiver that turns true when the controller stops.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Ends every open stream.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// How many devices have at least one open stream.
    pub fn connected(&self) -> usize {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        devices
            .values()
            .filter(|inboxes| inboxes.iter().any(|i| i.strong_count() > 0))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CommandId, CommandKind, CommandState, Timestamp};

    fn command(device: DeviceId) -> Command {
        Command {
            id: CommandId::new_random(),
            device_id: device,
            kind: CommandKind::Unlock,
            state: CommandState::Queued,
            reason: String::new(),
            failure_reason: None,
            idempotency_key: "k".into(),
            created_by: "a".into(),
            created_at: Timestamp::from_unix_ms(0),
            deadline: None,
            delivered_at: None,
            acknowledged_at: None,
            finished_at: None,
            deliveries: 0,
            receipt: None,
            approved_by: None,
            revoke_after: false,
        }
    }

    #[tokio::test]
    async fn pushes_and_wakes_reach_every_subscriber_of_that_device_only() {
        let hub = Hub::default();
        let (a, b) = (DeviceId::new_random(), DeviceId::new_random());
        let a1 = hub.subscribe(a);
        let a2 = hub.subscribe(a);
        let b1 = hub.subscribe(b);
        let pushed = command(a);
        hub.push(&pushed);
        hub.wake(a);
        for s in [&a1, &a2] {
            let mail = s.next().await;
            assert_eq!(mail.commands, vec![pushed.clone()]);
            assert!(mail.read_again);
        }
        assert!(b1.take().commands.is_empty() && !b1.take().read_again);
        assert_eq!(hub.connected(), 2);
        drop((a1, a2));
        hub.wake(a);
        assert_eq!(
            hub.connected(),
            1,
            "a device whose streams closed is forgotten"
        );
    }

    #[tokio::test]
    async fn a_push_while_the_stream_is_busy_is_kept_for_its_next_look() {
        let hub = Hub::default();
        let a = DeviceId::new_random();
        let s = hub.subscribe(a);
        let (first, second) = (command(a), command(a));
        hub.push(&first);
        hub.push(&second);
        let mail = s.next().await;
        assert_eq!(mail.commands, vec![first, second]);
        assert!(!mail.read_again);
    }
}
