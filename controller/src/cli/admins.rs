//! `wardctl admin …`

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use serde::Serialize;
use ward_certs::PrivateKeyDer;
use ward_certs::csr::make_csr;
use ward_proto::v1::{self, IssueAdminRequest, ListAdminsRequest};

use super::ConnectArgs;
use super::connect::admin_client;
use super::error::CliError;
use super::output::{OutputFormat, print_json, table};
use crate::bundle::AdminBundle;
use crate::core::{AdminRole, Timestamp};
use crate::server;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Register an admin and write its bundle (certificate, CA, key; mode 0600). The key is made here and never sent
    Issue {
        /// The admin's name (a-z, 0-9, '.', '_', '-')
        name: String,
        /// What the admin may do
        #[arg(long, value_parser = ["admin", "helpdesk", "offboarding"])]
        role: String,
        /// Where to write the bundle; must not exist yet
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Certificate lifetime [default: 90d]
        #[arg(long, value_parser = super::parse_duration, value_name = "DURATION")]
        lifetime: Option<Duration>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List registered admins
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Serialize)]
struct AdminView {
    name: String,
    role: &'static str,
    created_at: String,
    created_by: String,
}

impl From<v1::Admin> for AdminView {
    fn from(a: v1::Admin) -> Self {
        Self {
            role: match v1::AdminRole::try_from(a.role) {
                Ok(v1::AdminRole::Admin) => "admin",
                Ok(v1::AdminRole::Helpdesk) => "helpdesk",
                Ok(v1::AdminRole::Offboarding) => "offboarding",
                _ => "unknown",
            },
            name: a.name,
            created_at: Timestamp::from_unix_ms(a.created_at_unix_ms).rfc3339(),
            created_by: a.created_by,
        }
    }
}

pub async fn run(cmd: AdminCommand, output: OutputFormat) -> Result<(), CliError> {
    match cmd {
        AdminCommand::Issue {
            name,
            role,
            out,
            lifetime,
            connect,
        } => {
            let role: AdminRole = role.parse().map_err(CliError::usage)?;
            // Claim the output file before asking the controller, so a bad path never leaves a
            // registered admin without a bundle.
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .map_err(|e| {
                    CliError::usage(format!(
                        "cannot create {}: {e} (its directory must exist and the file must not)",
                        out.display()
                    ))
                })?;
            let result = issue(&connect, &name, role, lifetime).await;
            let (admin, bundle) = match result {
                Ok(ok) => ok,
                Err(e) => {
                    drop(file);
                    let _ = std::fs::remove_file(&out);
                    return Err(e);
                }
            };
            file.write_all(bundle.to_pem().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| CliError::failed(format!("cannot write {}: {e}", out.display())))?;
            let view = AdminView::from(admin);
            match output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "name": view.name, "role": view.role, "bundle": out.display().to_string(),
                })),
                OutputFormat::Table => {
                    println!(
                        "Admin {} ({}) issued; bundle written to {} (mode 0600).",
                        view.name,
                        view.role,
                        out.display()
                    );
                    Ok(())
                }
            }
        }
        AdminCommand::List { connect } => {
            let mut client = admin_client(&connect).await?;
            let admins: Vec<AdminView> = client
                .list_admins(ListAdminsRequest {})
                .await?
                .into_inner()
                .admins
                .into_iter()
                .map(AdminView::from)
                .collect();
            match output {
                OutputFormat::Json => print_json(&admins),
                OutputFormat::Table => {
                    let mut t = table(&["name", "role", "created", "created by"]);
                    for a in &admins {
                        t.add_row(vec![
                            a.name.clone(),
                            a.role.into(),
                            a.created_at.clone(),
                            a.created_by.clone(),
                        ]);
                    }
                    println!("{t}");
                    Ok(())
                }
            }
        }
    }
}

async fn issue(
    connect: &ConnectArgs,
    name: &str,
    role: AdminRole,
    lifetime: Option<Duration>,
) -> Result<(v1::Admin, AdminBundle), CliError> {
    let key = PrivateKeyDer::generate().map_err(|e| CliError::failed(e.to_string()))?;
    let csr = make_csr(&key, name).map_err(|e| CliError::failed(e.to_string()))?;
    let mut client = admin_client(connect).await?;
    let resp = client
        .issue_admin(IssueAdminRequest {
            name: name.to_owned(),
            role: server::role_to_wire(role) as i32,
            csr_der: csr,
            lifetime_seconds: lifetime
                .map(|d| super::whole_seconds("--lifetime", d))
                .transpose()?
                .unwrap_or(0),
        })
        .await?
        .into_inner();
    let admin = resp
        .admin
        .ok_or_else(|| CliError::failed("the controller's answer lacked the admin record"))?;
    let ca_der = resp
        .ca_certificates_der
        .into_iter()
        .next()
        .ok_or_else(|| CliError::failed("the controller's answer lacked the CA certificate"))?;
    Ok((
        admin,
        AdminBundle {
            certificate_der: resp.certificate_der,
            ca_der,
            key,
        },
    ))
}
