//! `wardctl token …`

use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{
    CreateEnrollmentTokenRequest, EnrollmentTokenInfo, ListEnrollmentTokensRequest,
    RevokeEnrollmentTokensRequest,
};

use super::ConnectArgs;
use super::DurationArg;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_json, table};
use ward_core::Timestamp;
use ward_core::duration::DurationRange;

/// `token create --ttl`: the controller's limits for an enrollment token.
pub(crate) const TOKEN_TTL: DurationRange = DurationRange::new(
    ward_core::token::TOKEN_MIN_TTL,
    ward_core::token::TOKEN_MAX_TTL,
    "1h",
);

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a single-use enrollment token for a user's device and print the command to run on it
    #[command(
        after_help = "Examples:\n  wardctl token create --user alice@hospital.org\n  wardctl token create --user alice@hospital.org --ttl 2h --output json"
    )]
    Create {
        /// The user the enrolled device will belong to
        #[arg(long, value_name = "EMAIL")]
        user: String,
        #[arg(long, default_value = "15m", value_parser = DurationArg(TOKEN_TTL), allow_hyphen_values = true, value_name = "DURATION", help = TOKEN_TTL.help("How long the token stays valid"))]
        ttl: Duration,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the enrollment tokens that could still enroll a device (unused, unexpired); never
    /// the tokens themselves
    #[command(
        after_help = "Examples:\n  wardctl token list\n  wardctl token list --user alice@hospital.org --output json"
    )]
    List {
        /// Only this user's tokens
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Withdraw unused enrollment tokens: one by its id (from `token list`), or every one of a
    /// user. A withdrawn token enrolls nothing; a used one is not affected
    #[command(
        after_help = "Examples:\n  wardctl token revoke 3f9c2a7b1d0e4c55 --reason \"sent to the wrong address\"\n  wardctl token revoke --user alice@hospital.org"
    )]
    Revoke {
        /// The token's id, as `wardctl token list` shows it
        #[arg(
            value_name = "TOKEN-ID",
            required_unless_present = "user",
            conflicts_with = "user"
        )]
        id: Option<String>,
        /// Every unused token of this user (none is not an error)
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// Why, for the audit log
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Serialize)]
struct TokenView {
    id: String,
    user: String,
    created_at: String,
    expires_at: String,
    created_by: String,
}

impl From<EnrollmentTokenInfo> for TokenView {
    fn from(t: EnrollmentTokenInfo) -> Self {
        Self {
            id: t.id,
            user: t.user,
            created_at: Timestamp::from_unix_ms(t.created_at_unix_ms).rfc3339(),
            expires_at: Timestamp::from_unix_ms(t.expires_at_unix_ms).rfc3339(),
            created_by: t.created_by,
        }
    }
}

fn print_tokens(
    tokens: Vec<EnrollmentTokenInfo>,
    output: OutputFormat,
    empty: &str,
) -> Result<(), CliError> {
    let views: Vec<TokenView> = tokens.into_iter().map(TokenView::from).collect();
    match output {
        OutputFormat::Json => print_json(&views),
        OutputFormat::Table => {
            if views.is_empty() {
                eprintln!("{empty}");
                return Ok(());
            }
            let mut t = table(&["id", "user", "expires", "created by", "created"]);
            for v in &views {
                t.add_row([&v.id, &v.user, &v.expires_at, &v.created_by, &v.created_at]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

#[derive(Serialize)]
struct TokenCreated {
    token: String,
    ca_hash: String,
    user: String,
    expires_at: String,
    server_url: String,
    enroll_command: String,
}

pub(crate) async fn run(cmd: TokenCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        TokenCommand::List { user, connect } => {
            let mut client = admin_client(&connect).await?;
            let tokens = client
                .list_enrollment_tokens(ListEnrollmentTokensRequest {
                    user: user.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .tokens;
            print_tokens(tokens, output, "No unused enrollment tokens.")
        }
        TokenCommand::Revoke {
            id,
            user,
            reason,
            connect,
        } => {
            let mut client = admin_client(&connect).await?;
            let revoked = client
                .revoke_enrollment_tokens(RevokeEnrollmentTokensRequest {
                    token_id: id.unwrap_or_default(),
                    user: user.unwrap_or_default(),
                    reason: reason.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .revoked;
            if output == OutputFormat::Table && !revoked.is_empty() {
                eprintln!(
                    "Withdrawn ({}): they enroll nothing from now on.",
                    revoked.len()
                );
            }
            print_tokens(revoked, output, "No unused token to withdraw.")
        }
        TokenCommand::Create { user, ttl, connect } => {
            let mut client = admin_client(&connect).await?;
            let resp = client
                .create_enrollment_token(CreateEnrollmentTokenRequest {
                    user,
                    ttl_seconds: super::whole_seconds(ttl),
                })
                .await?
                .into_inner();
            let enroll_command = format!(
                "ward-agent enroll --server {} --token {} --ca-hash {}",
                resp.server_url, resp.token, resp.ca_hash
            );
            let created = TokenCreated {
                expires_at: Timestamp::from_unix_ms(resp.expires_at_unix_ms).rfc3339(),
                token: resp.token,
                ca_hash: resp.ca_hash,
                user: resp.user,
                server_url: resp.server_url,
                enroll_command,
            };
            match output {
                OutputFormat::Json => print_json(&created),
                OutputFormat::Table => {
                    println!(
                        "Enrollment token for {} (single use, expires {}):\n\n  {}\n\nOn the device, run:\n\n  {}",
                        created.user, created.expires_at, created.token, created.enroll_command
                    );
                    Ok(())
                }
            }
        }
    }
}
