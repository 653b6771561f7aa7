//! The fleet at a glance: devices by state, compliance by check, check-in recency, commands
//! in flight, the last audit entries. Every number links to the list it counts.

use std::collections::BTreeMap;

use axum::extract::State;
use maud::html;
use ward_proto::v1::{CheckStatus, ListAuditRequest, ListCommandsRequest, ListDevicesRequest};

use super::{Page, answer};
use crate::console::http::Shared;
use crate::console::plot::{CheckTally, compliance_bars};
use crate::console::ui;

const HOUR_MS: i64 = 3_600_000;
/// Audit pages read at most, looking for the newest entries of the last day.
const AUDIT_PAGES: usize = 10;

pub(crate) async fn page(State(console): State<Shared>) -> Page {
    let devices = answer(
        &console,
        console
            .client()
            .list_devices(ListDevicesRequest::default())
            .await,
    )?
    .devices;
    let commands = answer(
        &console,
        console
            .client()
            .list_commands(ListCommandsRequest::default())
            .await,
    )?;
    let audit = last_audit_entries(&console, 10).await?;

    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tallies: BTreeMap<String, CheckTally> = BTreeMap::new();
    let now = ui::now_ms();
    let mut seen = [0usize; 5]; // hour, day, week, older, never
    let mut noncompliant = 0;
    for d in &devices {
        *states.entry(ui::device_state_name(d.state)).or_default() += 1;
        let c = d.compliance.clone().unwrap_or_default();
        if ui::compliance_name(c.state) == "noncompliant" {
            noncompliant += 1;
        }
        for check in &c.checks {
            let t = tallies
                .entry(check.name.clone())
                .or_insert_with(|| CheckTally {
                    check: check.name.clone(),
                    ..CheckTally::default()
                });
            match CheckStatus::try_from(check.status) {
                Ok(CheckStatus::Pass) => t.pass += 1,
                Ok(CheckStatus::Fail) => t.fail += 1,
                _ => t.unsupported += 1,
            }
        }
        let age = now - d.last_seen_unix_ms;
        let bucket = match d.last_seen_unix_ms {
            0 => 4,
            _ if age <= HOUR_MS => 0,
            _ if age <= 24 * HOUR_MS => 1,
            _ if age <= 7 * 24 * HOUR_MS => 2,
            _ => 3,
        };
        seen[bucket] += 1;
    }
    let mut in_flight: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &commands.commands {
        if !ui::is_terminal(c.state) {
            *in_flight
                .entry(ui::command_state_name(c.state))
                .or_default() += 1;
        }
    }
    let tallies: Vec<CheckTally> = tallies.into_values().collect();
    let body = html! {
        div.grid {
            section.card aria-labelledby="h-devices" {
                h2 #h-devices { "Devices" }
                ul.stats {
                    li { a href="/devices" { span.n { (devices.len()) } "enrolled" } }
                    @for state in ["active", "revoked", "retired"] {
                        li { a href={"/devices?state=" (state)} { span.n { (states.get(state).copied().unwrap_or(0)) } (state) } }
                    }
                    li { a href="/devices?compliant=no" { span.n { (noncompliant) } "not compliant" } }
                }
            }
            section.card aria-labelledby="h-seen" {
                h2 #h-seen { "Last check-in" }
                ul.stats {
                    @for (i, (key, label)) in [("hour", "last hour"), ("day", "last day"), ("week", "last week"), ("older", "longer ago"), ("never", "never")].iter().enumerate() {
                        li { a href={"/devices?seen=" (key)} { span.n { (seen[i]) } (label) } }
                    }
                }
            }
            section.card aria-labelledby="h-flight" {
                h2 #h-flight { "Commands in flight" }
                @if in_flight.is_empty() {
                    p.muted { "None: every command has finished." }
                } @else {
                    ul.stats {
                        @for (state, n) in &in_flight {
                            li { a href={"/commands?state=" (state)} { span.n { (n) } (state.replace('_', " ")) } }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-compliance" {
            h2 #h-compliance { "Compliance by check" }
            @if tallies.is_empty() {
                p.muted { "No device has reported its checks yet." }
            } @else {
                p.muted { "Green: passing, red: failing, grey: unsupported or error. A bar opens the devices failing that check." }
                (compliance_bars(&tallies))
                table {
                    caption.muted { "The same numbers as a table" }
                    thead { tr { th scope="col" { "Check" } th scope="col" { "Passing" } th scope="col" { "Failing" } th scope="col" { "Unsupported or error" } } }
                    tbody {
                        @for t in &tallies {
                            tr {
                                th scope="row" { (t.check) }
                                td.num { (t.pass) }
                                td.num { a href={"/devices?check=" (t.check) "&status=fail"} { (t.fail) } }
                                td.num { (t.unsupported) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="h-audit" {
            h2 #h-audit { "Latest audit entries" }
            @if audit.is_empty() {
                p.muted { "Nothing in the last day." }
            } @else {
                (super::audit::table(&audit))
                p { a href="/audit" { "The whole audit log" } }
            }
        }
    };
    Ok(ui::page(&console, "/", "Fleet", body))
}

/// The newest `n` audit entries of the last day, oldest first.
async fn last_audit_entries(
    console: &Shared,
    n: usize,
) -> Result<Vec<ward_proto::v1::AuditEntry>, axum::response::Response> {
    let since = ui::now_ms() - 24 * HOUR_MS;
    let mut after = 0;
    let mut last: Vec<ward_proto::v1::AuditEntry> = Vec::new();
    for _ in 0..AUDIT_PAGES {
        let page = answer(
            console,
            console
                .client()
                .list_audit(ListAuditRequest {
                    since_unix_ms: since,
                    after_seq: after,
                    ..Default::default()
                })
                .await,
        )?;
        after = page.entries.last().map_or(after, |e| e.seq);
        last.extend(page.entries);
        let keep = last.len().saturating_sub(n);
        last.drain(..keep);
        if !page.truncated {
            break;
        }
    }
    Ok(last)
}
