//! `wardctl token …`

use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::CreateEnrollmentTokenRequest;

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_json};
use crate::core::Timestamp;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a single-use enrollment token for a user's device and print the command to run on it
    Create {
        /// The user the enrolled device will belong to
        #[arg(long, value_name = "EMAIL")]
        user: String,
        /// How long the token stays valid (1m to 7d)
        #[arg(long, default_value = "15m", value_parser = super::parse_duration, value_name = "DURATION")]
        ttl: Duration,
        #[command(flatten)]
        connect: ConnectArgs,
    },
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

pub async fn run(cmd: TokenCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create { user, ttl, connect } => {
            let mut client = admin_client(&connect).await?;
            let resp = client
                .create_enrollment_token(CreateEnrollmentTokenRequest {
                    user,
                    ttl_seconds: super::whole_seconds("--ttl", ttl)?,
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
