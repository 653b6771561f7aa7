//! `wardctl policy …`

use std::time::Duration;

use clap::Subcommand;
use clap::builder::TypedValueParser;
use serde::Serialize;
use ward_proto::v1::{self, GetPolicyRequest, SetPolicyRequest};

use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_fields, print_json};
use super::{ConnectArgs, DurationArg};
use ward_core::duration::{self, DurationRange, days, hours, seconds};
use ward_core::text::clean;
use ward_core::{Check, EnforcementAction, Named, Policy};

/// `policy set --max-age`.
const MAX_AGE: DurationRange = DurationRange::new(days(1), days(3650), "90d")
    .or_off("no rule")
    .in_days();
/// `policy set --max-inactivity`.
const MAX_INACTIVITY: DurationRange =
    DurationRange::new(seconds(1), hours(24), "5m").or_off("no rule");
/// `policy set --offline-wipe-after`.
const OFFLINE_WIPE_AFTER: DurationRange =
    DurationRange::new(hours(1), days(365), "72h").or_off("never");
/// `policy set --os-updates-max-age`.
const OS_UPDATES_MAX_AGE: DurationRange = DurationRange::new(days(1), days(3650), "30d")
    .or_off("no rule")
    .in_days();
/// `policy set --max-uptime` (the policy's limit: `MAX_UPTIME_DAYS`).
const MAX_UPTIME: DurationRange = DurationRange::new(
    days(1),
    days(ward_core::policy::MAX_UPTIME_DAYS as u64),
    "30d",
)
.or_off("no limit")
.in_days();
/// `policy set --wipe-grace` (required once any check's action is wipe).
const WIPE_GRACE: DurationRange = DurationRange::new(hours(1), days(365), "72h").or_off("off");

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Show the default policy, or the policy in force for a user's devices
    #[command(
        after_help = "Examples:\n  wardctl policy show\n  wardctl policy show --user alice@hospital.org --output json"
    )]
    Show {
        /// Show the policy in force for this user's devices (the default with their override applied) instead of the default
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Change the default policy, or a user's override (made from their current policy); pushed to devices at once
    #[command(
        after_help = "Examples:\n  wardctl policy set --min-length 12 --min-classes 3 --max-inactivity 5m --require-encryption\n  wardctl policy set --action disk_encryption=wipe --wipe-grace 72h --offline-wipe-after 14d\n  wardctl policy set --user alice@hospital.org --max-inactivity 2m"
    )]
    Set {
        /// Change this user's override instead of the default policy
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Minimum password length, 0 to 128 (0: no rule)
        #[arg(long, value_name = "N", value_parser = super::NumberArg::<u32>::new(0, 128), allow_negative_numbers = true)]
        min_length: Option<u32>,
        /// Character classes a password must mix: lower, upper, digit, other (0-4)
        #[arg(long, value_name = "N", value_parser = super::NumberArg::<u32>::new(0, 4), allow_negative_numbers = true)]
        min_classes: Option<u32>,
        #[arg(long, value_parser = DurationArg(MAX_AGE).map(whole_days), allow_hyphen_values = true, value_name = "DURATION", help = MAX_AGE.help("Maximum password age"))]
        max_age: Option<u32>,
        /// Previous passwords that may not be reused, 0 to 50 (0: no rule)
        #[arg(long, value_name = "N", value_parser = super::NumberArg::<u32>::new(0, 50), allow_negative_numbers = true)]
        history: Option<u32>,
        /// Failed log-ins before the account locks, 0 to 100 (0: no rule)
        #[arg(long, value_name = "N", value_parser = super::NumberArg::<u32>::new(0, 100), allow_negative_numbers = true)]
        max_failed_attempts: Option<u32>,
        #[arg(long, value_parser = DurationArg(MAX_INACTIVITY).map(seconds_u32), allow_hyphen_values = true, value_name = "DURATION", help = MAX_INACTIVITY.help("Lock the screen after this much inactivity"))]
        max_inactivity: Option<u32>,
        /// Require disk encryption of the root and messaging filesystems
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        require_encryption: Option<bool>,
        #[arg(long, value_parser = DurationArg(OFFLINE_WIPE_AFTER).map(seconds_u64), allow_hyphen_values = true, value_name = "DURATION", help = OFFLINE_WIPE_AFTER.help("Wipe the messaging data on a device that has not checked in for this long"))]
        offline_wipe_after: Option<u64>,
        /// Let agents running as root write the password rules, not only check them
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        enforce: Option<bool>,
        // Boxed: the posture rules would make `Set` several times the size of the others.
        #[command(flatten)]
        posture: Box<PostureArgs>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove a user's override: their devices follow the default policy again
    #[command(after_help = "Examples:\n  wardctl policy reset --user alice@hospital.org")]
    Reset {
        /// The user whose override to remove (required: the default policy itself is changed with `policy set`)
        #[arg(long, value_name = "EMAIL")]
        user: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// The posture rules of `policy set`.
#[derive(Debug, clap::Args)]
pub(crate) struct PostureArgs {
    /// Require an active host firewall (nftables, iptables, firewalld or ufw)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    require_firewall: Option<bool>,
    /// Add a package to the denylist (dpkg/rpm name, flatpak app id, snap name); repeatable
    #[arg(long, value_name = "NAME")]
    forbid_package: Vec<String>,
    /// Remove a package from the denylist; repeatable
    #[arg(long, value_name = "NAME")]
    allow_package: Vec<String>,
    #[arg(long, value_parser = DurationArg(OS_UPDATES_MAX_AGE).map(whole_days), allow_hyphen_values = true, value_name = "DURATION", help = OS_UPDATES_MAX_AGE.help("No pending security update, and a package update within this long"))]
    os_updates_max_age: Option<u32>,
    /// Agents older than this version fail the agent_version check, e.g. 0.2.0 ("none": no rule)
    #[arg(long, value_name = "VERSION")]
    min_agent_version: Option<String>,
    #[arg(long, value_parser = DurationArg(MAX_UPTIME).map(whole_days), allow_hyphen_values = true, value_name = "DURATION", help = MAX_UPTIME.help("A device up longer than this has not booted into its installed kernel updates (check uptime)"))]
    max_uptime: Option<u32>,
    /// What a failing check leads to: CHECK=report|block|wipe (default block); repeatable. CHECK:
    /// disk_encryption, password_rules, auto_lock, firewall, forbidden_packages, os_updates,
    /// agent_version, uptime
    #[arg(long = "action", value_parser = check_action, value_name = "CHECK=ACTION")]
    actions: Vec<v1::CheckAction>,
    #[arg(long, value_parser = DurationArg(WIPE_GRACE).map(seconds_u64), allow_hyphen_values = true, value_name = "DURATION", help = WIPE_GRACE.help("How long a check whose action is wipe may fail before the messaging data is wiped (required once any action is wipe)"))]
    wipe_grace: Option<u64>,
}

pub(crate) fn check_action(text: &str) -> Result<v1::CheckAction, String> {
    let (check, action) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not CHECK=ACTION, e.g. firewall=block"))?;
    let check: Check = check.parse()?;
    let action: EnforcementAction = action.parse()?;
    Ok(v1::CheckAction {
        check: check.as_str().to_owned(),
        action: v1::EnforcementAction::from(action) as i32,
    })
}

impl PostureArgs {
    fn changes_denylist(&self) -> bool {
        !self.forbid_package.is_empty() || !self.allow_package.is_empty()
    }

    /// Fills the posture fields of `request`; `current` is the denylist in force now.
    fn apply(self, current: &[String], request: &mut SetPolicyRequest) -> Result<(), CliError> {
        if let Some(both) = self
            .forbid_package
            .iter()
            .find(|p| self.allow_package.contains(p))
        {
            return Err(CliError::usage(format!(
                "{both:?} is given to both --forbid-package and --allow-package"
            )));
        }
        if self.changes_denylist() {
            let mut list: Vec<String> = current
                .iter()
                .filter(|p| !self.allow_package.contains(p))
                .cloned()
                .collect();
            for p in self.forbid_package {
                if !list.contains(&p) {
                    list.push(p);
                }
            }
            request.forbidden_packages = Some(v1::PackageList { names: list });
        }
        request.require_firewall = self.require_firewall;
        request.os_updates_max_age_days = self.os_updates_max_age;
        request.min_agent_version = self.min_agent_version.map(|v| match v.trim() {
            "none" | "off" => String::new(),
            other => other.to_owned(),
        });
        request.check_actions = self.actions;
        request.wipe_grace_seconds = self.wipe_grace;
        request.max_uptime_days = self.max_uptime;
        Ok(())
    }
}

/// A duration within its flag's range, as the policy stores it (the ranges keep it in bounds).
fn seconds_u64(d: Duration) -> u64 {
    d.as_secs()
}

fn seconds_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn whole_days(d: Duration) -> u32 {
    u32::try_from(d.as_secs() / 86_400).unwrap_or(u32::MAX)
}

/// The same fields typed into the console's policy form, with `policy set`'s ranges and messages.
pub(crate) fn max_age(text: &str) -> Result<u32, String> {
    MAX_AGE.parse("--max-age", text).map(whole_days)
}
pub(crate) fn max_inactivity(text: &str) -> Result<u32, String> {
    MAX_INACTIVITY
        .parse("--max-inactivity", text)
        .map(seconds_u32)
}
pub(crate) fn os_updates_max_age(text: &str) -> Result<u32, String> {
    OS_UPDATES_MAX_AGE
        .parse("--os-updates-max-age", text)
        .map(whole_days)
}
pub(crate) fn offline_wipe_after(text: &str) -> Result<u64, String> {
    OFFLINE_WIPE_AFTER
        .parse("--offline-wipe-after", text)
        .map(seconds_u64)
}
pub(crate) fn wipe_grace(text: &str) -> Result<u64, String> {
    WIPE_GRACE.parse("--wipe-grace", text).map(seconds_u64)
}
pub(crate) fn max_uptime(text: &str) -> Result<u32, String> {
    MAX_UPTIME.parse("--max-uptime", text).map(whole_days)
}

/// Which table row shows which policy field.
const FIELD_LABELS: &[(&str, &str)] = &[
    ("password_min_length", "password min length"),
    ("password_min_classes", "password min classes"),
    ("password_max_age_days", "password max age"),
    ("password_history", "password history"),
    ("max_failed_attempts", "max failed attempts"),
    ("auto_lock_seconds", "auto-lock after"),
    ("require_disk_encryption", "require disk encryption"),
    ("offline_wipe_after_seconds", "offline wipe after"),
    ("enforce", "enforce (write rules as root)"),
    ("require_firewall", "require firewall"),
    ("forbidden_packages", "forbidden packages"),
    ("os_updates_max_age_days", "OS updates max age"),
    ("min_agent_version", "min agent version"),
    ("check_actions", "  when failing"),
    ("wipe_grace_seconds", "wipe grace"),
    ("max_uptime_days", "max uptime"),
];

/// A policy as `policy show` prints it: the rules (one type with the controller and the
/// agent), with every check's action while it fails (a check not set explicitly blocks), where
/// the policy applies, and for a user's policy the fields the user's override sets (the rest
/// come from the default policy).
#[derive(Serialize)]
struct PolicyView {
    scope: String,
    revision: u64,
    #[serde(flatten)]
    rules: Policy,
    overridden: Vec<String>,
}

impl From<v1::Policy> for PolicyView {
    fn from(p: v1::Policy) -> Self {
        let mut rules = Policy::from(&p);
        for check in Check::ALL {
            rules
                .check_actions
                .entry(check)
                .or_insert(EnforcementAction::Block);
        }
        Self {
            scope: p.scope,
            revision: p.revision,
            rules,
            overridden: p.overridden,
        }
    }
}

fn print_policy(p: v1::Policy, output: OutputFormat) -> Result<(), CliError> {
    // A newer controller's check or action has no name here: say so rather than show the
    // policy as this version reads it (without the check; the action as block) unremarked.
    for a in &p.check_actions {
        let check = clean(&a.check, 64);
        if Check::named(&a.check).is_none() {
            eprintln!(
                "warning: the policy has a check this wardctl does not know ({check}); it is not \
                 shown: upgrade wardctl to see it"
            );
        } else if ward_proto::vocab::enforcement_action(a.action).is_none() {
            eprintln!(
                "warning: the policy's action for {check} is one this wardctl does not know; it \
                 is shown as block, as an agent of this version reads it: upgrade wardctl"
            );
        }
    }
    let view = PolicyView::from(p);
    if output == OutputFormat::Json {
        let mut json = serde_json::to_value(&view)
            .map_err(|e| CliError::failed(format!("cannot encode JSON: {e}")))?;
        // The JSON contract shows no version rule as null (the policy itself holds "").
        if view.rules.min_agent_version.is_empty() {
            json["min_agent_version"] = serde_json::Value::Null;
        }
        return print_json(&json);
    }
    let rule = |n: u32, unit: &str| {
        if n == 0 {
            "no rule".to_owned()
        } else {
            format!("{n}{unit}")
        }
    };
    let in_days = |n: u32| {
        if n == 0 {
            "no rule".to_owned()
        } else {
            duration::format(days(n.into()))
        }
    };
    let span = |secs: u64| {
        if secs == 0 {
            "off".to_owned()
        } else {
            duration::format(Duration::from_secs(secs))
        }
    };
    let mut fields = vec![
        ("scope", view.scope.clone()),
        ("revision", view.revision.to_string()),
        (
            "password min length",
            rule(view.rules.password_min_length, ""),
        ),
        (
            "password min classes",
            rule(view.rules.password_min_classes, ""),
        ),
        (
            "password max age",
            in_days(view.rules.password_max_age_days),
        ),
        ("password history", rule(view.rules.password_history, "")),
        (
            "max failed attempts",
            rule(view.rules.max_failed_attempts, ""),
        ),
        ("auto-lock after", span(view.rules.auto_lock_seconds.into())),
        (
            "require disk encryption",
            view.rules.require_disk_encryption.to_string(),
        ),
        (
            "offline wipe after",
            span(view.rules.offline_wipe_after_seconds),
        ),
        (
            "enforce (write rules as root)",
            view.rules.enforce.to_string(),
        ),
        ("require firewall", view.rules.require_firewall.to_string()),
        (
            "forbidden packages",
            if view.rules.forbidden_packages.is_empty() {
                "none".into()
            } else {
                view.rules.forbidden_packages.join(", ")
            },
        ),
        (
            "OS updates max age",
            in_days(view.rules.os_updates_max_age_days),
        ),
        (
            "min agent version",
            if view.rules.min_agent_version.is_empty() {
                "no rule".to_owned()
            } else {
                view.rules.min_agent_version.clone()
            },
        ),
        ("wipe grace", span(view.rules.wipe_grace_seconds)),
        (
            "max uptime",
            if view.rules.max_uptime_days == 0 {
                "no limit".to_owned()
            } else {
                duration::format(days(view.rules.max_uptime_days.into()))
            },
        ),
    ];
    for (check, action) in &view.rules.check_actions {
        fields.push(("  when failing", format!("{check}: {action}")));
    }
    if view.scope != "default" {
        // Where each field comes from: the user's override, or the default policy.
        for (label, value) in &mut fields {
            let from_user = FIELD_LABELS
                .iter()
                .any(|(field, l)| l == label && view.overridden.iter().any(|o| o == field));
            if FIELD_LABELS.iter().any(|(_, l)| l == label) {
                value.push_str(if from_user { "  (user)" } else { "  (default)" });
            }
        }
    }
    print_fields(&fields);
    Ok(())
}

pub(crate) async fn run(cmd: PolicyCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Show { user, connect } => {
            let mut client = admin_client(&connect).await?;
            let p = client
                .get_policy(GetPolicyRequest {
                    user: user.unwrap_or_default(),
                })
                .await?
                .into_inner();
            print_policy(p, output)
        }
        PolicyCommand::Set {
            user,
            min_length,
            min_classes,
            max_age,
            history,
            max_failed_attempts,
            max_inactivity,
            require_encryption,
            offline_wipe_after,
            enforce,
            posture,
            connect,
        } => {
            let mut client = admin_client(&connect).await?;
            let user = user.unwrap_or_default();
            let current = if posture.changes_denylist() {
                client
                    .get_policy(GetPolicyRequest { user: user.clone() })
                    .await?
                    .into_inner()
                    .forbidden_packages
            } else {
                Vec::new()
            };
            let mut request = SetPolicyRequest {
                user,
                password_min_length: min_length,
                password_min_classes: min_classes,
                password_max_age_days: max_age,
                password_history: history,
                max_failed_attempts,
                auto_lock_seconds: max_inactivity,
                require_disk_encryption: require_encryption,
                offline_wipe_after_seconds: offline_wipe_after,
                enforce,
                ..Default::default()
            };
            (*posture).apply(&current, &mut request)?;
            let p = client.set_policy(request).await?.into_inner();
            print_policy(p, output)
        }
        PolicyCommand::Reset { user, connect } => {
            let mut client = admin_client(&connect).await?;
            let p = client
                .reset_policy(GetPolicyRequest { user })
                .await?
                .into_inner();
            print_policy(p, output)
        }
    }
}
