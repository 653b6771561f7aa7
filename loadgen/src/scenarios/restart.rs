//! `restart`: with N agents streaming, the server is killed (SIGKILL) and started again on the
//! same port and data; the time until every agent has its stream back, the server's peak CPU
//! meanwhile, and how many connection attempts the agents' jittered backoff made.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Outcome, settle};
use crate::fleet::provision;
use crate::procstat::{self, CpuMark};
use crate::swarm::Swarm;
use crate::target::Server;
use crate::{LoadError, progress};

#[derive(Clone, Debug)]
pub struct RestartArgs {
    pub agents: usize,
    pub ramp: usize,
}

const DEADLINE: Duration = Duration::from_secs(900);
/// CPU is sampled over windows this long (ticks are 10 ms, so shorter windows are coarse).
const SAMPLE: Duration = Duration::from_millis(250);

pub async fn measure(
    server: &mut Server,
    args: &RestartArgs,
    quick: bool,
) -> Result<Outcome, LoadError> {
    let n = args.agents;
    let fleet = provision(server, n).await?;
    progress!("restart: {n} devices enrolled; opening their command streams");
    let since = Instant::now();
    let swarm = Swarm::start(&fleet, false, args.ramp);
    swarm.wait_opened(since, DEADLINE).await?;
    settle(quick).await;
    let attempts_before = swarm.attempts();
    let failed_before = swarm.failed_attempts();

    progress!("restart: {n} streams open; killing the server");
    let killed = Instant::now();
    server.kill().await?;
    server.restart().await?;
    let serving = killed.elapsed();
    progress!("restart: serving again after {serving:?}");
    let pid = server.pid()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let sampler = tokio::spawn(sample_cpu(pid, stop_rx));
    let last = swarm.wait_opened(killed, DEADLINE).await;
    let _ = stop_tx.send(true);
    let (peak, mean) = sampler.await.unwrap_or((0.0, 0.0));
    let last = last?;

    let attempts = swarm.attempts() - attempts_before;
    let failed = swarm.failed_attempts() - failed_before;
    let mut out = Outcome::default();
    let m = &mut out.measured;
    m.push(
        "all_back_s",
        "all streams back (from the kill)",
        "s",
        last.saturating_duration_since(killed).as_secs_f64(),
    );
    m.push(
        "serving_s",
        "server serving again (from the kill)",
        "s",
        serving.as_secs_f64(),
    );
    m.push(
        "peak_cpu_percent",
        "server peak CPU while agents return",
        "% of a core",
        peak,
    );
    m.push(
        "mean_cpu_percent",
        "server mean CPU while agents return",
        "% of a core",
        mean,
    );
    m.push(
        "attempts_per_agent",
        "reconnect attempts per agent",
        "",
        attempts as f64 / n.max(1) as f64,
    );
    m.detail("reconnect_attempts", attempts);
    m.detail("failed_attempts", failed);
    m.detail("streaming_at_end", swarm.streaming());
    if let Some(e) = swarm.first_error() {
        m.detail("first_error", e);
    }
    let (back, _) = swarm.opened_since(killed);
    out.counts = vec![("reconnected", back, n)];
    swarm.stop().await;
    Ok(out)
}

/// Samples the server's CPU until told to stop; returns (peak, mean) in % of a core.
async fn sample_cpu(pid: u32, mut stop: watch::Receiver<bool>) -> (f64, f64) {
    let ticks = procstat::clock_ticks();
    let Ok(first) = CpuMark::now(pid, ticks) else {
        return (0.0, 0.0);
    };
    let mut previous = first;
    let mut peak: f64 = 0.0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(SAMPLE) => {}
            _ = stop.changed() => break,
        }
        let Ok(now) = CpuMark::now(pid, ticks) else {
            break;
        };
        peak = peak.max(previous.percent_until(&now));
        previous = now;
    }
    let mean = CpuMark::now(pid, ticks)
        .map(|end| first.percent_until(&end))
        .unwrap_or(0.0);
    (peak.max(mean), mean)
}
