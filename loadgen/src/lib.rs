//! `ward-loadgen`: simulates N Ward agents — real keys, certificates, mutual TLS and the real
//! `ward.v1` protocol — from one process, against a controller it starts (`wardctl serve`, on
//! SQLite or a fresh PostgreSQL database) and, seconds later in the same run, against the
//! bare-stack baseline (the same services and message shapes over the same tonic + rustls
//! stack, with no store and no logic). Every figure is printed beside the baseline's.
//!
//! The binary only parses arguments ([`cli`]) and calls [`run`].
//!
//! It drives the shipped crates through their public APIs only: no test-only feature
//! (`fuzzing`, `failpoints`, `test-clock`) and not the `ward-e2e` harness, so what it measures
//! is what ships. Nothing may depend on it.

#![forbid(unsafe_code)]

pub mod baseline;
pub mod cli;
pub mod compare;
pub mod fleet;
pub mod pg;
pub mod plot;
pub mod procstat;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod swarm;
pub mod target;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// Prints a progress line on stderr, with the seconds since the program started.
pub fn progress(message: std::fmt::Arguments<'_>) {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("[{:>8.2}s] {message}", start.elapsed().as_secs_f64());
}

/// `progress!("…", args)`: a progress line on stderr.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => { $crate::progress(format_args!($($arg)*)) };
}

use report::{Machine, Measured, Report};
use scenarios::Outcome;
use target::{Kind, Programs, Server};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("setting up the run failed: {0}")]
    Setup(String),
    #[error("the run failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Postgres(#[from] pg::PgError),
    #[error(transparent)]
    Proc(#[from] procstat::ProcError),
}

#[derive(Clone, Debug)]
pub enum Scenario {
    Enroll(scenarios::enroll::EnrollArgs),
    Checkin(scenarios::checkin::CheckinArgs),
    Hold(scenarios::hold::HoldArgs),
    Fanout(scenarios::fanout::FanoutArgs),
    Restart(scenarios::restart::RestartArgs),
    AgentIdle(scenarios::agent_idle::AgentIdleArgs),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Enroll(_) => "enroll",
            Scenario::Checkin(_) => "checkin",
            Scenario::Hold(_) => "hold",
            Scenario::Fanout(_) => "fanout",
            Scenario::Restart(_) => "restart",
            Scenario::AgentIdle(_) => "agent-idle",
        }
    }

    fn agents(&self) -> usize {
        match self {
            Scenario::Enroll(a) => a.agents,
            Scenario::Checkin(a) => a.agents,
            Scenario::Hold(a) => a.agents,
            Scenario::Fanout(a) => a.agents,
            Scenario::Restart(a) => a.agents,
            Scenario::AgentIdle(_) => 1,
        }
    }

    fn settings(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Scenario::Enroll(a) => json!({ "agents": a.agents, "concurrency": a.concurrency }),
            Scenario::Checkin(a) => json!({
                "agents": a.agents,
                "rate": a.rate.map_or(json!("max"), |r| json!(r)),
                "duration_s": a.duration.as_secs_f64(),
            }),
            Scenario::Hold(a) => {
                json!({ "agents": a.agents, "ramp": a.ramp, "idle_window_s": a.idle_window.as_secs_f64() })
            }
            Scenario::Fanout(a) => {
                json!({ "agents": a.agents, "action": a.action, "ramp": a.ramp, "results": a.results })
            }
            Scenario::Restart(a) => json!({ "agents": a.agents, "ramp": a.ramp }),
            Scenario::AgentIdle(a) => {
                json!({ "warmup_s": a.warmup.as_secs_f64(), "window_s": a.window.as_secs_f64() })
            }
        }
    }
}

/// What to run against and how.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub programs: Programs,
    pub ward: bool,
    pub baseline: bool,
    pub quick: bool,
    /// Where `fanout` writes its latency-distribution plot.
    pub plot: Option<PathBuf>,
    /// The soft open-file limit in force (after raising it).
    pub open_files: u64,
}

/// A run's report, and the sanity counts a test checks: (target, what, counted, expected).
#[derive(Debug)]
pub struct RunResult {
    pub report: Report,
    pub counts: Vec<(&'static str, &'static str, usize, usize)>,
}

/// Runs `scenario` against Ward, then the baseline (whichever `options` select).
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunResult, LoadError> {
    let machine = Machine::describe(options.open_files);
    let mut outcomes: Vec<(Kind, Outcome, &'static str)> = Vec::new();
    // The agent's footprint has no baseline: the agent is measured, not the server.
    let with_baseline = options.baseline && !matches!(scenario, Scenario::AgentIdle(_));
    let kinds = [(Kind::Ward, options.ward), (Kind::Baseline, with_baseline)];
    for (kind, _) in kinds.iter().filter(|(_, on)| *on) {
        progress!("{}: starting the {} server", scenario.name(), kind.name());
        let mut server = Server::start(*kind, &options.programs).await?;
        let store = server.store_name();
        progress!(
            "{}: {} agents against the {} server (log: {})",
            scenario.name(),
            scenario.agents(),
            kind.name(),
            server.log_path().display()
        );
        let mut result = measure(scenario, &mut server, options.quick).await;
        if let (Ok(outcome), Some((batches, jobs, commit_ms))) =
            (result.as_mut(), server.writer_batches().await)
        {
            let m = &mut outcome.measured;
            m.detail("store_batches", batches);
            m.detail("store_jobs_per_batch", (jobs * 10.0).round() / 10.0);
            m.detail("store_commit_ms_mean", (commit_ms * 100.0).round() / 100.0);
        }
        server.stop().await;
        outcomes.push((*kind, result?, store));
    }
    let find = |k: Kind| outcomes.iter().find(|(kind, _, _)| *kind == k);
    let ward = find(Kind::Ward);
    let baseline = find(Kind::Baseline);
    if let (Some(path), Scenario::Fanout(_)) = (&options.plot, scenario) {
        draw_fanout(
            path,
            scenario.agents(),
            ward.map(|o| &o.1),
            baseline.map(|o| &o.1),
        )?;
    }
    let details =
        |o: Option<&(Kind, Outcome, &'static str)>| o.map(|(_, o, _)| o.measured.details.clone());
    let measured = |o: Option<&(Kind, Outcome, &'static str)>| -> Option<Measured> {
        o.map(|(_, o, _)| o.measured.clone())
    };
    let (wm, bm) = (measured(ward), measured(baseline));
    let report = Report {
        scenario: scenario.name(),
        store: ward.map_or("none", |o| o.2).to_owned(),
        serve_args: options.programs.serve_args.clone(),
        agents: scenario.agents(),
        quick: options.quick,
        settings: scenario.settings(),
        machine,
        figures: Report::figures(wm.as_ref(), bm.as_ref()),
        ward: details(ward),
        baseline: details(baseline),
    };
    let counts = outcomes
        .iter()
        .flat_map(|(kind, o, _)| {
            o.counts
                .iter()
                .map(move |(what, n, of)| (kind.name(), *what, *n, *of))
        })
        .collect();
    Ok(RunResult { report, counts })
}

async fn measure(
    scenario: &Scenario,
    server: &mut Server,
    quick: bool,
) -> Result<Outcome, LoadError> {
    match scenario {
        Scenario::Enroll(a) => scenarios::enroll::measure(server, a, quick).await,
        Scenario::Checkin(a) => scenarios::checkin::measure(server, a, quick).await,
        Scenario::Hold(a) => scenarios::hold::measure(server, a, quick).await,
        Scenario::Fanout(a) => scenarios::fanout::measure(server, a, quick).await,
        Scenario::Restart(a) => scenarios::restart::measure(server, a, quick).await,
        Scenario::AgentIdle(a) => scenarios::agent_idle::measure(server, a).await,
    }
}

fn draw_fanout(
    path: &std::path::Path,
    agents: usize,
    ward: Option<&Outcome>,
    baseline: Option<&Outcome>,
) -> Result<(), LoadError> {
    let mut lines = Vec::new();
    let mut color = plot::COLORS.iter().copied().cycle();
    for (name, outcome) in [("ward", ward), ("baseline", baseline)] {
        let Some(outcome) = outcome else { continue };
        for series in &outcome.series {
            lines.push(plot::Line {
                label: format!("{name}: {}", series.name),
                series,
                color: color.next().unwrap_or(plot::COLORS[0]),
                dashed: name == "baseline",
            });
        }
    }
    plot::cdf_svg(
        path,
        &format!("Fan-out to {agents} streaming agents: time to delivery and to acknowledgement"),
        &lines,
    )
}
