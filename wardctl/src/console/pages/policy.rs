//! Policy: the default, or the policy in force for one user, each field with where it comes
//! from; editing with the same parsers and messages as `wardctl policy set`, errors shown
//! next to their field.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::html;
use serde::Deserialize;
use ward_proto::v1::{
    CheckAction, EnforcementAction, GetPolicyRequest, PackageList, Policy, SetPolicyRequest,
};

use super::{Page, answer, q};
use crate::cli::policy::{
    check_action, max_age, max_inactivity, max_uptime, offline_wipe_after, os_updates_max_age,
    wipe_grace,
};
use crate::console::http::{CsrfForm, Empty, Shared};
use crate::console::{Console, ui};
use ward_core::Check;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct UserQuery {
    user: String,
}

/// A form field: (form name, label, wire field named in the controller's errors).
const FIELDS: &[(&str, &str, &str)] = &[
    (
        "min_length",
        "Minimum password length (0: no rule)",
        "password_min_length",
    ),
    (
        "min_classes",
        "Character classes a password must mix (0-4)",
        "password_min_classes",
    ),
    (
        "max_age",
        "Maximum password age, e.g. 90d (0: no rule)",
        "password_max_age_days",
    ),
    (
        "history",
        "Previous passwords that may not be reused",
        "password_history",
    ),
    (
        "max_failed_attempts",
        "Failed log-ins before the account locks (0: no rule)",
        "max_failed_attempts",
    ),
    (
        "max_inactivity",
        "Lock the screen after, e.g. 5m (0: no rule)",
        "auto_lock_seconds",
    ),
    (
        "offline_wipe_after",
        "Wipe after this long offline, e.g. 72h (never: off)",
        "offline_wipe_after_seconds",
    ),
    (
        "os_updates_max_age",
        "Last package update at most, e.g. 30d (0: no rule)",
        "os_updates_max_age_days",
    ),
    (
        "min_agent_version",
        "Minimum agent version, e.g. 0.2.0 (empty: none)",
        "min_agent_version",
    ),
    (
        "wipe_grace",
        "Wipe grace for checks whose action is wipe, e.g. 72h",
        "wipe_grace_seconds",
    ),
    (
        "max_uptime",
        "Longest time up since boot, e.g. 30d (0: no limit)",
        "max_uptime_days",
    ),
];

const FLAGS: &[(&str, &str, &str)] = &[
    (
        "require_encryption",
        "Require disk encryption",
        "require_disk_encryption",
    ),
    (
        "require_firewall",
        "Require an active host firewall",
        "require_firewall",
    ),
    (
        "enforce",
        "Let agents running as root write the password rules",
        "enforce",
    ),
];

/// How a policy form field given in seconds is read.
type SecondsField = fn(&str) -> Result<u64, String>;

fn duration_text(seconds: u64) -> String {
    if seconds == 0 {
        "0".into()
    } else {
        // A form field is read back when the form is sent: every unit, so nothing changes.
        ward_core::duration::format_exact(std::time::Duration::from_secs(seconds))
    }
}

fn text_value(p: &Policy, field: &str) -> String {
    match field {
        "min_length" => p.password_min_length.to_string(),
        "min_classes" => p.password_min_classes.to_string(),
        "max_age" => format!("{}d", p.password_max_age_days),
        "history" => p.password_history.to_string(),
        "max_failed_attempts" => p.max_failed_attempts.to_string(),
        "max_inactivity" => duration_text(u64::from(p.auto_lock_seconds)),
        "offline_wipe_after" => {
            if p.offline_wipe_after_seconds == 0 {
                "never".into()
            } else {
                duration_text(p.offline_wipe_after_seconds)
            }
        }
        "os_updates_max_age" => format!("{}d", p.os_updates_max_age_days),
        "min_agent_version" => p.min_agent_version.clone(),
        "wipe_grace" => duration_text(p.wipe_grace_seconds),
        "max_uptime" => format!("{}d", p.max_uptime_days),
        _ => String::new(),
    }
}

fn flag_value(p: &Policy, field: &str) -> bool {
    match field {
        "require_encryption" => p.require_disk_encryption,
        "require_firewall" => p.require_firewall,
        "enforce" => p.enforce,
        _ => false,
    }
}

fn action_of(p: &Policy, check: &str) -> &'static str {
    match p
        .check_actions
        .iter()
        .find(|a| a.check == check)
        .map(|a| EnforcementAction::try_from(a.action))
    {
        Some(Ok(EnforcementAction::Report)) => "report",
        Some(Ok(EnforcementAction::Wipe)) => "wipe",
        _ => "block",
    }
}

pub(crate) async fn page(State(console): State<Shared>, Query(query): Query<UserQuery>) -> Page {
    render(&console, query.user.trim(), &[], None, None).await
}

/// The page; `errors` are (form field, message); `values` the admin's input to show again.
async fn render(
    console: &Console,
    user: &str,
    errors: &[(String, String)],
    values: Option<&PolicyForm>,
    notice: Option<&str>,
) -> Page {
    let get = |user: &str| {
        let mut client = console.client();
        let user = user.to_owned();
        async move { client.get_policy(GetPolicyRequest { user }).await }
    };
    let policy = answer(console, get(user).await)?;
    // The controller names the fields a user's override sets; the rest follow the default.
    let overridden = policy.scope.starts_with("user:");
    let source = |wire: &str| {
        if policy.overridden.iter().any(|f| f == wire) {
            "this user's override"
        } else {
            "default"
        }
    };
    let error_of = |field: &str| {
        errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.clone())
    };
    let general: Vec<&String> = errors
        .iter()
        .filter(|(f, _)| f.is_empty())
        .map(|(_, m)| m)
        .collect();
    let editable = console.me.may("policy");
    let body = html! {
        form.filters method="get" action="/policy" {
            div { label for="policy-user" { "Policy in force for a user (empty: the default)" } input #policy-user type="email" name="user" value=(user); }
            button type="submit" { "Show" }
        }
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        @for m in &general { p.error role="alert" { (m) } }
        p { "Scope " code #policy-scope { (policy.scope) } ", revision " (policy.revision) "." }
        form method="post" action="/policy" {
            (ui::csrf_field(console))
            input type="hidden" name="user" value=(user);
            table #policy {
                thead { tr { th scope="col" { "Setting" } th scope="col" { "Value" } th scope="col" { "From" } } }
                tbody {
                    @for (name, label, wire) in FIELDS {
                        @let value = values.map_or_else(|| text_value(&policy, name), |v| v.text(name));
                        tr {
                            th scope="row" { label for={"f-" (name)} { (label) } }
                            td {
                                input id={"f-" (name)} type="text" name=(name) value=(value) disabled[!editable]
                                    aria-describedby=[error_of(name).map(|_| format!("e-{name}"))];
                                @if let Some(m) = error_of(name) { span.field-error id={"e-" (name)} { (m) } }
                            }
                            td { (source(wire)) }
                        }
                    }
                    @for (name, label, wire) in FLAGS {
                        @let on = values.map_or_else(|| flag_value(&policy, name), |v| v.flag(name));
                        tr {
                            th scope="row" { label for={"f-" (name)} { (label) } }
                            td { input id={"f-" (name)} type="checkbox" name=(name) value="true" checked[on] disabled[!editable]; }
                            td { (source(wire)) }
                        }
                    }
                    tr {
                        th scope="row" { label for="f-packages" { "Forbidden packages, one per line" } }
                        td {
                            textarea #f-packages name="packages" rows="3" disabled[!editable] aria-describedby=[error_of("packages").map(|_| "e-packages")] {
                                (values.map_or_else(|| policy.forbidden_packages.join("\n"), |v| v.packages.clone()))
                            }
                            @if let Some(m) = error_of("packages") { span.field-error #e-packages { (m) } }
                        }
                        td { (source("forbidden_packages")) }
                    }
                    @for check in Check::NAMES {
                        @let current = values.map_or_else(|| action_of(&policy, check).to_owned(), |v| v.action(check));
                        tr {
                            th scope="row" { label for={"a-" (check)} { "When " code { (check) } " fails" } }
                            td {
                                select id={"a-" (check)} name={"action_" (check)} disabled[!editable] {
                                    @for a in ["report", "block", "wipe"] { option value=(a) selected[current == a] { (a) } }
                                }
                                @if let Some(m) = error_of(&format!("action_{check}")) { span.field-error { (m) } }
                            }
                            td { (source("check_actions")) }
                        }
                    }
                }
            }
            @if editable {
                p { button type="submit" { @if user.is_empty() { "Save the default policy" } @else { "Save " (user) "'s policy" } } }
            } @else {
                p.muted { "Your role (" (console.me.role) ") may not change policy." }
            }
        }
        @if editable && overridden {
            form method="post" action={"/policy/reset?user=" (q(user))} {
                (ui::csrf_field(console))
                button.danger type="submit" { "Remove " (user) "'s override" }
            }
        }
    };
    let mut response = ui::page(console, "/policy", "Policy", body);
    if !errors.is_empty() {
        *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PolicyForm {
    user: String,
    min_length: String,
    min_classes: String,
    max_age: String,
    history: String,
    max_failed_attempts: String,
    max_inactivity: String,
    offline_wipe_after: String,
    os_updates_max_age: String,
    min_agent_version: String,
    wipe_grace: String,
    max_uptime: String,
    require_encryption: Option<String>,
    require_firewall: Option<String>,
    enforce: Option<String>,
    packages: String,
    #[serde(flatten)]
    actions: std::collections::HashMap<String, String>,
}

impl PolicyForm {
    fn text(&self, field: &str) -> String {
        match field {
            "min_length" => &self.min_length,
            "min_classes" => &self.min_classes,
            "max_age" => &self.max_age,
            "history" => &self.history,
            "max_failed_attempts" => &self.max_failed_attempts,
            "max_inactivity" => &self.max_inactivity,
            "offline_wipe_after" => &self.offline_wipe_after,
            "os_updates_max_age" => &self.os_updates_max_age,
            "min_agent_version" => &self.min_agent_version,
            "wipe_grace" => &self.wipe_grace,
            "max_uptime" => &self.max_uptime,
            _ => "",
        }
        .trim()
        .to_owned()
    }

    fn flag(&self, field: &str) -> bool {
        match field {
            "require_encryption" => self.require_encryption.is_some(),
            "require_firewall" => self.require_firewall.is_some(),
            "enforce" => self.enforce.is_some(),
            _ => false,
        }
    }

    fn action(&self, check: &str) -> String {
        self.actions
            .get(&format!("action_{check}"))
            .cloned()
            .unwrap_or_else(|| "block".into())
    }

    /// The changes against `current`, parsed as `policy set` parses its flags; or the fields
    /// that do not parse, with `policy set`'s messages.
    fn changes(&self, current: &Policy) -> Result<SetPolicyRequest, Vec<(String, String)>> {
        let mut req = SetPolicyRequest {
            user: self.user.trim().to_owned(),
            ..Default::default()
        };
        let mut errors = Vec::new();
        let mut number =
            |field: &str, now: u32, parse: &dyn Fn(&str) -> Result<u32, String>| -> Option<u32> {
                match parse(&self.text(field)) {
                    Ok(v) if v != now => Some(v),
                    Ok(_) => None,
                    Err(e) => {
                        errors.push((field.to_owned(), e));
                        None
                    }
                }
            };
        let count = |t: &str| {
            t.parse::<u32>()
                .map_err(|_| format!("{t:?} is not a whole number"))
        };
        req.password_min_length = number("min_length", current.password_min_length, &count);
        req.password_min_classes = number("min_classes", current.password_min_classes, &count);
        req.password_max_age_days = number("max_age", current.password_max_age_days, &max_age);
        req.password_history = number("history", current.password_history, &count);
        req.max_failed_attempts =
            number("max_failed_attempts", current.max_failed_attempts, &count);
        req.auto_lock_seconds =
            number("max_inactivity", current.auto_lock_seconds, &max_inactivity);
        req.os_updates_max_age_days = number(
            "os_updates_max_age",
            current.os_updates_max_age_days,
            &os_updates_max_age,
        );
        req.max_uptime_days = number("max_uptime", current.max_uptime_days, &max_uptime);
        let seconds: [(&str, u64, &mut Option<u64>, SecondsField); 2] = [
            (
                "offline_wipe_after",
                current.offline_wipe_after_seconds,
                &mut req.offline_wipe_after_seconds,
                offline_wipe_after,
            ),
            (
                "wipe_grace",
                current.wipe_grace_seconds,
                &mut req.wipe_grace_seconds,
                wipe_grace,
            ),
        ];
        for (field, now, slot, parse) in seconds {
            match parse(&self.text(field)) {
                Ok(v) if v != now => *slot = Some(v),
                Ok(_) => {}
                Err(e) => errors.push((field.to_owned(), e)),
            }
        }
        let version = self.text("min_agent_version");
        if version != current.min_agent_version {
            req.min_agent_version = Some(version);
        }
        for (field, now, slot) in [
            (
                "require_encryption",
                current.require_disk_encryption,
                &mut req.require_disk_encryption,
            ),
            (
                "require_firewall",
                current.require_firewall,
                &mut req.require_firewall,
            ),
            ("enforce", current.enforce, &mut req.enforce),
        ] {
            if self.flag(field) != now {
                *slot = Some(self.flag(field));
            }
        }
        let packages: Vec<String> = self
            .packages
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if packages != current.forbidden_packages {
            req.forbidden_packages = Some(PackageList { names: packages });
        }
        for check in Check::NAMES {
            let chosen = self.action(check);
            if chosen != action_of(current, check) {
                match check_action(&format!("{check}={chosen}")) {
                    Ok(a) => req.check_actions.push(CheckAction {
                        check: a.check,
                        action: a.action,
                    }),
                    Err(e) => errors.push((format!("action_{check}"), e)),
                }
            }
        }
        if errors.is_empty() {
            Ok(req)
        } else {
            Err(errors)
        }
    }
}

pub(crate) async fn set(
    State(console): State<Shared>,
    CsrfForm(form): CsrfForm<PolicyForm>,
) -> Page {
    let user = form.user.trim().to_owned();
    let current = answer(
        &console,
        console
            .client()
            .get_policy(GetPolicyRequest { user: user.clone() })
            .await,
    )?;
    let request = match form.changes(&current) {
        Ok(r) => r,
        Err(errors) => return render(&console, &user, &errors, Some(&form), None).await,
    };
    match console.client().set_policy(request).await {
        Ok(p) => {
            let p = p.into_inner();
            let notice = format!("Saved: revision {}, pushed to the devices.", p.revision);
            render(&console, &user, &[], None, Some(&notice)).await
        }
        Err(status) if status.code() == tonic::Code::InvalidArgument => {
            // The controller names the wire field at fault: show its message there.
            let message = status.message().to_owned();
            let field = FIELDS
                .iter()
                .chain(FLAGS)
                .find(|(_, _, wire)| message.contains(wire))
                .map(|(name, _, _)| (*name).to_owned())
                .unwrap_or_default();
            render(&console, &user, &[(field, message)], Some(&form), None).await
        }
        Err(status) => Err(ui::status_page(&console, &status)),
    }
}

pub(crate) async fn reset(
    State(console): State<Shared>,
    Query(query): Query<UserQuery>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Page {
    answer(
        &console,
        console
            .client()
            .reset_policy(GetPolicyRequest {
                user: query.user.clone(),
            })
            .await,
    )?;
    Ok(Redirect::to(&format!("/policy?user={}", q(&query.user))).into_response())
}
