//! Enrollments arriving together, redeemed together: every enrollment waiting when a batch may
//! start becomes one job of the store's writer, with one statement claiming all their tokens
//! and one each recording their devices, certificates and keys (a few hundred rows a
//! statement), and each enrollment's audit entry. Before, each enrollment was a job of four
//! statements, and on PostgreSQL each statement a round trip to the server on the writer's
//! lane, which the next enrollments waited behind.
//!
//! Each enrollment keeps its own outcome: an unknown, used, expired or withdrawn token is
//! refused while the rest commit (why is read after the job, through the read pool); a write that fails (a device id or certificate serial
//! already stored) makes the batch run again in halves until that enrollment is alone, so
//! it fails alone and changes nothing.

use std::sync::Arc;

use super::lane::{Failed, Lane, OnFailure, Shape};
use super::{AppError, audit};
use crate::core::audit::AuditEvent;
use crate::core::{NewDevice, Timestamp, TokenHash, UserEmail};
use crate::store::tx::{TokenClaim, Tx};
use crate::store::{Priority, Store};

/// The most enrollments in one job.
const MAX_BATCH: usize = 500;

/// One enrollment's claim: its token, the device to record (its certificate issued), and the
/// time of the claim, after the certificate was issued (a token that expired or was withdrawn
/// meanwhile is not redeemed with an earlier time).
#[derive(Debug)]
pub(super) struct Claim {
    pub(super) hash: TokenHash,
    pub(super) device: NewDevice,
    pub(super) now: Timestamp,
}

/// What became of a claim: the token's user, its device recorded with its audit entry, or
/// `None` when the token could not be claimed (unknown, used, expired or withdrawn; the
/// caller reads which outside the writer, so that a flood of bad tokens costs the writer's
/// lane no statement of its own).
pub(super) type Claimed = Option<UserEmail>;

/// The enrollments waiting to be redeemed, one writer job for each batch.
pub(super) type Redemptions = Lane<Arc<Claim>, Claimed>;

/// As many batches at once as the writer has lanes for its high-priority jobs (one, on
/// either store: admin calls, wipes and results run there too, in order).
pub(super) fn start(store: Arc<dyn Store>) -> Redemptions {
    let concurrent = store.writer().lanes_for(Priority::High).len();
    Lane::start(
        Shape::new("enrollments", MAX_BATCH, OnFailure::SplitUntilAlone).concurrent(concurrent),
        move |batch: Arc<[Arc<Claim>]>| {
            let store = Arc::clone(&store);
            async move {
                let written = store
                    .write_apart(Priority::High, move |tx| {
                        let batch = Arc::clone(&batch);
                        Box::pin(async move { run(tx, &batch).await })
                    })
                    .await;
                Failed::of_write(written)
            }
        },
    )
}

/// One job for the whole batch; one outcome per claim, in order. The claims and the devices
/// they record commit together with their audit entries, or not at all.
async fn run(tx: &mut dyn Tx, claims: &[Arc<Claim>]) -> Result<Vec<Claimed>, AppError> {
    let writes: Vec<TokenClaim<'_>> = claims
        .iter()
        .map(|claim| TokenClaim {
            hash: &claim.hash,
            device: &claim.device,
            now: claim.now,
        })
        .collect();
    let users = tx.redeem_tokens(&writes).await?;
    for (claim, user) in claims.iter().zip(&users) {
        let Some(user) = user else { continue };
        tx.audit(
            AuditEvent {
                actor: audit::ENROLLMENT.to_owned(),
                action: "device.enroll".into(),
                target: claim.device.id.to_string(),
                details: serde_json::json!({
                    "user": user.as_str(),
                    "token": claim.hash.id(),
                    "certificate_serial": claim.device.certificate.serial,
                }),
            },
            claim.now,
        );
    }
    Ok(users)
}
