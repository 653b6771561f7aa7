//! `wardctl command …`, and the command view and `--wait` loop shared with `device lock|wipe`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Subcommand;
use serde::Serialize;
use tonic::transport::Channel;
use ward_certs::receipt::{KeyProtection, WipeReceiptBody};
use ward_proto::v1::admin_service_client::AdminServiceClient;
use ward_proto::v1::{self, CancelCommandRequest, GetCommandRequest, ListCommandsRequest};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::{CliError, Exit};
use super::output::{OutputFormat, print_fields, print_json, table};
use ward_core::command::MAX_TEXT_LEN;
use ward_core::text::clean;
use ward_core::{CommandState, Named, Timestamp, WipeScope};

#[derive(Debug, Subcommand)]
pub(super) enum CommandCommand {
    /// List commands, newest first
    #[command(
        after_help = "Examples:\n  wardctl command list --device ward-laptop-17\n  wardctl command list --state awaiting_approval\n  wardctl command list --stale 7d --output json"
    )]
    List {
        /// Only this device's commands
        #[arg(long, value_name = "DEVICE")]
        device: Option<String>,
        /// Only commands in this state: awaiting_approval (a full wipe or large offboarding under `serve --require-approval`, waiting for a second admin's `wardctl command approve ID`), queued (waiting for the device), delivered, acknowledged (running), succeeded, failed, cancelled, expired (its --ttl passed), superseded (a newer one of the same kind replaced it)
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// Show at most the newest N (1 to 10000)
        #[arg(long, value_name = "N", default_value_t = 1000, value_parser = super::NumberArg::<u32>::new(1, 10_000), allow_negative_numbers = true)]
        limit: u32,
        #[arg(long, value_name = "AGE", value_parser = super::DurationArg(super::command_bulk::STALE), allow_hyphen_values = true, help = super::command_bulk::STALE.help("Only unfinished commands created longer ago than AGE: what waits for a device"))]
        stale: Option<Duration>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show one command: its wipe receipt, whether it verified, and what it says was done
    #[command(
        after_help = "Examples:\n  wardctl command show 5b0c1f9e-8d4a-4f0e-9a51-2c7d3e4f5a6b\n  wardctl command show 5b0c1f9e-8d4a-4f0e-9a51-2c7d3e4f5a6b --certificate > sanitization.txt"
    )]
    Show {
        /// Command id (a UUID, as `command list` shows)
        id: String,
        /// Print the wipe's certificate of sanitization (NIST SP 800-88 Rev. 2 terms) instead:
        /// what was sanitized, how, where the key was held and how it was destroyed, how it
        /// was verified, when, and which command and admin asked for it, with the
        /// controller's attestation signed by the Ward CA (README: checking it with OpenSSL
        /// alone). Exit 1 when the command has no verified receipt.
        #[arg(long)]
        certificate: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Approve a command another admin issued that awaits a second admin (serve --require-approval); not one issued by an admin whose identity you created, renewed or approved, or who created or renewed yours
    #[command(
        after_help = "Examples:\n  wardctl command list --state awaiting_approval\n  wardctl command approve 5b0c1f9e-8d4a-4f0e-9a51-2c7d3e4f5a6b"
    )]
    Approve {
        /// Command id, as `command list --state awaiting_approval` shows it
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Cancel a command the device has not started yet, or (--device D --kind K) every such command of that kind for the device
    #[command(
        after_help = "Examples:\n  wardctl command cancel 5b0c1f9e-8d4a-4f0e-9a51-2c7d3e4f5a6b\n  wardctl command cancel --device ward-laptop-17 --kind lock"
    )]
    Cancel {
        /// Command id
        #[arg(required_unless_present = "device", conflicts_with = "device")]
        id: Option<String>,
        /// Every command of --kind for this device that it has not started
        #[arg(long, value_name = "DEVICE", requires = "kind")]
        device: Option<String>,
        /// With --device: the kind to cancel
        #[arg(long, value_name = "KIND", requires = "device", value_parser = clap::builder::PossibleValuesParser::new(super::command_bulk::KINDS))]
        kind: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// A command as scripts see it (`command show`, `--wait --output json`).
#[derive(Serialize)]
pub(super) struct CommandView {
    /// The command's id (README, "JSON output": the canonical name).
    pub command_id: String,
    /// Deprecated alias of `command_id`, kept for existing scripts.
    pub id: String,
    pub device_id: String,
    pub kind: String,
    pub scope: Option<String>,
    pub lock_message: Option<String>,
    /// The command's state (canonical name).
    pub command_state: &'static str,
    /// Deprecated alias of `command_state`, kept for existing scripts.
    pub state: &'static str,
    pub reason: String,
    pub failure_reason: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub acknowledged_at: Option<String>,
    pub finished_at: Option<String>,
    pub deliveries: u32,
    pub receipt: Option<ReceiptView>,
    /// What the device's verified receipt says was done, in words (null without one). A
    /// full wipe's erase hook is "hook ran", never "device wiped": Ward cannot see what a
    /// hook erased.
    pub outcome: Option<String>,
    /// The second admin who approved it, where approval was required.
    pub approved_by: Option<String>,
    /// When it expires if the device has not taken it (`--ttl`); null: it waits for ever.
    pub expires_at: Option<String>,
}

#[derive(Serialize)]
pub(super) struct ReceiptView {
    pub verified: bool,
    pub error: Option<String>,
    /// The signed statement, parsed (null if it is not JSON).
    pub body: Option<serde_json::Value>,
    /// Where the device held the destroyed key ("tpm", "keyring", "file-best-effort"), from
    /// a verified receipt only; null when unknown.
    pub key_protection: Option<String>,
    /// Base64 of the exact signed bytes and of the signature, for independent checking.
    pub body_base64: String,
    pub signature_base64: String,
}

fn time(ms: i64) -> Option<String> {
    (ms != 0).then(|| Timestamp::from_unix_ms(ms).rfc3339())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then(|| shown(&s))
}

/// Text as it may reach a terminal: whatever stored it (a device chose a receipt's command id
/// and a result's reason; an older controller kept them as they came), no control character
/// or bidirectional override, and at most [`MAX_TEXT_LEN`] bytes.
fn shown(text: &str) -> String {
    clean(text, MAX_TEXT_LEN)
}

/// A parsed receipt body with each string (and key) made safe to show the same way. The exact
/// signed bytes stay in `body_base64`.
fn shown_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(shown(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(shown_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (shown(&k), shown_json(v)))
                .collect(),
        ),
        other => other,
    }
}

pub(super) use ward_proto::names::command_state as state_name;

/// A verified wipe receipt in words: what was crypto-erased, and for a full wipe, that the
/// hook ran (and only that).
fn outcome_of(receipt: &ReceiptView) -> Option<String> {
    let body = receipt.body.as_ref().filter(|_| receipt.verified)?;
    let number = |key: &str| {
        body.get(key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let yes = |key: &str| body.get(key).and_then(serde_json::Value::as_bool) == Some(true);
    let mut text = format!(
        "messaging data crypto-erased: data key destroyed {}, {} files ({} bytes) removed, directory verified empty {}",
        if yes("key_destroyed") { "yes" } else { "no" },
        number("files_removed"),
        number("bytes_removed"),
        if yes("verified_empty") { "yes" } else { "no" },
    );
    if let Some(k) = &receipt.key_protection {
        text.push_str(&format!(" (key held: {k})"));
    }
    let scope = body.get("scope").and_then(serde_json::Value::as_str);
    if scope.and_then(WipeScope::named) == Some(WipeScope::Full) {
        let hook = body
            .get("full_erase")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("no report");
        text.push_str(&format!(
            "; full erase: the device's erase hook ran ({hook}); Ward does not verify that the device was erased"
        ));
    }
    Some(text)
}

impl From<v1::Command> for CommandView {
    fn from(c: v1::Command) -> Self {
        let receipt = c.receipt.map(|r| ReceiptView {
            key_protection: r
                .verified
                .then(|| serde_json::from_slice::<WipeReceiptBody>(&r.body).ok())
                .flatten()
                .and_then(|b| b.key_protection)
                .map(|k| k.as_str().to_owned()),
            verified: r.verified,
            error: non_empty(r.verification_error),
            body: serde_json::from_slice(&r.body).ok().map(shown_json),
            body_base64: STANDARD.encode(&r.body),
            signature_base64: STANDARD.encode(&r.signature),
        });
        Self {
            command_state: state_name(c.state),
            state: state_name(c.state),
            command_id: shown(&c.id),
            id: shown(&c.id),
            device_id: shown(&c.device_id),
            kind: shown(&c.kind),
            scope: non_empty(c.scope),
            lock_message: non_empty(c.lock_message),
            reason: shown(&c.reason),
            failure_reason: non_empty(c.failure_reason),
            created_by: shown(&c.created_by),
            approved_by: non_empty(c.approved_by),
            expires_at: time(c.expires_at_unix_ms),
            created_at: Timestamp::from_unix_ms(c.created_at_unix_ms).rfc3339(),
            delivered_at: time(c.delivered_at_unix_ms),
            acknowledged_at: time(c.acknowledged_at_unix_ms),
            finished_at: time(c.finished_at_unix_ms),
            deliveries: c.deliveries,
            outcome: receipt.as_ref().and_then(outcome_of),
            receipt,
        }
    }
}

impl CommandView {
    fn is_terminal(&self) -> bool {
        matches!(
            self.state,
            "succeeded" | "failed" | "cancelled" | "expired" | "superseded"
        )
    }

    fn what(&self) -> String {
        match &self.scope {
            Some(scope) => format!("{} ({scope})", self.kind),
            None => self.kind.clone(),
        }
    }
}

pub(super) fn print_command(view: &CommandView, output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => print_json(view),
        OutputFormat::Table => {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let mut fields = vec![
                ("id", view.id.clone()),
                ("device", view.device_id.clone()),
                ("command", view.what()),
                ("state", view.state.to_owned()),
                (
                    "reason",
                    if view.reason.is_empty() {
                        "-".into()
                    } else {
                        view.reason.clone()
                    },
                ),
                (
                    "created",
                    format!("{} by {}", view.created_at, view.created_by),
                ),
                ("delivered", dash(&view.delivered_at)),
                ("acknowledged", dash(&view.acknowledged_at)),
                ("finished", dash(&view.finished_at)),
                ("deliveries", view.deliveries.to_string()),
            ];
            if let Some(message) = &view.lock_message {
                fields.push(("lock message", message.clone()));
            }
            if let Some(why) = &view.failure_reason {
                fields.push(("failure", why.clone()));
            }
            if let Some(outcome) = &view.outcome {
                fields.push(("outcome", outcome.clone()));
            }
            match &view.receipt {
                None => fields.push(("receipt", "none".into())),
                Some(r) => {
                    let status = if r.verified {
                        "verified (signed by the device key)".to_owned()
                    } else {
                        format!("NOT verified: {}", r.error.clone().unwrap_or_default())
                    };
                    fields.push(("receipt", status));
                    if r.verified {
                        fields.push(("key", key_protection_text(r.key_protection.as_deref())));
                    }
                    if let Some(body) = &r.body {
                        fields.push(("receipt body", shown(&body.to_string())));
                    }
                }
            }
            print_fields(&fields);
            Ok(())
        }
    }
}

/// What the receipt's key protection means, for the table.
fn key_protection_text(name: Option<&str>) -> String {
    let parsed = name.and_then(|n| {
        serde_json::from_value::<KeyProtection>(serde_json::Value::String(n.to_owned())).ok()
    });
    match parsed {
        Some(k) => format!("{k}: {}", k.guarantee()),
        None => {
            "not stated (a receipt from an agent that did not say where the key was held)".into()
        }
    }
}

/// The exit code a finished command maps to.
fn exit_for(view: &CommandView) -> Result<(), CliError> {
    match view.state {
        "succeeded" => Ok(()),
        other => Err(CliError::new(
            Exit::Failed,
            format!(
                "command {} {other}{}",
                view.id,
                view.failure_reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// Follows a command until it finishes or `timeout` passes; prints the final (or partial)
/// command. Exit: 0 succeeded, 1 failed/cancelled/expired, 5 timed out.
pub(super) async fn wait_for(
    client: &mut AdminServiceClient<Channel>,
    id: &str,
    timeout: Duration,
    output: OutputFormat,
) -> Result<(), CliError> {
    let start = Instant::now();
    let live = std::io::stderr().is_terminal();
    let mut last_state = "";
    // Quick at first (a wipe of an online device takes milliseconds), then gentler: every
    // poll is an audited call.
    let mut pause = Duration::from_millis(25);
    loop {
        let view: CommandView = client
            .get_command(GetCommandRequest {
                command_id: id.to_owned(),
            })
            .await?
            .into_inner()
            .into();
        if live && view.state != last_state {
            eprintln!("{:>7.1}s  {}", start.elapsed().as_secs_f64(), view.state);
        }
        last_state = view.state;
        if view.is_terminal() {
            print_command(&view, output)?;
            return exit_for(&view);
        }
        if start.elapsed() >= timeout {
            print_command(&view, output)?;
            return Err(CliError::new(
                Exit::TimedOut,
                format!(
                    "timed out after {} waiting for command {id}; it is still {} ({}; `wardctl command show {id}` follows it)",
                    ward_core::duration::format(timeout),
                    view.state,
                    if view.state == "acknowledged" {
                        "the device is executing it and reports when done"
                    } else if view.state == "awaiting_approval" {
                        "a second admin must approve it: wardctl command approve ID"
                    } else {
                        "the device gets it when it next connects"
                    }
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

pub(super) async fn run(cmd: CommandCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        CommandCommand::List {
            device,
            state,
            limit,
            stale,
            connect,
        } => {
            let state = state
                .map(|s| s.parse::<CommandState>().map_err(CliError::usage))
                .transpose()?
                .map(|s| {
                    ward_proto::names::command_state_named(s.as_str())
                        .ok_or_else(|| CliError::failed(format!("no wire value for state {s}")))
                })
                .transpose()?
                .map_or(0, |s| s as i32);
            let mut client = admin_client(&connect).await?;
            let listed = client
                .list_commands(ListCommandsRequest {
                    device_id: device.unwrap_or_default(),
                    state,
                    limit,
                })
                .await?
                .into_inner();
            if listed.truncated {
                eprintln!(
                    "note: showing the newest {limit} commands only; narrow with --device or --state, or raise --limit"
                );
            }
            let listed = match stale {
                Some(age) => super::command_bulk::stale(listed.commands, age),
                None => listed.commands,
            };
            let commands: Vec<CommandView> = listed.into_iter().map(CommandView::from).collect();
            match output {
                OutputFormat::Json => print_json(&commands),
                OutputFormat::Table => {
                    let mut t = table(&[
                        "id", "device", "command", "state", "created", "by", "receipt",
                    ]);
                    for c in &commands {
                        let receipt = match &c.receipt {
                            None => "-",
                            Some(r) if r.verified => "verified",
                            Some(_) => "NOT verified",
                        };
                        t.add_row(vec![
                            c.id.clone(),
                            c.device_id.clone(),
                            c.what(),
                            c.state.to_owned(),
                            c.created_at.clone(),
                            c.created_by.clone(),
                            receipt.to_owned(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        CommandCommand::Show {
            id,
            certificate,
            connect,
        } => {
            let mut client = admin_client(&connect).await?;
            let command = client
                .get_command(GetCommandRequest { command_id: id })
                .await?
                .into_inner();
            if certificate {
                let mut cert = super::certificate::certificate(&command)?;
                match client
                    .attest_wipe(GetCommandRequest {
                        command_id: command.id.clone(),
                    })
                    .await
                {
                    Ok(attestation) => {
                        cert.attestation = Some(super::certificate::Attestation::new(
                            &attestation.into_inner(),
                        ));
                    }
                    // The controller does not vouch for it (say why, show the rest).
                    Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                        eprintln!(
                            "warning: no attestation by the Ward CA: {}",
                            status.message()
                        );
                    }
                    Err(status) => return Err(status.into()),
                }
                return super::certificate::print(&cert, output);
            }
            print_command(&command.into(), output)
        }
        CommandCommand::Approve { id, connect } => {
            let mut client = admin_client(&connect).await?;
            let view: CommandView = client
                .approve_command(v1::ApproveCommandRequest { command_id: id })
                .await?
                .into_inner()
                .into();
            print_command(&view, output)
        }
        CommandCommand::Cancel {
            device: Some(device),
            kind: Some(kind),
            connect,
            ..
        } => {
            let mut client = admin_client(&connect).await?;
            let cancelled =
                super::command_bulk::cancel_by_kind(&mut client, &device, &kind).await?;
            eprintln!("{} {kind} command(s) cancelled.", cancelled.len());
            match output {
                OutputFormat::Json => print_json(&cancelled),
                OutputFormat::Table => {
                    for c in &cancelled {
                        println!("{}  {}  {}", c.id, c.what(), c.state);
                    }
                    Ok(())
                }
            }
        }
        CommandCommand::Cancel { id, connect, .. } => {
            let id =
                id.ok_or_else(|| CliError::usage("give a command id, or --device and --kind"))?;
            let mut client = admin_client(&connect).await?;
            let view: CommandView = client
                .cancel_command(CancelCommandRequest { command_id: id })
                .await?
                .into_inner()
                .into();
            print_command(&view, output)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(verified: bool, body: serde_json::Value) -> ReceiptView {
        ReceiptView {
            verified,
            error: None,
            key_protection: None,
            body: Some(body),
            body_base64: String::new(),
            signature_base64: String::new(),
        }
    }

    #[test]
    fn a_full_wipe_is_shown_as_hook_ran_never_as_device_wiped() {
        let full = serde_json::json!({
            "scope": "full", "key_destroyed": true, "files_removed": 3, "bytes_removed": 42,
            "verified_empty": true,
            "full_erase": "hook ran: /usr/local/sbin/erase exited 0 (what it erased is not verified by Ward)"
        });
        let text = outcome_of(&receipt(true, full.clone())).unwrap();
        assert!(
            text.starts_with(
                "messaging data crypto-erased: data key destroyed yes, 3 files (42 bytes) removed"
            ) && text.contains(
                "full erase: the device's erase hook ran (hook ran: /usr/local/sbin/erase exited 0"
            ) && text.contains("Ward does not verify that the device was erased"),
            "{text}"
        );
        assert!(!text.contains("device wiped"), "{text}");
        // A receipt that did not verify says nothing was done.
        assert_eq!(outcome_of(&receipt(false, full)), None);
        let messaging = serde_json::json!({
            "scope": "messaging", "key_destroyed": true, "files_removed": 1, "bytes_removed": 9,
            "verified_empty": true
        });
        let text = outcome_of(&receipt(true, messaging.clone())).unwrap();
        assert!(!text.contains("full erase"), "{text}");
        let in_tpm = ReceiptView {
            key_protection: Some("tpm".into()),
            ..receipt(true, messaging)
        };
        assert!(outcome_of(&in_tpm).unwrap().contains("(key held: tpm)"));
        assert!(key_protection_text(Some("tpm")).contains("held in the TPM and deleted there"));
        assert!(key_protection_text(None).starts_with("not stated"));
    }
}
