//! `wardctl`: the CLI IT admins and HR scripts use. The contract (flags, JSON shapes, exit
//! codes) is in DESIGN.md; scripts depend on it.

mod admin_bundle;
mod admins;
mod audit;
mod bulk_wipe;
mod ca;
mod certificate;
mod command_bulk;
mod commands;
pub mod connect;
mod device_lifecycle;
mod device_view;
mod device_wipes;
mod devices;
pub mod error;
mod local;
pub mod output;
pub(crate) mod policy;
mod tokens;
pub(crate) mod users;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use error::{CliError, Exit};
use output::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "wardctl",
    version,
    about = "Run and administer a Ward controller: device enrollment, policy, lock and wipe",
    after_help = "Exit codes: 0 ok, 1 failed, 2 bad usage or input, 3 not found, 4 permission denied, 5 timed out waiting.\nAdmin commands find the controller with --server/--admin-cert (or WARD_SERVER/WARD_ADMIN_CERT), or --data-dir on the controller's own host."
)]
pub struct Cli {
    /// Output format: a table for people, JSON for scripts [default: table on a terminal, json otherwise]
    #[arg(long, short = 'o', global = true, value_enum)]
    output: Option<OutputFormat>,

    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Create a controller data directory: CA, server certificate, first admin bundle, store
    Init(local::InitArgs),
    /// Run the controller (initializes an empty data directory first)
    Serve(local::ServeArgs),
    /// Enrollment tokens
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Enrolled devices
    #[command(subcommand)]
    Device(devices::DeviceCommand),
    /// Users: offboarding
    #[command(subcommand)]
    User(users::UserCommand),
    /// Commands sent to devices: list, show, cancel
    #[command(subcommand)]
    Command(commands::CommandCommand),
    /// Device policy: password rules, auto-lock, disk encryption, offline wipe
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The tamper-evident audit log: list, verify
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Administrators and their certificates
    #[command(subcommand)]
    Admin(admins::AdminCommand),
    /// The CA and the controller's certificates: expiry (status); rotation is not supported yet
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// A web console on this machine (loopback only), acting with this admin's certificate
    #[command(
        long_about = "Serves a web console on a loopback address and prints a one-time login link. The console holds the admin's unlocked key while it runs and makes every change through the controller's admin API with it, as every wardctl command does: roles, approval and audit stay the controller's, and the controller gains no port or password. Logged off after --idle-timeout without a request; a new link is then printed here.",
        after_help = "Example:\n  wardctl console --admin-cert ~/alice.pem --server https://ward.hospital.org:7443\n  (from another machine: ssh -L 8080:127.0.0.1:8080 admin-host, then wardctl console --listen 127.0.0.1:8080 there)"
    )]
    Console(crate::console::ConsoleArgs),
}

/// How an admin command reaches the controller.
#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    /// Controller URL, e.g. https://ward.hospital.org:7443 [default: the URL in DATA_DIR/server-url, else https://localhost:7443]
    #[arg(long, env = "WARD_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Admin bundle (certificate, CA and key in one PEM file) [default: DATA_DIR/admin.pem]. A
    /// key with a passphrase is decrypted with the first line of the file named by
    /// WARD_ADMIN_PASSPHRASE_FILE, else with a passphrase asked on the terminal
    #[arg(long, env = "WARD_ADMIN_CERT", value_name = "FILE")]
    admin_cert: Option<PathBuf>,
    /// The controller's data directory, to use its admin bundle and URL on the controller host
    #[arg(long, env = "WARD_DATA_DIR", value_name = "DIR", value_parser = directory_arg)]
    data_dir: Option<PathBuf>,
}

/// A directory argument: refused when the path, or the nearest part of it that exists, is not
/// a directory ("is a file, not a directory", exit 2), before anything is read or created.
pub fn directory_arg(text: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(text);
    // The path, or else the nearest part of it that exists, must be a directory: one to be
    // created under a file would fail later with "Not a directory" (exit 1).
    for at in path.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        let Ok(meta) = std::fs::metadata(at) else {
            continue;
        };
        if meta.is_dir() {
            break;
        }
        let what = if meta.is_file() {
            "is a file, not a directory"
        } else {
            "is not a directory"
        };
        let named = if at == path {
            format!("{text} {what}")
        } else {
            format!("{text}: {} {what}", at.display())
        };
        return Err(format!(
            "{named}: give a directory (or a path where one can be made), or move the file away"
        ));
    }
    Ok(path)
}

/// Parses "15m", "7d", "90s", "1h 30m".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}); use a number with a unit, such as 90s, 15m, 12h or 7d")
    })
}

/// A duration flag as whole seconds for the wire, where 0 would mean "the default": zero and
/// fractions of a second are refused instead of silently becoming the default.
pub fn whole_seconds(flag: &str, d: Duration) -> Result<u64, error::CliError> {
    if d.as_secs() == 0 || d.subsec_nanos() != 0 {
        return Err(error::CliError::usage(format!(
            "{flag} {} is not a whole, positive number of seconds",
            humantime::format_duration(d)
        )));
    }
    Ok(d.as_secs())
}

/// A reader that went away (`wardctl … | head -1`) is not wardctl's failure: the standard
/// library's `println!` panics on a broken pipe (Rust ignores SIGPIPE), so that one panic ends
/// the process quietly with 0; every other panic is reported as before.
fn quiet_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// Entry point of the `wardctl` binary.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Failed.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit.into()
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match dispatch(cli).await {
        // A connection that failed without an answer may be the controller refusing our
        // certificate at the handshake: say so when it is.
        Err(e) if e.exit == error::Exit::Failed => Err(connect::explain_refusal(e).await),
        other => other,
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let output = OutputFormat::resolve(cli.output);
    match cli.command {
        Verb::Init(args) => local::init(args, output).await,
        Verb::Serve(args) => local::serve(args).await,
        Verb::Token(cmd) => tokens::run(cmd, output).await,
        Verb::Device(cmd) => devices::run(cmd, output).await,
        Verb::Admin(cmd) => admins::run(cmd, output).await,
        Verb::Ca(cmd) => ca::run(cmd, output).await,
        Verb::Command(cmd) => commands::run(cmd, output).await,
        Verb::Policy(cmd) => policy::run(cmd, output).await,
        Verb::Audit(cmd) => audit::run(cmd, output).await,
        Verb::User(cmd) => users::run(cmd, output).await,
        Verb::Console(args) => crate::console::run(args).await,
    }
}
