//! One check-in at a time per device on this replica. An agent checks in one call after
//! another; a second call while the first is still being written is a client retrying too
//! early or a device flooding the writer with its own row, which would make the writer's lanes
//! contend for that row (and, on PostgreSQL, make the check-in lanes yield batches of other
//! devices' check-ins). It is refused at once as busy; the agent backs off and tries again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::core::DeviceId;

/// The devices whose check-in this replica is handling.
#[derive(Debug, Default)]
pub(super) struct CheckInsInFlight(Mutex<HashSet<DeviceId>>);

/// A device's turn, given back when dropped. The check-in moves it into its writer job, so
/// it comes back when the writer is done with the job, not when the caller hangs up: a
/// device that sends a check-in and hangs up at once, over and over, would otherwise queue
/// jobs for its own row without bound.
#[derive(Debug)]
pub(super) struct Turn {
    set: Arc<CheckInsInFlight>,
    device: DeviceId,
}

impl CheckInsInFlight {
    /// The device's turn, or `None` while another of its check-ins is in flight.
    pub(super) fn take(self: &Arc<Self>, device: DeviceId) -> Option<Turn> {
        let inserted = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(device);
        // Built only when taken: a `Turn` dropped gives the device's turn back.
        inserted.then(|| Turn {
            set: Arc::clone(self),
            device,
        })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(PoisonError::into_inner);
        set.remove(&self.device);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_has_one_turn_at_a_time_and_gets_it_back_when_it_is_dropped() {
        let set = Arc::new(CheckInsInFlight::default());
        let (a, b) = (DeviceId::new_random(), DeviceId::new_random());
        let first = set.take(a).expect("a's first turn");
        assert!(set.take(a).is_none(), "a second call of a is refused");
        let other = set.take(b).expect("b is not held up by a");
        drop(first);
        let again = set.take(a).expect("a's turn is back once the call is over");
        drop((again, other));
        assert!(set.0.lock().unwrap().is_empty());
    }
}
