//! `wardctl device …`

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{self, GetDeviceRequest, ListDevicesRequest};

use super::ConnectArgs;
use super::commands::{CommandView, print_command};
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_fields, print_json, table};
use crate::core::Timestamp;

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// List enrolled devices
    List {
        /// Only this user's devices
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Only devices whose last compliance report failed their policy
        #[arg(long)]
        noncompliant: bool,
        /// With --noncompliant: only devices failing this check (disk_encryption, password_rules, auto_lock)
        #[arg(long, requires = "noncompliant", value_name = "CHECK")]
        reason: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show one device
    Show {
        /// Device id (a UUID, as `device list` shows)
        device: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Revoke a device: its certificate is refused at once, at the TLS handshake and on every call
    Revoke {
        /// Device id
        device: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Lost mode: lock the device, wipe its messaging data, then revoke it once the wipe has finished
    Lost {
        /// Device id
        device: String,
        /// Why (required)
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Lock the device's screen
    Lock {
        /// Device id
        device: String,
        /// Text for the lock screen, where the platform can show one
        #[arg(long, default_value = "")]
        message: String,
        #[command(flatten)]
        issue: IssueArgs,
    },
    /// Unlock the device's screen sessions
    Unlock {
        /// Device id
        device: String,
        #[command(flatten)]
        issue: IssueArgs,
    },
    /// Wipe the messaging data (crypto-erase), or the whole device
    Wipe {
        /// Device id
        device: String,
        /// What to wipe
        #[arg(long, value_parser = ["messaging", "full"])]
        scope: String,
        /// Why (required; kept with the command for the audit)
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        issue: IssueArgs,
    },
}

/// Options every device command takes.
#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// Wait until the device finishes the command (exit 0 succeeded, 1 failed, 5 timed out)
    #[arg(long)]
    wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = "60s", value_parser = super::parse_duration, requires = "wait", value_name = "DURATION")]
    timeout: std::time::Duration,
    /// Retrying with the same key returns the first command instead of making a second one
    /// [default: a new random key]
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// One device, as scripts see it. `compliant` is null until the device has sent a
/// compliance report.
#[derive(Serialize)]
struct DeviceView {
    id: String,
    user: String,
    hostname: String,
    os: String,
    last_seen: Option<String>,
    compliant: Option<bool>,
    state: &'static str,
    os_name: String,
    os_version: String,
    kernel_version: String,
    arch: String,
    agent_version: String,
    enrolled_at: String,
    certificate_serial: String,
    certificate_expires_at: String,
    /// Why the device is not compliant, one line per failing required check.
    compliance_reasons: Vec<String>,
    compliance_checks: Vec<CheckView>,
    compliance_reported_at: Option<String>,
    compliance_policy_revision: u64,
    /// When the agent's offline timer wiped the messaging data by itself (null: never).
    offline_wipe_at: Option<String>,
    offline_wipe_receipt_verified: bool,
}

#[derive(Serialize)]
struct CheckView {
    name: String,
    status: &'static str,
    detail: String,
}

fn check_status(status: i32) -> &'static str {
    match v1::CheckStatus::try_from(status) {
        Ok(v1::CheckStatus::Pass) => "pass",
        Ok(v1::CheckStatus::Fail) => "fail",
        Ok(v1::CheckStatus::Unsupported) => "unsupported",
        Ok(v1::CheckStatus::Error) => "error",
        _ => "unknown",
    }
}

impl DeviceView {
    fn compliance_text(&self) -> String {
        match self.compliant {
            None => "unknown".into(),
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
        }
    }
}

fn optional_time(ms: i64) -> Option<String> {
    (ms != 0).then(|| Timestamp::from_unix_ms(ms).rfc3339())
}

impl From<v1::Device> for DeviceView {
    fn from(d: v1::Device) -> Self {
        let facts = d.facts.unwrap_or_default();
        let os = match (facts.os_name.is_empty(), facts.os_version.is_empty()) {
            (true, _) => String::new(),
            (false, true) => facts.os_name.clone(),
            (false, false) => format!("{} {}", facts.os_name, facts.os_version),
        };
        let compliance = d.compliance.unwrap_or_default();
        Self {
            compliant: match v1::ComplianceState::try_from(compliance.state) {
                Ok(v1::ComplianceState::Compliant) => Some(true),
                Ok(v1::ComplianceState::Noncompliant) => Some(false),
                _ => None,
            },
            compliance_reasons: compliance.reasons,
            compliance_checks: compliance
                .checks
                .into_iter()
                .map(|c| CheckView {
                    name: c.name,
                    status: check_status(c.status),
                    detail: c.detail,
                })
                .collect(),
            compliance_reported_at: optional_time(compliance.reported_at_unix_ms),
            compliance_policy_revision: compliance.policy_revision,
            offline_wipe_at: optional_time(d.offline_wipe_at_unix_ms),
            offline_wipe_receipt_verified: d.offline_wipe_receipt_verified,
            state: match v1::DeviceState::try_from(d.state) {
                Ok(v1::DeviceState::Active) => "active",
                Ok(v1::DeviceState::Revoked) => "revoked",
                _ => "unknown",
            },
            id: d.id,
            user: d.user,
            hostname: facts.hostname,
            os,
            last_seen: optional_time(d.last_seen_unix_ms),
            os_name: facts.os_name,
            os_version: facts.os_version,
            kernel_version: facts.kernel_version,
            arch: facts.arch,
            agent_version: facts.agent_version,
            enrolled_at: Timestamp::from_unix_ms(d.enrolled_at_unix_ms).rfc3339(),
            certificate_serial: d.certificate_serial,
            certificate_expires_at: Timestamp::from_unix_ms(d.certificate_expires_at_unix_ms)
                .rfc3339(),
        }
    }
}

fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".into()
    } else {
        value.to_owned()
    }
}

async fn issue(
    device: String,
    action: v1::issue_command_request::Action,
    reason: String,
    args: IssueArgs,
    output: OutputFormat,
) -> Result<(), CliError> {
    if args.wait && args.timeout.is_zero() {
        return Err(CliError::usage("--timeout must be longer than 0s"));
    }
    let mut client = admin_client(&args.connect).await?;
    let key = args
        .idempotency_key
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let command = client
        .issue_command(v1::IssueCommandRequest {
            device_id: device,
            action: Some(action),
            reason,
            idempotency_key: key,
        })
        .await?
        .into_inner();
    if args.wait {
        return super::commands::wait_for(&mut client, &command.id, args.timeout, output).await;
    }
    let view = CommandView::from(command);
    if output == OutputFormat::Table {
        eprintln!(
            "Command {} is {}; follow it with `wardctl command show {}`.",
            view.id, view.state, view.id
        );
    }
    print_command(&view, output)
}

pub async fn run(cmd: DeviceCommand, output: OutputFormat) -> Result<(), CliError> {
    use v1::issue_command_request::Action;
    match cmd {
        DeviceCommand::Lock {
            device,
            message,
            issue: args,
        } => {
            issue(
                device,
                Action::Lock(v1::LockAction { message }),
                String::new(),
                args,
                output,
            )
            .await
        }
        DeviceCommand::Unlock {
            device,
            issue: args,
        } => {
            issue(
                device,
                Action::Unlock(v1::UnlockAction {}),
                String::new(),
                args,
                output,
            )
            .await
        }
        DeviceCommand::Wipe {
            device,
            scope,
            reason,
            issue: args,
        } => {
            if reason.trim().is_empty() {
                return Err(CliError::usage(
                    "--reason must not be empty: say why the device is wiped",
                ));
            }
            let scope = match scope.as_str() {
                "full" => v1::WipeScope::Full,
                _ => v1::WipeScope::Messaging,
            };
            issue(
                device,
                Action::Wipe(v1::WipeAction {
                    scope: scope as i32,
                }),
                reason,
                args,
                output,
            )
            .await
        }
        DeviceCommand::List {
            user,
            noncompliant,
            reason,
            connect,
        } => {
            let mut client = admin_client(&connect).await?;
            let devices: Vec<DeviceView> = client
                .list_devices(ListDevicesRequest {
                    user: user.unwrap_or_default(),
                    noncompliant_only: noncompliant,
                    failing_check: reason.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .devices
                .into_iter()
                .map(DeviceView::from)
                .collect();
            match output {
                OutputFormat::Json => print_json(&devices),
                OutputFormat::Table => {
                    if devices.is_empty() {
                        eprintln!(
                            "No devices enrolled. Create an enrollment token with `wardctl token create --user EMAIL`."
                        );
                        return Ok(());
                    }
                    let mut t = table(&[
                        "id",
                        "user",
                        "hostname",
                        "os",
                        "last seen",
                        "compliant",
                        "state",
                    ]);
                    for d in &devices {
                        t.add_row(vec![
                            d.id.clone(),
                            d.user.clone(),
                            or_dash(&d.hostname),
                            or_dash(&d.os),
                            d.last_seen.clone().unwrap_or_else(|| "never".into()),
                            d.compliance_text(),
                            d.state.into(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        DeviceCommand::Revoke { device, connect } => {
            let mut client = admin_client(&connect).await?;
            let d: DeviceView = client
                .revoke_device(v1::RevokeDeviceRequest { device_id: device })
                .await?
                .into_inner()
                .into();
            if output == OutputFormat::Table {
                eprintln!(
                    "Device {} is revoked: its certificate is refused from now on.",
                    d.id
                );
            }
            print_device(&d, output)
        }
        DeviceCommand::Lost {
            device,
            reason,
            connect,
        } => {
            if reason.trim().is_empty() {
                return Err(CliError::usage(
                    "--reason must not be empty: say why the device is lost",
                ));
            }
            let mut client = admin_client(&connect).await?;
            let resp = client
                .mark_lost(v1::MarkLostRequest {
                    device_id: device,
                    reason,
                })
                .await?
                .into_inner();
            let lock = CommandView::from(resp.lock.unwrap_or_default());
            let wipe = CommandView::from(resp.wipe.unwrap_or_default());
            if output == OutputFormat::Table {
                eprintln!(
                    "Lost mode: lock {} ({}), wipe {} ({}); the device is revoked once the wipe has finished.",
                    lock.id, lock.state, wipe.id, wipe.state
                );
            }
            print_json_pair(&lock, &wipe, output)
        }
        DeviceCommand::Show { device, connect } => {
            let mut client = admin_client(&connect).await?;
            let d: DeviceView = client
                .get_device(GetDeviceRequest { device_id: device })
                .await?
                .into_inner()
                .into();
            print_device(&d, output)
        }
    }
}

fn print_device(d: &DeviceView, output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => print_json(&d),
        OutputFormat::Table => {
            let mut fields = vec![
                ("id", d.id.clone()),
                ("user", d.user.clone()),
                ("state", d.state.into()),
                ("hostname", or_dash(&d.hostname)),
                ("os", or_dash(&d.os)),
                ("kernel", or_dash(&d.kernel_version)),
                ("arch", or_dash(&d.arch)),
                ("agent version", or_dash(&d.agent_version)),
                ("enrolled", d.enrolled_at.clone()),
                (
                    "last seen",
                    d.last_seen.clone().unwrap_or_else(|| "never".into()),
                ),
                ("certificate serial", d.certificate_serial.clone()),
                ("certificate expires", d.certificate_expires_at.clone()),
            ];
            match (&d.compliant, &d.compliance_reported_at) {
                (None, _) | (_, None) => {
                    fields.push(("compliant", "unknown (no compliance report yet)".into()));
                }
                (Some(ok), Some(at)) => {
                    let verdict = if *ok { "yes" } else { "NO" };
                    fields.push((
                        "compliant",
                        format!(
                            "{verdict} (reported {at}, policy revision {})",
                            d.compliance_policy_revision
                        ),
                    ));
                }
            }
            for reason in &d.compliance_reasons {
                fields.push(("  why not", reason.clone()));
            }
            if let Some(at) = &d.offline_wipe_at {
                let verified = if d.offline_wipe_receipt_verified {
                    "receipt verified"
                } else {
                    "receipt NOT verified"
                };
                fields.push((
                    "offline wipe",
                    format!("{at} by the agent's offline timer ({verified})"),
                ));
            }
            for check in &d.compliance_checks {
                fields.push((
                    "  check",
                    format!("{} {}: {}", check.name, check.status, check.detail),
                ));
            }
            print_fields(&fields);
            Ok(())
        }
    }
}

fn print_json_pair(
    lock: &CommandView,
    wipe: &CommandView,
    output: OutputFormat,
) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => print_json(&serde_json::json!({ "lock": lock, "wipe": wipe })),
        OutputFormat::Table => {
            print_command(lock, output)?;
            println!();
            print_command(wipe, output)
        }
    }
}
