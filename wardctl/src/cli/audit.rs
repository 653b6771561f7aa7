//! `wardctl audit …`

use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{ListAuditRequest, VerifyAuditRequest};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::{CliError, Exit};
use super::output::{OutputFormat, print_json, table};
use ward_core::Timestamp;
use ward_core::audit::checkpoint::{MAX_PER_VERIFICATION, read_files, select_for_verification};
use ward_core::duration::{DurationRange, days, seconds};

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// List audit entries, oldest first
    #[command(
        after_help = "Examples:\n  wardctl audit list --since 24h\n  wardctl audit list --device ward-laptop-17 --since 2026-11-24T08:00:00Z --until 12h\n  wardctl audit list --actor alice --output json"
    )]
    List {
        #[command(flatten)]
        filter: AuditSelection,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Export the audit log as JSON lines, one entry a line, oldest first (for an archive or a
    /// SIEM; always JSON lines: a global --output is ignored). Each line keeps the details
    /// exactly as stored and hashed (`details_json`), so the hash chain can be recomputed from
    /// the export alone
    #[command(
        arg = super::output_not_shown(),
        after_help = "Examples:\n  wardctl audit export --out nov.jsonl --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z\n  wardctl audit export --since 24h | jq -c 'select(.action == \"command.issue\")'"
    )]
    Export {
        #[command(flatten)]
        filter: AuditSelection,
        /// Write to this new file (mode 0600; never over an existing file) instead of
        /// standard output
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Check the whole hash chain and the controller's signature over its head; exit 1 and
    /// the first bad entry after any edit, deletion, reordering or truncation, and for an
    /// emptied log. With --checkpoints, also that the log still holds every signed checkpoint
    /// there: that finds a log cut back or rolled back to an older backup, even one whose head
    /// the controller once signed
    #[command(
        after_help = "Examples:\n  wardctl audit verify\n  wardctl audit verify --checkpoints /var/lib/ward-checkpoints --output json"
    )]
    Verify {
        /// A directory of signed checkpoints (serve --audit-checkpoints, or lines collected
        /// from the controller's log): every *.json and *.jsonl file, one checkpoint a line
        #[arg(long, value_name = "DIR")]
        checkpoints: Option<PathBuf>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// Which entries `audit list` and `audit export` take.
#[derive(Debug, clap::Args)]
pub(super) struct AuditSelection {
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, help = AGO.help("Only entries at or after this time: RFC 3339 (2026-11-24T08:00:00Z) or a span ago"))]
    since: Option<String>,
    #[arg(long, value_name = "TIME", allow_hyphen_values = true, help = AGO.help("Only entries before this time: RFC 3339 (2026-11-25T08:00:00Z) or a span ago"))]
    until: Option<String>,
    /// Only the trail of this device (its id or host name): entries about the device and
    /// about its commands
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Only entries by this actor: an admin name, or ward://device/<id>, or controller
    #[arg(long, value_name = "ACTOR")]
    actor: Option<String>,
}

impl AuditSelection {
    fn request(self) -> Result<ListAuditRequest, CliError> {
        let since_unix_ms = self
            .since
            .as_deref()
            .map(|t| time_ms("--since", t))
            .transpose()?
            .unwrap_or(0);
        let until_unix_ms = self
            .until
            .as_deref()
            .map(|t| time_ms("--until", t))
            .transpose()?
            .unwrap_or(0);
        Ok(ListAuditRequest {
            since_unix_ms,
            until_unix_ms,
            actor: self.actor.as_deref().map(actor_uri).unwrap_or_default(),
            device: self.device.map(|d| d.trim().to_owned()).unwrap_or_default(),
            target: String::new(),
            after_seq: 0,
            limit: 0,
        })
    }
}

#[derive(Serialize)]
struct EntryView {
    seq: u64,
    at: String,
    /// Who, as recorded: `ward://admin/NAME`, `ward://device/ID`, `controller`, …
    actor: String,
    /// The admin's plain name when an admin acted (null otherwise): the name `admin list`,
    /// `created_by` and `--actor` use.
    admin: Option<String>,
    action: String,
    target: String,
    details: serde_json::Value,
    prev_hash: String,
    hash: String,
}

#[derive(Serialize)]
struct VerifyView {
    ok: bool,
    entries: u64,
    first_bad_seq: Option<u64>,
    problem: Option<String>,
    problems: Vec<ProblemView>,
    /// Checkpoints compared with the log (signed by this controller).
    checkpoints: u64,
    chain: Option<String>,
}

#[derive(Serialize)]
struct ProblemView {
    seq: Option<u64>,
    text: String,
}

/// `audit list --since|--until` given as a span before now.
const AGO: DurationRange = DurationRange::new(seconds(1), days(3650), "24h");

/// A time flag: RFC 3339, or a span before now.
fn time_ms(flag: &str, text: &str) -> Result<i64, CliError> {
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok(Timestamp::from_datetime(t).unix_ms());
    }
    let ago = AGO.parse(flag, text).map_err(|e| {
        CliError::usage(format!(
            "{e}; or an RFC 3339 time such as 2026-11-24T08:00:00Z"
        ))
    })?;
    let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
    Ok(now.unix_ms()
        - i64::try_from(ago.as_millis())
            .unwrap_or(i64::MAX)
            .min(now.unix_ms()))
}

/// The plain name of the admin an audit actor (`ward://admin/NAME`) names.
pub(super) fn admin_name(actor: &str) -> Option<String> {
    match ward_certs::identity::Identity::from_uri(actor) {
        Ok(ward_certs::identity::Identity::Admin(name)) => Some(name.to_string()),
        _ => None,
    }
}

fn actor_uri(actor: &str) -> String {
    if actor.contains("://")
        || actor == ward_core::audit::CONTROLLER
        || actor == ward_core::audit::ENROLLMENT
    {
        actor.to_owned()
    } else {
        format!("ward://admin/{actor}")
    }
}

pub(super) async fn run(cmd: AuditCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        AuditCommand::Export {
            filter,
            out,
            connect,
        } => {
            super::audit_export::export(filter.request()?, out.as_deref(), &connect).await?;
            Ok(())
        }
        AuditCommand::List { filter, connect } => {
            let mut request = filter.request()?;
            let mut client = admin_client(&connect).await?;
            // Page through: the server answers at most a thousand entries at a time.
            let mut all = Vec::new();
            loop {
                let page = client.list_audit(request.clone()).await?.into_inner();
                let last = page.entries.last().map(|e| e.seq);
                all.extend(page.entries);
                match (page.truncated, last) {
                    (true, Some(seq)) => request.after_seq = seq,
                    _ => break,
                }
            }
            let entries: Vec<EntryView> = all
                .into_iter()
                .map(|e| EntryView {
                    seq: e.seq,
                    at: Timestamp::from_unix_ms(e.at_unix_ms).rfc3339(),
                    details: serde_json::from_str(&e.details_json)
                        .unwrap_or(serde_json::Value::String(e.details_json)),
                    admin: admin_name(&e.actor),
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    prev_hash: e.prev_hash,
                    hash: e.hash,
                })
                .collect();
            match output {
                OutputFormat::Json => print_json(&entries),
                OutputFormat::Table => {
                    let mut t = table(&["seq", "time", "actor", "action", "target", "details"]);
                    for e in &entries {
                        t.add_row(vec![
                            e.seq.to_string(),
                            e.at.clone(),
                            e.actor.clone(),
                            e.action.clone(),
                            e.target.clone(),
                            e.details.to_string(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        AuditCommand::Verify {
            checkpoints,
            connect,
        } => {
            let checkpoints = match checkpoints {
                Some(dir) => read_checkpoints(&dir)?,
                None => Vec::new(),
            };
            let mut client = admin_client(&connect).await?;
            let v = client
                .verify_audit(VerifyAuditRequest { checkpoints })
                .await?
                .into_inner();
            let view = VerifyView {
                ok: v.ok,
                entries: v.entries,
                first_bad_seq: (v.first_bad_seq != 0).then_some(v.first_bad_seq),
                problem: (!v.problem.is_empty()).then_some(v.problem),
                problems: v
                    .problems
                    .into_iter()
                    .map(|p| ProblemView {
                        seq: (p.seq != 0).then_some(p.seq),
                        text: p.text,
                    })
                    .collect(),
                checkpoints: v.checkpoints,
                chain: (!v.chain.is_empty()).then_some(v.chain),
            };
            match output {
                OutputFormat::Json => print_json(&view)?,
                OutputFormat::Table if view.ok => println!(
                    "audit log intact: {} entries, head signed by the controller{}",
                    view.entries,
                    match view.checkpoints {
                        0 => String::new(),
                        n => format!(", {n} signed checkpoints held"),
                    }
                ),
                OutputFormat::Table => {
                    println!("audit log NOT intact:");
                    for p in &view.problems {
                        match p.seq {
                            Some(seq) => println!("  from entry {seq}: {}", p.text),
                            None => println!("  {}", p.text),
                        }
                    }
                }
            }
            if view.ok {
                Ok(())
            } else {
                Err(CliError::new(
                    Exit::Failed,
                    match view.first_bad_seq {
                        Some(seq) => format!("audit verification failed at entry {seq}"),
                        None => format!(
                            "audit verification failed: {}",
                            view.problem.unwrap_or_default()
                        ),
                    },
                ))
            }
        }
    }
}

/// The checkpoints in `dir`, in their text form, at most as many as one verification takes.
/// Anything in the directory's checkpoint files that is not a checkpoint is bad input.
fn read_checkpoints(dir: &std::path::Path) -> Result<Vec<String>, CliError> {
    if !dir.is_dir() {
        return Err(CliError::usage(format!(
            "--checkpoints {}: not a directory",
            dir.display()
        )));
    }
    let read = ward_files::read_json_files(dir)
        .map(read_files)
        .map_err(|e| {
            CliError::usage(format!("--checkpoints: cannot read {}: {e}", dir.display()))
        })?;
    if let Some(bad) = read.bad.first() {
        return Err(CliError::usage(format!(
            "--checkpoints: {bad}{}; move files that are not Ward audit checkpoints out of {}",
            match read.bad.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            },
            dir.display()
        )));
    }
    if read.checkpoints.is_empty() {
        return Err(CliError::usage(format!(
            "--checkpoints: no checkpoint in {} (*.json or *.jsonl files, as serve --audit-checkpoints writes them)",
            dir.display()
        )));
    }
    Ok(
        select_for_verification(read.checkpoints, MAX_PER_VERIFICATION)
            .iter()
            .map(ToString::to_string)
            .collect(),
    )
}
