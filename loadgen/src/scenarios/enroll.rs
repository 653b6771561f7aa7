//! `enroll`: N one-time tokens from the admin API, then N devices enrolling at once (at most
//! `concurrency` in flight), each as `ward-agent enroll` does: a new TLS connection that pins
//! the CA by hash, a CSR for a key made on the device, one `Enroll` call.

use std::collections::HashSet;

use super::{Outcome, settle};
use crate::fleet::{Connections, create_tokens, enroll_all, pregenerate};
use crate::procstat::{self, CpuMark};
use crate::target::{Kind, Server};
use crate::{LoadError, progress};

#[derive(Clone, Debug)]
pub struct EnrollArgs {
    pub agents: usize,
    pub concurrency: usize,
}

pub async fn measure(
    server: &mut Server,
    args: &EnrollArgs,
    quick: bool,
) -> Result<Outcome, LoadError> {
    let n = args.agents;
    let (tokens, token_time) = create_tokens(server, n).await?;
    let pending = pregenerate(n).await?;
    progress!("enroll: {n} tokens created in {token_time:?}; enrolling");
    settle(quick).await;
    let pid = server.pid()?;
    let ticks = procstat::clock_ticks();
    let cpu_start = CpuMark::now(pid, ticks)?;
    let outcome = enroll_all(
        &server.url,
        &server.ca_der,
        tokens,
        pending,
        args.concurrency,
        Connections::Fresh,
    )
    .await;
    let cpu_end = CpuMark::now(pid, ticks)?;
    let ok = outcome.devices.len();
    let unique: HashSet<&str> = outcome.devices.iter().map(|d| d.id.as_str()).collect();

    let mut out = Outcome::default();
    let m = &mut out.measured;
    m.push(
        "enroll_rate",
        "enrollments per second",
        "/s",
        ok as f64 / outcome.elapsed.as_secs_f64().max(1e-9),
    );
    m.push(
        "p50_ms",
        "enrollment p50 (connect + Enroll)",
        "ms",
        outcome.latencies.quantile_ms(0.5),
    );
    m.push(
        "p99_ms",
        "enrollment p99",
        "ms",
        outcome.latencies.quantile_ms(0.99),
    );
    m.push(
        "server_cpu_percent",
        "server CPU",
        "% of a core",
        cpu_start.percent_until(&cpu_end),
    );
    m.push(
        "token_rate",
        "tokens created per second (admin API, 32 at once)",
        "/s",
        n as f64 / token_time.as_secs_f64().max(1e-9),
    );
    m.detail("enrolled", ok);
    m.detail("errors", outcome.errors);
    m.detail("concurrency", args.concurrency);
    m.detail("elapsed_s", outcome.elapsed.as_secs_f64());
    if let Some(e) = outcome.first_error {
        m.detail("first_error", e);
    }
    out.counts = vec![("enrolled", ok, n)];
    if server.kind == Kind::Ward {
        out.counts.push(("distinct device ids", unique.len(), n));
    }
    Ok(out)
}
