//! One device: facts, inventory, each check with since-when and its enforcement,
//! certificate, commands with receipts, its audit trail, and the actions the admin's role
//! allows.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use maud::{Markup, html};
use ward_proto::v1::{
    CheckStatus, Device, EnforcementAction, GetDeviceRequest, ListAuditRequest, ListCommandsRequest,
};

use super::actions::{ACTIONS, ActionError};
use super::{Page, answer, form_key};
use crate::console::http::Shared;
use crate::console::{Console, ui};

/// The device's audit entries shown (the newest).
const AUDIT_SHOWN: usize = 50;

pub(crate) async fn page(State(console): State<Shared>, Path(id): Path<String>) -> Page {
    render(&console, &id, None).await
}

/// The device page, with an action's error shown next to its form.
pub(crate) async fn render(console: &Console, id: &str, error: Option<ActionError>) -> Page {
    let device = answer(
        console,
        console
            .client()
            .get_device(GetDeviceRequest {
                device_id: id.to_owned(),
            })
            .await,
    )?;
    let commands = answer(
        console,
        console
            .client()
            .list_commands(ListCommandsRequest {
                device_id: device.id.clone(),
                limit: 100,
                ..Default::default()
            })
            .await,
    )?
    .commands;
    let mut audit = answer(
        console,
        console
            .client()
            .list_audit(ListAuditRequest {
                device: device.id.clone(),
                limit: 10_000,
                ..Default::default()
            })
            .await,
    )?
    .entries;
    let skip = audit.len().saturating_sub(AUDIT_SHOWN);
    audit.drain(..skip);
    let facts = device.facts.clone().unwrap_or_default();
    let name = if facts.hostname.is_empty() {
        device.id.clone()
    } else {
        facts.hostname.clone()
    };
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let body = html! {
        @if let Some(e) = &error {
            p.error role="alert" { (e.message) }
        }
        div.grid {
            section.card aria-labelledby="h-facts" {
                h2 #h-facts { "Device" }
                dl.facts {
                    dt { "State" } dd #device-state { (ui::device_state(device.state)) }
                    dt { "User" } dd { a href={"/devices?q=" (super::q(&device.user))} { (device.user) } }
                    dt { "Host name" } dd { (facts.hostname) }
                    dt { "Id" } dd { code { (device.id) } }
                    dt { "OS" } dd { (facts.os_name) " " (facts.os_version) }
                    dt { "Kernel" } dd { (facts.kernel_version) " " (facts.arch) }
                    dt { "Agent" } dd { (facts.agent_version) }
                    dt { "Enrolled" } dd { (ui::ago(device.enrolled_at_unix_ms)) }
                    dt { "Last seen" } dd { (ui::ago(device.last_seen_unix_ms)) }
                    dt { "Certificate" } dd { code { (device.certificate_serial) } ", expires " (ui::ago(device.certificate_expires_at_unix_ms)) }
                    @if let Some(d) = &device.disabled {
                        dt { "Disabled" } dd { span.badge.warn { "disabled" } " by " (d.by) " " (ui::ago(d.at_unix_ms)) ": " (d.reason) }
                    }
                    @if let Some(w) = &device.messaging_wipe {
                        dt { "Messaging data" } dd { span.badge.bad { "wiped" } " " (ui::ago(w.at_unix_ms)) " by " (w.by.replace('_', " ")) " " code { (w.command_id) } "; the agent hands out no data key again (wardctl device return says how to put the device back into service)" }
                    }
                    @if device.offline_wipe_at_unix_ms != 0 {
                        dt { "Offline wipe" } dd { (ui::ago(device.offline_wipe_at_unix_ms)) ", receipt " (if device.offline_wipe_receipt_verified { "verified" } else { "NOT verified" }) }
                    }
                }
            }
            (inventory(&device))
        }
        (checks(&device))
        section aria-labelledby="h-actions" {
            h2 #h-actions { "Actions" }
            (actions(console, &device, &name, error.as_ref()))
        }
        section aria-labelledby="h-commands" {
            h2 #h-commands { "Commands" }
            @if commands.is_empty() {
                p.muted { "No commands yet." }
            } @else {
                (super::commands::table(&commands, false))
            }
        }
        section aria-labelledby="h-trail" {
            h2 #h-trail { "Audit trail" }
            @if audit.is_empty() {
                p.muted { "No audit entries name this device." }
            } @else {
                (super::audit::table(&audit))
            }
            p { a href={"/audit?device=" (device.id)} { "The device's whole trail" } }
        }
    };
    let mut response = ui::page(console, "/devices", &name, body);
    *response.status_mut() = status;
    Ok(response)
}

fn inventory(device: &Device) -> Markup {
    let Some(inv) = &device.inventory else {
        return html! { section.card { h2 { "Inventory" } p.muted { "Not reported yet." } } };
    };
    html! {
        section.card aria-labelledby="h-inventory" {
            h2 #h-inventory { "Inventory" }
            dl.facts {
                dt { "Hardware" } dd { (inv.hardware_vendor) " " (inv.hardware_model) }
                dt { "CPU" } dd { (inv.cpu_model) " (" (inv.cpu_count) ")" }
                dt { "Memory" } dd { (inv.memory_bytes / (1024 * 1024)) " MiB" }
                dt { "Firewall" } dd { (inv.firewall) }
                dt { "Packages" } dd {
                    @for p in &inv.packages { (p.manager) ": " (p.count) " " }
                }
                @for fs in &inv.filesystems {
                    dt { "Filesystem " code { (fs.mount_point) } } dd { (fs.fs_type) ", " (fs.encryption) }
                }
            }
        }
    }
}

fn checks(device: &Device) -> Markup {
    let compliance = device.compliance.clone().unwrap_or_default();
    html! {
        section aria-labelledby="h-checks" {
            h2 #h-checks { "Compliance " (ui::compliance(compliance.state)) }
            @if compliance.checks.is_empty() {
                p.muted { "No report yet." }
            } @else {
                p.muted { "Reported " (ui::ago(compliance.reported_at_unix_ms)) " against policy revision " (compliance.policy_revision) "." }
                table #checks {
                    thead { tr { th scope="col" { "Check" } th scope="col" { "Result" } th scope="col" { "Detail" } th scope="col" { "Failing since" } th scope="col" { "Enforcement" } } }
                    tbody {
                        @for c in &compliance.checks {
                            @let enforcement = device.enforcement.iter().find(|e| e.check == c.name);
                            tr {
                                th scope="row" { (c.name) }
                                td { (check_status(c.status)) }
                                td { (c.detail) }
                                td { @if let Some(e) = enforcement { (ui::ago(e.failing_since_unix_ms)) } }
                                td {
                                    @if let Some(e) = enforcement {
                                        (action_name(e.action))
                                        @if e.action == EnforcementAction::Wipe as i32 {
                                            @if e.wipe_command_id.is_empty() {
                                                ", wipe due " (ui::ago(e.wipe_due_unix_ms))
                                            } @else {
                                                ", wipe issued: " a href={"/commands/" (e.wipe_command_id)} { "command" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check_status(status: i32) -> Markup {
    match CheckStatus::try_from(status) {
        Ok(CheckStatus::Pass) => html! { span.badge.ok { "pass" } },
        Ok(CheckStatus::Fail) => html! { span.badge.bad { "fail" } },
        Ok(CheckStatus::Unsupported) => html! { span.badge.plain { "unsupported" } },
        Ok(CheckStatus::Error) => html! { span.badge.warn { "error" } },
        _ => html! { span.badge.plain { "unknown" } },
    }
}

fn action_name(action: i32) -> &'static str {
    match EnforcementAction::try_from(action) {
        Ok(EnforcementAction::Report) => "report",
        Ok(EnforcementAction::Block) => "block (messaging key withheld)",
        Ok(EnforcementAction::Wipe) => "block, then wipe",
        _ => "-",
    }
}

/// The actions the admin's role allows on this device, each a small form.
fn actions(console: &Console, device: &Device, name: &str, error: Option<&ActionError>) -> Markup {
    let offered: Vec<_> = ACTIONS
        .iter()
        .filter(|a| console.me.may(a.permission))
        .collect();
    if offered.is_empty() {
        return html! { p.muted { "Your role (" (console.me.role) ") may not act on devices." } };
    }
    html! {
        div.actions {
            @for a in offered {
                @let failed = error.filter(|e| e.action == a.key);
                details.action open[failed.is_some()] data-action=(a.key) {
                    summary { (a.label) }
                    form method="post" action={"/devices/" (device.id) "/action"} {
                        (ui::csrf_field(console))
                        input type="hidden" name="action" value=(a.key);
                        input type="hidden" name="key" value=(form_key());
                        p.muted { (a.explain) }
                        @if a.key == "lock" {
                            div.field {
                                label for={(a.key) "-message"} { "Message on the lock screen (optional)" }
                                input id={(a.key) "-message"} type="text" name="message" maxlength="200";
                            }
                        }
                        @if a.reason {
                            div.field {
                                label for={(a.key) "-reason"} { "Reason (kept in the audit log)" }
                                input id={(a.key) "-reason"} type="text" name="reason" required maxlength="500"
                                    aria-describedby=[failed.filter(|e| e.field == "reason").map(|_| format!("{}-reason-error", a.key))];
                                @if let Some(e) = failed.filter(|e| e.field == "reason") {
                                    span.field-error id={(a.key) "-reason-error"} { (e.message) }
                                }
                            }
                        }
                        @if a.confirm {
                            div.field {
                                label for={(a.key) "-confirm"} { "Type the host name " code { (name) } " to confirm" }
                                input id={(a.key) "-confirm"} type="text" name="confirm" required autocomplete="off" data-confirm=(name)
                                    aria-describedby=[failed.filter(|e| e.field == "confirm").map(|_| format!("{}-confirm-error", a.key))];
                                @if let Some(e) = failed.filter(|e| e.field == "confirm") {
                                    span.field-error id={(a.key) "-confirm-error"} { (e.message) }
                                }
                            }
                        }
                        button type="submit" class=[a.confirm.then_some("danger")] { (a.label) }
                    }
                }
            }
        }
    }
}
