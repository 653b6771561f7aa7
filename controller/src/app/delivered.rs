//! The commands this replica delivered or saw acknowledged, as it last wrote them. The
//! acknowledgement and the result that follow a delivery start from this copy instead of
//! reading the command back: after a mass offboarding, ten thousand devices acknowledge and
//! report at once, and each read is a trip to the store.
//!
//! A copy is only ever where a compare-and-set starts from. If another replica or an admin
//! changed the command since (cancelled it, delivered it again, recorded its result), the
//! write misses and the caller reads the store, so a copy never makes a stale state win.
//! A copy leaves when its command finishes here; one finished elsewhere stays until the map
//! is full, then the map starts again empty (a copy missing only costs a read).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::core::{Command, CommandId, CommandState, DeviceId};

/// The most copies held: an offboarding of fifty thousand devices, with room to spare.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub(super) struct Delivered {
    copies: Mutex<HashMap<CommandId, Command>>,
}

impl Delivered {
    /// Keeps `command` as just written, while it waits for the device (delivered or
    /// acknowledged); forgets it once it is anything else.
    pub(super) fn written(&self, command: &Command) {
        let mut copies = self.copies.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(
            command.state,
            CommandState::Delivered | CommandState::Acknowledged
        ) {
            if copies.len() >= MAX_ENTRIES && !copies.contains_key(&command.id) {
                copies.clear();
            }
            copies.insert(command.id, command.clone());
        } else {
            copies.remove(&command.id);
        }
    }

    /// Drops the copy of `id`: it turned out stale (the command changed elsewhere), and the
    /// device's repeats are answered from the store.
    pub(super) fn forget(&self, id: CommandId) {
        self.copies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// The copy of `device`'s command `id`; `None` when there is none, or when the command
    /// is another device's (the caller then reads the store, which refuses it).
    pub(super) fn of(&self, device: DeviceId, id: CommandId) -> Option<Command> {
        self.copies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .filter(|c| c.device_id == device)
            .cloned()
    }
}
