//! `wardctl`: the CLI IT admins and HR scripts use. Its contract (flags, JSON shapes, exit
//! codes) is README.md's, and scripts depend on it: each subcommand's `--help` and the exit
//! codes in [`error`] are what a change must keep.

mod admin_bundle;
mod admins;
mod audit;
mod audit_export;
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
mod scim;
pub(crate) mod tokens;
pub(crate) mod users;
mod webhooks;

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
#[allow(clippy::large_enum_variant)] // parsed once per process: its size costs nothing
enum Verb {
    /// Create a controller data directory: CA, server certificate, first admin bundle, store
    #[command(
        after_help = "Examples:\n  wardctl init --data-dir /var/lib/ward --hostname ward.hospital.org\n  wardctl init --data-dir ward-data --admin-name alice --output json"
    )]
    Init(local::InitArgs),
    /// Run the controller (initializes an empty data directory first). It prints logs
    /// (--log-format), not results: the global --output is refused here
    #[command(
        arg = output_not_shown(),
        after_help = "Examples:\n  wardctl serve --data-dir ward-data\n  wardctl serve --data-dir /var/lib/ward --listen 0.0.0.0:7443 --hostname ward.hospital.org\n  wardctl serve --data-dir /var/lib/ward --metrics-listen 127.0.0.1:9443 --require-approval\n  wardctl serve --data-dir /var/lib/ward --database-url postgres://ward@db.hospital.org/ward"
    )]
    Serve(Box<local::ServeArgs>),
    /// Enrollment tokens
    #[command(subcommand)]
    Token(tokens::TokenCommand),
    /// Enrolled devices
    #[command(subcommand)]
    Device(devices::DeviceCommand),
    /// Users: list (by devices, tokens or the identity provider), offboard (wipe and revoke
    /// every device of a leaver)
    #[command(subcommand)]
    User(users::UserCommand),
    /// Commands sent to devices: list, show, approve, cancel
    #[command(subcommand)]
    Command(commands::CommandCommand),
    /// Device policy: password rules, auto-lock, disk encryption, offline wipe
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The tamper-evident audit log: list, verify, export
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Administrators and their certificates
    #[command(subcommand)]
    Admin(admins::AdminCommand),
    /// The CA and the controller's certificates: expiry (status) and CA rotation (rotate)
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Signed webhooks: events POSTed to a receiver of yours, signed with HMAC-SHA256
    #[command(subcommand)]
    Webhook(webhooks::WebhookCommand),
    /// A web console on this machine (loopback only), acting with this admin's certificate
    #[command(
        long_about = "Serves a web console on a loopback address and prints a one-time login link. The console holds the admin's unlocked key while it runs and makes every change through the controller's admin API with it, as every wardctl command does: roles, approval and audit stay the controller's, and the controller gains no port or password. Logged off after --idle-timeout without a request; a new link is then printed here.",
        after_help = "Examples:\n  wardctl console --admin-cert ~/alice.pem --server https://ward.hospital.org:7443\n  wardctl console --listen 127.0.0.1:8080   (from elsewhere: ssh -L 8080:127.0.0.1:8080 HOST)"
    )]
    Console(crate::console::ConsoleArgs),
    /// SCIM 2.0 provisioning from the identity provider (Entra ID, Okta): its bearer tokens
    #[command(
        subcommand,
        after_help = "Examples:\n  wardctl scim token create --name entra\n  wardctl scim token list --output json\n  wardctl scim token revoke entra"
    )]
    Scim(scim::ScimCommand),
}

/// The global `--output` on a command it does not apply to (`serve` prints logs, `audit export`
/// always JSON lines): kept out of that command's help, still parsed (the same id, so its value
/// reaches `Cli::output`: `serve` refuses it with the reason, `export` ignores it as before).
/// Clap does not copy a global argument into a subcommand that has one of the same id.
pub(crate) fn output_not_shown() -> clap::Arg {
    clap::Arg::new("output")
        .long("output")
        .short('o')
        .value_name("OUTPUT")
        .value_parser(clap::builder::EnumValueParser::<OutputFormat>::new())
        .hide(true)
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

/// A directory argument (`ward_files::directory_arg`, shared with `ward-agent`).
pub use ward_files::directory_arg;

/// A value parser's refusal: `message` as the whole error (it names the flag), exit 2.
fn invalid_value(cmd: &clap::Command, message: &str) -> clap::Error {
    clap::Error::raw(
        clap::error::ErrorKind::ValueValidation,
        format!("{message}\n"),
    )
    .with_cmd(cmd)
}

/// How a value parser's errors name the flag: `--long`, or the argument's id.
fn flag_name(arg: Option<&clap::Arg>) -> String {
    arg.map_or_else(String::new, |a| match a.get_long() {
        Some(long) => format!("--{long}"),
        None => a.get_id().to_string(),
    })
}

/// A duration flag's value parser: the flag's range (declared next to the flag) checked as it is
/// parsed, so every error names the flag and the range and exits 2. Takes values starting with
/// '-' (with `allow_hyphen_values`) so `--ttl -5m` is refused as negative, not as a flag.
#[derive(Clone, Copy, Debug)]
pub struct DurationArg(pub ward_core::duration::DurationRange);

impl clap::builder::TypedValueParser for DurationArg {
    type Value = Duration;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Duration, clap::Error> {
        let flag = flag_name(arg);
        let text = value.to_string_lossy();
        self.0
            .parse(&flag, &text)
            .map_err(|message| invalid_value(cmd, &message))
    }
}

/// An integer flag's value parser: its range (declared next to the flag) checked as it is
/// parsed, with an error in words that names the flag ("--min-length: 200 is out of range: must
/// be between 0 and 128"), not clap's `0..=128`. Exits 2 as every usage error does.
#[derive(Clone, Copy, Debug)]
pub struct NumberArg<T> {
    min: u64,
    max: u64,
    value: std::marker::PhantomData<fn() -> T>,
}

impl<T> NumberArg<T> {
    /// `min` to `max`, both included.
    pub const fn new(min: u64, max: u64) -> Self {
        Self {
            min,
            max,
            value: std::marker::PhantomData,
        }
    }

    /// Checks `text` given to `flag`; every error says the range.
    pub fn parse(&self, flag: &str, text: &str) -> Result<T, String>
    where
        T: TryFrom<u64>,
    {
        let (min, max) = (self.min, self.max);
        let typed = text.trim();
        let what = match typed.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => {
                return T::try_from(n).map_err(|_| format!("{flag}: {n} is out of range"));
            }
            Ok(n) => format!("{n} is out of range"),
            Err(_) if typed.is_empty() => "no number given".to_owned(),
            Err(_) if typed.starts_with('-') && typed[1..].parse::<u64>().is_ok() => {
                format!("{typed} is negative")
            }
            Err(_) if typed.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{typed} is out of range")
            }
            Err(_) => format!("{typed:?} is not a whole number"),
        };
        Err(format!("{flag}: {what}: must be between {min} and {max}"))
    }
}

impl<T> clap::builder::TypedValueParser for NumberArg<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let flag = flag_name(arg);
        self.parse(&flag, &value.to_string_lossy())
            .map_err(|message| invalid_value(cmd, &message))
    }
}

/// An address flag's value parser (`--listen`): an IP address and a port, with an example of
/// the flag's own in the error instead of clap's "invalid socket address syntax".
#[derive(Clone, Copy, Debug)]
pub struct AddrArg(pub &'static str);

impl AddrArg {
    /// Checks `text` given to `flag`.
    pub fn parse(&self, flag: &str, text: &str) -> Result<std::net::SocketAddr, String> {
        let typed = text.trim();
        typed.parse().map_err(|_| {
            let what = if typed.is_empty() {
                "no address given".to_owned()
            } else {
                format!("{typed:?} is not an IP address and port")
            };
            format!(
                "{flag}: {what}: expected IP:PORT such as {} ([::]:PORT for IPv6; a host name is \
                 not looked up)",
                self.0
            )
        })
    }
}

impl clap::builder::TypedValueParser for AddrArg {
    type Value = std::net::SocketAddr;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<std::net::SocketAddr, clap::Error> {
        let flag = flag_name(arg);
        self.parse(&flag, &value.to_string_lossy())
            .map_err(|message| invalid_value(cmd, &message))
    }
}

/// The value parser of a flag that takes one of a closed set (a check, a wipe scope): one of
/// its names, listed in `--help` and in the error, as the value.
pub fn one_of<T>() -> impl clap::builder::TypedValueParser<Value = T>
where
    T: ward_core::Named + Clone + Send + Sync,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(T::ALL.iter().map(|value| value.name()))
        .try_map(|name| T::parse_name(&name))
}

/// A duration already checked against its flag's range, as whole seconds for the wire.
pub fn whole_seconds(d: Duration) -> u64 {
    d.as_secs()
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

/// The options every command takes to reach a controller (`--data-dir`, `--server`,
/// `--admin-cert`) go after the subcommand; given before it, clap's error alone does not say
/// so. The hint, when that is what went wrong.
fn misplaced_connection_option(
    kind: clap::error::ErrorKind,
    args: impl Iterator<Item = String>,
) -> Option<String> {
    if kind != clap::error::ErrorKind::UnknownArgument {
        return None;
    }
    let first = args.take_while(|a| a.starts_with('-')).find(|a| {
        ["--data-dir", "--server", "--admin-cert"]
            .iter()
            .any(|o| a == o || a.starts_with(&format!("{o}=")))
    })?;
    let option = first.split('=').next().unwrap_or(&first).to_owned();
    Some(format!(
        "hint: {option} goes after the command, e.g. `wardctl device list {option} …`"
    ))
}

/// Entry point of the `wardctl` binary.
pub fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if let Some(hint) = misplaced_connection_option(e.kind(), std::env::args().skip(1)) {
                eprintln!("{hint}");
            }
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    // `serve`: the store's writer and its batches on threads of their own (see
    // `ward_runtime::start_commit_runtime`), started before any runtime, so that no runtime
    // is ever dropped inside another.
    if matches!(cli.command, Verb::Serve(_))
        && let Err(e) = ward_runtime::start_commit_runtime()
    {
        eprintln!("error: cannot start the commit path's threads: {e}");
        return Exit::Failed.into();
    }
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
    if cli.output.is_some() && matches!(cli.command, Verb::Serve(_)) {
        return Err(CliError::usage(
            "serve prints logs, not results: --output does not apply to it (choose the log format with --log-format text|json)",
        ));
    }
    let output = OutputFormat::resolve(cli.output);
    match cli.command {
        Verb::Init(args) => local::init(args, output).await,
        Verb::Serve(args) => local::serve(*args).await,
        Verb::Token(cmd) => tokens::run(cmd, output).await,
        Verb::Device(cmd) => devices::run(cmd, output).await,
        Verb::Admin(cmd) => admins::run(cmd, output).await,
        Verb::Ca(cmd) => ca::run(cmd, output).await,
        Verb::Command(cmd) => commands::run(cmd, output).await,
        Verb::Policy(cmd) => policy::run(cmd, output).await,
        Verb::Audit(cmd) => audit::run(cmd, output).await,
        Verb::User(cmd) => users::run(cmd, output).await,
        Verb::Console(args) => crate::console::run(args).await,
        Verb::Webhook(cmd) => webhooks::run(cmd, output).await,
        Verb::Scim(cmd) => scim::run(cmd, output).await,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    /// Every duration flag of every command, with its command path.
    fn duration_args(cmd: &clap::Command, path: &str, found: &mut Vec<(String, clap::Arg)>) {
        for arg in cmd.get_arguments() {
            let names = arg.get_value_names().unwrap_or_default();
            if names
                .iter()
                .any(|n| ["DURATION", "AGE", "TIME"].contains(&n.as_str()))
            {
                found.push((format!("{path} --{}", arg.get_id()), arg.clone()));
            }
        }
        for sub in cmd.get_subcommands() {
            duration_args(sub, &format!("{path} {}", sub.get_name()), found);
        }
    }

    #[test]
    fn every_duration_flag_shows_its_range_and_takes_negative_values_to_refuse_them() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut found = Vec::new();
        duration_args(&cmd, "wardctl", &mut found);
        assert!(found.len() >= 15, "{}", found.len());
        for (name, arg) in found {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(
                help.contains(" to ") && help.contains("e.g. "),
                "{name}: no range in its help: {help:?}"
            );
            assert!(
                arg.is_allow_hyphen_values_set(),
                "{name}: -5m would be taken for a flag"
            );
        }
    }

    /// Every leaf subcommand (what an admin types), with its command path.
    fn leaves<'a>(
        cmd: &'a clap::Command,
        path: &str,
        found: &mut Vec<(String, &'a clap::Command)>,
    ) {
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|s| s.get_name() != "help" && !s.is_hide_set())
            .collect();
        if subs.is_empty() {
            found.push((path.to_owned(), cmd));
        }
        for sub in subs {
            leaves(sub, &format!("{path} {}", sub.get_name()), found);
        }
    }

    /// Whether `help` states a range: "N to M" or "N-M", each a number with an optional unit
    /// ("0 to 128", "1m to 7d").
    fn states_a_range(help: &str) -> bool {
        help.char_indices().any(|(i, _)| {
            let before = help[..i].trim_end_matches(|c: char| c.is_ascii_lowercase());
            let digit_before = help[..i].len() - before.len() <= 4
                && before.ends_with(|c: char| c.is_ascii_digit());
            let rest = &help[i..];
            let after = rest
                .strip_prefix(" to ")
                .or_else(|| rest.strip_prefix('-'))
                .or_else(|| rest.strip_prefix('\u{2013}'));
            digit_before && after.is_some_and(|a| a.starts_with(|c: char| c.is_ascii_digit()))
        })
    }

    /// Whether an argument takes a number or a duration (by the type its parser produces).
    fn takes_a_number_or_duration(arg: &clap::Arg) -> bool {
        use std::any::TypeId;
        let parsed = arg.get_value_parser().type_id();
        [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
            TypeId::of::<f64>(),
            TypeId::of::<std::time::Duration>(),
        ]
        .iter()
        .any(|t| parsed == *t)
    }

    /// Issue 16 item 12: every command an admin types says what it does, shows at least one
    /// example (an "Examples:" block of `wardctl …` lines), every argument has help, and every
    /// number or duration it takes names its range.
    #[test]
    fn every_command_has_an_about_an_example_and_the_ranges_of_its_numbers() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut found = Vec::new();
        leaves(&cmd, "wardctl", &mut found);
        assert!(found.len() >= 30, "{}", found.len());
        let mut missing = Vec::new();
        for (path, leaf) in found {
            let about = leaf
                .get_about()
                .or(leaf.get_long_about())
                .map(ToString::to_string)
                .unwrap_or_default();
            if about.trim().is_empty() {
                missing.push(format!("{path}: no about"));
            }
            let after = [leaf.get_after_help(), leaf.get_after_long_help()]
                .into_iter()
                .flatten()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            let examples = after
                .split_once("Examples:")
                .map(|(_, rest)| rest)
                .unwrap_or_default();
            if !examples.lines().any(|l| l.trim_start().starts_with(&path)) {
                missing.push(format!(
                    "{path}: no \"Examples:\" block with a `{path} …` line"
                ));
            }
            // clap wraps help at 100 columns: a wrapped example cannot be copied as it is.
            for long in examples.lines().filter(|l| l.chars().count() > 98) {
                missing.push(format!("{path}: example wraps: {long:?}"));
            }
            for arg in leaf.get_arguments().filter(|a| !a.is_hide_set()) {
                let help = [arg.get_help(), arg.get_long_help()]
                    .into_iter()
                    .flatten()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ");
                if help.trim().is_empty() && !arg.is_global_set() {
                    missing.push(format!("{path} {}: no help", arg.get_id()));
                }
                if takes_a_number_or_duration(arg) && !states_a_range(&help) {
                    missing.push(format!("{path} --{}: no range in {help:?}", arg.get_id()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{} gaps:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }

    #[test]
    fn command_help_lists_approve() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("command")
            .unwrap()
            .render_help()
            .to_string();
        assert!(help.contains("approve"), "{help}");
    }

    /// `serve` prints logs, not results: a global `--output` there is refused (exit 2) before
    /// anything starts, instead of being silently ignored.
    #[tokio::test]
    async fn serve_refuses_output() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cli = Cli::try_parse_from([
            "wardctl",
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--output",
            "json",
        ])
        .unwrap();
        let err = super::dispatch(cli).await.unwrap_err();
        assert_eq!(err.exit, super::Exit::Usage, "{err}");
        assert!(err.to_string().contains("--output"), "{err}");
        assert!(!data.exists(), "serve started before refusing");
    }

    /// `--output` does not apply to `serve` (logs) or `audit export` (always JSON lines): their
    /// help does not list it; everywhere else it is listed and works, before or after the
    /// command.
    #[test]
    fn output_is_listed_only_where_it_applies() {
        let mut cmd = Cli::command();
        cmd.build();
        let help = |path: &[&str]| {
            let mut sub = cmd.clone();
            for name in path {
                sub = sub.find_subcommand(name).unwrap().clone();
            }
            sub.render_help().to_string()
        };
        for hidden in [&["serve"][..], &["audit", "export"]] {
            let text = help(hidden);
            assert!(!text.contains("-o, --output"), "{hidden:?}: {text}");
        }
        for shown in [
            &["init"][..],
            &["device", "list"],
            &["audit", "list"],
            &["ca", "status"],
        ] {
            let text = help(shown);
            assert!(text.contains("-o, --output"), "{shown:?}: {text}");
        }
        for args in [
            &["wardctl", "device", "list", "--output", "json"][..],
            &["wardctl", "--output", "json", "device", "list"],
            &["wardctl", "audit", "export", "-o", "json"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.output, Some(super::OutputFormat::Json), "{args:?}");
        }
    }

    /// An integer flag out of its range is refused in words, not with Rust's `0..=128`.
    #[test]
    fn a_number_out_of_range_is_refused_in_words() {
        let refused = |args: &[&str]| {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{args:?}"
            );
            let text = err.render().to_string();
            assert!(!text.contains("..="), "{text}");
            text
        };
        let text = refused(&["wardctl", "policy", "set", "--min-length", "200"]);
        assert!(
            text.starts_with(
                "error: --min-length: 200 is out of range: must be between 0 and 128\n"
            ),
            "{text}"
        );
        let text = refused(&["wardctl", "policy", "set", "--min-classes", "-1"]);
        assert!(
            text.starts_with("error: --min-classes: -1 is negative: must be between 0 and 4"),
            "{text}"
        );
        let text = refused(&["wardctl", "command", "list", "--limit", "lots"]);
        assert!(
            text.starts_with(
                "error: --limit: \"lots\" is not a whole number: must be between 1 and 10000"
            ),
            "{text}"
        );
        let text = refused(&[
            "wardctl",
            "serve",
            "--data-dir",
            "d",
            "--write-lanes",
            "99999999999999999999999",
        ]);
        assert!(
            text.contains("is out of range: must be between 1 and 16"),
            "{text}"
        );
        let ok = Cli::try_parse_from(["wardctl", "policy", "set", "--min-length", "128"]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    /// An address flag that is not IP:PORT says what it expects, with an example.
    #[test]
    fn a_listen_address_that_is_not_one_gets_an_example() {
        let err = Cli::try_parse_from([
            "wardctl",
            "serve",
            "--data-dir",
            "d",
            "--listen",
            "nonsense",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let text = err.render().to_string();
        assert!(
            text.starts_with(
                "error: --listen: \"nonsense\" is not an IP address and port: expected IP:PORT such as 0.0.0.0:7443"
            ),
            "{text}"
        );
        let ok = Cli::try_parse_from([
            "wardctl",
            "serve",
            "--data-dir",
            "d",
            "--listen",
            "[::]:7443",
        ]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    /// No flag shows `[default: ""]`: an optional text is optional, not an empty default.
    #[test]
    fn no_flag_has_an_empty_default() {
        fn walk(cmd: &clap::Command, path: &str, found: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.get_default_values().iter().any(|v| v.is_empty()) {
                    found.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), found);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut found = Vec::new();
        walk(&cmd, "wardctl", &mut found);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn the_range_finder_needs_digits_on_both_sides() {
        assert!(states_a_range("Show at most N (1 to 10000)"));
        assert!(states_a_range("classes (0-4)"));
        assert!(states_a_range("Lifetime: 1d to 30d, e.g. 7d"));
        assert!(!states_a_range("Previous passwords that may not be reused"));
        assert!(!states_a_range("up to date, e-mail 1"));
    }

    #[test]
    fn a_duration_flag_error_is_wards_text_with_the_range() {
        let hint = super::misplaced_connection_option(
            clap::error::ErrorKind::UnknownArgument,
            ["--data-dir", "ward-data", "device", "list"]
                .map(String::from)
                .into_iter(),
        );
        assert_eq!(
            hint.as_deref(),
            Some(
                "hint: --data-dir goes after the command, e.g. `wardctl device list --data-dir …`"
            )
        );
        assert!(
            super::misplaced_connection_option(
                clap::error::ErrorKind::UnknownArgument,
                ["device", "list", "--bogus"].map(String::from).into_iter(),
            )
            .is_none()
        );
        let err = Cli::try_parse_from([
            "wardctl", "token", "create", "--user", "a@h.org", "--ttl", "-5m",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let text = err.render().to_string();
        assert!(
            text.starts_with("error: --ttl: -5m is negative: use 1m to 7d (e.g. --ttl 1h)"),
            "{text}"
        );
        let ok = Cli::try_parse_from([
            "wardctl",
            "policy",
            "set",
            "--max-age",
            "never",
            "--wipe-grace",
            "3d",
        ]);
        assert!(ok.is_ok(), "{ok:?}");
    }
}
