//! `agent-idle`: the footprint of one real `ward-agent run`, enrolled against the controller,
//! sitting idle (its command stream open, checking in at the controller's interval): its
//! memory and CPU over a window, read from `/proc`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use ward_proto::v1::CreateEnrollmentTokenRequest;

use super::Outcome;
use crate::LoadError;
use crate::fleet::USER;
use crate::procstat::{self, CpuMark};
use crate::target::Server;

#[derive(Clone, Debug)]
pub struct AgentIdleArgs {
    /// The `ward-agent` program.
    pub agent: PathBuf,
    /// How long the agent runs before the window starts (enrollment done, first check-in).
    pub warmup: Duration,
    pub window: Duration,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub async fn measure(server: &mut Server, args: &AgentIdleArgs) -> Result<Outcome, LoadError> {
    let token = server
        .admin()
        .await?
        .create_enrollment_token(CreateEnrollmentTokenRequest {
            user: USER.into(),
            ttl_seconds: 3600,
        })
        .await
        .map_err(|s| LoadError::Failed(format!("creating a token: {}", s.message())))?
        .into_inner();
    let dir = tempfile::Builder::new()
        .prefix("ward-loadgen-agent-")
        .tempdir()
        .map_err(|e| LoadError::Setup(format!("cannot create a temporary directory: {e}")))?;
    let state = dir.path().join("state");
    let state_arg = state.to_string_lossy().into_owned();
    let url = server.url.to_string();
    let missing = |e: std::io::Error| {
        LoadError::Setup(format!(
            "cannot run {}: {e} (build it with `cargo build --release -p ward-agent`, or pass --ward-agent)",
            args.agent.display()
        ))
    };
    // The token goes through the environment, not the command line.
    let enrolled = Command::new(&args.agent)
        .args([
            "enroll",
            "--server",
            &url,
            "--ca-hash",
            &token.ca_hash,
            "--state-dir",
            &state_arg,
        ])
        .env("WARD_ENROLL_TOKEN", &token.token)
        .output()
        .await
        .map_err(missing)?;
    if !enrolled.status.success() {
        return Err(LoadError::Failed(format!(
            "ward-agent enroll failed: {}",
            String::from_utf8_lossy(&enrolled.stderr)
        )));
    }
    let log = std::fs::File::create(dir.path().join("agent.log"))
        .map_err(|e| LoadError::Setup(format!("cannot create the agent log: {e}")))?;
    let mut child = Command::new(&args.agent)
        .args(["run", "--state-dir", &state_arg])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(missing)?;
    let pid = child
        .id()
        .ok_or_else(|| LoadError::Failed("ward-agent run exited at once".into()))?;
    tokio::time::sleep(args.warmup).await;
    if let Ok(Some(status)) = child.try_wait() {
        return Err(LoadError::Failed(format!(
            "ward-agent run exited ({status}): {}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        )));
    }
    let ticks = procstat::clock_ticks();
    let rss_start = procstat::rss_bytes(pid)?;
    let start = CpuMark::now(pid, ticks)?;
    tokio::time::sleep(args.window).await;
    let end = CpuMark::now(pid, ticks)?;
    let rss_end = procstat::rss_bytes(pid)?;
    let peak = procstat::peak_rss_bytes(pid)?;
    let status = Command::new(&args.agent)
        .args(["status", "--state-dir", &state_arg, "--output", "json"])
        .output()
        .await
        .map_err(missing)?;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    let _ = child.kill().await;

    let mut out = Outcome::default();
    let m = &mut out.measured;
    m.push("agent_rss_mib", "ward-agent RSS, idle", "MiB", mib(rss_end));
    m.push(
        "agent_peak_rss_mib",
        "ward-agent peak RSS",
        "MiB",
        mib(peak),
    );
    m.push(
        "agent_cpu_percent",
        "ward-agent CPU, idle",
        "% of a core",
        start.percent_until(&end),
    );
    m.push(
        "agent_cpu_ms",
        "ward-agent CPU time over the window",
        "ms",
        1000.0 * start.cpu_seconds_until(&end),
    );
    m.detail("window_s", args.window.as_secs_f64());
    m.detail(
        "rss_at_window_start_mib",
        (mib(rss_start) * 100.0).round() / 100.0,
    );
    let checked_in = status
        .get("last_checkin")
        .and_then(|v| v.as_str())
        .is_some_and(|s| !s.is_empty());
    m.detail("checked_in", checked_in);
    out.counts = vec![("agent checked in", usize::from(checked_in), 1)];
    Ok(out)
}
