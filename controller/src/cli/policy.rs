//! `wardctl policy …`

use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{self, GetPolicyRequest, SetPolicyRequest};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_fields, print_json};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the default policy, or the policy in force for a user's devices
    Show {
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Change the default policy, or a user's override (made from their current policy); pushed to devices at once
    Set {
        /// Change this user's override instead of the default policy
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Minimum password length (0: no rule)
        #[arg(long, value_name = "N")]
        min_length: Option<u32>,
        /// Character classes a password must mix: lower, upper, digit, other (0-4)
        #[arg(long, value_name = "N")]
        min_classes: Option<u32>,
        /// Maximum password age, e.g. 90d (0: no rule)
        #[arg(long, value_parser = days, value_name = "DURATION")]
        max_age: Option<u32>,
        /// Previous passwords that may not be reused
        #[arg(long, value_name = "N")]
        history: Option<u32>,
        /// Failed log-ins before the account locks (0: no rule)
        #[arg(long, value_name = "N")]
        max_failed_attempts: Option<u32>,
        /// Lock the screen after this much inactivity, e.g. 5m (0: no rule)
        #[arg(long, value_parser = seconds_u32, value_name = "DURATION")]
        max_inactivity: Option<u32>,
        /// Require disk encryption of the root and messaging filesystems
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        require_encryption: Option<bool>,
        /// Wipe the messaging data on a device that has not checked in for this long, e.g. 72h ("never" or 0: off)
        #[arg(long, value_parser = seconds_u64, value_name = "DURATION")]
        offline_wipe_after: Option<u64>,
        /// Let agents running as root write the password rules, not only check them
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        enforce: Option<bool>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Remove a user's override: their devices follow the default policy again
    Reset {
        #[arg(long, value_name = "EMAIL")]
        user: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn duration_or_never(text: &str) -> Result<Duration, String> {
    if matches!(text.trim(), "never" | "off" | "0") {
        return Ok(Duration::ZERO);
    }
    super::parse_duration(text)
}

fn seconds_u64(text: &str) -> Result<u64, String> {
    Ok(duration_or_never(text)?.as_secs())
}

fn seconds_u32(text: &str) -> Result<u32, String> {
    u32::try_from(duration_or_never(text)?.as_secs()).map_err(|_| format!("{text:?} is too long"))
}

fn days(text: &str) -> Result<u32, String> {
    let d = duration_or_never(text)?;
    if d.as_secs() % 86400 != 0 {
        return Err(format!(
            "{text:?} is not a whole number of days; use e.g. 90d"
        ));
    }
    u32::try_from(d.as_secs() / 86400).map_err(|_| format!("{text:?} is too long"))
}

#[derive(Serialize)]
struct PolicyView {
    scope: String,
    revision: u64,
    password_min_length: u32,
    password_min_classes: u32,
    password_max_age_days: u32,
    password_history: u32,
    max_failed_attempts: u32,
    auto_lock_seconds: u32,
    require_disk_encryption: bool,
    offline_wipe_after_seconds: u64,
    enforce: bool,
}

impl From<v1::Policy> for PolicyView {
    fn from(p: v1::Policy) -> Self {
        Self {
            scope: p.scope,
            revision: p.revision,
            password_min_length: p.password_min_length,
            password_min_classes: p.password_min_classes,
            password_max_age_days: p.password_max_age_days,
            password_history: p.password_history,
            max_failed_attempts: p.max_failed_attempts,
            auto_lock_seconds: p.auto_lock_seconds,
            require_disk_encryption: p.require_disk_encryption,
            offline_wipe_after_seconds: p.offline_wipe_after_seconds,
            enforce: p.enforce,
        }
    }
}

fn print_policy(p: v1::Policy, output: OutputFormat) -> Result<(), CliError> {
    let view = PolicyView::from(p);
    if output == OutputFormat::Json {
        return print_json(&view);
    }
    let rule = |n: u32, unit: &str| {
        if n == 0 {
            "no rule".to_owned()
        } else {
            format!("{n}{unit}")
        }
    };
    let span = |secs: u64| {
        if secs == 0 {
            "off".to_owned()
        } else {
            humantime::format_duration(Duration::from_secs(secs)).to_string()
        }
    };
    print_fields(&[
        ("scope", view.scope.clone()),
        ("revision", view.revision.to_string()),
        ("password min length", rule(view.password_min_length, "")),
        ("password min classes", rule(view.password_min_classes, "")),
        (
            "password max age",
            rule(view.password_max_age_days, " days"),
        ),
        ("password history", rule(view.password_history, "")),
        ("max failed attempts", rule(view.max_failed_attempts, "")),
        ("auto-lock after", span(view.auto_lock_seconds.into())),
        (
            "require disk encryption",
            view.require_disk_encryption.to_string(),
        ),
        ("offline wipe after", span(view.offline_wipe_after_seconds)),
        ("enforce (write rules as root)", view.enforce.to_string()),
    ]);
    Ok(())
}

pub async fn run(cmd: PolicyCommand, output: OutputFormat) -> Result<(), CliError> {
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
            connect,
        } => {
            let request = SetPolicyRequest {
                user: user.unwrap_or_default(),
                password_min_length: min_length,
                password_min_classes: min_classes,
                password_max_age_days: max_age,
                password_history: history,
                max_failed_attempts,
                auto_lock_seconds: max_inactivity,
                require_disk_encryption: require_encryption,
                offline_wipe_after_seconds: offline_wipe_after,
                enforce,
            };
            let mut client = admin_client(&connect).await?;
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
