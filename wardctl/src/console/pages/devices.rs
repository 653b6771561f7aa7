//! The device list: filter by text, state, compliance, failing check and check-in recency;
//! sort by any column. All on the server, so it works without script.

use axum::extract::{Query, State};
use maud::html;
use serde::Deserialize;
use ward_proto::v1::{CheckStatus, Device, ListDevicesRequest};

use super::{Page, answer, q};
use crate::console::http::Shared;
use crate::console::ui;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Filter {
    /// Part of a host name, user or device id.
    pub q: String,
    pub state: String,
    /// "yes", "no" or "unknown".
    pub compliant: String,
    pub check: String,
    /// With `check`: "fail" (default), "pass" or "unsupported".
    pub status: String,
    /// "hour", "day", "week", "older", "never".
    pub seen: String,
    pub sort: String,
    /// "asc" or "desc".
    pub dir: String,
}

const COLUMNS: &[(&str, &str)] = &[
    ("hostname", "Host name"),
    ("user", "User"),
    ("os", "OS"),
    ("compliant", "Compliant"),
    ("failing", "Failing checks"),
    ("last_seen", "Last seen"),
    ("state", "State"),
];

fn failing(d: &Device) -> Vec<String> {
    d.compliance
        .as_ref()
        .map(|c| {
            c.checks
                .iter()
                .filter(|k| k.status == CheckStatus::Fail as i32)
                .map(|k| k.name.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn hostname(d: &Device) -> String {
    d.facts
        .as_ref()
        .map(|f| f.hostname.clone())
        .unwrap_or_default()
}

fn os(d: &Device) -> String {
    d.facts
        .as_ref()
        .map(|f| format!("{} {}", f.os_name, f.os_version).trim().to_owned())
        .unwrap_or_default()
}

fn compliance_state(d: &Device) -> i32 {
    d.compliance.as_ref().map_or(0, |c| c.state)
}

impl Filter {
    fn matches(&self, d: &Device, now: i64) -> bool {
        let text = self.q.trim().to_lowercase();
        if !text.is_empty()
            && ![hostname(d), d.user.clone(), d.id.clone()]
                .iter()
                .any(|s| s.to_lowercase().contains(&text))
        {
            return false;
        }
        if !self.state.is_empty() && ui::device_state_name(d.state) != self.state {
            return false;
        }
        let compliance = ui::compliance_name(compliance_state(d));
        match self.compliant.as_str() {
            "yes" if compliance != "compliant" => return false,
            "no" if compliance != "noncompliant" => return false,
            "unknown" if compliance != "unknown" => return false,
            _ => {}
        }
        if !self.check.is_empty() {
            let want = match self.status.as_str() {
                "pass" => Some(CheckStatus::Pass),
                "unsupported" => None,
                _ => Some(CheckStatus::Fail),
            };
            let hit = d.compliance.as_ref().is_some_and(|c| {
                c.checks.iter().any(|k| {
                    k.name == self.check
                        && match want {
                            Some(s) => k.status == s as i32,
                            None => {
                                k.status != CheckStatus::Pass as i32
                                    && k.status != CheckStatus::Fail as i32
                            }
                        }
                })
            });
            if !hit {
                return false;
            }
        }
        let age = now - d.last_seen_unix_ms;
        let hour = 3_600_000;
        match self.seen.as_str() {
            "hour" => d.last_seen_unix_ms != 0 && age <= hour,
            "day" => d.last_seen_unix_ms != 0 && age > hour && age <= 24 * hour,
            "week" => d.last_seen_unix_ms != 0 && age > 24 * hour && age <= 7 * 24 * hour,
            "older" => d.last_seen_unix_ms != 0 && age > 7 * 24 * hour,
            "never" => d.last_seen_unix_ms == 0,
            _ => true,
        }
    }

    fn sort(&self, devices: &mut [Device]) {
        match self.sort.as_str() {
            "user" => devices.sort_by_key(|d| d.user.to_lowercase()),
            "os" => devices.sort_by_key(os),
            "compliant" => devices.sort_by_key(|d| ui::compliance_name(compliance_state(d))),
            "failing" => devices.sort_by_key(|d| failing(d).len()),
            "last_seen" => devices.sort_by_key(|d| d.last_seen_unix_ms),
            "state" => devices.sort_by_key(|d| ui::device_state_name(d.state)),
            _ => devices.sort_by_key(|d| hostname(d).to_lowercase()),
        }
        if self.dir == "desc" {
            devices.reverse();
        }
    }

    /// This filter's query string with another sort.
    fn sorted_by(&self, column: &str) -> String {
        let dir = if self.sort == column && self.dir != "desc" {
            "desc"
        } else {
            "asc"
        };
        format!(
            "/devices?q={}&state={}&compliant={}&check={}&status={}&seen={}&sort={column}&dir={dir}",
            q(&self.q),
            q(&self.state),
            q(&self.compliant),
            q(&self.check),
            q(&self.status),
            q(&self.seen)
        )
    }
}

pub(crate) async fn list(State(console): State<Shared>, Query(filter): Query<Filter>) -> Page {
    let devices = answer(
        &console,
        console
            .client()
            .list_devices(ListDevicesRequest::default())
            .await,
    )?
    .devices;
    let total = devices.len();
    let now = ui::now_ms();
    let mut shown: Vec<Device> = devices
        .into_iter()
        .filter(|d| filter.matches(d, now))
        .collect();
    filter.sort(&mut shown);
    let select = |name: &str, label: &str, current: &str, options: &[(&str, &str)]| {
        html! {
            div {
                label for=(name) { (label) }
                select #(name) name=(name) {
                    @for (value, text) in options {
                        option value=(value) selected[*value == current] { (text) }
                    }
                }
            }
        }
    };
    let body = html! {
        form.filters method="get" action="/devices" role="search" aria-label="Filter devices" {
            div {
                label for="q" { "Host name, user or id" }
                input #q type="search" name="q" value=(filter.q);
            }
            (select("state", "State", &filter.state, &[("", "any"), ("active", "active"), ("revoked", "revoked"), ("retired", "retired")]))
            (select("compliant", "Compliant", &filter.compliant, &[("", "any"), ("yes", "yes"), ("no", "no"), ("unknown", "not reported")]))
            (select("seen", "Last seen", &filter.seen, &[("", "any time"), ("hour", "last hour"), ("day", "last day"), ("week", "last week"), ("older", "longer ago"), ("never", "never")]))
            @if !filter.check.is_empty() {
                input type="hidden" name="check" value=(filter.check);
                input type="hidden" name="status" value=(filter.status);
            }
            input type="hidden" name="sort" value=(filter.sort);
            input type="hidden" name="dir" value=(filter.dir);
            button type="submit" { "Filter" }
            a href="/devices" { "Clear" }
        }
        p.muted role="status" {
            (shown.len()) " of " (total) " devices"
            @if !filter.check.is_empty() {
                ", check " code { (filter.check) } " " (if filter.status.is_empty() { "fail" } else { filter.status.as_str() })
            }
        }
        @if shown.is_empty() {
            p { @if total == 0 { "No devices enrolled yet: create an enrollment token on the " a href="/enroll" { "Enrollment" } " page." } @else { "No device matches this filter." } }
        } @else {
            table #devices {
                thead {
                    tr {
                        @for (key, label) in COLUMNS {
                            @let sort = if filter.sort == *key || (filter.sort.is_empty() && *key == "hostname") {
                                if filter.dir == "desc" { "descending" } else { "ascending" }
                            } else { "none" };
                            th scope="col" aria-sort=(sort) { a href=(filter.sorted_by(key)) { (label) } }
                        }
                    }
                }
                tbody {
                    @for d in &shown {
                        tr {
                            td { a href={"/devices/" (d.id)} { (if hostname(d).is_empty() { d.id.clone() } else { hostname(d) }) } }
                            td { (d.user) }
                            td { (os(d)) }
                            td { (ui::compliance(compliance_state(d))) }
                            td { (failing(d).join(", ")) }
                            td { (ui::ago(d.last_seen_unix_ms)) }
                            td { (ui::device_state(d.state)) }
                        }
                    }
                }
            }
        }
    };
    Ok(ui::page(&console, "/devices", "Devices", body))
}
