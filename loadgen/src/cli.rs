//! Command-line arguments of `ward-loadgen`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::scenarios::agent_idle::AgentIdleArgs;
use crate::scenarios::checkin::CheckinArgs;
use crate::scenarios::enroll::EnrollArgs;
use crate::scenarios::fanout::{Action, FanoutArgs};
use crate::scenarios::hold::HoldArgs;
use crate::scenarios::restart::RestartArgs;
use crate::target::Programs;
use crate::{RunOptions, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "ward-loadgen",
    version,
    about = "Simulate many Ward agents (real keys, mutual TLS, the ward.v1 protocol) against a controller this program starts, and against the bare-stack baseline in the same run",
    after_help = "Each scenario runs against `wardctl serve` (a fresh SQLite data directory, or a fresh database on --postgres), then against the baseline; figures are printed side by side with their ratio.\nExit codes: 0 ok, 1 failed (or a count came out wrong), 2 bad usage."
)]
pub struct Cli {
    /// Output: a table for people, or one JSON object with every figure
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Output,
    /// Tiny run (20 agents, about a second per phase) that only proves the tool works
    #[arg(long, global = true)]
    quick: bool,
    /// Run against the baseline only
    #[arg(long, global = true, conflicts_with = "no_baseline")]
    baseline: bool,
    /// Run against Ward only
    #[arg(long, global = true)]
    no_baseline: bool,
    /// A PostgreSQL server (postgres://USER@HOST:PORT/DB) on which to create a fresh database
    /// for the controller, dropped afterwards [default: the controller's SQLite]
    #[arg(long, global = true, value_name = "URL")]
    postgres: Option<String>,
    /// The `wardctl` program [default: beside this program]
    #[arg(long, global = true, value_name = "PATH")]
    wardctl: Option<PathBuf>,
    /// WARD_LOG for the controller; its log goes to a file in the run's temporary directory
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    controller_log: String,
    /// A flag for `wardctl serve`, after the ones this program passes (repeat it for more;
    /// e.g. `--serve-arg=--write-lanes=1`); recorded in the JSON as `serve_args`
    #[arg(
        long = "serve-arg",
        global = true,
        value_name = "FLAG",
        allow_hyphen_values = true
    )]
    serve_args: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N devices enroll at once: enrollments/s, p50/p99
    Enroll(EnrollCli),
    /// N agents check in at an open-loop rate: achieved rate, p50/p99, server CPU
    Checkin(CheckinCli),
    /// Ramp to N agents holding their command stream: server memory per agent, idle CPU
    Hold(HoldCli),
    /// One bulk action to N streaming agents: time to the last delivery and the last ack
    Fanout(FanoutCli),
    /// Kill and restart the server under N streaming agents: time until all are back
    Restart(RestartCli),
    /// One real `ward-agent run`, enrolled, idle: its RSS and CPU over a window
    AgentIdle(AgentIdleCli),
    /// Print BENCHMARKS.md's before/after table from two directories of JSON results
    Compare(CompareCli),
    /// (internal) Serve the bare-stack baseline from DIR's PKI
    #[command(hide = true)]
    BaselineServer(BaselineCli),
}

#[derive(Debug, Args)]
struct CompareCli {
    /// Results of the code before the change (`--output json` files, as bench.sh names them)
    before: PathBuf,
    /// Results of the code after it, each with its baseline of the same run
    after: PathBuf,
}

#[derive(Debug, Args)]
struct EnrollCli {
    /// Devices [default: 2000; 20 with --quick]
    #[arg(long)]
    agents: Option<usize>,
    /// Enrollments in flight at once
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(Debug, Args)]
struct CheckinCli {
    /// Agents, each with its own connection [default: 1000; 20 with --quick]
    #[arg(long)]
    agents: Option<usize>,
    /// Check-ins per second, all agents together, or `max` (each agent back to back)
    /// [default: 5000; 200 with --quick]
    #[arg(long, value_parser = parse_rate)]
    rate: Option<Rate>,
    /// How long to check in [default: 10s; 1s with --quick]
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Agents connecting at once
    #[arg(long, default_value_t = 256)]
    ramp: usize,
}

#[derive(Debug, Args)]
struct HoldCli {
    /// Agents [default: 10000; 20 with --quick]
    #[arg(long)]
    agents: Option<usize>,
    /// Agents connecting for the first time at once
    #[arg(long, default_value_t = 256)]
    ramp: usize,
    /// How long to measure idle CPU [default: 30s; 1s with --quick]
    #[arg(long, value_parser = parse_duration)]
    idle_window: Option<Duration>,
}

#[derive(Debug, Args)]
struct FanoutCli {
    /// Agents [default: 10000; 20 with --quick]
    #[arg(long)]
    agents: Option<usize>,
    /// The bulk action
    #[arg(long, value_enum, default_value = "offboard")]
    action: Action,
    /// Agents connecting for the first time at once
    #[arg(long, default_value_t = 256)]
    ramp: usize,
    /// Do not report results (with signed receipts) after the acknowledgements
    #[arg(long)]
    no_results: bool,
    /// Write the latency-distribution plot (SVG) here
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RestartCli {
    /// Agents [default: 10000; 20 with --quick]
    #[arg(long)]
    agents: Option<usize>,
    /// Agents connecting for the first time at once
    #[arg(long, default_value_t = 256)]
    ramp: usize,
}

#[derive(Debug, Args)]
struct AgentIdleCli {
    /// The `ward-agent` program [default: beside this program]
    #[arg(long, value_name = "PATH")]
    ward_agent: Option<PathBuf>,
    /// How long the agent runs before the window [default: 10s; 2s with --quick]
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// How long to measure [default: 60s; 2s with --quick]
    #[arg(long, value_parser = parse_duration)]
    window: Option<Duration>,
}

#[derive(Debug, Args)]
struct BaselineCli {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Clone, Copy, Debug)]
enum Rate {
    Max,
    PerSecond(f64),
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::PerSecond(r)),
        _ => Err(format!(
            "{text:?} is not a rate: give check-ins per second (e.g. 5000) or `max`"
        )),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); use e.g. 10s or 2m"))
}

fn agents(given: Option<usize>, quick: bool, full: usize) -> Result<usize, String> {
    match given.unwrap_or(if quick { 20 } else { full }) {
        0 => Err("--agents must be at least 1".into()),
        n => Ok(n),
    }
}

fn scenario(command: Command, quick: bool) -> Result<Scenario, String> {
    let pick = |given: Option<Duration>, quick_value: u64, full: u64| {
        given.unwrap_or(Duration::from_secs(if quick { quick_value } else { full }))
    };
    Ok(match command {
        Command::Enroll(a) => Scenario::Enroll(EnrollArgs {
            agents: agents(a.agents, quick, 2000)?,
            concurrency: a.concurrency.max(1),
        }),
        Command::Checkin(a) => Scenario::Checkin(CheckinArgs {
            agents: agents(a.agents, quick, 1000)?,
            rate: match a.rate {
                Some(Rate::Max) => None,
                Some(Rate::PerSecond(r)) => Some(r),
                None => Some(if quick { 200.0 } else { 5000.0 }),
            },
            duration: pick(a.duration, 1, 10),
            ramp: a.ramp,
        }),
        Command::Hold(a) => Scenario::Hold(HoldArgs {
            agents: agents(a.agents, quick, 10_000)?,
            ramp: a.ramp,
            idle_window: pick(a.idle_window, 1, 30),
        }),
        Command::Fanout(a) => Scenario::Fanout(FanoutArgs {
            agents: agents(a.agents, quick, 10_000)?,
            action: a.action,
            ramp: a.ramp,
            results: !a.no_results,
        }),
        Command::Restart(a) => Scenario::Restart(RestartArgs {
            agents: agents(a.agents, quick, 10_000)?,
            ramp: a.ramp,
        }),
        Command::AgentIdle(a) => Scenario::AgentIdle(AgentIdleArgs {
            agent: a.ward_agent.unwrap_or_else(|| beside("ward-agent")),
            warmup: pick(a.warmup, 2, 10),
            window: pick(a.window, 2, 60),
        }),
        Command::BaselineServer(_) | Command::Compare(_) => {
            return Err("not a scenario".into());
        }
    })
}

/// A program beside this one (the workspace builds them into the same directory).
fn beside(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Entry point of the `ward-loadgen` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Command::Compare(args) = &cli.command {
        for dir in [&args.before, &args.after] {
            if !dir.is_dir() {
                eprintln!(
                    "error: {} is not a directory of results (loadgen/bench.sh writes them)",
                    dir.display()
                );
                return ExitCode::from(2);
            }
        }
        print!("{}", crate::compare::table(&args.before, &args.after));
        return ExitCode::SUCCESS;
    }
    // Thousands of connections need thousands of descriptors: the soft limit goes up to the
    // hard one, here and (inherited) in the servers this program starts.
    let open_files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Command::BaselineServer(args) = &cli.command {
        return match runtime.block_on(crate::baseline::serve(&args.dir, args.listen)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        };
    }
    let output = cli.output;
    let plot = match &cli.command {
        Command::Fanout(a) => a.plot.clone(),
        _ => None,
    };
    let options = RunOptions {
        programs: Programs {
            wardctl: cli.wardctl.clone().unwrap_or_else(|| beside("wardctl")),
            loadgen: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ward-loadgen")),
            postgres: cli.postgres.clone(),
            controller_log: cli.controller_log.clone(),
            serve_args: cli.serve_args.clone(),
        },
        ward: !cli.baseline,
        baseline: !cli.no_baseline,
        quick: cli.quick,
        plot,
        open_files,
    };
    let scenario = match scenario(cli.command, cli.quick) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Interrupted: dropping the run kills the servers it started.
    let interruptible = async {
        tokio::select! {
            result = crate::run(&scenario, &options) => result,
            _ = tokio::signal::ctrl_c() => Err(crate::LoadError::Failed("interrupted".into())),
            () = terminated() => Err(crate::LoadError::Failed("terminated".into())),
        }
    };
    let result = match runtime.block_on(interruptible) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match output {
        Output::Json => println!("{}", result.report.to_json()),
        Output::Table => print!("{}", result.report.to_table()),
    }
    let wrong: Vec<String> = result
        .counts
        .iter()
        .filter(|(_, _, n, of)| n != of)
        .map(|(target, what, n, of)| format!("{target}: {what} {n} of {of}"))
        .collect();
    if wrong.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: counts came out wrong: {}", wrong.join("; "));
        ExitCode::from(1)
    }
}
