//! `wardctl scim …`: the bearer tokens of identity providers' SCIM connections.

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{
    CreateScimTokenRequest, ListScimTokensRequest, RevokeScimTokenRequest, ScimTokenInfo,
};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_json, table};
use ward_core::Timestamp;

#[derive(Debug, Subcommand)]
pub(super) enum ScimCommand {
    /// Bearer tokens for identity providers (Entra ID, Okta) calling `serve --scim-listen`
    #[command(
        subcommand,
        after_help = "Examples:\n  wardctl scim token create --name entra\n  wardctl scim token list\n  wardctl scim token revoke entra"
    )]
    Token(ScimTokenCommand),
}

#[derive(Debug, Subcommand)]
pub(super) enum ScimTokenCommand {
    /// Make a bearer token for one identity-provider connection and print it once (the
    /// controller keeps only its hash). Its requests act with the offboarding role and are
    /// audited as ward://scim/NAME. Needs the admin role
    #[command(
        after_help = "Examples:\n  wardctl scim token create --name entra\n  wardctl scim token create --name okta --output json"
    )]
    Create {
        /// The connection's name: 1-64 characters of a-z, 0-9, '.', '_', '-'
        #[arg(long, value_name = "NAME")]
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the SCIM clients, revoked ones included; never the tokens
    #[command(
        after_help = "Examples:\n  wardctl scim token list\n  wardctl scim token list --output json"
    )]
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Revoke a SCIM client's token: its next request is refused (401) and audited. Make a new
    /// one with the same name to rotate it
    #[command(
        after_help = "Examples:\n  wardctl scim token revoke entra\n  wardctl scim token revoke entra && wardctl scim token create --name entra"
    )]
    Revoke {
        /// The client's name, as `wardctl scim token list` shows it
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Serialize)]
struct ClientView {
    name: String,
    /// How the audit trail names its requests.
    actor: String,
    /// "active" or "revoked".
    state: &'static str,
    created_at: String,
    created_by: String,
    revoked_at: Option<String>,
    revoked_by: Option<String>,
}

impl From<ScimTokenInfo> for ClientView {
    fn from(c: ScimTokenInfo) -> Self {
        let revoked = c.revoked_at_unix_ms != 0;
        Self {
            name: c.name,
            actor: c.actor,
            state: if revoked { "revoked" } else { "active" },
            created_at: Timestamp::from_unix_ms(c.created_at_unix_ms).rfc3339(),
            created_by: c.created_by,
            revoked_at: revoked.then(|| Timestamp::from_unix_ms(c.revoked_at_unix_ms).rfc3339()),
            revoked_by: (!c.revoked_by.is_empty()).then_some(c.revoked_by),
        }
    }
}

#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    client: ClientView,
    /// The bearer token, shown this once.
    token: String,
}

pub(super) async fn run(cmd: ScimCommand, output: OutputFormat) -> Result<(), CliError> {
    let ScimCommand::Token(cmd) = cmd;
    match cmd {
        ScimTokenCommand::Create { name, connect } => {
            let mut client = admin_client(&connect).await?;
            let resp = client
                .create_scim_token(CreateScimTokenRequest { name })
                .await?
                .into_inner();
            let info = resp
                .client
                .ok_or_else(|| CliError::failed("the controller answered without the client"))?;
            let created = Created {
                client: ClientView::from(info),
                token: resp.token,
            };
            match output {
                OutputFormat::Json => print_json(&created),
                OutputFormat::Table => {
                    println!(
                        "SCIM bearer token for {} (shown once; its requests are audited as {}):\n\n  {}\n\nGive it to the identity provider as the secret token, with the tenant URL\nhttps://HOST:PORT/scim/v2 of `wardctl serve --scim-listen HOST:PORT`.",
                        created.client.name, created.client.actor, created.token
                    );
                    Ok(())
                }
            }
        }
        ScimTokenCommand::List { connect } => {
            let mut client = admin_client(&connect).await?;
            let clients = client
                .list_scim_tokens(ListScimTokensRequest {})
                .await?
                .into_inner()
                .clients;
            print_clients(clients.into_iter().map(ClientView::from).collect(), output)
        }
        ScimTokenCommand::Revoke { name, connect } => {
            let mut client = admin_client(&connect).await?;
            let revoked = client
                .revoke_scim_token(RevokeScimTokenRequest { name })
                .await?
                .into_inner();
            let view = ClientView::from(revoked);
            match output {
                OutputFormat::Json => print_json(&view),
                OutputFormat::Table => {
                    eprintln!(
                        "Revoked: SCIM client {} is refused from its next request on.",
                        view.name
                    );
                    Ok(())
                }
            }
        }
    }
}

fn print_clients(views: Vec<ClientView>, output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => print_json(&views),
        OutputFormat::Table => {
            if views.is_empty() {
                eprintln!("No SCIM clients (wardctl scim token create --name entra makes one).");
                return Ok(());
            }
            let mut t = table(&["name", "state", "created", "created by", "revoked"]);
            for v in &views {
                t.add_row([
                    v.name.as_str(),
                    v.state,
                    &v.created_at,
                    &v.created_by,
                    v.revoked_at.as_deref().unwrap_or("-"),
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}
