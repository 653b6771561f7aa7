//! The audit log: filterable list with paging, and verification of the chain.

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use ward_proto::v1::{AuditEntry, ListAuditRequest, VerifyAuditRequest};

use super::{Page, answer, q};
use crate::console::http::Shared;
use crate::console::ui;

const PAGE_SIZE: u32 = 200;

pub(crate) fn table(entries: &[AuditEntry]) -> Markup {
    html! {
        table.audit {
            thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Details" } } }
            tbody {
                @for e in entries {
                    tr id={"seq-" (e.seq)} {
                        td.num { (e.seq) }
                        td { (ui::ago(e.at_unix_ms)) }
                        td { (e.actor) }
                        td { (e.action) }
                        td { (e.target) }
                        td { code { (e.details_json) } }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Filter {
    actor: String,
    target: String,
    /// A device's whole trail (its commands too).
    device: String,
    /// RFC 3339, or empty.
    since: String,
    after: u64,
}

pub(crate) async fn list(State(console): State<Shared>, Query(filter): Query<Filter>) -> Page {
    let since = match filter.since.trim() {
        "" => Ok(0),
        text => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map(|t| ward_core::Timestamp::from_datetime(t).unix_ms())
            .map_err(|_| format!("{text:?} is not an RFC 3339 time such as 2026-12-01T00:00:00Z")),
    };
    let (entries, truncated, error) = match since {
        Ok(since_unix_ms) => {
            let page = answer(
                &console,
                console
                    .client()
                    .list_audit(ListAuditRequest {
                        since_unix_ms,
                        actor: filter.actor.clone(),
                        target: filter.target.clone(),
                        device: filter.device.clone(),
                        after_seq: filter.after,
                        limit: PAGE_SIZE,
                        ..Default::default()
                    })
                    .await,
            )?;
            (page.entries, page.truncated, None)
        }
        Err(e) => (Vec::new(), false, Some(e)),
    };
    let next = entries.last().map(|e| e.seq);
    let body = html! {
        form.filters method="get" action="/audit" role="search" aria-label="Filter the audit log" {
            div { label for="actor" { "Who (e.g. ward://admin/alice)" } input #actor type="text" name="actor" value=(filter.actor); }
            div { label for="target" { "Target (device id, command id, user…)" } input #target type="text" name="target" value=(filter.target); }
            div { label for="audit-device" { "A device's trail (id or host name)" } input #audit-device type="text" name="device" value=(filter.device); }
            div {
                label for="since" { "Since (RFC 3339)" }
                input #since type="text" name="since" value=(filter.since) aria-describedby=[error.as_ref().map(|_| "since-error")];
                @if let Some(e) = &error { span.field-error #since-error { (e) } }
            }
            button type="submit" { "Filter" }
            a href="/audit" { "Clear" }
        }
        p { a href="/audit/verify" { "Verify the whole chain" } }
        @if entries.is_empty() {
            p { "No entry matches." }
        } @else {
            (table(&entries))
            @if let (true, Some(seq)) = (truncated, next) {
                p { a href={"/audit?actor=" (q(&filter.actor)) "&target=" (q(&filter.target)) "&device=" (q(&filter.device)) "&since=" (q(&filter.since)) "&after=" (seq)} { "Next " (PAGE_SIZE) " entries" } }
            }
        }
    };
    Ok(ui::page(&console, "/audit", "Audit log", body))
}

pub(crate) async fn verify(State(console): State<Shared>) -> Page {
    let v = answer(
        &console,
        console
            .client()
            .verify_audit(VerifyAuditRequest::default())
            .await,
    )?;
    let body = html! {
        @if v.ok {
            p.notice role="status" #verify-result { "The chain of " (v.entries) " entries verifies, and the controller's signature over its head checks out." }
        } @else {
            p.error role="alert" #verify-result {
                "The audit log does NOT verify: " (v.problem)
            }
            @if v.first_bad_seq != 0 {
                p { "First bad entry: " a href={"/audit?after=" (v.first_bad_seq.saturating_sub(1))} { "#" (v.first_bad_seq) } }
            }
        }
        p { a href="/audit" { "Back to the audit log" } }
    };
    Ok(ui::page(&console, "/audit", "Audit verification", body))
}
