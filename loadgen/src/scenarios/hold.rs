//! `hold`: ramp to N agents each holding its command stream; the server's memory before and
//! after (per agent), and its CPU while all of them sit idle.

use std::time::{Duration, Instant};

use super::{Outcome, settle};
use crate::fleet::provision;
use crate::procstat::{self, CpuMark};
use crate::swarm::Swarm;
use crate::target::Server;
use crate::{LoadError, progress};

#[derive(Clone, Debug)]
pub struct HoldArgs {
    pub agents: usize,
    /// Agents connecting for the first time at once.
    pub ramp: usize,
    /// How long to measure idle CPU with everyone connected.
    pub idle_window: Duration,
}

const RAMP_DEADLINE: Duration = Duration::from_secs(900);

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub async fn measure(
    server: &mut Server,
    args: &HoldArgs,
    quick: bool,
) -> Result<Outcome, LoadError> {
    let n = args.agents;
    let fleet = provision(server, n).await?;
    progress!("hold: {n} devices enrolled; opening their command streams");
    settle(quick).await;
    let pid = server.pid()?;
    let ticks = procstat::clock_ticks();
    let rss_before = procstat::rss_bytes(pid)?;
    let own_before = procstat::rss_bytes(std::process::id())?;

    let since = Instant::now();
    let swarm = Swarm::start(&fleet, false, args.ramp);
    let last = swarm.wait_opened(since, RAMP_DEADLINE).await?;
    let ramp = last.saturating_duration_since(since);
    progress!(
        "hold: {n} streams open after {ramp:?}; measuring idle CPU over {:?}",
        args.idle_window
    );
    settle(quick).await;
    let rss_after = procstat::rss_bytes(pid)?;
    let own_after = procstat::rss_bytes(std::process::id())?;

    let idle_start = CpuMark::now(pid, ticks)?;
    tokio::time::sleep(args.idle_window).await;
    let idle_end = CpuMark::now(pid, ticks)?;
    let rss_end = procstat::rss_bytes(pid)?;
    let streaming = swarm.streaming();

    let mut out = Outcome::default();
    let m = &mut out.measured;
    let per_agent_kib = (rss_after.saturating_sub(rss_before)) as f64 / 1024.0 / n.max(1) as f64;
    m.push("ramp_s", "all streams open (ramp)", "s", ramp.as_secs_f64());
    m.push(
        "connect_rate",
        "stream opens per second",
        "/s",
        n as f64 / ramp.as_secs_f64().max(1e-9),
    );
    m.push(
        "rss_before_mib",
        "server RSS, no agents",
        "MiB",
        mib(rss_before),
    );
    m.push(
        "rss_after_mib",
        "server RSS, N streaming",
        "MiB",
        mib(rss_after),
    );
    m.push(
        "rss_per_agent_kib",
        "server memory per agent",
        "KiB",
        per_agent_kib,
    );
    m.push(
        "idle_cpu_percent",
        "server CPU, all idle",
        "% of a core",
        idle_start.percent_until(&idle_end),
    );
    m.detail("idle_window_s", args.idle_window.as_secs_f64());
    m.detail(
        "rss_after_idle_window_mib",
        (mib(rss_end) * 10.0).round() / 10.0,
    );
    m.detail(
        "peak_rss_mib",
        (mib(procstat::peak_rss_bytes(pid)?) * 10.0).round() / 10.0,
    );
    m.detail(
        "loadgen_rss_per_agent_kib",
        ((own_after.saturating_sub(own_before)) as f64 / 1024.0 / n.max(1) as f64).round(),
    );
    m.detail("streaming_at_end", streaming);
    m.detail("connect_attempts", swarm.attempts());
    m.detail("failed_attempts", swarm.failed_attempts());
    if let Some(e) = swarm.first_error() {
        m.detail("first_error", e);
    }
    out.counts = vec![("streaming", streaming, n)];
    swarm.stop().await;
    Ok(out)
}
