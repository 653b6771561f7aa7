//! `wardctl user …`

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{self, GetOffboardReportRequest, OffboardUserRequest};

use super::ConnectArgs;
use super::commands::state_name;
use super::connect::admin_client;
use super::error::{CliError, Exit};
use super::output::{OutputFormat, print_json, table};
use ward_core::Timestamp;
use ward_core::duration::{self, DurationRange, days, seconds};

/// `user offboard --wait --timeout`.
const TIMEOUT: DurationRange = DurationRange::new(seconds(1), days(7), "30m");

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// List every user the controller knows: by their devices, their unused enrollment
    /// tokens, or an identity provider's provisioning (SCIM, with its active/deactivated state)
    #[command(
        after_help = "Examples:\n  wardctl user list\n  wardctl user list --output json | jq '.[] | select(.directory_state == \"deactivated\")'"
    )]
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Offboard a leaver: wipe the messaging data on every device of theirs, revoke each device
    /// once its wipe has finished, and stop their unused enrollment tokens. Safe to run again:
    /// nothing is issued twice
    #[command(
        after_help = "Examples:\n  wardctl user offboard bob@hospital.org --reason \"left the hospital 2026-11-30\"\n  wardctl user offboard bob@hospital.org --reason \"contract ended\" --wait --output json\n  (a batch from HR's CSV: deploy/examples/hr-offboard.sh)"
    )]
    Offboard {
        /// The leaver's e-mail address, as their devices were enrolled with (`wardctl device list --user EMAIL` shows them)
        #[arg(value_name = "EMAIL")]
        email: String,
        /// Why (required; kept with every command for the audit)
        #[arg(long)]
        reason: String,
        /// Wait until every device is finished (exit 0 all wiped with verified receipts,
        /// 1 some wipe failed, 5 timed out with devices still pending)
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "5m", value_parser = super::DurationArg(TIMEOUT), allow_hyphen_values = true, requires = "wait", value_name = "DURATION", help = TIMEOUT.help("How long --wait waits"))]
        timeout: Duration,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// One device of an offboarding report (also the console's downloadable report).
#[derive(Serialize)]
pub(crate) struct DeviceView {
    /// The device's id (README, "JSON output": the canonical name).
    pub(crate) device_id: String,
    /// Deprecated alias of `device_id`, kept for existing scripts.
    pub(crate) id: String,
    pub(crate) hostname: String,
    /// The wipe's state, or "not-issued" for a device revoked before the offboarding
    /// (canonical name: the device's own state is not this).
    pub(crate) wipe_state: &'static str,
    /// Deprecated alias of `wipe_state`, kept for existing scripts (it is not the device's
    /// state).
    pub(crate) state: &'static str,
    pub(crate) receipt_verified: bool,
    /// Where the destroyed key was held, from the verified receipt: "tpm", "keyring",
    /// "file-best-effort"; null when unknown.
    pub(crate) key_protection: Option<String>,
    pub(crate) revoked: bool,
    pub(crate) command_id: Option<String>,
    pub(crate) issued_at: Option<String>,
    pub(crate) finished_at: Option<String>,
    pub(crate) failure_reason: Option<String>,
}

/// `user offboard --output json`'s report (also the console's downloadable report).
#[derive(Serialize)]
pub(crate) struct ReportView {
    pub(crate) user: String,
    pub(crate) complete: bool,
    pub(crate) tokens_invalidated: u32,
    pub(crate) devices: Vec<DeviceView>,
}

fn time(ms: i64) -> Option<String> {
    (ms != 0).then(|| Timestamp::from_unix_ms(ms).rfc3339())
}

impl ReportView {
    pub(crate) fn new(r: v1::OffboardReport, tokens_invalidated: u32) -> Self {
        Self {
            user: r.user,
            complete: r.complete,
            tokens_invalidated,
            devices: r
                .devices
                .into_iter()
                .map(|d| {
                    let wipe_state = if d.command_id.is_empty() {
                        "not-issued"
                    } else {
                        state_name(d.state)
                    };
                    DeviceView {
                        wipe_state,
                        state: wipe_state,
                        device_id: d.device_id.clone(),
                        id: d.device_id,
                        hostname: d.hostname,
                        receipt_verified: d.receipt_verified,
                        key_protection: (!d.key_protection.is_empty()).then_some(d.key_protection),
                        revoked: d.revoked,
                        command_id: (!d.command_id.is_empty()).then_some(d.command_id),
                        issued_at: time(d.created_at_unix_ms),
                        finished_at: time(d.finished_at_unix_ms),
                        failure_reason: (!d.failure_reason.is_empty()).then_some(d.failure_reason),
                    }
                })
                .collect(),
        }
    }

    fn all_succeeded(&self) -> bool {
        self.devices
            .iter()
            .all(|d| d.state == "succeeded" && d.receipt_verified)
    }

    fn pending(&self) -> Vec<&DeviceView> {
        self.devices
            .iter()
            .filter(|d| !(d.revoked && d.finished_at.is_some() || d.state == "not-issued"))
            .collect()
    }

    fn print(&self, output: OutputFormat) -> Result<(), CliError> {
        if output == OutputFormat::Json {
            return print_json(self);
        }
        let mut t = table(&[
            "device", "hostname", "wipe", "receipt", "revoked", "finished",
        ]);
        for d in &self.devices {
            t.add_row(vec![
                d.id.clone(),
                d.hostname.clone(),
                d.state.to_owned(),
                if d.receipt_verified {
                    match &d.key_protection {
                        Some(k) => format!("verified (key: {k})"),
                        None => "verified".into(),
                    }
                } else {
                    "-".into()
                },
                if d.revoked { "yes".into() } else { "no".into() },
                d.finished_at.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        println!("{t}");
        println!(
            "{}: {} ({} unused enrollment tokens stopped)",
            self.user,
            if self.complete {
                "complete"
            } else {
                "in progress"
            },
            self.tokens_invalidated
        );
        Ok(())
    }
}

/// One user of `user list`.
#[derive(Serialize)]
struct UserView {
    user: String,
    devices: u32,
    active_devices: u32,
    usable_tokens: u32,
    /// Whether an identity provider provisioned the user (SCIM).
    provisioned: bool,
    /// "active", "deactivated" or "deleted" as the identity provider last said; null when it
    /// never provisioned the user.
    directory_state: Option<String>,
    /// The SCIM resource's id and userName.
    scim_id: Option<String>,
    scim_user_name: Option<String>,
    external_id: Option<String>,
    /// The SCIM client that last changed the user.
    directory_updated_by: Option<String>,
    directory_updated_at: Option<String>,
    deactivated_at: Option<String>,
}

impl From<v1::UserInfo> for UserView {
    fn from(u: v1::UserInfo) -> Self {
        let d = u.directory;
        Self {
            user: u.user,
            devices: u.devices,
            active_devices: u.active_devices,
            usable_tokens: u.usable_tokens,
            provisioned: d.is_some(),
            directory_state: d.as_ref().map(|d| d.state.clone()),
            scim_id: d.as_ref().map(|d| d.id.clone()),
            scim_user_name: d.as_ref().map(|d| d.user_name.clone()),
            external_id: d
                .as_ref()
                .map(|d| d.external_id.clone())
                .filter(|e| !e.is_empty()),
            directory_updated_by: d.as_ref().map(|d| d.updated_by.clone()),
            directory_updated_at: d.as_ref().and_then(|d| time(d.updated_at_unix_ms)),
            deactivated_at: d.as_ref().and_then(|d| time(d.deactivated_at_unix_ms)),
        }
    }
}

async fn list(connect: ConnectArgs, output: OutputFormat) -> Result<(), CliError> {
    let mut client = admin_client(&connect).await?;
    let users: Vec<UserView> = client
        .list_users(v1::ListUsersRequest {})
        .await?
        .into_inner()
        .users
        .into_iter()
        .map(UserView::from)
        .collect();
    match output {
        OutputFormat::Json => print_json(&users),
        OutputFormat::Table => {
            if users.is_empty() {
                eprintln!(
                    "No users yet (wardctl token create --user EMAIL, or SCIM provisioning)."
                );
                return Ok(());
            }
            let mut t = table(&["user", "devices", "active", "tokens", "identity provider"]);
            for u in &users {
                let directory = match (&u.directory_state, &u.directory_updated_by) {
                    (Some(state), Some(by)) => format!("{state} (by {by})"),
                    _ => "-".to_owned(),
                };
                t.add_row([
                    u.user.clone(),
                    u.devices.to_string(),
                    u.active_devices.to_string(),
                    u.usable_tokens.to_string(),
                    directory,
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

pub(crate) async fn run(cmd: UserCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        UserCommand::List { connect } => list(connect, output).await,
        UserCommand::Offboard {
            email,
            reason,
            wait,
            timeout,
            connect,
        } => {
            if reason.trim().is_empty() {
                return Err(CliError::usage(
                    "--reason must not be empty: say why the user is offboarded",
                ));
            }
            if wait && timeout.is_zero() {
                return Err(CliError::usage("--timeout must be longer than 0s"));
            }
            let mut client = admin_client(&connect).await?;
            let first = client
                .offboard_user(OffboardUserRequest {
                    user: email.clone(),
                    reason,
                })
                .await?
                .into_inner();
            let tokens = first.tokens_invalidated;
            let mut report = ReportView::new(first, tokens);
            if !wait {
                return report.print(output);
            }
            let start = Instant::now();
            let live = std::io::stderr().is_terminal();
            let mut last = usize::MAX;
            let mut pause = Duration::from_millis(100);
            while !report.complete {
                let pending = report.pending().len();
                if live && pending != last {
                    eprintln!(
                        "{:>7.1}s  {pending} of {} devices pending",
                        start.elapsed().as_secs_f64(),
                        report.devices.len()
                    );
                    last = pending;
                }
                if start.elapsed() >= timeout {
                    report.print(output)?;
                    let ids: Vec<&str> = report.pending().iter().map(|d| d.id.as_str()).collect();
                    let awaiting = report
                        .pending()
                        .iter()
                        .filter(|d| d.state == "awaiting_approval")
                        .count();
                    let hint = if awaiting > 0 {
                        format!(
                            "{awaiting} wait for a second admin's approval (wardctl command approve ID; `command list --state awaiting_approval`)"
                        )
                    } else {
                        "they are wiped when they next connect".to_owned()
                    };
                    return Err(CliError::new(
                        Exit::TimedOut,
                        format!(
                            "timed out after {}: {} device(s) still pending ({}); {hint}. Run the same command again to follow up",
                            duration::format(timeout),
                            ids.len(),
                            ids.join(", ")
                        ),
                    ));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                let next = client
                    .get_offboard_report(GetOffboardReportRequest {
                        user: email.clone(),
                    })
                    .await?
                    .into_inner();
                report = ReportView::new(next, tokens);
            }
            report.print(output)?;
            if report.all_succeeded() {
                Ok(())
            } else {
                Err(CliError::new(
                    Exit::Failed,
                    format!(
                        "offboarding of {} finished, but not every device was wiped with a verified receipt",
                        report.user
                    ),
                ))
            }
        }
    }
}
