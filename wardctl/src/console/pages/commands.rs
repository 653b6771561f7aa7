//! Commands: the list, one command with its receipt and live progress, cancel and approve.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use ward_proto::v1::{
    ApproveCommandRequest, CancelCommandRequest, Command, CommandState, GetCommandRequest,
    ListCommandsRequest,
};

use super::{Page, answer};
use crate::console::http::{CsrfForm, Empty, Shared};
use crate::console::ui;

const STATES: &[&str] = &[
    "queued",
    "delivered",
    "acknowledged",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
    "awaiting_approval",
];

fn state_from_name(name: &str) -> CommandState {
    match name {
        "queued" => CommandState::Queued,
        "delivered" => CommandState::Delivered,
        "acknowledged" => CommandState::Acknowledged,
        "succeeded" => CommandState::Succeeded,
        "failed" => CommandState::Failed,
        "cancelled" => CommandState::Cancelled,
        "expired" => CommandState::Expired,
        "superseded" => CommandState::Superseded,
        "awaiting_approval" => CommandState::AwaitingApproval,
        _ => CommandState::Unspecified,
    }
}

pub(crate) fn kind(c: &Command) -> String {
    if c.scope.is_empty() {
        c.kind.clone()
    } else {
        format!("{} ({})", c.kind, c.scope)
    }
}

/// A table of commands; `device` adds the device column.
pub(crate) fn table(commands: &[Command], device: bool) -> Markup {
    html! {
        table.commands {
            thead {
                tr {
                    th scope="col" { "Command" }
                    @if device { th scope="col" { "Device" } }
                    th scope="col" { "State" }
                    th scope="col" { "Receipt" }
                    th scope="col" { "Issued" }
                    th scope="col" { "By" }
                    th scope="col" { "Reason" }
                }
            }
            tbody {
                @for c in commands {
                    tr {
                        td { a href={"/commands/" (c.id)} { (kind(c)) } }
                        @if device { td { a href={"/devices/" (c.device_id)} { code { (c.device_id.get(..8).unwrap_or(&c.device_id)) } } } }
                        td { (ui::command_state(c.state)) }
                        td { (receipt_badge(c)) }
                        td { (ui::ago(c.created_at_unix_ms)) }
                        td { (c.created_by) }
                        td { (c.reason) }
                    }
                }
            }
        }
    }
}

fn receipt_badge(c: &Command) -> Markup {
    match &c.receipt {
        Some(r) if r.verified => html! { span.badge.ok { "verified" } },
        Some(_) => html! { span.badge.bad { "NOT verified" } },
        None => html! { span.muted { "-" } },
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Filter {
    device: String,
    state: String,
}

pub(crate) async fn list(State(console): State<Shared>, Query(filter): Query<Filter>) -> Page {
    let state = state_from_name(&filter.state);
    let answer_ = answer(
        &console,
        console
            .client()
            .list_commands(ListCommandsRequest {
                device_id: filter.device.clone(),
                state: state as i32,
                limit: 500,
            })
            .await,
    )?;
    let body = html! {
        form.filters method="get" action="/commands" role="search" aria-label="Filter commands" {
            div {
                label for="device" { "Device (id or host name)" }
                input #device type="text" name="device" value=(filter.device);
            }
            div {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" { "any" }
                    @for s in STATES { option value=(s) selected[filter.state == *s] { (s.replace('_', " ")) } }
                }
            }
            button type="submit" { "Filter" }
            a href="/commands" { "Clear" }
        }
        @if answer_.commands.is_empty() {
            p { "No command matches." }
        } @else {
            p.muted role="status" { (answer_.commands.len()) " commands, newest first" @if answer_.truncated { " (more exist: narrow the filter)" } }
            (table(&answer_.commands, true))
        }
    };
    Ok(ui::page(&console, "/commands", "Commands", body))
}

pub(crate) async fn detail(State(console): State<Shared>, Path(id): Path<String>) -> Page {
    let command = answer(
        &console,
        console
            .client()
            .get_command(GetCommandRequest {
                command_id: id.clone(),
            })
            .await,
    )?;
    let cancellable = matches!(
        CommandState::try_from(command.state),
        Ok(CommandState::Queued | CommandState::Delivered | CommandState::AwaitingApproval)
    );
    let awaiting = command.state == CommandState::AwaitingApproval as i32;
    let live = !ui::is_terminal(command.state);
    let body = html! {
        dl.facts {
            dt { "Device" } dd { a href={"/devices/" (command.device_id)} { code { (command.device_id) } } }
            dt { "Issued" } dd { (ui::ago(command.created_at_unix_ms)) " by " (command.created_by) }
            dt { "Reason" } dd { (command.reason) }
            @if !command.approved_by.is_empty() { dt { "Approved by" } dd { (command.approved_by) } }
            @if !command.lock_message.is_empty() { dt { "Lock message" } dd { (command.lock_message) } }
            dt { "Deliveries" } dd { (command.deliveries) }
        }
        h2 { "Progress" }
        div #progress aria-live="polite" data-live=[live.then(|| format!("/commands/{}/events", command.id))] {
            (progress(&command))
        }
        @if live { noscript { p { a href={"/commands/" (command.id)} { "Reload for the latest state" } } } }
        @if cancellable && console.me.may("cancel") {
            form method="post" action={"/commands/" (command.id) "/cancel"} {
                (ui::csrf_field(&console))
                button.danger type="submit" { "Cancel this command" }
            }
        }
        @if awaiting && console.me.may("approve") {
            form method="post" action={"/commands/" (command.id) "/approve"} {
                (ui::csrf_field(&console))
                p.muted { "A second admin (not the one who issued it) releases it." }
                button type="submit" { "Approve" }
            }
        }
    };
    Ok(ui::page(
        &console,
        "/commands",
        &format!("Command: {}", kind(&command)),
        body,
    ))
}

/// Where a command stands: its steps to the end, and its receipt.
pub(crate) fn progress(c: &Command) -> Markup {
    let state = ui::command_state_name(c.state);
    let steps = [
        ("queued", c.created_at_unix_ms),
        ("delivered", c.delivered_at_unix_ms),
        ("acknowledged", c.acknowledged_at_unix_ms),
    ];
    html! {
        ol.steps aria-label="Steps" {
            @for (name, at) in steps {
                li class=(if at != 0 { "ok" } else { "plain" }) {
                    (name) @if at != 0 { " " (ui::ago(at)) }
                }
            }
            li { (ui::command_state(c.state)) @if c.finished_at_unix_ms != 0 { " " (ui::ago(c.finished_at_unix_ms)) } }
        }
        p #state-line {
            @match state {
                "succeeded" => {
                    @if c.receipt.as_ref().is_some_and(|r| r.verified) {
                        "Succeeded, with a receipt signed by the device and verified by the controller."
                    } @else if c.receipt.is_some() {
                        "Reported as succeeded, but its receipt did NOT verify."
                    } @else {
                        "Succeeded."
                    }
                }
                "failed" => { "Failed: " (c.failure_reason) }
                "awaiting_approval" => { "Waiting for a second admin's approval." }
                "cancelled" | "expired" => { "Ended: " (state) "." }
                _ => { "In progress: the device gets it the moment it is connected." }
            }
        }
        @if let Some(r) = &c.receipt {
            section #receipt aria-labelledby="h-receipt" {
                h2 #h-receipt { "Receipt " (receipt_badge(c)) }
                @if !r.verification_error.is_empty() { p.error { (r.verification_error) } }
                (receipt_body(&r.body))
                details {
                    summary { "Signed body and signature" }
                    pre { (String::from_utf8_lossy(&r.body)) }
                    pre { (hex::encode(&r.signature)) }
                }
            }
        }
    }
}

/// The receipt's fields (what the device says it destroyed, and with which guarantee).
fn receipt_body(body: &[u8]) -> Markup {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return html! { p.muted { "The body is not JSON." } };
    };
    html! {
        dl.facts {
            @for (k, v) in &fields {
                dt { (k.replace('_', " ")) }
                dd { @match v { serde_json::Value::String(s) => { (s) }, other => { (other.to_string()) } } }
            }
        }
    }
}

/// Live progress: the fragment again whenever the command changes; `done` at its end;
/// `ended` if the session ends first.
pub(crate) async fn events(
    State(console): State<Shared>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    super::live(console, headers, move |mut client| {
        let command_id = id.clone();
        async move {
            match client.get_command(GetCommandRequest { command_id }).await {
                Ok(c) => {
                    let c = c.into_inner();
                    (progress(&c).into_string(), ui::is_terminal(c.state))
                }
                Err(e) => (html! { p.error { (e.message()) } }.into_string(), false),
            }
        }
    })
}

pub(crate) async fn cancel(
    State(console): State<Shared>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, Response> {
    answer(
        &console,
        console
            .client()
            .cancel_command(CancelCommandRequest {
                command_id: id.clone(),
            })
            .await,
    )?;
    Ok(Redirect::to(&format!("/commands/{id}")).into_response())
}

pub(crate) async fn approve(
    State(console): State<Shared>,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, Response> {
    answer(
        &console,
        console
            .client()
            .approve_command(ApproveCommandRequest {
                command_id: id.clone(),
            })
            .await,
    )?;
    Ok(Redirect::to(&format!("/commands/{id}")).into_response())
}
