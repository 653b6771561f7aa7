//! Whether a device's messaging data was wiped, and what putting a found device back into
//! service can do: the rules, free of I/O.
//!
//! After a messaging wipe the agent keeps its wipe journal and never makes a new data key, so
//! the device stays enrolled ("active") but the messaging app gets no key on it again. What
//! can be undone from the controller is a disable (the data was only withheld); a wiped,
//! revoked or retired device goes back into service only by enrolling it again with a new
//! token, which makes a new device record (the old one keeps its history).

use super::{Command, CommandKind, CommandState, Device, DeviceState, Timestamp};

/// The newest wipe of a device's messaging data that the controller holds proof of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagingWipe {
    pub at: Timestamp,
    /// "wipe" (either scope: a full wipe starts with the messaging data), "retire", or
    /// "offline_timer" (the agent's own timer, with a receipt that verified).
    pub by: &'static str,
    /// The command, for a wipe or retirement.
    pub command_id: Option<String>,
}

/// The newest proven messaging wipe of `device`, given its commands (any order, any state):
/// a wipe or retirement that succeeded (the controller records success only with a receipt
/// that verified), or an offline-timer wipe whose receipt verified.
pub fn messaging_wipe(device: &Device, commands: &[Command]) -> Option<MessagingWipe> {
    let by_command = commands
        .iter()
        .filter(|c| c.device_id == device.id && c.state == CommandState::Succeeded)
        .filter_map(|c| {
            let by = match c.kind {
                CommandKind::Wipe { .. } => "wipe",
                CommandKind::Retire => "retire",
                _ => return None,
            };
            Some(MessagingWipe {
                at: c.finished_at.unwrap_or(c.created_at),
                by,
                command_id: Some(c.id.to_string()),
            })
        })
        .max_by_key(|w| w.at);
    let by_timer = device
        .offline_wipe
        .as_ref()
        .filter(|w| w.verified)
        .map(|w| MessagingWipe {
            at: w.at,
            by: "offline_timer",
            command_id: None,
        });
    match (by_command, by_timer) {
        (Some(c), Some(t)) => Some(if t.at > c.at { t } else { c }),
        (c, t) => c.or(t),
    }
}

/// What `device return` does for a found device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReturnPlan {
    /// The device was disabled, its data kept: enable it (the agent hands out the key again).
    Enable,
}

/// Why a device cannot be put back into service from the controller, with the way out.
pub fn return_to_service(
    device: &Device,
    wipe: Option<&MessagingWipe>,
    lost_or_offboarding: bool,
) -> Result<ReturnPlan, String> {
    let id = &device.id;
    let enroll = format!(
        "enroll it again with a new token: `wardctl token create --user {}`, then on the device \
         the `ward-agent enroll` command it prints, into an empty --state-dir (a new device \
         record; this one keeps its history)",
        device.user
    );
    match device.state {
        DeviceState::Revoked => {
            return Err(format!(
                "device {id} is revoked, and a revoked certificate is never trusted again; to \
                 put the device back into service, {enroll}"
            ));
        }
        DeviceState::Retired => {
            return Err(format!(
                "device {id} is retired: its agent destroyed its own key and state; to put the \
                 device back into service, {enroll}"
            ));
        }
        DeviceState::Active => {}
    }
    if lost_or_offboarding {
        return Err(format!(
            "device {id} is in lost mode or being offboarded: it is revoked once its wipe has \
             finished, whatever the outcome, and that cannot be called off; afterwards, {enroll}"
        ));
    }
    if let Some(w) = wipe {
        return Err(format!(
            "device {id}'s messaging data was wiped at {} ({}): its agent withholds the data key \
             for good and makes no new one. Retire this record first (`wardctl device retire \
             {id} --reason TEXT --wait`: the agent destroys the wiped identity's state), then \
             {enroll}",
            w.at.rfc3339(),
            w.command_id
                .as_deref()
                .map_or_else(|| w.by.replace('_', " "), |c| format!("{} {c}", w.by)),
        ));
    }
    if device.disabled.is_some() {
        return Ok(ReturnPlan::Enable);
    }
    Err(format!(
        "device {id} is in service already (active, not disabled, its messaging data not \
         wiped): nothing to return; `wardctl device unlock {id}` lifts a screen lock"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{CommandId, DeviceId, Disabled, OfflineWipe, WipeScope};

    fn device() -> Device {
        Device {
            id: DeviceId::new_random(),
            user: "alice@hospital.org".parse().unwrap(),
            state: DeviceState::Active,
            facts: crate::DeviceFacts::default(),
            enrolled_at: Timestamp::from_unix_ms(0),
            last_seen: None,
            certificate_serial: "01".into(),
            certificate_expires_at: Timestamp::from_unix_ms(0),
            public_key_der: None,
            compliance: None,
            offline_wipe: None,
            inventory: None,
            disabled: None,
            enforcement: Vec::new(),
            renewal_conflict: None,
            trusted_cas: Vec::new(),
        }
    }

    fn command(device: &Device, kind: CommandKind, state: CommandState, at: i64) -> Command {
        Command {
            id: CommandId::new_random(),
            device_id: device.id,
            kind,
            state,
            reason: "lost".into(),
            failure_reason: None,
            idempotency_key: "k".into(),
            created_by: "admin".into(),
            created_at: Timestamp::from_unix_ms(0),
            deadline: None,
            delivered_at: None,
            acknowledged_at: None,
            finished_at: Some(Timestamp::from_unix_ms(at)),
            deliveries: 0,
            receipt: None,
            approved_by: None,
            revoke_after: false,
        }
    }

    #[test]
    fn the_newest_succeeded_wipe_or_retirement_or_verified_timer_wipe_counts() {
        let d = device();
        let wipe = CommandKind::Wipe {
            scope: WipeScope::Messaging,
        };
        assert_eq!(messaging_wipe(&d, &[]), None);
        let failed = command(&d, wipe.clone(), CommandState::Failed, 5);
        let lock = command(
            &d,
            CommandKind::Lock {
                message: String::new(),
            },
            CommandState::Succeeded,
            9,
        );
        assert_eq!(messaging_wipe(&d, &[failed.clone(), lock.clone()]), None);
        let done = command(&d, wipe, CommandState::Succeeded, 7);
        let found = messaging_wipe(&d, &[failed, lock, done.clone()]).unwrap();
        assert_eq!(found.by, "wipe");
        assert_eq!(found.command_id, Some(done.id.to_string()));
        let mut timed = d.clone();
        timed.offline_wipe = Some(OfflineWipe {
            at: Timestamp::from_unix_ms(8),
            verified: false,
        });
        assert_eq!(
            messaging_wipe(&timed, &[]),
            None,
            "attack: whoever checks in as the device sends a timer receipt that does not verify"
        );
        assert_eq!(
            messaging_wipe(&timed, std::slice::from_ref(&done))
                .unwrap()
                .by,
            "wipe",
            "an unverified timer receipt is only the device's claim"
        );
        timed.offline_wipe = Some(OfflineWipe {
            at: Timestamp::from_unix_ms(8),
            verified: true,
        });
        assert_eq!(messaging_wipe(&timed, &[done]).unwrap().by, "offline_timer");
        let other = command(&device(), CommandKind::Retire, CommandState::Succeeded, 9);
        assert_eq!(messaging_wipe(&d, &[other]), None, "another device's");
    }

    #[test]
    fn only_a_disabled_device_whose_data_was_kept_is_returned_the_rest_is_refused_with_the_way_out()
    {
        let mut d = device();
        let refused = return_to_service(&d, None, false).unwrap_err();
        assert!(refused.contains("in service already"), "{refused}");
        d.disabled = Some(Disabled {
            reason: "mislaid".into(),
            at: 1,
            by: "ward://admin/admin".into(),
            command_id: "c".into(),
        });
        assert_eq!(return_to_service(&d, None, false), Ok(ReturnPlan::Enable));
        let wipe = MessagingWipe {
            at: Timestamp::from_unix_ms(1_764_583_200_000),
            by: "wipe",
            command_id: Some("c1".into()),
        };
        let refused = return_to_service(&d, Some(&wipe), false).unwrap_err();
        assert!(
            refused.contains("wiped at 2025-12-01T10:00:00"),
            "{refused}"
        );
        assert!(refused.contains("device retire"), "{refused}");
        assert!(
            refused.contains("enroll it again with a new token"),
            "{refused}"
        );
        let refused = return_to_service(&d, None, true).unwrap_err();
        assert!(refused.contains("lost mode"), "{refused}");
        for state in [DeviceState::Revoked, DeviceState::Retired] {
            d.state = state;
            let refused = return_to_service(&d, None, false).unwrap_err();
            assert!(refused.contains(state.as_str()), "{refused}");
            assert!(
                refused.contains("enroll it again with a new token"),
                "{refused}"
            );
            assert!(refused.contains(d.user.as_str()), "{refused}");
        }
    }
}
