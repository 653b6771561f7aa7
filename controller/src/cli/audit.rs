//! `wardctl audit …`

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{ListAuditRequest, VerifyAuditRequest};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::{CliError, Exit};
use super::output::{OutputFormat, print_json, table};
use crate::core::Timestamp;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit entries, oldest first
    List {
        /// Only entries at or after this time: RFC 3339 (2026-11-24T08:00:00Z) or a span ago (24h)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only entries about this device (its id)
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
        /// Only entries by this actor: an admin name, or ward://device/<id>, or controller
        #[arg(long, value_name = "ACTOR")]
        actor: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Check the whole hash chain and the controller's signature over its head; exit 1 and
    /// the first bad entry after any edit, deletion, reordering or truncation
    Verify {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Serialize)]
struct EntryView {
    seq: u64,
    at: String,
    actor: String,
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
}

fn since_ms(text: &str) -> Result<i64, CliError> {
    if let Ok(t) = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok(Timestamp::from_datetime(t).unix_ms());
    }
    let ago = super::parse_duration(text).map_err(|_| {
        CliError::usage(format!(
            "--since {text:?}: use an RFC 3339 time (2026-11-24T08:00:00Z) or a span ago (24h)"
        ))
    })?;
    let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc());
    Ok(now.unix_ms()
        - i64::try_from(ago.as_millis())
            .unwrap_or(i64::MAX)
            .min(now.unix_ms()))
}

fn actor_uri(actor: &str) -> String {
    if actor.contains("://") || actor == "controller" || actor == "enrollment-token" {
        actor.to_owned()
    } else {
        format!("ward://admin/{actor}")
    }
}

pub async fn run(cmd: AuditCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        AuditCommand::List {
            since,
            device,
            actor,
            connect,
        } => {
            let mut request = ListAuditRequest {
                since_unix_ms: since.as_deref().map(since_ms).transpose()?.unwrap_or(0),
                actor: actor.as_deref().map(actor_uri).unwrap_or_default(),
                target: device.unwrap_or_default(),
                after_seq: 0,
                limit: 0,
            };
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
        AuditCommand::Verify { connect } => {
            let mut client = admin_client(&connect).await?;
            let v = client
                .verify_audit(VerifyAuditRequest {})
                .await?
                .into_inner();
            let view = VerifyView {
                ok: v.ok,
                entries: v.entries,
                first_bad_seq: (v.first_bad_seq != 0).then_some(v.first_bad_seq),
                problem: (!v.problem.is_empty()).then_some(v.problem),
            };
            match output {
                OutputFormat::Json => print_json(&view)?,
                OutputFormat::Table if view.ok => println!(
                    "audit log intact: {} entries, head signed by the controller",
                    view.entries
                ),
                OutputFormat::Table => println!(
                    "audit log NOT intact: first bad entry {}: {}",
                    view.first_bad_seq.unwrap_or(0),
                    view.problem.clone().unwrap_or_default()
                ),
            }
            if view.ok {
                Ok(())
            } else {
                Err(CliError::new(
                    Exit::Failed,
                    format!(
                        "audit verification failed at entry {}",
                        view.first_bad_seq.unwrap_or(0)
                    ),
                ))
            }
        }
    }
}
