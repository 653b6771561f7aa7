//! `fanout`: with N agents streaming, one bulk action — the offboarding of the user who holds
//! all N devices (one `OffboardUser` call), or a messaging wipe issued to each — and the time
//! from the admin call to the last delivery on the streams and to the last acknowledgement.
//! The admin call returns only after every command is committed, so the durable enqueue is
//! inside these times; so is every acknowledgement's durable write.

use std::time::{Duration, Instant};

use futures::StreamExt;
use ward_certs::receipt::WipeReceiptBody;
use ward_proto::v1::{
    CommandState, IssueCommandRequest, OffboardUserRequest, ReportResultRequest, WipeAction,
    WipeReceipt, WipeScope, issue_command_request,
};

use super::{Outcome, Series, settle};
use crate::fleet::{USER, provision};
use crate::stats::Latencies;
use crate::swarm::{CALL_TIMEOUT, Event, Swarm};
use crate::target::Server;
use crate::{LoadError, progress};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// One `OffboardUser` call for the user who holds every device
    Offboard,
    /// One `IssueCommand` (messaging wipe) per device, 64 at a time
    Wipe,
}

#[derive(Clone, Debug)]
pub struct FanoutArgs {
    pub agents: usize,
    pub action: Action,
    /// Agents connecting for the first time at once.
    pub ramp: usize,
    /// After the acknowledgements, report each wipe's result with a signed receipt.
    pub results: bool,
}

/// How long the whole round may take before the run is declared failed.
const ROUND_DEADLINE: Duration = Duration::from_secs(900);

pub async fn measure(
    server: &mut Server,
    args: &FanoutArgs,
    quick: bool,
) -> Result<Outcome, LoadError> {
    let n = args.agents;
    let fleet = provision(server, n).await?;
    progress!("fanout: {n} devices enrolled; opening their command streams");
    let since = Instant::now();
    let swarm = Swarm::start(&fleet, true, args.ramp);
    swarm.wait_opened(since, ROUND_DEADLINE).await?;
    settle(quick).await;
    progress!("fanout: {n} streams open; {:?}", args.action);
    let mut admin = server.admin().await?;

    let t0 = Instant::now();
    let issued = match args.action {
        Action::Offboard => admin
            .offboard_user(OffboardUserRequest {
                user: USER.into(),
                reason: "ward-loadgen fan-out".into(),
            })
            .await
            .map_err(|s| {
                LoadError::Failed(format!("OffboardUser: {:?}: {}", s.code(), s.message()))
            })?
            .into_inner()
            .devices
            .len(),
        Action::Wipe => {
            let results: Vec<Result<(), tonic::Status>> =
                futures::stream::iter(fleet.devices.iter())
                    .map(|device| {
                        let mut admin = admin.clone();
                        async move {
                            admin
                                .issue_command(IssueCommandRequest {
                                    device_id: device.id.clone(),
                                    action: Some(issue_command_request::Action::Wipe(WipeAction {
                                        scope: WipeScope::Messaging as i32,
                                    })),
                                    reason: "ward-loadgen fan-out".into(),
                                    idempotency_key: format!("loadgen:{}", device.id),
                                    ttl_seconds: 0,
                                })
                                .await
                                .map(|_| ())
                        }
                    })
                    .buffer_unordered(64)
                    .collect()
                    .await;
            let failed = results.iter().filter(|r| r.is_err()).count();
            if let Some(Err(s)) = results.iter().find(|r| r.is_err()) {
                return Err(LoadError::Failed(format!(
                    "{failed} of {n} IssueCommand calls failed; first: {:?}: {}",
                    s.code(),
                    s.message()
                )));
            }
            results.len()
        }
    };
    let enqueued = t0.elapsed();
    progress!("fanout: admin call returned after {enqueued:?}");
    swarm.wait_acks(n, ROUND_DEADLINE).await?;
    progress!("fanout: {n} acknowledgements in");
    let deliveries = swarm.deliveries();
    let acks = swarm.acks();
    let delivery = latencies(&deliveries, t0);
    let ack = latencies(&acks, t0);
    let acks_ok = acks.iter().filter(|e| e.ok).count();

    let mut out = Outcome::default();
    let m = &mut out.measured;
    m.push(
        "enqueue_ms",
        "admin call returned (all committed)",
        "ms",
        ms(enqueued),
    );
    m.push(
        "first_delivery_ms",
        "first delivery",
        "ms",
        delivery.quantile_ms(0.0),
    );
    m.push(
        "delivery_p50_ms",
        "delivery p50",
        "ms",
        delivery.quantile_ms(0.5),
    );
    m.push(
        "delivery_p99_ms",
        "delivery p99",
        "ms",
        delivery.quantile_ms(0.99),
    );
    m.push("last_delivery_ms", "last delivery", "ms", delivery.max_ms());
    m.push("ack_p50_ms", "ack p50", "ms", ack.quantile_ms(0.5));
    m.push("ack_p99_ms", "ack p99", "ms", ack.quantile_ms(0.99));
    m.push("last_ack_ms", "last ack", "ms", ack.max_ms());
    m.push(
        "delivery_rate",
        "deliveries per second (to last)",
        "/s",
        deliveries.len() as f64 / (delivery.max_ms() / 1000.0).max(1e-9),
    );
    m.detail(
        "action",
        serde_json::to_value(args.action).unwrap_or_default(),
    );
    m.detail("commands_issued", issued);
    m.detail("delivered", deliveries.len());
    m.detail("acknowledged_ok", acks_ok);
    m.detail("acknowledge_failed", acks.len() - acks_ok);
    m.detail("stream_errors", swarm.failed_attempts());
    if let Some(e) = swarm.first_error() {
        m.detail("first_error", e);
    }
    if args.results {
        let (ok, elapsed) = report_results(&swarm, &acks).await;
        progress!("fanout: {ok} results reported in {elapsed:?}");
        m.push(
            "results_ms",
            "all results reported (after the acks)",
            "ms",
            ms(elapsed),
        );
        m.detail("results_succeeded", ok);
    }
    out.series = vec![
        Series::new("delivery", delivery.sorted_samples()),
        Series::new("acknowledgement", ack.sorted_samples()),
    ];
    out.counts = vec![
        ("delivered", deliveries.len(), n),
        ("acknowledged", acks_ok, n),
    ];
    swarm.stop().await;
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latencies(events: &[Event], t0: Instant) -> Latencies {
    let mut l = Latencies::keeping_samples();
    for e in events {
        l.record(e.at.saturating_duration_since(t0));
    }
    l
}

/// Each agent reports its wipe as done with a receipt signed by its device key (what
/// `ward-agent` sends after a messaging wipe). Returns how many were accepted as succeeded.
async fn report_results(swarm: &Swarm, acks: &[Event]) -> (usize, Duration) {
    let start = Instant::now();
    let ok = futures::stream::iter(acks.iter().filter(|e| e.ok))
        .map(|event| async move {
            let Some((device, mut client)) = swarm.client(event.agent) else {
                return false;
            };
            let body = WipeReceiptBody {
                command_id: event.command_id.clone(),
                device_id: device.id.clone(),
                completed_at: time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                scope: ward_certs::receipt::WipeScope::Messaging,
                key_destroyed: true,
                files_removed: 0,
                bytes_removed: 0,
                verified_empty: true,
                full_erase: None,
                key_protection: None,
                sanitization: None,
            };
            let Ok(signed) = body.sign(&device.key) else {
                return false;
            };
            let call = client.report_result(ReportResultRequest {
                command_id: event.command_id.clone(),
                succeeded: true,
                failure_reason: String::new(),
                receipt: Some(WipeReceipt {
                    body: signed.body,
                    signature: signed.signature,
                }),
            });
            matches!(
                tokio::time::timeout(CALL_TIMEOUT, call).await,
                Ok(Ok(r)) if r.get_ref().state == CommandState::Succeeded as i32
            )
        })
        .buffer_unordered(256)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    (ok, start.elapsed())
}
