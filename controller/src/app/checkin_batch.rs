//! Check-ins from many devices, written together: every check-in waiting when a batch may
//! start becomes one job of the store's writer, with one statement for all their device rows
//! (a few hundred a statement), one read of all their unfinished commands and one
//! compare-and-set for the commands handed out; what is rare (a changed inventory, an
//! offline wipe, an enforcement step, a compliance wipe) is written device by device in the
//! same job. A thousand check-ins cost a handful of statements, not two thousand: on SQLite
//! each statement is a round trip to the driver's thread, on PostgreSQL to the server.
//!
//! Each check-in keeps its own outcome: a device that is no longer active is refused while
//! the rest commit; a check-in whose write fails (a compliance wipe that cannot be stored, a
//! device row another replica holds locked past the lane's patience, a row edited into one
//! that cannot be read) makes the batch run again in halves until that check-in is alone, so
//! it fails alone and changes nothing, and its neighbours cost a few batches more, not a job
//! each.

use std::collections::HashMap;
use std::sync::Arc;

use super::AppError;
use super::checkin::{Plan, Written, deliver};
use super::lane::{Failed, Lane, OnFailure, Shape};
use crate::core::{DeviceId, Timestamp};
use crate::store::tx::{CheckInWrite, Tx};
use crate::store::{Priority, Store};

/// The most check-ins in one job: the writer's own batch bound.
const MAX_BATCH: usize = 1000;

/// The check-ins arriving together, one writer job for each batch.
pub(super) type CheckInBatches = Lane<Arc<Plan>, Result<Written, AppError>>;

/// As many batches at once as the writer has lanes to run them side by side (PostgreSQL;
/// SQLite has one).
pub(super) fn start(store: Arc<dyn Store>) -> CheckInBatches {
    let concurrent = store.writer().lanes_for(Priority::Admitted).len();
    Lane::start(
        Shape::new("check-ins", MAX_BATCH, OnFailure::SplitUntilAlone).concurrent(concurrent),
        move |batch: Arc<[Arc<Plan>]>| {
            let store = Arc::clone(&store);
            async move {
                // Admitted already: each check-in was weighed against the lane's own backlog
                // (App::agent_check_in); the writer counts this batch as one job.
                let written = store
                    .write_apart(Priority::Admitted, move |tx| {
                        let batch = Arc::clone(&batch);
                        Box::pin(async move { run(tx, &batch).await })
                    })
                    .await;
                Failed::of_write(written)
            }
        },
    )
}

/// One job for the whole batch; one outcome per check-in, in order.
async fn run(
    tx: &mut dyn Tx,
    plans: &[Arc<Plan>],
) -> Result<Vec<Result<Written, AppError>>, AppError> {
    let writes: Vec<CheckInWrite<'_>> = plans
        .iter()
        .map(|plan| CheckInWrite {
            id: plan.device,
            facts: plan.facts.as_ref(),
            compliance: plan.compliance.as_ref(),
            now: plan.now,
        })
        .collect();
    let records = tx.record_check_ins(&writes).await?;
    let active: Vec<DeviceId> = plans
        .iter()
        .zip(&records)
        .filter(|(_, record)| record.is_some())
        .map(|(plan, _)| plan.device)
        .collect();
    // Read before any compliance wipe below is inserted, which is handed out with them once.
    let mut unfinished = tx.unfinished_commands_of(&active).await?;
    let mut outcomes = Vec::with_capacity(plans.len());
    let mut handed = Vec::new();
    for (plan, record) in plans.iter().zip(records) {
        let Some(record) = record else {
            outcomes.push(Err(plan.refusal(tx).await?));
            continue;
        };
        let wipes = plan.write_posture(tx, &record).await?;
        handed.extend(unfinished.remove(&plan.device).unwrap_or_default());
        handed.extend(wipes.iter().cloned());
        outcomes.push(Ok(Written {
            delivered: Vec::new(),
            wipes,
        }));
    }
    if !handed.is_empty() {
        // Each command is delivered at its device's check-in time and answers its device's
        // check-in (a command read again is kept only while it is the same instruction, for
        // the same device).
        let times: HashMap<DeviceId, Timestamp> =
            plans.iter().map(|plan| (plan.device, plan.now)).collect();
        let index: HashMap<DeviceId, usize> = plans
            .iter()
            .enumerate()
            .map(|(i, plan)| (plan.device, i))
            .collect();
        for (was, command) in deliver(tx, handed, &times).await? {
            if let Some(i) = index.get(&command.device_id)
                && let Some(Ok(written)) = outcomes.get_mut(*i)
            {
                written.delivered.push((was, command));
            }
        }
    }
    Ok(outcomes)
}
