//! Offboarding a user: their devices, one button, live per-device progress to the receipts,
//! and the same report `wardctl user offboard --output json` gives, downloadable.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use futures::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use ward_proto::v1::{
    GetOffboardReportRequest, ListDevicesRequest, OffboardReport, OffboardUserRequest,
};

use super::{Page, answer, q};
use crate::cli::users::ReportView;
use crate::console::http::{CsrfForm, Shared};
use crate::console::ui;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct UserQuery {
    user: String,
}

pub(crate) async fn page(State(console): State<Shared>, Query(query): Query<UserQuery>) -> Page {
    render(&console, &query.user, None).await
}

async fn render(console: &Shared, user: &str, error: Option<(&'static str, String)>) -> Page {
    let user = user.trim();
    let devices = if user.is_empty() {
        Vec::new()
    } else {
        answer(
            console,
            console
                .client()
                .list_devices(ListDevicesRequest {
                    user: user.to_owned(),
                    ..Default::default()
                })
                .await,
        )?
        .devices
    };
    let field_error = |field: &str| {
        error
            .as_ref()
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| m.clone())
    };
    let body = html! {
        form.filters method="get" action="/offboard" {
            div {
                label for="user" { "User (e-mail)" }
                input #user type="email" name="user" value=(user) required;
            }
            button type="submit" { "Show their devices" }
        }
        @if !user.is_empty() {
            h2 { "Devices of " (user) }
            @if devices.is_empty() {
                p { "No devices. Offboarding still withdraws their unused enrollment tokens." }
            } @else {
                table #user-devices {
                    thead { tr { th scope="col" { "Host name" } th scope="col" { "State" } th scope="col" { "Last seen" } } }
                    tbody {
                        @for d in &devices {
                            tr {
                                td { a href={"/devices/" (d.id)} { (d.facts.as_ref().map(|f| f.hostname.as_str()).unwrap_or("")) } }
                                td { (ui::device_state(d.state)) }
                                td { (ui::ago(d.last_seen_unix_ms)) }
                            }
                        }
                    }
                }
            }
            p { a href={"/offboard/progress?user=" (q(user))} { "Where an earlier offboarding of this user stands" } }
            @if console.me.may("offboard") {
                h2 { "Offboard " (user) }
                p.muted { "Wipes the messaging data on every device of theirs, revokes each device once its wipe has finished, and withdraws their unused enrollment tokens. Running it again issues nothing twice." }
                form method="post" action="/offboard" {
                    (ui::csrf_field(console))
                    input type="hidden" name="user" value=(user);
                    div.field {
                        label for="reason" { "Reason (kept in the audit log)" }
                        input #reason type="text" name="reason" required maxlength="500";
                        @if let Some(m) = field_error("reason") { span.field-error { (m) } }
                    }
                    div.field {
                        label for="confirm" { "Type the user's e-mail " code { (user) } " to confirm" }
                        input #confirm type="text" name="confirm" required autocomplete="off" data-confirm=(user);
                        @if let Some(m) = field_error("confirm") { span.field-error { (m) } }
                    }
                    button.danger type="submit" { "Offboard " (user) }
                }
            } @else {
                p.muted { "Your role (" (console.me.role) ") may not offboard users." }
            }
        }
    };
    let mut response = ui::page(console, "/offboard", "Offboard a user", body);
    if error.is_some() {
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct OffboardForm {
    user: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

pub(crate) async fn start(
    State(console): State<Shared>,
    CsrfForm(form): CsrfForm<OffboardForm>,
) -> Page {
    let user = form.user.trim().to_owned();
    if form.reason.trim().is_empty() {
        return render(
            &console,
            &user,
            Some((
                "reason",
                "Give a reason: it is kept with every command.".into(),
            )),
        )
        .await;
    }
    if !form.confirm.trim().eq_ignore_ascii_case(&user) {
        return render(
            &console,
            &user,
            Some((
                "confirm",
                format!("Type {user} exactly to confirm; nothing was sent."),
            )),
        )
        .await;
    }
    let report = answer(
        &console,
        console
            .client()
            .offboard_user(OffboardUserRequest {
                user: user.clone(),
                reason: form.reason.trim().to_owned(),
            })
            .await,
    )?;
    console
        .offboarded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(report.user.clone(), report.tokens_invalidated);
    Ok(Redirect::to(&format!("/offboard/progress?user={}", q(&report.user))).into_response())
}

fn tokens_invalidated(console: &Shared, user: &str) -> u32 {
    console
        .offboarded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(user)
        .copied()
        .unwrap_or(0)
}

/// The report as a table with a live region.
fn report_fragment(report: &OffboardReport) -> Markup {
    let view = ReportView::new(report.clone(), 0);
    html! {
        p #offboard-state data-complete=(view.complete) {
            @if view.complete { span.badge.ok { "complete" } " every device finished" } @else { span.badge.warn { "in progress" } }
        }
        table #offboard-devices {
            thead { tr { th scope="col" { "Host name" } th scope="col" { "Wipe" } th scope="col" { "Receipt" } th scope="col" { "Revoked" } th scope="col" { "Finished" } } }
            tbody {
                @for (d, wire) in view.devices.iter().zip(&report.devices) {
                    tr {
                        td { a href={"/devices/" (d.id)} { (d.hostname) } }
                        td {
                            @if let Some(c) = &d.command_id { a href={"/commands/" (c)} { (ui::command_state(wire.state)) } } @else { (d.state) }
                            @if let Some(f) = &d.failure_reason { " " (f) }
                        }
                        td { @if d.receipt_verified { span.badge.ok { "verified" } } @else { span.muted { "-" } } }
                        td { (if d.revoked { "yes" } else { "no" }) }
                        td { (d.finished_at.clone().unwrap_or_else(|| "-".into())) }
                    }
                }
            }
        }
    }
}

pub(crate) async fn progress(
    State(console): State<Shared>,
    Query(query): Query<UserQuery>,
) -> Page {
    let report = answer(
        &console,
        console
            .client()
            .get_offboard_report(GetOffboardReportRequest {
                user: query.user.clone(),
            })
            .await,
    )?;
    let live = !report.complete;
    let body = html! {
        div #progress aria-live="polite" data-live=[live.then(|| format!("/offboard/events?user={}", q(&report.user)))] {
            (report_fragment(&report))
        }
        p { a href={"/offboard/report.json?user=" (q(&report.user))} download={"offboard-" (report.user) ".json"} { "Download the report (JSON, as " code { "wardctl user offboard --output json" } " prints it)" } }
    };
    Ok(ui::page(
        &console,
        "/offboard",
        &format!("Offboarding {}", report.user),
        body,
    ))
}

pub(crate) async fn events(
    State(console): State<Shared>,
    Query(query): Query<UserQuery>,
    headers: axum::http::HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    super::live(console, headers, move |mut client| {
        let user = query.user.clone();
        async move {
            match client
                .get_offboard_report(GetOffboardReportRequest { user })
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    (report_fragment(&r).into_string(), r.complete)
                }
                Err(e) => (html! { p.error { (e.message()) } }.into_string(), false),
            }
        }
    })
}

pub(crate) async fn report_json(
    State(console): State<Shared>,
    Query(query): Query<UserQuery>,
) -> Result<Response, Response> {
    let report = answer(
        &console,
        console
            .client()
            .get_offboard_report(GetOffboardReportRequest {
                user: query.user.clone(),
            })
            .await,
    )?;
    let tokens = tokens_invalidated(&console, &report.user);
    let view = ReportView::new(report, tokens);
    let json = serde_json::to_string_pretty(&view).unwrap_or_default();
    let disposition = format!(
        "attachment; filename=\"offboard-{}.json\"",
        view.user.replace(['"', '\\', '\r', '\n'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        json,
    )
        .into_response())
}
