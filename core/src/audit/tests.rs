use super::*;

fn event(n: u64) -> AuditEvent {
    AuditEvent {
        actor: "a".into(),
        action: "x".into(),
        target: "t".into(),
        details: json!({ "n": n }),
    }
}

/// A chain that starts with a genesis, `n` entries in all, and its head (signature `[1]`).
fn chain(n: u64) -> (Vec<AuditEntry>, AuditHead) {
    let mut out = vec![AuditEntry::new(
        1,
        Timestamp::from_unix_ms(1),
        &genesis_event("sha256:x", &[7; 16], GenesisOrigin::Init),
        GENESIS,
    )];
    for seq in 2..=n {
        let prev = out.last().map(|e| e.hash.clone()).unwrap_or_default();
        out.push(AuditEntry::new(
            seq,
            Timestamp::from_unix_ms(seq as i64),
            &event(seq),
            &prev,
        ));
    }
    let head = head_over(&out);
    (out, head)
}

fn head_over(entries: &[AuditEntry]) -> AuditHead {
    AuditHead {
        seq: entries.last().map_or(0, |e| e.seq),
        hash: entries.last().map(|e| e.hash.clone()).unwrap_or_default(),
        signature: vec![1],
    }
}

fn tail(entries: &[AuditEntry]) -> Option<Tail> {
    entries.last().map(|e| Tail {
        seq: e.seq,
        hash: e.hash.clone(),
    })
}

fn signed(head: &AuditHead) -> bool {
    head.signature == [1]
}

/// Appends like the store does: plan, insert, re-sign the head.
fn append(entries: &mut Vec<AuditEntry>, head: &mut AuditHead, n: u64) -> Appended {
    let plan = plan_append(
        &event(n),
        Timestamp::from_unix_ms(n as i64),
        head,
        signed(head),
        tail(entries).as_ref(),
    )
    .unwrap();
    entries.extend(plan.entries().cloned());
    *head = head_over(entries);
    plan
}

#[test]
fn an_intact_chain_verifies_and_an_empty_one_never_does() {
    let (entries, head) = chain(5);
    let v = verify(&entries, &head, signed);
    assert!(v.ok, "{v:?}");
    assert_eq!(v.chain.as_deref(), Some(entries[0].hash.as_str()));
    let blank = AuditHead {
        seq: 0,
        hash: String::new(),
        signature: vec![],
    };
    let v = verify(&[], &blank, |_| true);
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(1), "{v:?}");
}

#[test]
fn edits_deletions_reordering_and_truncation_are_found() {
    let (entries, head) = chain(5);
    let mut edited = entries.clone();
    edited[2].details = "{\"n\":99}".into();
    assert_eq!(verify(&edited, &head, signed).first_bad_seq, Some(3));

    let mut deleted = entries.clone();
    deleted.remove(1);
    assert_eq!(verify(&deleted, &head, signed).first_bad_seq, Some(2));

    let mut reordered = entries.clone();
    reordered.swap(1, 2);
    assert_eq!(verify(&reordered, &head, signed).first_bad_seq, Some(2));

    let truncated = entries[..3].to_vec();
    assert_eq!(verify(&truncated, &head, signed).first_bad_seq, Some(4));

    let v = verify(&entries, &head, |_| false);
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, Some(6), "{v:?}");
}

#[test]
fn a_genesis_starts_only_an_empty_chain() {
    let blank = AuditHead {
        seq: 0,
        hash: String::new(),
        signature: vec![],
    };
    let genesis = genesis_event("sha256:x", &[1; 16], GenesisOrigin::FirstStart);
    let plan = plan_append(&genesis, Timestamp::from_unix_ms(1), &blank, false, None).unwrap();
    assert_eq!((plan.entry.seq, plan.chain_break.is_none()), (1, true));
    let (entries, head) = chain(2);
    assert_eq!(
        plan_append(
            &genesis,
            Timestamp::from_unix_ms(1),
            &head,
            true,
            tail(&entries).as_ref()
        ),
        Err(AppendError::AlreadyStarted)
    );
}

#[test]
fn appending_to_an_emptied_log_records_the_reset() {
    let mut entries = Vec::new();
    let mut head = AuditHead {
        seq: 0,
        hash: String::new(),
        signature: vec![],
    };
    let plan = append(&mut entries, &mut head, 9);
    let (found, entry) = plan.chain_break.unwrap();
    assert_eq!((found.first_bad_seq, entry.seq, plan.entry.seq), (1, 1, 2));
    let v = verify(&entries, &head, signed);
    assert_eq!(v.first_bad_seq, Some(1), "{v:?}");
    assert_eq!(v.problems.len(), 1, "{v:?}");
}

#[test]
fn a_rewritten_head_is_recorded_and_appends_continue_as_a_verifiable_segment() {
    let (mut entries, mut head) = chain(6);
    // Moved back to entry 2 without the key: the old code's next append collided with entry 3.
    head.seq = 2;
    head.hash = entries[1].hash.clone();
    head.signature = vec![9];
    let plan = append(&mut entries, &mut head, 100);
    let (found, entry) = plan.chain_break.unwrap();
    assert_eq!((found.first_bad_seq, entry.seq, plan.entry.seq), (7, 7, 8));
    assert!(found.problem.contains("not signed"), "{found:?}");
    for n in 101..105 {
        assert!(append(&mut entries, &mut head, n).chain_break.is_none());
    }
    let v = verify(&entries, &head, signed);
    assert_eq!(v.first_bad_seq, Some(7), "{v:?}");
    assert_eq!(v.problems.len(), 1, "only the recorded break: {v:?}");
    assert_eq!(entries.len(), 12);
}

#[test]
fn a_log_cut_below_its_signed_head_keeps_the_gap_visible() {
    let (mut entries, mut head) = chain(8);
    entries.truncate(5);
    let plan = append(&mut entries, &mut head, 100);
    let (found, entry) = plan.chain_break.unwrap();
    assert_eq!((found.first_bad_seq, entry.seq), (6, 9));
    let v = verify(&entries, &head, signed);
    assert_eq!(v.first_bad_seq, Some(6), "{v:?}");
}

#[test]
fn entries_added_behind_the_controllers_back_are_recorded() {
    let (mut entries, mut head) = chain(4);
    let forged = AuditEntry::new(5, Timestamp::from_unix_ms(5), &event(5), &entries[3].hash);
    entries.push(forged);
    let plan = append(&mut entries, &mut head, 100);
    assert_eq!(plan.chain_break.unwrap().0.first_bad_seq, 5);
}

fn checkpoint(entries: &[AuditEntry], seq: u64) -> Checkpoint {
    let e = &entries[usize::try_from(seq - 1).unwrap()];
    Checkpoint::sign(
        &entries[0].hash,
        e.seq,
        &e.hash,
        Timestamp::from_unix_ms(1000 + seq as i64),
        "sha256:x",
        |_: &[u8]| Ok::<_, ()>(vec![1; 64]),
    )
    .unwrap()
}

fn checkpoint_signed(c: &Checkpoint) -> bool {
    c.signature == vec![1; 64]
}

#[test]
fn checkpoints_find_a_rollback_to_an_older_signed_head() {
    let (entries, _) = chain(12);
    let cps = vec![
        checkpoint(&entries, 4),
        checkpoint(&entries, 8),
        checkpoint(&entries, 12),
    ];
    let (all, head) = (entries.clone(), head_over(&entries));
    let v = verify_with_checkpoints(&all, &head, signed, &cps, checkpoint_signed);
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checkpoints, 3);

    // Back to entry 6 with the head signed then (kept in a backup): the chain alone is fine.
    let old = entries[..6].to_vec();
    let old_head = head_over(&old);
    assert!(verify(&old, &old_head, signed).ok);
    let v = verify_with_checkpoints(&old, &old_head, signed, &cps, checkpoint_signed);
    assert_eq!(v.first_bad_seq, Some(5), "{v:?}");
    assert!(v.problem.unwrap().contains("checkpoint"));

    // And after more appends on the old state, entries 7… differ from the checkpoints.
    let (mut rolled, mut head) = (old, old_head);
    for n in 200..210 {
        append(&mut rolled, &mut head, n);
    }
    let v = verify_with_checkpoints(&rolled, &head, signed, &cps, checkpoint_signed);
    assert_eq!(v.first_bad_seq, Some(5), "{v:?}");

    // A reset log is not the chain the checkpoints were signed in.
    let (other, other_head) = {
        let mut fresh = Vec::new();
        let mut h = AuditHead {
            seq: 0,
            hash: String::new(),
            signature: vec![],
        };
        let genesis = genesis_event("sha256:x", &[8; 16], GenesisOrigin::Init);
        let plan = plan_append(&genesis, Timestamp::from_unix_ms(1), &h, false, None).unwrap();
        fresh.push(plan.entry);
        h = head_over(&fresh);
        (fresh, h)
    };
    let v = verify_with_checkpoints(&other, &other_head, signed, &cps, checkpoint_signed);
    assert_eq!(v.first_bad_seq, Some(1), "{v:?}");

    // A checkpoint not signed by the controller is a problem of its own.
    let mut forged = checkpoint(&entries, 12);
    forged.seq = 20;
    forged.signature = vec![2; 64];
    let v = verify_with_checkpoints(
        &all,
        &head_over(&entries),
        signed,
        &[forged],
        checkpoint_signed,
    );
    assert!(!v.ok);
    assert_eq!(v.first_bad_seq, None);
    assert!(v.problem.unwrap().contains("signature"));
}
