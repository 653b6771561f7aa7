use proptest::prelude::*;

use super::*;

fn command(deadline: Option<Timestamp>) -> Command {
    Command {
        id: CommandId::new_random(),
        device_id: DeviceId::new_random(),
        kind: CommandKind::Wipe {
            scope: WipeScope::Messaging,
        },
        state: CommandState::Queued,
        reason: "lost".into(),
        failure_reason: None,
        idempotency_key: "k".into(),
        created_by: "admin".into(),
        created_at: Timestamp::from_unix_ms(0),
        deadline,
        delivered_at: None,
        acknowledged_at: None,
        finished_at: None,
        deliveries: 0,
        receipt: None,
        approved_by: None,
        revoke_after: false,
    }
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        "[a-z]{1,8}".prop_map(|by| Event::Approved { by }),
        Just(Event::Delivered),
        Just(Event::Acknowledged),
        Just(Event::Succeeded),
        "[a-z]{1,8}".prop_map(|reason| Event::Failed { reason }),
        Just(Event::Cancelled),
        Just(Event::Expired),
        Just(Event::Superseded),
    ]
}

/// The allowed edges, written out independently of `apply`.
fn allowed(from: CommandState, to: CommandState) -> bool {
    use CommandState::*;
    from == to
        || matches!(
            (from, to),
            (AwaitingApproval, Queued | Cancelled)
                | (Queued, Delivered)
                | (Queued | Delivered, Acknowledged)
                | (Acknowledged, Succeeded | Failed)
                | (Queued | Delivered, Cancelled)
                | (Queued, Expired)
                | (Queued | Delivered, Superseded)
        )
}

proptest! {
    #[test]
    fn any_event_sequence_follows_only_legal_edges(
        events in proptest::collection::vec(event(), 0..20),
        with_deadline in any::<bool>(),
        awaiting in any::<bool>(),
    ) {
        let mut cmd = command(with_deadline.then(|| Timestamp::from_unix_ms(5)));
        if awaiting {
            cmd.state = CommandState::AwaitingApproval;
        }
        for (i, e) in events.iter().enumerate() {
            let now = Timestamp::from_unix_ms(i as i64);
            if let Ok(next) = cmd.apply(e, now) {
                prop_assert!(allowed(cmd.state, next.state), "{:?} -> {:?} on {:?}", cmd.state, next.state, e);
                prop_assert!(!cmd.state.is_terminal() || next.state == cmd.state);
                // A compare-and-set compares the version: a change it would not see is lost.
                prop_assert!(
                    next.version() != cmd.version() || next == cmd,
                    "{:?} on {:?} changed the command but not its version", e, cmd.state
                );
                if next.state == CommandState::Expired {
                    prop_assert!(cmd.deadline.is_some_and(|d| now >= d));
                }
                cmd = next;
            }
        }
    }

    #[test]
    fn terminal_states_never_change(events in proptest::collection::vec(event(), 1..10)) {
        for terminal in [CommandState::Succeeded, CommandState::Failed, CommandState::Cancelled, CommandState::Expired, CommandState::Superseded] {
            let mut cmd = command(Some(Timestamp::from_unix_ms(0)));
            cmd.state = terminal;
            for e in &events {
                if let Ok(next) = cmd.apply(e, Timestamp::from_unix_ms(100)) {
                    prop_assert_eq!(next.state, terminal);
                }
            }
        }
    }
}

#[test]
fn cancel_after_acknowledgement_is_refused() {
    let now = Timestamp::from_unix_ms(1);
    let acked = command(None).apply(&Event::Acknowledged, now).unwrap();
    assert!(matches!(
        acked.apply(&Event::Cancelled, now),
        Err(TransitionError::Illegal { .. })
    ));
}

/// A lock: a command that may carry a deadline.
fn lock(deadline: Option<Timestamp>) -> Command {
    Command {
        kind: CommandKind::Lock {
            message: String::new(),
        },
        ..command(deadline)
    }
}

#[test]
fn only_commands_with_a_passed_deadline_expire() {
    let now = Timestamp::from_unix_ms(10);
    assert_eq!(
        lock(None).apply(&Event::Expired, now),
        Err(TransitionError::NoDeadline)
    );
    let later = lock(Some(Timestamp::from_unix_ms(20)));
    assert_eq!(
        later.apply(&Event::Expired, now),
        Err(TransitionError::NotYetDue)
    );
    let due = lock(Some(Timestamp::from_unix_ms(10)));
    assert_eq!(
        due.apply(&Event::Expired, now).unwrap().state,
        CommandState::Expired
    );
}

#[test]
fn a_wipe_never_expires_even_with_a_deadline() {
    let now = Timestamp::from_unix_ms(10);
    let wipe = command(Some(Timestamp::from_unix_ms(1)));
    assert_eq!(
        wipe.apply(&Event::Expired, now),
        Err(TransitionError::WipesNeverExpire)
    );
    let mut lock = command(Some(Timestamp::from_unix_ms(1)));
    lock.kind = CommandKind::Lock {
        message: String::new(),
    };
    assert_eq!(
        lock.apply(&Event::Expired, now).unwrap().state,
        CommandState::Expired
    );
}

#[test]
fn only_a_command_the_device_has_not_started_is_superseded() {
    let now = Timestamp::from_unix_ms(1);
    let queued = command(None);
    let done = queued.apply(&Event::Superseded, now).unwrap();
    assert_eq!(
        (done.state, done.finished_at, done.state.is_terminal()),
        (CommandState::Superseded, Some(now), true)
    );
    let delivered = queued.apply(&Event::Delivered, now).unwrap();
    assert_eq!(
        delivered.apply(&Event::Superseded, now).unwrap().state,
        CommandState::Superseded
    );
    let acked = delivered.apply(&Event::Acknowledged, now).unwrap();
    assert!(acked.apply(&Event::Superseded, now).is_err());
    assert_eq!("superseded".parse(), Ok(CommandState::Superseded));
}

#[test]
fn redelivery_counts_but_keeps_state() {
    let now = Timestamp::from_unix_ms(1);
    let once = command(None).apply(&Event::Delivered, now).unwrap();
    let twice = once.apply(&Event::Delivered, now).unwrap();
    assert_eq!(
        (twice.state, twice.deliveries),
        (CommandState::Delivered, 2)
    );
}

#[test]
fn results_need_an_acknowledgement_first() {
    let now = Timestamp::from_unix_ms(1);
    let delivered = command(None).apply(&Event::Delivered, now).unwrap();
    assert!(delivered.apply(&Event::Succeeded, now).is_err());
    let failed = delivered
        .apply(&Event::Acknowledged, now)
        .unwrap()
        .apply(
            &Event::Failed {
                reason: "no session".into(),
            },
            now,
        )
        .unwrap();
    assert_eq!(failed.failure_reason.as_deref(), Some("no session"));
}

#[test]
fn a_queued_command_past_its_deadline_is_not_delivered_but_expires() {
    let mut lock = command(Some(Timestamp::from_unix_ms(1_000)));
    lock.kind = CommandKind::Lock {
        message: String::new(),
    };
    let before = Timestamp::from_unix_ms(999);
    let after = Timestamp::from_unix_ms(1_000);
    assert_eq!(
        lock.apply(&Event::Delivered, before).unwrap().state,
        CommandState::Delivered
    );
    assert_eq!(
        lock.apply(&Event::Delivered, after),
        Err(TransitionError::PastDeadline)
    );
    assert_eq!(
        lock.apply(&Event::Expired, after).unwrap().state,
        CommandState::Expired
    );
    // Taken in time, it is the device's: a delivered command does not expire.
    let delivered = lock.apply(&Event::Delivered, before).unwrap();
    assert!(delivered.apply(&Event::Expired, after).is_err());
}

/// A deadline on a wipe (none is ever set; a database edit could) never keeps it from its
/// device: it is delivered, and it never expires.
#[test]
fn a_wipe_with_a_deadline_is_still_delivered_and_never_expires() {
    let wipe = command(Some(Timestamp::from_unix_ms(1_000)));
    let after = Timestamp::from_unix_ms(5_000);
    assert_eq!(
        wipe.apply(&Event::Delivered, after).unwrap().state,
        CommandState::Delivered
    );
    assert_eq!(
        wipe.apply(&Event::Expired, after),
        Err(TransitionError::WipesNeverExpire)
    );
}
