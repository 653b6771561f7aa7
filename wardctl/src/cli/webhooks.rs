//! `wardctl webhook …`: signed webhooks (README, "Signed webhooks").

use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{
    AddWebhookRequest, ListWebhookDeliveriesRequest, ListWebhooksRequest, RemoveWebhookRequest,
    Webhook, WebhookDelivery,
};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_fields, print_json, table};
use ward_core::Timestamp;

#[derive(Debug, Subcommand)]
pub(super) enum WebhookCommand {
    /// Add a receiver: each event is POSTed to URL as JSON, signed with a secret shown once here
    #[command(
        after_help = "Examples:\n  wardctl webhook add https://hooks.hospital.org/ward --events user.offboarded\n  wardctl webhook add https://siem.hospital.org/in --events command.finished,device.noncompliant\n  wardctl webhook add http://127.0.0.1:9000/ward --events command.finished --output json"
    )]
    Add {
        /// https://HOST[:PORT]/PATH (http:// only to 127.0.0.1, ::1 or localhost)
        #[arg(value_name = "URL")]
        url: String,
        /// Comma-separated: command.finished, user.offboarded, device.noncompliant
        #[arg(long, value_name = "EVENTS", required = true)]
        events: Vec<String>,
        /// The CA certificate(s), PEM, the receiver's certificate must chain to [default: the
        /// system's roots]
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the receivers (never their secrets)
    #[command(
        after_help = "Examples:\n  wardctl webhook list\n  wardctl webhook list --output json"
    )]
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove a receiver with its undelivered events and its delivery log
    #[command(after_help = "Examples:\n  wardctl webhook remove 3f9c2a7b1d0e4c55")]
    Remove {
        /// The receiver's id, as `wardctl webhook list` shows it
        #[arg(value_name = "WEBHOOK-ID")]
        id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// The delivery log: each event sent, its state and every attempt (status code or error)
    #[command(
        after_help = "Examples:\n  wardctl webhook deliveries\n  wardctl webhook deliveries 3f9c2a7b1d0e4c55 --limit 20 --output json"
    )]
    Deliveries {
        /// Only this receiver's deliveries
        #[arg(value_name = "WEBHOOK-ID")]
        id: Option<String>,
        /// Show at most N, newest first (1 to 1000)
        #[arg(long, default_value_t = 100, value_name = "N", value_parser = super::NumberArg::<u32>::new(1, 1000), allow_negative_numbers = true)]
        limit: u32,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Serialize)]
struct WebhookView {
    webhook_id: String,
    url: String,
    events: Vec<String>,
    own_ca: bool,
    created_at: String,
    created_by: String,
}

impl From<Webhook> for WebhookView {
    fn from(w: Webhook) -> Self {
        Self {
            webhook_id: w.id,
            url: w.url,
            events: w.events,
            own_ca: w.own_ca,
            created_at: Timestamp::from_unix_ms(w.created_at_unix_ms).rfc3339(),
            created_by: w.created_by,
        }
    }
}

#[derive(Serialize)]
struct Added {
    #[serde(flatten)]
    webhook: WebhookView,
    /// Shown this once.
    secret: String,
    signature_header: &'static str,
}

#[derive(Serialize)]
struct AttemptView {
    attempt: u32,
    attempted_at: String,
    status_code: Option<u32>,
    error: Option<String>,
    duration_ms: u64,
}

#[derive(Serialize)]
struct DeliveryView {
    event_id: String,
    webhook_id: String,
    event_type: String,
    delivery_state: String,
    attempts: u32,
    created_at: String,
    next_attempt_at: Option<String>,
    delivered_at: Option<String>,
    attempt_log: Vec<AttemptView>,
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        let time = |ms: i64| Timestamp::from_unix_ms(ms).rfc3339();
        Self {
            next_attempt_at: (d.state == "pending").then(|| time(d.next_attempt_at_unix_ms)),
            delivered_at: (d.delivered_at_unix_ms != 0).then(|| time(d.delivered_at_unix_ms)),
            event_id: d.event_id,
            webhook_id: d.webhook_id,
            event_type: d.event_type,
            delivery_state: d.state,
            attempts: d.attempts,
            created_at: time(d.created_at_unix_ms),
            attempt_log: d
                .attempt_log
                .into_iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    attempted_at: time(a.at_unix_ms),
                    status_code: (a.status_code != 0).then_some(a.status_code),
                    error: (!a.error.is_empty()).then_some(a.error),
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}

pub(super) async fn run(cmd: WebhookCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        WebhookCommand::Add {
            url,
            events,
            ca_file,
            connect,
        } => {
            let ca_pem = match &ca_file {
                Some(path) => std::fs::read_to_string(path).map_err(|e| {
                    CliError::usage(format!("--ca-file: cannot read {}: {e}", path.display()))
                })?,
                None => String::new(),
            };
            let mut client = admin_client(&connect).await?;
            let added = client
                .add_webhook(AddWebhookRequest {
                    url,
                    events,
                    ca_pem,
                })
                .await?
                .into_inner();
            let webhook = WebhookView::from(added.webhook.unwrap_or_default());
            let view = Added {
                webhook,
                secret: added.secret,
                signature_header: ward_core::webhook::SIGNATURE_HEADER,
            };
            match output {
                OutputFormat::Json => print_json(&view),
                OutputFormat::Table => {
                    print_fields(&[
                        ("webhook id", view.webhook.webhook_id.clone()),
                        ("url", view.webhook.url.clone()),
                        ("events", view.webhook.events.join(",")),
                        ("secret", view.secret.clone()),
                    ]);
                    eprintln!(
                        "The secret is shown only now: give it to the receiver, which checks the {} header with it (README, \"Signed webhooks\").",
                        view.signature_header
                    );
                    Ok(())
                }
            }
        }
        WebhookCommand::List { connect } => {
            let mut client = admin_client(&connect).await?;
            let hooks: Vec<WebhookView> = client
                .list_webhooks(ListWebhooksRequest {})
                .await?
                .into_inner()
                .webhooks
                .into_iter()
                .map(WebhookView::from)
                .collect();
            match output {
                OutputFormat::Json => print_json(&hooks),
                OutputFormat::Table => {
                    if hooks.is_empty() {
                        eprintln!("No webhooks.");
                        return Ok(());
                    }
                    let mut t = table(&["id", "url", "events", "created by", "created"]);
                    for h in &hooks {
                        t.add_row([
                            &h.webhook_id,
                            &h.url,
                            &h.events.join(","),
                            &h.created_by,
                            &h.created_at,
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
        WebhookCommand::Remove { id, connect } => {
            let mut client = admin_client(&connect).await?;
            let removed = client
                .remove_webhook(RemoveWebhookRequest { id })
                .await?
                .into_inner();
            let view = WebhookView::from(removed);
            match output {
                OutputFormat::Json => print_json(&view),
                OutputFormat::Table => {
                    eprintln!("Removed webhook {} ({}).", view.webhook_id, view.url);
                    Ok(())
                }
            }
        }
        WebhookCommand::Deliveries { id, limit, connect } => {
            let mut client = admin_client(&connect).await?;
            let deliveries: Vec<DeliveryView> = client
                .list_webhook_deliveries(ListWebhookDeliveriesRequest {
                    webhook_id: id.unwrap_or_default(),
                    limit,
                })
                .await?
                .into_inner()
                .deliveries
                .into_iter()
                .map(DeliveryView::from)
                .collect();
            match output {
                OutputFormat::Json => print_json(&deliveries),
                OutputFormat::Table => {
                    if deliveries.is_empty() {
                        eprintln!("No deliveries.");
                        return Ok(());
                    }
                    let mut t = table(&["event", "type", "webhook", "state", "tries", "last"]);
                    for d in &deliveries {
                        let last = d.attempt_log.last().map_or_else(String::new, |a| {
                            match (&a.status_code, &a.error) {
                                (_, Some(e)) => e.clone(),
                                (Some(code), None) => format!("HTTP {code}"),
                                (None, None) => String::new(),
                            }
                        });
                        t.add_row([
                            &d.event_id,
                            &d.event_type,
                            &d.webhook_id,
                            &d.delivery_state,
                            &d.attempts.to_string(),
                            &last,
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
    }
}
