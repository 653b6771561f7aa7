//! Commands that run on the controller host: `init` and `serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use ward_certs::AdminName;
use ward_proto::transport::ServerUrl;

use super::DurationArg;
use super::error::CliError;
use super::output::{OutputFormat, print_fields, print_json};
use ward_core::SystemClock;
use ward_core::audit::syslog_target::{SyslogTarget, Transport};
use ward_core::duration::{DurationRange, days, hours, minutes, seconds};
use ward_core::model::{CERT_MAX_LIFETIME, CERT_MIN_LIFETIME};
use ward_runtime::data_dir::{BREAK_GLASS_ADVICE, DataDir, InitReport};
use ward_runtime::syslog::Collector;
use ward_runtime::{AuditSyslog, Database, ScimConfig, ServeConfig, ServeError};

#[derive(Debug, Args)]
pub(super) struct InitArgs {
    /// Directory for the CA, server credentials, admin bundle and database (created 0700)
    #[arg(long, env = "WARD_DATA_DIR", value_name = "DIR", value_parser = super::directory_arg)]
    data_dir: PathBuf,
    /// A DNS name or IP address devices use to reach the controller; repeatable. The first one
    /// names the controller. localhost, 127.0.0.1 and ::1 are always added
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,
    /// Name of the first admin, written to DATA_DIR/admin.pem (30 days). A `break-glass`
    /// identity (two years, key encrypted) is written beside it with its passphrase, to be
    /// moved to an offline safe
    #[arg(long, default_value = "admin", value_name = "NAME")]
    admin_name: String,
}

/// `serve --server-cert-check-interval` (hidden; for tests that move the clock).
const SERVER_CERT_CHECK: DurationRange = DurationRange::new(seconds(1), hours(24), "10m");
/// `serve --webhook-retry-max`.
const WEBHOOK_RETRY_MAX: DurationRange = DurationRange::new(seconds(1), hours(24), "10m");
/// `serve --webhook-give-up-after`.
const WEBHOOK_GIVE_UP: DurationRange = DurationRange::new(minutes(1), days(30), "3d");
/// `serve --checkin-interval`.
const CHECKIN_INTERVAL: DurationRange = DurationRange::new(seconds(1), hours(24), "5m");
/// `serve --device-cert-lifetime`: the limits of every certificate the controller issues.
const DEVICE_CERT_LIFETIME: DurationRange =
    DurationRange::new(CERT_MIN_LIFETIME, CERT_MAX_LIFETIME, "30d");
/// `serve --write-batch-window`.
const WRITE_BATCH_WINDOW: DurationRange =
    DurationRange::new(Duration::ZERO, Duration::from_millis(100), "2ms").in_milliseconds();
/// `serve --shed-check-ins-after`.
const SHED_CHECK_INS_AFTER: DurationRange =
    DurationRange::new(Duration::from_millis(10), seconds(30), "1s").in_milliseconds();
/// `serve --audit-checkpoint-interval`.
const CHECKPOINT_INTERVAL: DurationRange = DurationRange::new(seconds(10), hours(24), "1h");

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Data directory; an empty or missing one is initialized first
    #[arg(long, env = "WARD_DATA_DIR", value_name = "DIR", value_parser = super::directory_arg)]
    data_dir: PathBuf,
    /// Address and port to listen on
    #[arg(long, default_value = "127.0.0.1:7443", value_name = "ADDR", value_parser = super::AddrArg("0.0.0.0:7443"))]
    listen: SocketAddr,
    /// URL devices use to reach this controller, printed in enrollment commands [default: https://<first hostname>:<port>]
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// A DNS name or IP address devices use to reach the controller; repeatable, the first
    /// names the controller (localhost, 127.0.0.1 and ::1 are always added). Given on a data
    /// directory whose server certificate covers other names, a new server certificate under
    /// the same CA is issued for exactly these (audited); without it the names stay
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,
    /// A name the server certificate covers today that the new `--hostname` list leaves out,
    /// dropped on purpose; repeatable. Without it such a change is refused: agents enrolled
    /// with that name could no longer verify the controller, and their offline timers would run
    #[arg(long = "drop-hostname", value_name = "NAME")]
    drop_hostnames: Vec<String>,
    #[arg(long, default_value = "10m", value_parser = DurationArg(SERVER_CERT_CHECK), allow_hyphen_values = true, value_name = "DURATION", hide = true, help = SERVER_CERT_CHECK.help("How often the server certificate's age is checked (it is renewed two thirds into its lifetime); for tests that move the clock"))]
    server_cert_check_interval: Duration,
    #[arg(long, default_value = "60s", value_parser = DurationArg(CHECKIN_INTERVAL), allow_hyphen_values = true, value_name = "DURATION", help = CHECKIN_INTERVAL.help("How often agents check in when nothing else happens"))]
    checkin_interval: Duration,
    #[arg(long, default_value = "7d", value_parser = DurationArg(DEVICE_CERT_LIFETIME), allow_hyphen_values = true, value_name = "DURATION", help = DEVICE_CERT_LIFETIME.help("Lifetime of device certificates"))]
    device_cert_lifetime: Duration,
    /// Require a second admin's approval for full wipes and for offboardings of more than
    /// --approval-threshold devices (`wardctl command approve`), and for issuing an admin-role
    /// identity or renewing someone else's (`wardctl admin approve`). The approver may not be
    /// the requester or linked to them by creating, renewing or approving either identity
    #[arg(long)]
    require_approval: bool,
    /// With --require-approval: offboardings of more devices than this need approval (0 to 10000)
    #[arg(
        long,
        default_value_t = 10,
        requires = "require_approval",
        value_name = "N",
        value_parser = super::NumberArg::<usize>::new(0, 10_000), allow_negative_numbers = true
    )]
    approval_threshold: usize,
    #[arg(long, default_value = "2ms", value_parser = DurationArg(WRITE_BATCH_WINDOW), allow_hyphen_values = true, value_name = "DURATION", help = WRITE_BATCH_WINDOW.help("Group commit: after the first change of a transaction, how long the store's writer waits for more before committing them together (changes arriving during a commit join the next one anyway)"))]
    write_batch_window: Duration,
    /// Group commit: the most changes in one transaction (1 to 10000)
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = super::NumberArg::<usize>::new(1, 10_000), allow_negative_numbers = true)]
    write_batch_max: usize,
    #[arg(long, default_value = "5s", value_parser = DurationArg(SHED_CHECK_INS_AFTER), allow_hyphen_values = true, value_name = "DURATION", help = SHED_CHECK_INS_AFTER.help("Check-ins are answered UNAVAILABLE (agents retry later with jitter) when one would wait longer than this for its batch to start; admin calls, acknowledgements and results are never refused for load"))]
    shed_check_ins_after: Duration,
    /// PostgreSQL only: how many connections write at once (1 to 16; default 4). The first
    /// runs admin calls and command results, batches of check-ins the others (all of them
    /// with one connection); more help while the
    /// database's round trips are the wait, fewer when the machine's CPU is (smaller batches
    /// cost more per change). SQLite has one write lock, so one
    #[arg(long, value_name = "N", value_parser = super::NumberArg::<usize>::new(1, 16), allow_negative_numbers = true)]
    write_lanes: Option<usize>,
    /// Use this PostgreSQL database instead of the data directory's SQLite file (several
    /// replicas can share one), e.g. postgres://ward@db.hospital.example/ward
    #[arg(
        long,
        env = "WARD_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// Enrollment attempts one client address may make at once (1 to 1000000)…
    #[arg(long, default_value_t = 20, value_name = "N", value_parser = super::NumberArg::<u32>::new(1, 1_000_000), allow_negative_numbers = true)]
    enroll_burst: u32,
    /// …and then per minute (1 to 1000000)
    #[arg(long, default_value_t = 60, value_name = "N", value_parser = super::NumberArg::<u32>::new(1, 1_000_000), allow_negative_numbers = true)]
    enroll_per_minute: u32,
    /// Serve Prometheus /metrics and /healthz (plain HTTP) on this address, e.g.
    /// 127.0.0.1:9443; keep it on a management network
    #[arg(long, value_name = "ADDR", value_parser = super::AddrArg("127.0.0.1:9443"))]
    metrics_listen: Option<SocketAddr>,
    /// Serve SCIM 2.0 (identity-provider provisioning: Entra ID, Okta) over TLS with the
    /// controller's server certificate on this address, e.g. 0.0.0.0:9444; the tenant URL is
    /// https://HOST:PORT/scim/v2. Clients authenticate with tokens from `wardctl scim token
    /// create`; deprovisioning a user offboards them
    #[arg(long, value_name = "ADDR", value_parser = super::AddrArg("0.0.0.0:9444"))]
    scim_listen: Option<SocketAddr>,
    /// SCIM requests one client address may make at once (1 to 1000000)…
    #[arg(long, default_value_t = ward_runtime::SCIM_BURST, value_name = "N", requires = "scim_listen", value_parser = super::NumberArg::<u32>::new(1, 1_000_000), allow_negative_numbers = true)]
    scim_burst: u32,
    /// …and then per minute (1 to 1000000); more get 429
    #[arg(long, default_value_t = ward_runtime::SCIM_PER_MINUTE, value_name = "N", requires = "scim_listen", value_parser = super::NumberArg::<u32>::new(1, 1_000_000), allow_negative_numbers = true)]
    scim_per_minute: u32,
    /// Log format on stderr
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Also write each signed audit checkpoint to this directory (one file each, created
    /// 0700 if missing), ideally storage the database's administrators cannot rewrite.
    /// Checkpoints always go to the log too. `wardctl audit verify --checkpoints DIR` then
    /// finds a log cut back or rolled back to an older backup
    #[arg(long, value_name = "DIR")]
    audit_checkpoints: Option<std::path::PathBuf>,
    /// A checkpoint after this many audit entries (1-1000000)…
    #[arg(long, default_value_t = ward_runtime::CHECKPOINT_EVERY_DEFAULT, value_name = "N", value_parser = super::NumberArg::<u64>::new(1, 1_000_000), allow_negative_numbers = true)]
    audit_checkpoint_every: u64,
    #[arg(long, default_value = "10m", value_parser = DurationArg(CHECKPOINT_INTERVAL), allow_hyphen_values = true, value_name = "DURATION", help = CHECKPOINT_INTERVAL.help("…and at least this often while entries are written, also at start and at shutdown"))]
    audit_checkpoint_interval: Duration,
    /// Stream every audit entry to a syslog collector (a SIEM) as RFC 5424 messages:
    /// tls://HOST[:PORT] (RFC 5425, port 6514 by default); plain tcp:// and udp:// only to a
    /// loopback address (a relay on this host). In order, at least once, resuming after the
    /// last entry the collector took (kept in the database)
    #[arg(long, value_name = "URL")]
    audit_syslog: Option<String>,
    /// The CA certificate(s), PEM, that the collector's TLS certificate must chain to.
    /// Required with tls:// (this build has no system trust store)
    #[arg(long, value_name = "FILE", requires = "audit_syslog")]
    audit_syslog_ca: Option<PathBuf>,
    /// The body of each --audit-syslog message: rfc5424 (the entry's details, JSON as hashed)
    /// or ocsf (an OCSF 1.3.0 event, JSON: Entity Management, Account Change or API Activity,
    /// the entry's seq and hash in `unmapped`); the header and structured data stay the same
    #[arg(long, value_enum, default_value = "rfc5424", requires = "audit_syslog")]
    audit_format: AuditFormatArg,
    #[arg(long, default_value = "1h", value_parser = DurationArg(WEBHOOK_RETRY_MAX), allow_hyphen_values = true, value_name = "DURATION", help = WEBHOOK_RETRY_MAX.help("The longest wait between two attempts of a webhook delivery (the waits double from 1s, with jitter)"))]
    webhook_retry_max: Duration,
    #[arg(long, default_value = "3d", value_parser = DurationArg(WEBHOOK_GIVE_UP), allow_hyphen_values = true, value_name = "DURATION", help = WEBHOOK_GIVE_UP.help("A webhook delivery the receiver has not taken this long after its event is given up (shown as abandoned)"))]
    webhook_give_up_after: Duration,
}

/// `serve --audit-format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum AuditFormatArg {
    Rfc5424,
    Ocsf,
}

impl From<AuditFormatArg> for ward_core::audit::syslog::AuditFormat {
    fn from(arg: AuditFormatArg) -> Self {
        match arg {
            AuditFormatArg::Rfc5424 => Self::Rfc5424,
            AuditFormatArg::Ocsf => Self::Ocsf,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn admin_name(text: &str) -> Result<AdminName, CliError> {
    text.parse()
        .map_err(|e| CliError::usage(format!("--admin-name: {e}")))
}

pub(super) async fn init(args: InitArgs, output: OutputFormat) -> Result<(), CliError> {
    let name = admin_name(&args.admin_name)?;
    let dir = DataDir::new(&args.data_dir);
    let report = dir.init(&args.hostnames, &name, &SystemClock).await?;
    print_init_report(&dir, &report, output)
}

fn print_init_report(
    dir: &DataDir,
    report: &InitReport,
    output: OutputFormat,
) -> Result<(), CliError> {
    eprintln!("{BREAK_GLASS_ADVICE}");
    match output {
        OutputFormat::Json => print_json(&json!({
            "data_dir": dir.root().display().to_string(),
            "ca_hash": report.ca_hash,
            "hostnames": report.hostnames,
            "admin": report.admin_name,
            "admin_bundle": report.admin_bundle.display().to_string(),
            "break_glass_bundle": report.break_glass.bundle.display().to_string(),
            "break_glass_passphrase_file": report.break_glass.passphrase.display().to_string(),
        })),
        OutputFormat::Table => {
            print_fields(&[
                ("data dir", dir.root().display().to_string()),
                ("CA hash", report.ca_hash.clone()),
                ("server names", report.hostnames.join(", ")),
                ("admin", report.admin_name.clone()),
                ("admin bundle", report.admin_bundle.display().to_string()),
                (
                    "break-glass",
                    format!(
                        "{} (key encrypted), passphrase in {}",
                        report.break_glass.bundle.display(),
                        report.break_glass.passphrase.display()
                    ),
                ),
            ]);
            Ok(())
        }
    }
}

pub(super) async fn serve(args: ServeArgs) -> Result<(), CliError> {
    init_tracing(args.log_format);
    // Check every flag, then take the port, before anything is created on disk.
    if args.database_url.is_none() && args.write_lanes.is_some_and(|lanes| lanes != 1) {
        return Err(CliError::usage(
            "--write-lanes is for PostgreSQL (--database-url): SQLite has one write lock, so it \
             writes on one lane",
        ));
    }
    if !(1..=1_000_000).contains(&args.audit_checkpoint_every) {
        return Err(CliError::usage(
            "--audit-checkpoint-every must be between 1 and 1000000 entries",
        ));
    }
    if let Some(dir) = &args.audit_checkpoints {
        ward_files::prepare_private_dir(dir)
            .map_err(|e| CliError::usage(format!("--audit-checkpoints: {e}")))?;
    }
    check_hostnames(&ward_runtime::data_dir::server_hostnames(&args.hostnames))?;
    let collector = audit_collector(&args)?;
    if let Some(url) = &args.database_url
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Err(CliError::usage(
            "--database-url must be a PostgreSQL URL (postgres://USER@HOST/DB); without it the data directory's SQLite file is used",
        ));
    }
    let public_url = args
        .public_url
        .as_deref()
        .map(|url| {
            url.parse::<ServerUrl>()
                .map_err(|e| CliError::usage(format!("--public-url: {e}")))
        })
        .transpose()?;
    let database = match args.database_url {
        None => Database::Sqlite,
        Some(url) => Database::Postgres {
            url,
            write_lanes: args.write_lanes,
        },
    };
    let config = ServeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        public_url,
        hostnames: args.hostnames,
        drop_hostnames: args.drop_hostnames,
        database,
        batch: ward_runtime::BatchSettings {
            window: args.write_batch_window,
            max_jobs: args.write_batch_max,
            shed_after: args.shed_check_ins_after,
        },
        server_cert_check_interval: args.server_cert_check_interval,
        checkin_interval: args.checkin_interval,
        device_cert_lifetime: args.device_cert_lifetime,
        approval_threshold: args.require_approval.then_some(args.approval_threshold),
        enroll_burst: args.enroll_burst,
        enroll_per_minute: args.enroll_per_minute,
        audit_checkpoints: ward_runtime::CheckpointConfig {
            dir: args.audit_checkpoints,
            every_entries: args.audit_checkpoint_every,
            interval: args.audit_checkpoint_interval,
        },
        audit_syslog: collector.map(|collector| AuditSyslog {
            collector,
            format: args.audit_format.into(),
        }),
        metrics_listen: args.metrics_listen,
        scim: args.scim_listen.map(|listen| ScimConfig {
            listen,
            burst: args.scim_burst,
            per_minute: args.scim_per_minute,
        }),
        webhook_retry_max: args.webhook_retry_max,
        webhook_give_up_after: args.webhook_give_up_after,
    };
    ward_runtime::serve(config, ward_runtime::shutdown_signal())
        .await
        .map_err(serve_error)
}

/// A runtime error as `serve` reports it: refusals exit 2 and name the flag to change.
fn serve_error(e: ServeError) -> CliError {
    match e {
        ServeError::DataDir(e) => e.into(),
        ServeError::FirstAdmin(e) => CliError::usage(format!("--admin-name: {e}")),
        ServeError::Lock(ward_runtime::ServeLockError::Held { .. })
        | ServeError::ForeignDatabase { .. } => CliError::usage(e.to_string()),
        ServeError::NamesDropped { names } => CliError::usage(format!(
            "the server certificate covers {} which the --hostname list leaves out; devices that reach \
             the controller by that name could no longer verify it (and their offline timers would \
             run). Add it back with --hostname, or drop it deliberately with --drop-hostname NAME \
             once no device uses it (wardctl device list shows their server URL)",
            names.join(", ")
        )),
        e => CliError::failed(e.to_string()),
    }
}

/// The collector of `--audit-syslog`, its URL and CA checked (usage errors, before anything
/// is created or stored).
fn audit_collector(args: &ServeArgs) -> Result<Option<Collector>, CliError> {
    let Some(url) = &args.audit_syslog else {
        return Ok(None);
    };
    let target: SyslogTarget = url
        .parse()
        .map_err(|e| CliError::usage(format!("--audit-syslog: {e}")))?;
    let tls = match (target.transport, &args.audit_syslog_ca) {
        (Transport::Tls, Some(path)) => Some(
            ward_runtime::syslog::tls_config_from_file(path)
                .map_err(|e| CliError::usage(format!("--audit-syslog-ca: {e}")))?,
        ),
        (Transport::Tls, None) => {
            return Err(CliError::usage(
                "--audit-syslog tls://… needs --audit-syslog-ca FILE, the CA certificate (PEM) that signed the collector's certificate: this build of Ward has no system trust store",
            ));
        }
        (_, Some(_)) => {
            return Err(CliError::usage(format!(
                "--audit-syslog-ca is for a tls:// collector; {target} is not encrypted"
            )));
        }
        (_, None) => None,
    };
    Collector::new(target, tls)
        .map(Some)
        .map_err(|e| CliError::usage(format!("--audit-syslog: {e}")))
}

/// Every `--hostname` must be a DNS name or an IP address, checked before anything changes.
fn check_hostnames(names: &[String]) -> Result<(), CliError> {
    for name in names {
        if name.parse::<std::net::IpAddr>().is_err() && !ward_certs::ca::is_dns_name(name) {
            return Err(CliError::usage(format!(
                "--hostname {name:?} is not a DNS name (letters, digits, hyphens and dots) or an IP address"
            )));
        }
    }
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
