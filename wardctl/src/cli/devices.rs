//! `wardctl device …`

use clap::Subcommand;
use ward_proto::v1::{self, GetDeviceRequest, ListDevicesRequest};

use super::ConnectArgs;
use super::commands::{CommandView, print_command};
use super::connect::admin_client;
use super::device_lifecycle::{Change, change, require_reason};
use super::device_view::{DeviceView, or_dash, print_device};
use super::error::CliError;
use super::output::{OutputFormat, print_json, table};
use ward_core::WipeScope;
use ward_core::duration::{DurationRange, days, seconds};

use super::bulk_wipe::SCOPE_REQUIRED;

/// `--timeout` of `device lock|unlock|wipe|retire|… --wait`.
const TIMEOUT: DurationRange = DurationRange::new(seconds(1), days(7), "10m");

#[derive(Debug, Subcommand)]
pub(super) enum DeviceCommand {
    /// List enrolled devices; the state says "messaging wiped" once a wipe removed the messaging data
    #[command(
        after_help = "Examples:\n  wardctl device list\n  wardctl device list --user alice@hospital.org\n  wardctl device list --noncompliant --reason disk_encryption\n  wardctl device list --output json | jq '.[] | select(.messaging_wipe != null) | .id'"
    )]
    List {
        /// Only this user's devices
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Only devices whose last compliance report failed their policy
        #[arg(long)]
        noncompliant: bool,
        /// With --noncompliant: only devices failing this check
        #[arg(long, requires = "noncompliant", value_name = "CHECK", value_parser = super::one_of::<ward_core::Check>())]
        reason: Option<ward_core::Check>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show one device
    #[command(
        after_help = "Examples:\n  wardctl device show 7d1e7c8e-1b1a-4c55-9a55-0d1d6a1e2f3a\n  wardctl device show ward-laptop-17 --output json"
    )]
    Show {
        /// Device id (a UUID, as `device list` shows), or its host name if exactly one device that is not retired has it
        device: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Revoke a device: its certificate is refused at once, at the TLS handshake and on every call. A revoked device can receive no wipe: `device lost` wipes first, then revokes
    #[command(
        after_help = "Examples:\n  wardctl device revoke ward-laptop-17 --reason \"certificate copied to another machine\"\n  wardctl device revoke ward-phone-42 --reason \"stolen, data already wiped\" --output json"
    )]
    Revoke(DeviceReason),
    /// Lost mode: lock the device, wipe its messaging data, then revoke it once the wipe has finished
    #[command(
        after_help = "Examples:\n  wardctl device lost ward-phone-42 --reason \"reported lost by Dr. Chen\"\n  wardctl device lost ward-phone-42 --reason \"stolen from ward 3B\" --wait --timeout 1h"
    )]
    Lost {
        /// Device id, or its host name if exactly one device that is not retired has it
        device: String,
        /// Why (required; kept with both commands for the audit)
        #[arg(long)]
        reason: String,
        /// Wait until the device finishes the messaging wipe (exit 0 wiped with a verified receipt, 1 failed, 5 timed out); the wipe is printed as `command show` prints it
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "60s", value_parser = super::DurationArg(TIMEOUT), allow_hyphen_values = true, requires = "wait", value_name = "DURATION", help = TIMEOUT.help("How long --wait waits"))]
        timeout: std::time::Duration,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Put a found device back into service where the controller can: a disabled device (its data kept) is enabled. A revoked, retired or wiped device, or one in lost mode, is refused with the way out (enroll it again with a new token); nothing changes then
    #[command(
        after_help = "Examples:\n  wardctl device return ward-laptop-17 --reason \"found in the nurses' station\"\n  wardctl device return ward-phone-42 --reason \"returned by patient services\" --output json"
    )]
    Return(DeviceReason),
    /// Lock the device's screen
    #[command(
        after_help = "Examples:\n  wardctl device lock ward-laptop-17 --message \"Call IT on 4400\" --wait\n  wardctl device lock ward-laptop-17 --ttl 1h"
    )]
    Lock {
        /// Device id, or its host name if exactly one device that is not retired has it
        device: String,
        /// Text for the lock screen, where the platform can show one
        #[arg(long)]
        message: Option<String>,
        #[arg(long, value_parser = super::DurationArg(TTL), allow_hyphen_values = true, value_name = "DURATION", help = TTL.help("Expire the lock (state expired) if the device has not taken it within this long [default: it waits for ever]"))]
        ttl: Option<std::time::Duration>,
        #[command(flatten)]
        issue: IssueArgs,
    },
    /// Unlock the device's screen sessions
    #[command(after_help = "Examples:\n  wardctl device unlock ward-laptop-17 --wait")]
    Unlock {
        /// Device id, or its host name if exactly one device that is not retired has it
        device: String,
        #[arg(long, value_parser = super::DurationArg(TTL), allow_hyphen_values = true, value_name = "DURATION", help = TTL.help("Expire the unlock (state expired) if the device has not taken it within this long [default: it waits for ever]"))]
        ttl: Option<std::time::Duration>,
        #[command(flatten)]
        issue: IssueArgs,
    },
    /// Disable a device that is probably just mislaid: its messaging data stays, but the agent withholds the data key until `device enable`. The reason is shown on the device
    #[command(
        after_help = "Examples:\n  wardctl device disable ward-laptop-17 --reason \"left in the cafeteria, looking for it\""
    )]
    Disable(DeviceReason),
    /// Enable a disabled device: the agent hands out the messaging data key again
    #[command(
        after_help = "Examples:\n  wardctl device enable ward-laptop-17 --reason \"found in the cafeteria\""
    )]
    Enable {
        /// Device id, or its host name if exactly one device that is not retired has it
        device: String,
        /// Why (kept for the audit)
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Retire a device being discarded or reused: messaging wipe with a verified receipt, agent state destroyed, certificate revoked; the record stays as "retired". If the wipe fails, the device stays active and retire can be run again
    #[command(
        after_help = "Examples:\n  wardctl device retire ward-laptop-17 --reason \"end of lease\" --wait --timeout 10m"
    )]
    Retire {
        /// Device id, or its host name if exactly one device that is not retired has it
        device: String,
        /// Why (required; kept with the command for the audit)
        #[arg(long)]
        reason: String,
        /// Wait until the device finishes (exit 0 retired with a verified receipt, 1 failed, 5 timed out)
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "60s", value_parser = super::DurationArg(TIMEOUT), allow_hyphen_values = true, requires = "wait", value_name = "DURATION", help = TIMEOUT.help("How long --wait waits"))]
        timeout: std::time::Duration,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Wipe the messaging data (crypto-erase), or the whole device; or many devices at once
    /// (--user, --noncompliant, --stdin: every wipe committed together, under one idempotency
    /// key, with one approval for the whole selection where one is required)
    #[command(
        after_help = "Examples:\n  wardctl device wipe ward-phone-42 --scope messaging --reason \"lost phone\" --wait\n  wardctl device wipe --user bob@hospital.org --scope messaging --reason \"leaver\" --dry-run\n  wardctl device wipe --noncompliant --check disk_encryption --scope messaging --reason \"no LUKS\"\n  wardctl device wipe --approve alice:3f9c2a7b"
    )]
    Wipe {
        /// Device id, or its host name if exactly one device that is not retired has it (omit it with --user, --noncompliant, --stdin or --approve)
        #[arg(required_unless_present_any = ["user", "noncompliant", "stdin", "approve"])]
        device: Option<String>,
        /// What to wipe
        #[arg(long, value_parser = super::one_of::<WipeScope>(), required_unless_present = "approve")]
        scope: Option<WipeScope>,
        /// Why (required; kept with the command for the audit)
        #[arg(long, required_unless_present = "approve")]
        reason: Option<String>,
        #[command(flatten)]
        bulk: super::bulk_wipe::BulkArgs,
        #[command(flatten)]
        issue: IssueArgs,
    },
}

/// A device and why: what revoke, return and disable take (enable's reason is optional).
#[derive(Debug, clap::Args)]
pub(super) struct DeviceReason {
    /// Device id, or its host name if exactly one device that is not retired has it
    pub(super) device: String,
    /// Why (required; kept in the audit entry)
    #[arg(long)]
    pub(super) reason: String,
    #[command(flatten)]
    pub(super) connect: ConnectArgs,
}

/// Options every device command takes.
#[derive(Debug, clap::Args)]
pub(super) struct IssueArgs {
    /// Wait until the device finishes the command (exit 0 succeeded, 1 failed, 5 timed out)
    #[arg(long)]
    wait: bool,
    #[arg(long, default_value = "60s", value_parser = super::DurationArg(TIMEOUT), allow_hyphen_values = true, requires = "wait", value_name = "DURATION", help = TIMEOUT.help("How long --wait waits"))]
    timeout: std::time::Duration,
    /// Retrying with the same key returns the first command instead of making a second one
    /// [default: a new random key]
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

impl IssueArgs {
    /// What a bulk wipe follows its batch with.
    fn follow(self) -> super::bulk_wipe::Follow {
        super::bulk_wipe::Follow {
            wait: self.wait.then_some(self.timeout),
            idempotency_key: self.idempotency_key,
            connect: self.connect,
        }
    }
}

/// A lock's or unlock's time-to-live (wipes never expire).
const TTL: ward_core::duration::DurationRange = ward_core::command::TTL;

async fn issue(
    device: String,
    action: v1::issue_command_request::Action,
    reason: String,
    ttl: Option<std::time::Duration>,
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
            ttl_seconds: ttl.map_or(0, |t| t.as_secs()),
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

pub(super) async fn run(cmd: DeviceCommand, output: OutputFormat) -> Result<(), CliError> {
    use v1::issue_command_request::Action;
    match cmd {
        DeviceCommand::Lock {
            device,
            message,
            ttl,
            issue: args,
        } => {
            issue(
                device,
                Action::Lock(v1::LockAction {
                    message: message.unwrap_or_default(),
                }),
                String::new(),
                ttl,
                args,
                output,
            )
            .await
        }
        DeviceCommand::Unlock {
            device,
            ttl,
            issue: args,
        } => {
            issue(
                device,
                Action::Unlock(v1::UnlockAction {}),
                String::new(),
                ttl,
                args,
                output,
            )
            .await
        }
        DeviceCommand::Wipe {
            device,
            scope,
            reason,
            bulk,
            issue: args,
        } => {
            let Some(device) = device else {
                return super::bulk_wipe::run(bulk, scope, reason, args.follow(), output).await;
            };
            let scope = scope.ok_or_else(|| CliError::usage(SCOPE_REQUIRED))?;
            let reason = reason.unwrap_or_default();
            if bulk.selected() {
                return Err(CliError::usage(
                    "name one device, or select many with --user, --noncompliant or --stdin, not both",
                ));
            }
            if bulk.dry_run {
                return Err(CliError::usage(
                    "--dry-run lists the devices a bulk wipe (--user, --noncompliant, --stdin) would wipe",
                ));
            }
            require_reason(&reason, "wiped")?;
            issue(
                device,
                Action::Wipe(v1::WipeAction {
                    scope: v1::WipeScope::from(scope) as i32,
                }),
                reason,
                None,
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
            let filtered = user.is_some() || noncompliant;
            let mut client = admin_client(&connect).await?;
            let devices: Vec<DeviceView> = client
                .list_devices(ListDevicesRequest {
                    user: user.unwrap_or_default(),
                    noncompliant_only: noncompliant,
                    failing_check: reason.map(|c| c.as_str().to_owned()).unwrap_or_default(),
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
                        if filtered {
                            eprintln!(
                                "No device matches this filter; `wardctl device list` shows them all."
                            );
                        } else {
                            eprintln!(
                                "No devices enrolled. Create an enrollment token with `wardctl token create --user EMAIL`."
                            );
                        }
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
                            d.state_text(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        DeviceCommand::Revoke(DeviceReason {
            device,
            reason,
            connect,
        }) => {
            require_reason(&reason, "revoked")?;
            let mut client = admin_client(&connect).await?;
            let before = client
                .get_device(GetDeviceRequest {
                    device_id: device.clone(),
                })
                .await?
                .into_inner();
            let unwiped = before.state == v1::DeviceState::Active as i32
                && !super::device_wipes::messaging_wiped(&before);
            let d: DeviceView = client
                .revoke_device(v1::RevokeDeviceRequest {
                    device_id: device,
                    reason,
                })
                .await?
                .into_inner()
                .into();
            if output == OutputFormat::Table {
                eprintln!(
                    "Device {} is revoked: its certificate is refused from now on.",
                    d.id
                );
            }
            if unwiped {
                eprintln!("{}", super::device_wipes::unwiped_warning(&d.id));
            }
            print_device(&d, output)
        }
        DeviceCommand::Lost {
            device,
            reason,
            wait,
            timeout,
            connect,
        } => {
            require_reason(&reason, "lost")?;
            if wait && timeout.is_zero() {
                return Err(CliError::usage("--timeout must be longer than 0s"));
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
            if wait {
                // The same wait as `device wipe --wait`, on the wipe lost mode queued.
                return super::commands::wait_for(&mut client, &wipe.id, timeout, output).await;
            }
            print_json_pair(&lock, &wipe, output)
        }
        DeviceCommand::Return(args) => change(Change::Return, args, output).await,
        DeviceCommand::Disable(args) => change(Change::Disable, args, output).await,
        DeviceCommand::Enable {
            device,
            reason,
            connect,
        } => {
            let reason = reason.unwrap_or_default();
            let args = DeviceReason {
                device,
                reason,
                connect,
            };
            change(Change::Enable, args, output).await
        }
        DeviceCommand::Retire {
            device,
            reason,
            wait,
            timeout,
            connect,
        } => {
            super::device_lifecycle::retire(
                device,
                reason,
                wait.then_some(timeout),
                connect,
                output,
            )
            .await
        }
        DeviceCommand::Show { device, connect } => {
            let mut client = admin_client(&connect).await?;
            let mut d: DeviceView = client
                .get_device(GetDeviceRequest { device_id: device })
                .await?
                .into_inner()
                .into();
            if d.state == "retired" {
                // The record keeps its proof: the retire command and its receipt.
                d.retirement = client
                    .list_commands(v1::ListCommandsRequest {
                        device_id: d.id.clone(),
                        state: v1::CommandState::Succeeded as i32,
                        limit: 0,
                    })
                    .await?
                    .into_inner()
                    .commands
                    .into_iter()
                    .find(|c| c.kind == "retire")
                    .map(CommandView::from);
            }
            print_device(&d, output)
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
