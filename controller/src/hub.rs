//! Wake-ups for open command streams: when a command for a device is committed, every stream
//! that device holds re-reads its unfinished commands. A wake-up carries no data, so a lost
//! or coalesced one only delays delivery until the next periodic sweep; it never loses a
//! command (the store is the source of truth).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

use crate::core::DeviceId;

#[derive(Debug)]
pub struct Hub {
    devices: Mutex<HashMap<DeviceId, watch::Sender<u64>>>,
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

impl Hub {
    /// A receiver that changes whenever [`Hub::wake`] is called for `device`.
    pub fn subscribe(&self, device: DeviceId) -> watch::Receiver<u64> {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        devices
            .entry(device)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn wake(&self, device: DeviceId) {
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = devices.get(&device) {
            if tx.receiver_count() == 0 {
                // Nobody listens any more: forget the device rather than grow forever.
                devices.remove(&device);
            } else {
                tx.send_modify(|generation| *generation = generation.wrapping_add(1));
            }
        }
    }

    /// Wakes every open stream (e.g. after a policy change elsewhere).
    pub fn wake_all(&self) {
        let devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        for tx in devices.values() {
            tx.send_modify(|generation| *generation = generation.wrapping_add(1));
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
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_reaches_every_subscriber_of_that_device_only() {
        let hub = Hub::default();
        let (a, b) = (DeviceId::new_random(), DeviceId::new_random());
        let mut a1 = hub.subscribe(a);
        let mut a2 = hub.subscribe(a);
        let b1 = hub.subscribe(b);
        hub.wake(a);
        a1.changed().await.unwrap();
        a2.changed().await.unwrap();
        assert!(!b1.has_changed().unwrap());
        assert_eq!(hub.connected(), 2);
    }
}
