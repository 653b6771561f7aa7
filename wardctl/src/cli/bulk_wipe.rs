//! `wardctl device wipe --user U | --noncompliant [--check CHECK] | --stdin`, `--dry-run`,
//! `--approve BATCH`: many devices in one call, one commit, one approval.

use std::io::{IsTerminal, Read};
use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::transport::Channel;
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::{self, BulkWipeRequest, GetBulkWipeRequest};

use super::ConnectArgs;
use super::commands::state_name;
use super::connect::admin_client;
use super::error::{CliError, Exit};
use super::output::{OutputFormat, print_json, table};
use ward_core::command::MAX_BULK_WIPE;
use ward_core::{Check, WipeScope};

/// A wipe, of one device or many, names what it erases.
pub(super) const SCOPE_REQUIRED: &str = "--scope messaging|full is required";

/// How the devices of a bulk wipe are chosen (exactly one), and what else it may do.
#[derive(Debug, Default, clap::Args)]
pub(super) struct BulkArgs {
    /// Wipe every active device of this user (several devices in one call; see also `user offboard`)
    #[arg(long, value_name = "EMAIL", conflicts_with_all = ["device", "noncompliant", "stdin", "approve"])]
    pub user: Option<String>,
    /// Wipe every active device whose last compliance report failed its policy
    #[arg(long, conflicts_with_all = ["device", "stdin", "approve"])]
    pub noncompliant: bool,
    /// With --noncompliant: only devices failing this check
    #[arg(long, requires = "noncompliant", value_name = "CHECK", value_parser = super::one_of::<ward_core::Check>())]
    pub check: Option<Check>,
    /// Read device ids or host names from stdin, one a line (at most 10,000; blank lines are
    /// skipped). One unknown or ambiguous entry refuses the whole list
    #[arg(long, conflicts_with_all = ["device", "approve"])]
    pub stdin: bool,
    /// List what would be wiped (and whether it would need a second admin's approval); wipe nothing
    #[arg(long, conflicts_with_all = ["wait", "approve"])]
    pub dry_run: bool,
    /// Approve a bulk wipe another admin issued, as a whole (BATCH as the wipe reported it: ADMIN:KEY)
    #[arg(long, value_name = "BATCH", conflicts_with_all = ["device", "scope", "reason", "wait"])]
    pub approve: Option<String>,
}

impl BulkArgs {
    pub(super) fn selected(&self) -> bool {
        self.user.is_some() || self.noncompliant || self.stdin || self.approve.is_some()
    }
}

/// What `wait` needs beside the selection.
pub(super) struct Follow {
    pub wait: Option<Duration>,
    pub idempotency_key: Option<String>,
    pub connect: ConnectArgs,
}

#[derive(Serialize)]
struct DeviceView {
    /// The device's id (README, "JSON output": the canonical name).
    device_id: String,
    /// Deprecated alias of `device_id`, kept for existing scripts.
    id: String,
    hostname: String,
    user: String,
    /// "issued", "already-issued", "would-issue", "skipped" (revoked or retired), or null.
    outcome: Option<String>,
    command_id: Option<String>,
    /// The wipe's state; null when none was issued (canonical name).
    wipe_state: Option<&'static str>,
    /// Deprecated alias of `wipe_state`, kept for existing scripts (not the device's state:
    /// that is `device_state`).
    state: Option<&'static str>,
    receipt_verified: bool,
    failure_reason: Option<String>,
    device_state: &'static str,
}

#[derive(Serialize)]
struct ReportView {
    batch: String,
    scope: &'static str,
    dry_run: bool,
    needs_approval: bool,
    issued: u32,
    complete: bool,
    devices: Vec<DeviceView>,
}

impl From<v1::BulkWipeReport> for ReportView {
    fn from(r: v1::BulkWipeReport) -> Self {
        let some = |s: String| (!s.is_empty()).then_some(s);
        Self {
            scope: ward_proto::vocab::wipe_scope(r.scope).map_or("unknown", WipeScope::as_str),
            batch: r.batch,
            dry_run: r.dry_run,
            needs_approval: r.needs_approval,
            issued: r.issued,
            complete: r.complete,
            devices: r
                .devices
                .into_iter()
                .map(|d| DeviceView {
                    wipe_state: (!d.command_id.is_empty()).then(|| state_name(d.state)),
                    state: (!d.command_id.is_empty()).then(|| state_name(d.state)),
                    device_state: match v1::DeviceState::try_from(d.device_state) {
                        Ok(v1::DeviceState::Revoked) => "revoked",
                        Ok(v1::DeviceState::Retired) => "retired",
                        _ => "active",
                    },
                    device_id: d.device_id.clone(),
                    id: d.device_id,
                    hostname: d.hostname,
                    user: d.user,
                    outcome: some(d.outcome),
                    command_id: some(d.command_id),
                    receipt_verified: d.receipt_verified,
                    failure_reason: some(d.failure_reason),
                })
                .collect(),
        }
    }
}

impl ReportView {
    fn pending(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| d.command_id.is_some() && !is_terminal(d.state))
            .count()
    }

    fn all_succeeded(&self) -> bool {
        self.devices
            .iter()
            .filter(|d| d.command_id.is_some())
            .all(|d| d.state == Some("succeeded") && d.receipt_verified)
    }

    fn print(&self, output: OutputFormat) -> Result<(), CliError> {
        if output == OutputFormat::Json {
            return print_json(self);
        }
        let mut t = table(&[
            "device", "hostname", "user", "outcome", "wipe", "receipt", "device",
        ]);
        for d in &self.devices {
            t.add_row(vec![
                d.id.clone(),
                d.hostname.clone(),
                d.user.clone(),
                d.outcome.clone().unwrap_or_else(|| "-".into()),
                d.state.unwrap_or("-").to_owned(),
                if d.receipt_verified { "verified" } else { "-" }.to_owned(),
                d.device_state.to_owned(),
            ]);
        }
        println!("{t}");
        let count = |o: &str| {
            self.devices
                .iter()
                .filter(|d| d.outcome.as_deref() == Some(o))
                .count()
        };
        let verb = if self.dry_run { "would wipe" } else { "wipes" };
        eprintln!(
            "Bulk wipe {} ({} scope) {verb} {} device(s): {} issued now, {} issued before, {} skipped (revoked or retired).",
            self.batch,
            self.scope,
            self.devices.len() - count("skipped"),
            if self.dry_run {
                count("would-issue")
            } else {
                count("issued")
            },
            count("already-issued"),
            count("skipped"),
        );
        if self.needs_approval {
            eprintln!(
                "A second admin must approve it {}: wardctl device wipe --approve {}",
                if self.dry_run {
                    "before any wipe"
                } else {
                    "first"
                },
                self.batch
            );
        }
        Ok(())
    }
}

fn is_terminal(state: Option<&str>) -> bool {
    matches!(
        state,
        Some("succeeded" | "failed" | "cancelled" | "expired")
    )
}

/// Device ids or host names from stdin, one a line.
fn read_stdin() -> Result<Vec<String>, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| CliError::usage(format!("cannot read the device list from stdin: {e}")))?;
    let entries: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if entries.is_empty() {
        return Err(CliError::usage(
            "stdin held no device ids or host names: nothing to wipe",
        ));
    }
    if entries.len() > MAX_BULK_WIPE {
        return Err(CliError::usage(format!(
            "stdin named {} devices, more than the {MAX_BULK_WIPE} one bulk wipe may: split the list",
            entries.len()
        )));
    }
    Ok(entries)
}

pub(super) async fn run(
    bulk: BulkArgs,
    scope: Option<WipeScope>,
    reason: Option<String>,
    follow: Follow,
    output: OutputFormat,
) -> Result<(), CliError> {
    let mut client = admin_client(&follow.connect).await?;
    if let Some(batch) = bulk.approve {
        let report: ReportView = client
            .approve_bulk_wipe(GetBulkWipeRequest { batch })
            .await?
            .into_inner()
            .into();
        report.print(output)?;
        return Ok(());
    }
    let reason = reason.unwrap_or_default();
    super::device_lifecycle::require_reason(&reason, "wiped")?;
    let scope = scope.ok_or_else(|| CliError::usage(SCOPE_REQUIRED))?;
    if follow.wait.is_some_and(|t| t.is_zero()) {
        return Err(CliError::usage("--timeout must be longer than 0s"));
    }
    let devices = if bulk.stdin {
        read_stdin()?
    } else {
        Vec::new()
    };
    let key = follow
        .idempotency_key
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let report: ReportView = client
        .bulk_wipe(BulkWipeRequest {
            user: bulk.user.unwrap_or_default(),
            noncompliant: bulk.noncompliant,
            failing_check: bulk
                .check
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            devices,
            scope: v1::WipeScope::from(scope) as i32,
            reason,
            idempotency_key: key,
            dry_run: bulk.dry_run,
        })
        .await?
        .into_inner()
        .into();
    match follow.wait {
        Some(timeout) => wait(&mut client, report, timeout, output).await,
        None => report.print(output),
    }
}

async fn wait(
    client: &mut AdminServiceClient<Channel>,
    mut report: ReportView,
    timeout: Duration,
    output: OutputFormat,
) -> Result<(), CliError> {
    let start = Instant::now();
    let live = std::io::stderr().is_terminal();
    let mut pause = Duration::from_millis(100);
    let mut last = usize::MAX;
    loop {
        let pending = report.pending();
        if pending == 0 {
            break;
        }
        if live && pending != last {
            eprintln!(
                "{:>7.1}s  {pending} of {} wipes pending",
                start.elapsed().as_secs_f64(),
                report.devices.len()
            );
            last = pending;
        }
        if start.elapsed() >= timeout {
            report.print(output)?;
            let awaiting = report
                .devices
                .iter()
                .filter(|d| d.state == Some("awaiting_approval"))
                .count();
            let hint = if awaiting > 0 {
                format!(
                    "{awaiting} wait for a second admin's approval (wardctl device wipe --approve {})",
                    report.batch
                )
            } else {
                "they are wiped when they next connect".to_owned()
            };
            return Err(CliError::new(
                Exit::TimedOut,
                format!(
                    "timed out after {}: {pending} wipe(s) still pending; {hint}. Run the same command with --idempotency-key {} to follow up",
                    ward_core::duration::format(timeout),
                    report.batch.split_once(':').map_or("", |(_, k)| k)
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
        let outcomes: std::collections::HashMap<String, Option<String>> = report
            .devices
            .iter()
            .map(|d| (d.id.clone(), d.outcome.clone()))
            .collect();
        let mut next: ReportView = client
            .get_bulk_wipe(GetBulkWipeRequest {
                batch: report.batch.clone(),
            })
            .await?
            .into_inner()
            .into();
        // Keep what the first answer said each device's outcome was, and the skipped devices.
        for d in next.devices.iter_mut() {
            d.outcome = outcomes.get(&d.id).cloned().flatten();
        }
        next.devices
            .extend(report.devices.drain(..).filter(|d| d.command_id.is_none()));
        next.issued = report.issued;
        report = next;
    }
    report.print(output)?;
    if report.all_succeeded() {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::Failed,
            format!(
                "bulk wipe {} finished, but not every device was wiped with a verified receipt",
                report.batch
            ),
        ))
    }
}
