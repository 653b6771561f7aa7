//! `wardctl admin …`: issue, renew, revoke, approve and list admin identities.

use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use ward_proto::v1::{
    self, ApproveAdminRequest, IssueAdminRequest, ListAdminsRequest, RenewAdminRequest,
    RevokeAdminRequest,
};

use super::ConnectArgs;
use super::admin_bundle::{NewBundleArgs, Obtained, obtain};
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_fields, print_json, table};
use ward_core::duration::DurationRange;
use ward_core::{AdminRole, Timestamp};

/// `admin issue|renew --lifetime`: the controller's limits for a certificate.
const LIFETIME: DurationRange = DurationRange::new(
    ward_core::model::CERT_MIN_LIFETIME,
    ward_core::model::CERT_MAX_LIFETIME,
    "90d",
);

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// Register an admin and write its bundle (certificate, CA, key; mode 0600). The key is made here, never sent, and encrypted with a passphrase (asked on the terminal, or --passphrase-file). Under `serve --require-approval` an admin-role identity first waits for a second admin (`admin approve NAME`); run the same command again once approved
    #[command(
        after_help = "Examples:\n  wardctl admin issue carol --role helpdesk --out carol.pem\n  wardctl admin issue hr-bot --role offboarding --lifetime 7d --out hr.pem --passphrase-file hr.pw"
    )]
    Issue {
        /// The admin's name (a-z, 0-9, '.', '_', '-')
        name: String,
        /// What the admin may do
        #[arg(long, value_parser = ["admin", "helpdesk", "offboarding"])]
        role: String,
        #[arg(long, value_parser = super::DurationArg(LIFETIME), allow_hyphen_values = true, value_name = "DURATION", help = LIFETIME.help("Certificate lifetime [default: 30d]"))]
        lifetime: Option<Duration>,
        #[command(flatten)]
        bundle: NewBundleArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Give an admin identity a new certificate and bundle (a new key, made here); its other certificates are revoked at once. Your own needs no role; another admin's needs role admin (and, for an admin-role identity under --require-approval, a second admin's approval)
    #[command(
        after_help = "Examples:\n  wardctl admin renew alice --out ~/alice.pem\n  wardctl admin renew carol --lifetime 14d --out carol.pem"
    )]
    Renew {
        /// The admin whose certificate to renew
        name: String,
        #[arg(long, value_parser = super::DurationArg(LIFETIME), allow_hyphen_values = true, value_name = "DURATION", help = LIFETIME.help("Certificate lifetime [default: 30d; 730d for break-glass]"))]
        lifetime: Option<Duration>,
        #[command(flatten)]
        bundle: NewBundleArgs,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Revoke an admin: refused at every TLS handshake and call from now on, open connections cut, audited. The last active admin-role identity cannot be revoked
    #[command(after_help = "Examples:\n  wardctl admin revoke carol --reason \"left the IT team\"")]
    Revoke {
        /// The admin to revoke
        name: String,
        /// Why (kept in the audit log)
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Approve the request waiting for admin NAME, or (NAME `ca-rotation-<12 hex>`, after the hash of the CA concerned) a forced `ca rotate activate|retire` (serve --require-approval); the approver may not be the requester, nor an admin the requester created, renewed or approved, nor the one who created or renewed the requester
    #[command(
        after_help = "Examples:\n  wardctl admin list --requests\n  wardctl admin approve carol\n  wardctl admin approve ca-rotation-0123456789ab"
    )]
    Approve {
        /// The admin whose request to approve (`ca-rotation-<12 hex>`: the forced CA rotation step on the CA whose hash starts with those digits, as `admin list --requests` and the refusal show it)
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List admins with role, state (active, expired, revoked), certificate expiry, who created and approved them
    #[command(
        after_help = "Examples:\n  wardctl admin list\n  wardctl admin list --requests --output json"
    )]
    List {
        /// List the requests awaiting a second admin instead
        #[arg(long)]
        requests: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn time(ms: i64) -> Option<String> {
    (ms != 0).then(|| Timestamp::from_unix_ms(ms).rfc3339())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[derive(Serialize)]
struct AdminView {
    name: String,
    role: &'static str,
    /// active, expired (no valid certificate left) or revoked.
    state: &'static str,
    expires_at: Option<String>,
    created_at: String,
    created_by: String,
    approved_by: Option<String>,
    /// Who asked for its current certificate, when another admin renewed it.
    certificate_by: Option<String>,
    break_glass: bool,
    revoked_at: Option<String>,
    revoked_by: Option<String>,
    revoke_reason: Option<String>,
}

impl From<v1::Admin> for AdminView {
    fn from(a: v1::Admin) -> Self {
        let now = Timestamp::from_datetime(time::OffsetDateTime::now_utc()).unix_ms();
        let state = match a.state.as_str() {
            "revoked" => "revoked",
            _ if a.expires_at_unix_ms <= now => "expired",
            _ => "active",
        };
        Self {
            role: ward_proto::names::admin_role(a.role),
            state,
            expires_at: time(a.expires_at_unix_ms),
            name: a.name,
            created_at: Timestamp::from_unix_ms(a.created_at_unix_ms).rfc3339(),
            created_by: a.created_by,
            approved_by: non_empty(a.approved_by),
            certificate_by: non_empty(a.certificate_by),
            break_glass: a.break_glass,
            revoked_at: time(a.revoked_at_unix_ms),
            revoked_by: non_empty(a.revoked_by),
            revoke_reason: non_empty(a.revoke_reason),
        }
    }
}

#[derive(Serialize)]
struct RequestView {
    id: String,
    /// issue or renew; ca-activate or ca-retire for a forced CA rotation step (named
    /// `ca-rotation-<12 hex>` after the CA to activate or retire).
    kind: String,
    name: String,
    role: &'static str,
    /// awaiting_approval, or approved (the requester's next call uses it).
    state: &'static str,
    requested_by: String,
    requested_at: String,
    expires_at: String,
    approved_by: Option<String>,
}

impl From<v1::AdminRequest> for RequestView {
    fn from(r: v1::AdminRequest) -> Self {
        Self {
            role: ward_proto::names::admin_role(r.role),
            state: if r.approved_by.is_empty() {
                "awaiting_approval"
            } else {
                "approved"
            },
            id: r.id,
            kind: r.kind,
            name: r.name,
            requested_by: r.requested_by,
            requested_at: Timestamp::from_unix_ms(r.requested_at_unix_ms).rfc3339(),
            expires_at: Timestamp::from_unix_ms(r.expires_at_unix_ms).rfc3339(),
            approved_by: non_empty(r.approved_by),
        }
    }
}

fn print_admin(view: &AdminView, output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => print_json(view),
        OutputFormat::Table => {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let mut fields = vec![
                ("name", view.name.clone()),
                ("role", view.role.to_owned()),
                ("state", view.state.to_owned()),
                ("expires", dash(&view.expires_at)),
                (
                    "created",
                    format!("{} by {}", view.created_at, view.created_by),
                ),
                ("approved by", dash(&view.approved_by)),
            ];
            if let Some(at) = &view.revoked_at {
                fields.push((
                    "revoked",
                    format!(
                        "{at} by {}: {}",
                        dash(&view.revoked_by),
                        dash(&view.revoke_reason)
                    ),
                ));
            }
            print_fields(&fields);
            Ok(())
        }
    }
}

/// Prints what `issue` or `renew` came to.
fn print_obtained(obtained: Obtained, output: OutputFormat) -> Result<(), CliError> {
    match obtained {
        Obtained::Written {
            admin,
            out,
            encrypted,
        } => {
            let view = AdminView::from(admin);
            match output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "name": view.name, "role": view.role, "state": view.state,
                    "expires_at": view.expires_at, "approved_by": view.approved_by,
                    "bundle": out.display().to_string(), "key_encrypted": encrypted,
                })),
                OutputFormat::Table => {
                    println!(
                        "Admin {} ({}) has a certificate until {}; bundle written to {} (mode 0600, {}).",
                        view.name,
                        view.role,
                        view.expires_at.as_deref().unwrap_or("?"),
                        out.display(),
                        if encrypted {
                            "key encrypted with the passphrase"
                        } else {
                            "key NOT encrypted: --no-passphrase"
                        }
                    );
                    Ok(())
                }
            }
        }
        Obtained::AwaitingApproval(request) => {
            let view = RequestView::from(request);
            eprintln!(
                "No bundle written: to {} admin {} (role {}) a second admin must approve first. Ask another admin (not one you created or approved) to run `wardctl admin approve {}`, then run this command again before {}.",
                view.kind, view.name, view.role, view.name, view.expires_at
            );
            match output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "name": view.name, "role": view.role, "state": view.state,
                    "bundle": null, "request": view,
                })),
                OutputFormat::Table => Ok(()),
            }
        }
    }
}

pub(super) async fn run(cmd: AdminCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        AdminCommand::Issue {
            name,
            role,
            lifetime,
            bundle,
            connect,
        } => {
            let role: AdminRole = role.parse().map_err(CliError::usage)?;
            let wire_role = ward_proto::names::admin_role_named(role.as_str())
                .ok_or_else(|| CliError::failed(format!("no wire value for role {role}")))?;
            let lifetime_seconds = lifetime.map(super::whole_seconds).unwrap_or(0);
            let request_name = name.clone();
            let obtained = obtain(&name, bundle, &connect, |mut client, csr_der| async move {
                client
                    .issue_admin(IssueAdminRequest {
                        name: request_name,
                        role: wire_role as i32,
                        csr_der,
                        lifetime_seconds,
                    })
                    .await
            })
            .await?;
            print_obtained(obtained, output)
        }
        AdminCommand::Renew {
            name,
            lifetime,
            bundle,
            connect,
        } => {
            let lifetime_seconds = lifetime.map(super::whole_seconds).unwrap_or(0);
            let request_name = name.clone();
            let obtained = obtain(&name, bundle, &connect, |mut client, csr_der| async move {
                client
                    .renew_admin(RenewAdminRequest {
                        name: request_name,
                        csr_der,
                        lifetime_seconds,
                    })
                    .await
            })
            .await?;
            print_obtained(obtained, output)
        }
        AdminCommand::Revoke {
            name,
            reason,
            connect,
        } => {
            if reason.trim().is_empty() {
                return Err(CliError::usage(
                    "--reason must say why the admin is revoked; it is kept for the audit",
                ));
            }
            let mut client = admin_client(&connect).await?;
            let admin = client
                .revoke_admin(RevokeAdminRequest { name, reason })
                .await?
                .into_inner();
            print_admin(&AdminView::from(admin), output)
        }
        AdminCommand::Approve { name, connect } => {
            let mut client = admin_client(&connect).await?;
            let request = client
                .approve_admin(ApproveAdminRequest { name })
                .await?
                .into_inner();
            let view = RequestView::from(request);
            match output {
                OutputFormat::Json => print_json(&view),
                OutputFormat::Table => {
                    match view.kind.strip_prefix("ca-") {
                        // A forced CA rotation step (`ca-activate`, `ca-retire`).
                        Some(step) => println!(
                            "Approved: {} may now run `wardctl ca rotate {step} --force` again, once, before {}.",
                            view.requested_by, view.expires_at
                        ),
                        None => println!(
                            "Approved: {} may now {} admin {} (role {}) by running their command again before {}.",
                            view.requested_by, view.kind, view.name, view.role, view.expires_at
                        ),
                    }
                    Ok(())
                }
            }
        }
        AdminCommand::List { requests, connect } => {
            let mut client = admin_client(&connect).await?;
            let listed = client.list_admins(ListAdminsRequest {}).await?.into_inner();
            if requests {
                let views: Vec<RequestView> =
                    listed.requests.into_iter().map(RequestView::from).collect();
                return match output {
                    OutputFormat::Json => print_json(&views),
                    OutputFormat::Table => {
                        let mut t = table(&[
                            "name",
                            "kind",
                            "role",
                            "state",
                            "requested by",
                            "expires",
                            "approved by",
                        ]);
                        for r in &views {
                            t.add_row(vec![
                                r.name.clone(),
                                r.kind.clone(),
                                r.role.into(),
                                r.state.into(),
                                r.requested_by.clone(),
                                r.expires_at.clone(),
                                r.approved_by.clone().unwrap_or_else(|| "-".into()),
                            ]);
                        }
                        println!("{t}");
                        Ok(())
                    }
                };
            }
            let pending = listed.requests.len();
            let admins: Vec<AdminView> = listed.admins.into_iter().map(AdminView::from).collect();
            match output {
                OutputFormat::Json => print_json(&admins),
                OutputFormat::Table => {
                    let mut t = table(&[
                        "name",
                        "role",
                        "state",
                        "expires",
                        "created",
                        "created by",
                        "approved by",
                    ]);
                    for a in &admins {
                        let state = if a.break_glass {
                            format!("{} (break-glass)", a.state)
                        } else {
                            a.state.to_owned()
                        };
                        t.add_row(vec![
                            a.name.clone(),
                            a.role.into(),
                            state,
                            a.expires_at.clone().unwrap_or_else(|| "-".into()),
                            a.created_at.clone(),
                            a.created_by.clone(),
                            a.approved_by.clone().unwrap_or_else(|| "-".into()),
                        ]);
                    }
                    println!("{t}");
                    if pending > 0 {
                        eprintln!(
                            "{pending} request(s) for admin identities await a second admin: `wardctl admin list --requests`"
                        );
                    }
                    Ok(())
                }
            }
        }
    }
}
