//! The agent killed (SIGKILL) at every step of a wipe, then restarted: after the key's
//! destruction the data is unrecoverable at once, and after the restart every wipe completes,
//! is recorded once and carries a verified receipt.
//!
//! Each step is reached deterministically: the agent binary of the test build has named
//! fault-injection points (agent/Cargo.toml, feature `failpoints`), and `FAILPOINTS=<point>=
//! sleep(…)` freezes it right after the durable write that precedes the point. The test sees
//! that write (ledger, journal, controller state), then kills the process for real.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ward_agent::ledger::{Ledger, Status};
use ward_agent::vault::{WipeJournal, WipeStep};
use ward_e2e::eventually_blocking;
use ward_e2e::process::{AgentFixture, CANARY_FILES, ControllerProcess, json};

const DEADLINE: Duration = Duration::from_secs(60);

/// What a kill at each point leaves behind, as the test can observe it.
#[derive(Clone, Copy, Debug)]
enum Reached {
    /// The controller recorded the acknowledgement; the agent has written nothing yet.
    Acknowledged,
    LedgerStarted,
    Journal(WipeStep),
    /// One of the two messaging files is gone, the other not yet.
    OneFileRemoved,
    LedgerFinished,
    /// The controller accepted the result; the agent has not recorded that it did.
    Reported,
}

const POINTS: &[(&str, Reached, bool)] = &[
    // (fault point, what shows it was reached, key already destroyed)
    ("agent-after-ack", Reached::Acknowledged, false),
    ("agent-after-ledger-started", Reached::LedgerStarted, false),
    (
        "vault-after-journal-started",
        Reached::Journal(WipeStep::Started),
        false,
    ),
    (
        "vault-after-key-destroyed",
        Reached::Journal(WipeStep::KeyDestroyed),
        true,
    ),
    ("vault-after-file-removed", Reached::OneFileRemoved, true),
    (
        "vault-after-files-removed",
        Reached::Journal(WipeStep::FilesRemoved),
        true,
    ),
    ("vault-after-done", Reached::Journal(WipeStep::Done), true),
    ("agent-after-ledger-finished", Reached::LedgerFinished, true),
    ("agent-after-report", Reached::Reported, true),
];

fn command(controller: &ControllerProcess, id: &str) -> Value {
    json(&controller.ctl(&["command", "show", id, "--output", "json"]))
}

fn journal(agent: &AgentFixture) -> Option<WipeJournal> {
    let bytes = std::fs::read(agent.state_dir.join("wipe-journal.json")).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn ledger_status(agent: &AgentFixture, id: &str) -> Option<(Status, bool)> {
    let entry = Ledger::open(&agent.state_dir).unwrap().get(id).unwrap()?;
    Some((entry.status, entry.reported))
}

fn files_left(agent: &AgentFixture) -> usize {
    ["messages.db", "attachments/scan.txt"]
        .iter()
        .filter(|f| agent.messaging_dir.join(f).exists())
        .count()
}

fn reached(controller: &ControllerProcess, agent: &AgentFixture, id: &str, what: Reached) -> bool {
    match what {
        Reached::Acknowledged => {
            command(controller, id)["state"] == "acknowledged" && ledger_status(agent, id).is_none()
        }
        Reached::LedgerStarted => {
            matches!(ledger_status(agent, id), Some((Status::Started, false)))
        }
        Reached::Journal(step) => journal(agent).is_some_and(|j| j.cause == id && j.step == step),
        Reached::OneFileRemoved => files_left(agent) == 1,
        Reached::LedgerFinished => matches!(
            ledger_status(agent, id),
            Some((Status::Finished { .. }, false))
        ),
        Reached::Reported => {
            command(controller, id)["state"] == "succeeded"
                && matches!(ledger_status(agent, id), Some((_, false)))
        }
    }
}

#[test]
fn an_agent_killed_at_every_step_of_a_wipe_completes_it_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let controller = ControllerProcess::start(&tmp.path().join("controller"));
    for (i, &(point, what, key_gone)) in POINTS.iter().enumerate() {
        let agent = AgentFixture::enroll(
            &controller,
            tmp.path(),
            &format!("k{i}"),
            "kim@hospital.org",
        );
        let key = agent.state_dir.join("messaging.key");
        // Frozen at the point for far longer than the test runs; the kill ends it.
        let failpoints = format!("{point}=sleep(600000)");
        let frozen = agent.run(&[("FAILPOINTS", failpoints.as_str())]);
        eventually_blocking("the messaging key to be created", DEADLINE, || {
            key.exists().then_some(())
        });
        let id = json(&controller.ctl(&[
            "device",
            "wipe",
            &agent.device_id,
            "--scope",
            "messaging",
            "--reason",
            "crash test",
            "--output",
            "json",
        ]))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        eventually_blocking(&format!("the agent to reach {point}"), DEADLINE, || {
            reached(&controller, &agent, &id, what).then_some(())
        });
        drop(frozen); // SIGKILL
        assert_eq!(
            !key.exists(),
            key_gone,
            "{point}: the data key is destroyed exactly when the journal says so"
        );

        let _agent = agent.run(&[]);
        let done = eventually_blocking(
            &format!("the wipe to complete after {point}"),
            DEADLINE,
            || {
                let c = command(&controller, &id);
                (c["state"] != "acknowledged"
                    && c["state"] != "delivered"
                    && c["state"] != "queued")
                    .then_some(c)
            },
        );
        assert_eq!(done["state"], "succeeded", "{point}: {done}");
        assert_eq!(done["receipt"]["verified"], true, "{point}: {done}");
        assert_eq!(done["receipt"]["body"]["key_destroyed"], true, "{point}");
        assert!(agent.canary_files().is_empty(), "{point}: canary survived");
        assert!(!key.exists(), "{point}");
        assert_eq!(agent.ledger_entries(), 1, "{point}: recorded once");
        let journal = journal(&agent).unwrap();
        assert_eq!(
            (journal.cause.as_str(), journal.step),
            (id.as_str(), WipeStep::Done)
        );
        assert!(journal.verified_empty, "{point}");
        // The receipt counts every file, including those removed before a kill in the middle
        // of the removal.
        assert_eq!(journal.files_removed, CANARY_FILES, "{point}: {journal:?}");
        assert_eq!(
            done["receipt"]["body"]["files_removed"], CANARY_FILES,
            "{point}"
        );
        eventually_blocking(
            &format!("the agent to record its report after {point}"),
            DEADLINE,
            || {
                matches!(
                    ledger_status(&agent, &id),
                    Some((
                        Status::Finished {
                            succeeded: true,
                            ..
                        },
                        true
                    ))
                )
                .then_some(())
            },
        );
        eprintln!("{point}: killed there; completed after restart, receipt verified");
    }
}
